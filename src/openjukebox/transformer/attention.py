"""Factored (sparse) self-attention of the Jukebox priors (Jukebox paper §4, Appendix B.1; Sparse Transformers).

A sequence of length T is viewed as a grid of `blocks` rows of `block_ctx = n_ctx // blocks` positions. Each
layer uses one attention kind (`attn_func`, the original's codes):

| kind | name            | a query at position t attends to                                     | mask   |
|------|-----------------|----------------------------------------------------------------------|--------|
| 0    | dense           | every position <= t                                                  | causal |
| 1    | block (row)     | positions <= t in its own row                                        | causal |
| 2    | transpose block | positions <= t in its own column (same index within the row)         | causal |
| 3    | previous block  | the whole previous row (all-zero keys/values for row 0)              | none   |
| 6    | encoder-decoder | every encoder position (`encoder_kv`, e.g. the lyrics encoder)       | none   |
| 7    | prime           | positions <= t among the first `(prime_len // blocks + 1) * blocks`   | causal |

Rows, columns and previous rows are rearranged into a batch of short dense sequences so that every kind runs
through `torch.nn.functional.scaled_dot_product_attention`; only the prime kind needs an explicit mask (its
keys are a prefix, so it is not square). The summary kinds 4 and 5 are not used by released models and are
not implemented. This module covers the teacher-forced (training) forward only; no KV cache yet.

Fidelity: q and k are each scaled by d_head^-1/4 before the product (the original's training path) and the
score scale passed to SDPA is 1. For fp16/bf16 inputs the fused SDPA kernels accumulate the softmax in fp32,
as the original did by upcasting the scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openjukebox.transformer.config import TransformerConfig

DENSE, BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, SUMMARY, SUMMARY_SPREAD, ENC_DEC, PRIME = range(8)
SUPPORTED_KINDS = (DENSE, BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, ENC_DEC, PRIME)


def prime_keys_len(prime_len: int, blocks: int) -> int:
    """Number of keys prime attention sees: `(prime_len // blocks + 1) * blocks`.

    The original multiplies by `blocks`, not `block_ctx`; for 1b_lyrics (prime_len 384, blocks 64) this is 448, so
    the prefix also holds the first 64 music positions. Copied as is to load the released weights.
    """
    return (prime_len // blocks + 1) * blocks


def _linear(n_in: int, n_out: int, init_scale: float, zero: bool = False) -> nn.Linear:
    """Linear with the original Conv1D init: weight N(0, 0.02*init_scale) (or zeros), bias zeros."""
    layer = nn.Linear(n_in, n_out)
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, std=0.02 * init_scale)
    nn.init.zeros_(layer.bias)
    return layer


class FactoredAttention(nn.Module):
    """One attention layer of kind `attn_func` over a (B, T, width) sequence.

    Args:
        config: the stack's shape; this layer uses width, n_state (= m_attn * width) split over heads, n_ctx and
            blocks (block_ctx = n_ctx // blocks, kinds 1, 2, 3, 7), encoder_dims (kind 6), prime_len (kind 7)
            and init_scale (scales the N(0, 0.02) weight init).
        attn_func: the attention kind (see module docstring).
        zero_out: initialise `proj` to zero (the original does this for encoder-decoder layers).

    Parameters (original names in brackets; see keys.py): `in_proj` [c_attn] fused q,k,v (q only for kind 6),
    `enc_kv` [c_enc_kv] k,v from encoder_kv (kind 6 only), `proj` [c_proj].
    """

    def __init__(self, config: TransformerConfig, attn_func: int, zero_out: bool = False):
        super().__init__()
        assert attn_func in SUPPORTED_KINDS, f"attention kind {attn_func} not implemented (have {SUPPORTED_KINDS})"
        width, n_state, init_scale = config.width, config.n_state, config.init_scale
        self.width, self.n_state, self.heads, self.n_ctx = width, n_state, config.heads, config.n_ctx
        self.attn_func = attn_func
        self.blocks = config.blocks
        self.encoder_dims = config.encoder_dims
        self.prime_len = config.prime_len
        if attn_func in (BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, PRIME):
            assert self.blocks is not None, f"attention kind {attn_func} needs blocks"
        if attn_func == PRIME:
            assert self.prime_len is not None, "prime attention needs prime_len"
        if attn_func == ENC_DEC:
            assert self.encoder_dims, "encoder-decoder attention needs encoder_dims"
            self.in_proj = _linear(width, n_state, init_scale)
            self.enc_kv = _linear(width, 2 * n_state, init_scale)
        else:
            self.in_proj = _linear(width, 3 * n_state, init_scale)
        self.proj = _linear(n_state, width, init_scale, zero=zero_out)

    @property
    def block_ctx(self) -> int:
        assert self.blocks is not None
        return self.n_ctx // self.blocks

    @property
    def prime_keys(self) -> int:
        """Length of the key prefix prime attention sees."""
        assert self.prime_len is not None and self.blocks is not None
        return prime_keys_len(self.prime_len, self.blocks)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        is_causal: bool = False,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Multi-head attention over already-gathered sequences.

        Args:
            q: (N, Lq, n_state); k, v: (N, Lk, n_state).
            is_causal: causal mask (Lq == Lk here). mask: optional (Lq, Lk) bool, True = may attend.
        Returns:
            (N, Lq, n_state)
        """
        n, lq, _ = q.shape
        d_head = self.n_state // self.heads
        scale = d_head**-0.25  # on q and k each, as the original's training path
        q = (q * scale).view(n, lq, self.heads, d_head).transpose(1, 2)  # (N, H, Lq, dh)
        k = (k * scale).view(n, k.shape[1], self.heads, d_head).transpose(1, 2)  # (N, H, Lk, dh)
        v = v.view(n, v.shape[1], self.heads, d_head).transpose(1, 2)  # (N, H, Lk, dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=1.0)
        return a.transpose(1, 2).reshape(n, lq, self.n_state)  # (N, Lq, n_state)

    def forward(self, x: torch.Tensor, encoder_kv: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced attention.

        Args:
            x: (B, T, width); T must be a multiple of block_ctx for kinds 1-3 and equal n_ctx for kind 7.
            encoder_kv: (B, encoder_dims, width), kind 6 only.
        Returns:
            (B, T, width)
        """
        b, t, _ = x.shape
        kind = self.attn_func
        if kind == ENC_DEC:
            assert encoder_kv is not None, "encoder-decoder attention needs encoder_kv"
            assert encoder_kv.shape[1] == self.encoder_dims, (
                f"encoder_kv {tuple(encoder_kv.shape)} != {self.encoder_dims}"
            )
            q = self.in_proj(x)  # (B, T, n_state)
            k, v = self.enc_kv(encoder_kv.type_as(x)).chunk(2, dim=-1)  # (B, S, n_state) each
            return self.proj(self._attend(q, k, v))
        assert encoder_kv is None, f"attention kind {kind} takes no encoder_kv"
        q, k, v = self.in_proj(x).chunk(3, dim=-1)  # (B, T, n_state) each
        if kind == DENSE:
            a = self._attend(q, k, v, is_causal=True)
        elif kind == PRIME:
            assert t == self.n_ctx, f"prime attention needs the full context {self.n_ctx}, got {t}"
            p = self.prime_keys
            mask = torch.ones(t, p, dtype=torch.bool, device=x.device).tril()  # query i sees keys j <= i
            a = self._attend(q, k[:, :p], v[:, :p], mask=mask)
        else:
            bc = self.block_ctx
            assert t % bc == 0, f"length {t} is not a multiple of block_ctx {bc}"
            nb = t // bc
            if kind == BLOCK:
                rows = [z.reshape(b * nb, bc, self.n_state) for z in (q, k, v)]  # (B*nb, bc, n_state)
                a = self._attend(*rows, is_causal=True).view(b, t, self.n_state)
            elif kind == TRANSPOSE_BLOCK:

                def cols(z: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B*bc, nb, C)
                    return z.view(b, nb, bc, self.n_state).transpose(1, 2).reshape(b * bc, nb, self.n_state)

                a = self._attend(cols(q), cols(k), cols(v), is_causal=True)  # (B*bc, nb, n_state)
                a = a.view(b, bc, nb, self.n_state).transpose(1, 2).reshape(b, t, self.n_state)
            else:  # PREV_BLOCK: keys are the previous row; row 0 sees zeros (so its output is proj's bias)

                def prev(z: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B*nb, bc, C), rows shifted down
                    z = z.view(b, nb, bc, self.n_state)[:, :-1]
                    return F.pad(z, (0, 0, 0, 0, 1, 0)).reshape(b * nb, bc, self.n_state)

                a = self._attend(q.reshape(b * nb, bc, self.n_state), prev(k), prev(v)).view(b, t, self.n_state)
        return self.proj(a)
