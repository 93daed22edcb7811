"""Shape of one factored-attention transformer stack (the original's `prior_kwargs`, minus what only training uses).

A prior builds one for its main stack and, for 5b_lyrics-style models, one for its lyrics encoder. Fields that
depend on the surrounding model (`encoder_dims` for cross-attention, `prime_len` for the 1b lyric prefix) are
filled in by the prior config, never typed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransformerConfig:
    width: int
    depth: int
    heads: int
    n_ctx: int  # sequence length the stack is built for (lyric prefix included for merged 1b-style models)
    attn_order: int = 2  # layer schedule, see ATTN_ORDERS in block.py
    blocks: int | None = None  # rows of the factorisation: block_ctx = n_ctx // blocks
    m_attn: float = 0.25  # attention width = m_attn * width
    m_mlp: float = 1.0  # MLP hidden width = m_mlp * width
    init_scale: float = 1.0  # scales the N(0, 0.02) weight init
    encoder_dims: int | None = None  # encoder length seen by cross-attention layers (kind 6)
    prime_len: int | None = None  # lyric-prefix length for prime-attention layers (kind 7)

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads", "n_ctx"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_state % self.heads:
            raise ValueError(f"attention width {self.n_state} is not divisible by heads={self.heads}")
        if self.blocks is not None and self.n_ctx % self.blocks:
            raise ValueError(f"n_ctx={self.n_ctx} is not a multiple of blocks={self.blocks}")

    @property
    def n_state(self) -> int:
        """Attention width (q, k and v each)."""
        return int(self.m_attn * self.width)

    @property
    def mlp_hidden(self) -> int:
        return int(self.m_mlp * self.width)
