"""VQ-VAE configuration and named presets (Jukebox paper §3, original `hparams.py` `vqvae`).

`official` is the released model (all three Jukebox checkpoints share it); `small`, `demo` and `tiny` keep the same
hop lengths (8 / 32 / 128) so that priors trained on them use the same token rates, with fewer channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from openjukebox import configs
from openjukebox.errors import OpenJukeboxError


@dataclass(frozen=True)
class VQVAELossConfig:
    """Loss weights (used by training, never by `forward`). Total =
    sum_levels(recon + spectral*spec + multispectral*multispec) + commit*sum_levels(commit)."""

    recon: str = "lmix"  # "l1" | "l2" | "linf" | "lmix"
    lmix_l1: float = 0.0
    lmix_l2: float = 1.0
    lmix_linf: float = 0.02
    linf_k: int = 2048  # top-k residuals per example for linf
    spectral: float = 0.0
    multispectral: float = 1.0
    commit: float = 0.02

    def __post_init__(self) -> None:
        if self.recon not in ("l1", "l2", "linf", "lmix"):
            raise ValueError(f"recon must be l1, l2, linf or lmix, not {self.recon!r}")


@dataclass(frozen=True)
class VQVAEConfig:
    sample_rate: int = 44100
    levels: int = 3
    downs_t: tuple[int, ...] = (3, 2, 2)  # stride-2 downsamplings added per level
    strides_t: tuple[int, ...] = (2, 2, 2)
    emb_width: int = 64  # codebook vector size = encoder output channels
    l_bins: int = 2048  # codes per level
    width: int = 32  # conv channels (times multipliers[level])
    depth: int = 4  # residual blocks per stack (times multipliers[level])
    multipliers: tuple[int, ...] = (2, 1, 1)
    m_conv: float = 1.0  # hidden width of a residual block = m_conv * width
    dilation_growth_rate: int = 3
    dilation_cycle: int | None = None
    reverse_decoder_dilation: bool = True
    mu: float = 0.99  # codebook EMA decay
    revival_threshold: float = 1.0  # codes whose EMA count falls below this are restarted
    loss: VQVAELossConfig = field(default_factory=VQVAELossConfig)

    def __post_init__(self) -> None:
        n = self.levels
        if not (len(self.downs_t) == len(self.strides_t) == len(self.multipliers) == n):
            raise ValueError(f"downs_t, strides_t and multipliers need {n} entries (levels={n})")

    @property
    def downsamples(self) -> tuple[int, ...]:
        """Downsampling factor each level adds: stride ** down."""
        return tuple(s**d for s, d in zip(self.strides_t, self.downs_t))

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        """Audio samples per code at each level (8, 32, 128 for the official model)."""
        return tuple(math.prod(self.downsamples[: i + 1]) for i in range(self.levels))

    def to_dict(self) -> dict[str, Any]:
        return configs.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VQVAEConfig:
        return configs.from_dict(cls, data)


PRESETS: dict[str, VQVAEConfig] = {
    # The released Jukebox VQ-VAE: 1.8 M parameters + 3 x 2048 x 64 codebooks.
    "official": VQVAEConfig(),
    # Small models of your own (GPU training; `scripts/train_lyrics_model.py` default preset): one quarter of the codes.
    "small": VQVAEConfig(l_bins=512, width=32, depth=4, multipliers=(1, 1, 1)),
    # The bundled demo model, trained on 2 CPU cores in under an hour (scripts/train_demo.sh): 0.4 M parameters.
    "demo": VQVAEConfig(
        emb_width=32,
        l_bins=256,
        width=32,
        depth=2,
        multipliers=(1, 1, 1),
        loss=VQVAELossConfig(linf_k=512),
    ),
    # For tests: a few thousand parameters.
    "tiny": VQVAEConfig(
        emb_width=16,
        l_bins=64,
        width=16,
        depth=2,
        multipliers=(1, 1, 1),
        loss=VQVAELossConfig(linf_k=256),
    ),
}


def get_preset(name: str, **overrides: Any) -> VQVAEConfig:
    """A preset by name, optionally with top-level fields replaced."""
    if name not in PRESETS:
        raise OpenJukeboxError(f"unknown VQ-VAE preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
