"""Losses on known signals."""

import math

import pytest
import torch

from openjukebox.vqvae.config import VQVAELossConfig
from openjukebox.vqvae.losses import (
    l1_loss,
    l2_loss,
    linf_loss,
    multispectral_loss,
    recon_loss,
    spectral_convergence,
    spectral_convergence_db,
    spectral_loss,
    vqvae_loss,
)

SR = 44100
BW = {"l1": 1.0, "l2": 1.0, "spec": 1.0}


def sine(freq, seconds=0.5, amp=0.5):
    t = torch.arange(int(SR * seconds)) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).unsqueeze(0)


def test_identical_signals_give_zero():
    x = sine(440)
    assert float(l1_loss(x, x)) == 0.0
    assert float(l2_loss(x, x)) == 0.0
    assert float(linf_loss(x, x, k=16)) == 0.0
    assert float(spectral_loss(x, x)[0]) == 0.0
    assert float(multispectral_loss(x, x)[0]) == 0.0
    assert float(spectral_convergence(x, x)[0]) == 0.0
    total, terms = vqvae_loss(x, [x, x, x], [torch.tensor(0.0)] * 3, VQVAELossConfig(), BW)
    assert float(total) == 0.0 and "multispectral/l2" in terms


def test_known_time_domain_values():
    x = torch.zeros(1, 100)
    y = torch.zeros(1, 100)
    y[0, :10] = 2.0
    assert float(l1_loss(x, y)) == pytest.approx(0.2)
    assert float(l2_loss(x, y)) == pytest.approx(0.4)
    assert float(linf_loss(x, y, k=10)) == pytest.approx(4.0)  # top-10 squared residuals are all 4
    assert float(l2_loss(x, y, bandwidth_l2=2.0)) == pytest.approx(0.2)  # divided by bandwidth
    lmix = VQVAELossConfig(recon="lmix", lmix_l2=1.0, lmix_linf=0.5, linf_k=10)
    assert float(recon_loss(x, y, lmix, BW)) == pytest.approx(0.4 + 0.5 * 4.0)


def test_spectral_difference_is_scale_aware():
    x = sine(440)
    half = 0.5 * x
    # |STFT| is linear in amplitude: || S - S/2 || = ||S|| / 2, so spectral convergence is 0.5 (-6.02 dB)
    assert float(spectral_convergence(x, half)[0]) == pytest.approx(0.5, rel=1e-4)
    assert spectral_convergence_db(x, half) == pytest.approx(20 * math.log10(0.5), abs=1e-3)
    # a different pitch is further away than a quieter copy of the same pitch
    assert float(spectral_loss(x, sine(880))[0]) > float(spectral_loss(x, half)[0])


def test_silence_is_masked_in_spectral_convergence():
    silent = torch.zeros(1, 8192)
    assert float(spectral_convergence(silent, torch.randn(1, 8192))[0]) == 0.0
