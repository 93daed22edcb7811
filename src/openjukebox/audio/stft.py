"""Short-time Fourier transform magnitudes with Jukebox's window settings.

The spectral losses and the spectral-convergence metric compare |STFT| of target and reconstruction.
Defaults are the original's: n_fft 2048, hop 256, Hann window of 1536; multi-resolution losses use three
other resolutions (MULTISPECTRAL_STFTS).
"""

from __future__ import annotations

import functools

import torch

DEFAULT_STFT = (2048, 256, 1536)  # (n_fft, hop, window)
MULTISPECTRAL_STFTS = ((2048, 240, 1200), (1024, 120, 600), (512, 50, 240))


@functools.lru_cache(maxsize=16)
def _hann(window: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(window, device=device, dtype=dtype)


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, window: int) -> torch.Tensor:
    """|STFT| of mono audio x (N, T) -> (N, n_fft // 2 + 1, frames). Centred, reflect-padded, in fp32."""
    x = x.float()
    win = _hann(window, str(x.device), x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=window, window=win, center=True, return_complex=True)
    return spec.abs()
