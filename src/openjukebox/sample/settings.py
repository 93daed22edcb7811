"""Sampling settings per level (no heavy imports: the CLI builds its help text from the defaults)."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("ancestral", "primed", "continue", "upsample")
RNG_MODES = ("window", "original")  # one generator per window (seed, position) / one stream, as the original
# The token loop: prior.decode.DECODE_MODES (a test keeps the two equal; this module does not import torch).
DECODE_MODES = ("auto", "eager", "position", "graph")


@dataclass(frozen=True)
class LevelSampling:
    """Sampling settings of one level (the original's defaults: temperature 0.99, no top-k/top-p filtering,
    hop 1/8 of the context at the top and 1/2 for the upsamplers). guidance: classifier-free guidance scale
    against the artist and genre "unknown" (`prior.sampling`; 1 = off, as the original; for priors trained with
    label dropout)."""

    temperature: float = 0.99
    top_k: int = 0
    top_p: float = 0.0
    hop_fraction: float = 0.5
    chunk_size: int = 32  # prompt tokens run per forward when filling the cache
    max_batch_size: int = 16  # samples drawn together
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0 or not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"need top_k >= 0 and 0 <= top_p <= 1, got {self.top_k}, {self.top_p}")
        if not 0.0 < self.hop_fraction <= 1.0:
            raise ValueError(f"hop_fraction must be in (0, 1], got {self.hop_fraction}")
        if self.chunk_size < 1 or self.max_batch_size < 1:
            raise ValueError("chunk_size and max_batch_size must be >= 1")
        if not 0.0 <= self.guidance < float("inf"):
            raise ValueError(f"guidance must be a finite number >= 0 (1 = off), got {self.guidance}")


def default_sampling(level: int, top_level: int = 2) -> LevelSampling:
    if level == top_level:
        return LevelSampling(hop_fraction=0.125, chunk_size=16, max_batch_size=3)
    return LevelSampling(hop_fraction=0.5, chunk_size=32, max_batch_size=16)
