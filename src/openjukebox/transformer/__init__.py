"""Factored-attention transformer of the Jukebox priors: attention kinds, blocks, and the original key map."""

from openjukebox.transformer.attention import FactoredAttention, KVCache, prime_keys_len
from openjukebox.transformer.block import MLP, ResAttnBlock, Transformer, TransformerCache, attn_func_for_layer
from openjukebox.transformer.config import TransformerConfig
from openjukebox.transformer.keys import convert_transformer_state_dict, rename_transformer_key

__all__ = [
    "MLP",
    "FactoredAttention",
    "KVCache",
    "ResAttnBlock",
    "Transformer",
    "TransformerCache",
    "TransformerConfig",
    "attn_func_for_layer",
    "convert_transformer_state_dict",
    "prime_keys_len",
    "rename_transformer_key",
]
