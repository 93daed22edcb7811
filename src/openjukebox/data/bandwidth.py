"""Dataset "bandwidth": the loudness statistics the VQ-VAE losses are divided by.

The original Jukebox (`calculate_bandwidth`, run over ~600 s of training crops at the start of VQ-VAE
training; Dhariwal et al. 2020, appendix B.1) normalises its reconstruction losses by the variance (`l2`) or
mean |x| (`l1`) of the data, and its spectral losses by the mean Frobenius norm of a crop's |STFT| (`spec`),
so that loss scales do not depend on how loud the dataset is. This file computes and stores those numbers;
`openjukebox.vqvae.losses` uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from openjukebox import configs
from openjukebox.audio.stft import DEFAULT_STFT, stft_magnitude
from openjukebox.data.audio_folder import AudioFolder
from openjukebox.errors import OpenJukeboxError

_PROGRESS_DELAY_S = 2.0  # with progress=None, a bar appears only if the computation takes longer


@dataclass(frozen=True)
class Bandwidth:
    """Dataset statistics: l1 = mean |x|, l2 = variance of x, spec = mean over crops of ||STFT(crop)||_F."""

    l1: float
    l2: float
    spec: float

    def __post_init__(self) -> None:
        for name in ("l1", "l2", "spec"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"bandwidth {name} must be a positive number, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return configs.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bandwidth:
        """Inverse of to_dict; unknown or missing keys and non-positive values raise OpenJukeboxError."""
        return configs.from_dict(cls, data, where="bandwidth")


def compute_bandwidth(
    folder: AudioFolder, seconds: float = 600.0, seed: int = 0, *, progress: bool | None = None
) -> Bandwidth:
    """Bandwidth of `folder` over random crops (drawn with `seed`) until at least `seconds` of audio are seen.

    Args:
        progress: True shows a progress bar, False never; None (default) shows one only past ~2 s.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    n_fft, hop, window = DEFAULT_STFT
    if folder.sample_length <= n_fft // 2:
        raise ValueError(f"crops of {folder.sample_length} samples are too short for a {n_fft}-point STFT")
    n_samples = int(seconds * folder.sr)
    n_crops = -(-n_samples // folder.sample_length)
    rng = np.random.default_rng(seed)
    total = total_sq = total_abs = spec_total = 0.0  # float64 sums over all samples / crops
    bar = tqdm(
        total=n_crops,
        desc="bandwidth",
        unit="crop",
        disable=progress is False,
        delay=0.0 if progress else _PROGRESS_DELAY_S,
    )
    with bar:
        for _ in range(n_crops):
            crop = folder.crop(rng)
            x = crop.astype(np.float64)
            total += float(x.sum())
            total_sq += float(np.square(x).sum())
            total_abs += float(np.abs(x).sum())
            spec = stft_magnitude(torch.from_numpy(crop)[None], n_fft, hop, window)  # (1, freq, frames)
            spec_total += float(torch.linalg.vector_norm(spec.double()))
            bar.update()
    n_seen = n_crops * folder.sample_length
    mean = total / n_seen
    l1, l2, spec_mean = total_abs / n_seen, total_sq / n_seen - mean**2, spec_total / n_crops
    if min(l1, l2, spec_mean) <= 0:
        raise OpenJukeboxError(
            f"{folder.root}: the audio is silent (l1 {l1:.3g}, variance {l2:.3g}, spectral norm {spec_mean:.3g}"
            f" over {n_seen / folder.sr:.0f} s); cannot scale the losses"
        )
    return Bandwidth(l1=l1, l2=l2, spec=spec_mean)
