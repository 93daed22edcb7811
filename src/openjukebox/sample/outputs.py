"""What a sampling run writes for each level: codes, one wav and one spectrogram PNG per sample, metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from openjukebox.audio.io import save_audio
from openjukebox.audio.stft import stft_magnitude
from openjukebox.fileio import atomic_path


def spectrogram_png(audio: np.ndarray, sr: int, path: str | os.PathLike, height: int = 256) -> None:
    """A log-magnitude spectrogram of mono `audio` (T,) as a greyscale PNG (low frequencies at the bottom),
    written atomically. Frequencies are shown on a log scale from 30 Hz to Nyquist, time at ~100 columns/s."""
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32)).view(1, -1)
    hop = max(64, sr // 100)
    n_fft = 2048
    if x.shape[1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[1]))
    mag = stft_magnitude(x, n_fft, hop, n_fft)[0]  # (bins, frames)
    freqs = torch.linspace(0, sr / 2, mag.shape[0])
    rows = torch.logspace(np.log10(30.0), np.log10(sr / 2), height)
    index = torch.searchsorted(freqs, rows).clamp(max=mag.shape[0] - 1)
    db = 20 * torch.log10(mag[index] + 1e-5)  # (height, frames)
    db = (db - (db.max() - 80)).clamp(min=0) / 80  # top 80 dB
    pixels = (db.flip(0) * 255).round().to(torch.uint8).numpy()
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(pixels, mode="L").save(tmp, format="PNG")


def write_level_audio(folder: Path, audio: torch.Tensor, sr: int) -> list[Path]:
    """item_{i}.wav and item_{i}.png for each row of `audio` (N, T); returns the wav paths."""
    paths = []
    for i, row in enumerate(audio.float().cpu().numpy()):
        wav = folder / f"item_{i}.wav"
        save_audio(wav, row, sr)
        spectrogram_png(row, sr, folder / f"item_{i}.png")
        paths.append(wav)
    return paths
