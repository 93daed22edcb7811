"""Tests for openjukebox.data.bandwidth: statistics of known signals, determinism, (de)serialisation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from openjukebox.data.audio_folder import AudioFolder
from openjukebox.data.bandwidth import Bandwidth, compute_bandwidth
from openjukebox.errors import OpenJukeboxError

SR = 16000
LENGTH = 8192


def folder_of(tmp_path: Path, audio: np.ndarray) -> AudioFolder:
    sf.write(tmp_path / "x.wav", audio.astype(np.float32), SR, subtype="FLOAT")
    return AudioFolder(tmp_path, SR, LENGTH)


def full_scale_sine(seconds: float = 5.0) -> np.ndarray:
    t = np.arange(round(SR * seconds)) / SR
    return np.sin(2 * np.pi * 437.1 * t)  # not a divisor of SR: samples cover all phases, so mean |x| → 2/π


def test_full_scale_sine(tmp_path: Path) -> None:
    bandwidth = compute_bandwidth(folder_of(tmp_path, full_scale_sine()), seconds=3.0, progress=False)
    assert bandwidth.l2 == pytest.approx(0.5, rel=2e-3)
    assert bandwidth.l1 == pytest.approx(2 / math.pi, rel=2e-3)
    # Parseval per frame: sum over all n_fft bins of |X_k|^2 = n_fft * sum_n (w_n x_n)^2 ≈ n_fft * sum(w^2) / 2
    # for a unit sine; the one-sided STFT keeps half of that.
    n_frames = 1 + LENGTH // 256
    window_energy = float(torch.hann_window(1536).pow(2).sum())
    assert bandwidth.spec == pytest.approx(math.sqrt(2048 * n_frames * window_energy / 4), rel=0.02)


def test_variance_removes_the_mean(tmp_path: Path) -> None:
    audio = 0.3 + 0.1 * full_scale_sine()
    bandwidth = compute_bandwidth(folder_of(tmp_path, audio), seconds=2.0, progress=False)
    assert bandwidth.l2 == pytest.approx(0.005, rel=5e-3)
    assert bandwidth.l1 == pytest.approx(0.3, rel=1e-3)


def test_same_seed_same_result(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).standard_normal(SR * 5) * np.linspace(0.01, 0.5, SR * 5)
    folder = folder_of(tmp_path, noise)
    a = compute_bandwidth(folder, seconds=2.0, seed=1, progress=False)
    assert a == compute_bandwidth(folder, seconds=2.0, seed=1, progress=False)
    assert a != compute_bandwidth(folder, seconds=2.0, seed=2, progress=False)


def test_silence_is_refused(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, np.zeros(SR * 2))
    with pytest.raises(OpenJukeboxError) as e:
        compute_bandwidth(folder, seconds=1.0, progress=False)
    assert str(e.value).startswith(f"{tmp_path}: the audio is silent")


def test_dict_round_trip_and_validation() -> None:
    bandwidth = Bandwidth(l1=0.1, l2=0.02, spec=123.0)
    assert bandwidth.to_dict() == {"l1": 0.1, "l2": 0.02, "spec": 123.0}
    assert Bandwidth.from_dict(bandwidth.to_dict()) == bandwidth
    with pytest.raises(OpenJukeboxError, match="unknown key"):
        Bandwidth.from_dict({"l1": 0.1, "l2": 0.02, "spec": 1.0, "l3": 1.0})
    with pytest.raises(OpenJukeboxError):
        Bandwidth.from_dict({"l1": 0.1, "l2": 0.02})
    with pytest.raises(OpenJukeboxError, match="positive"):
        Bandwidth.from_dict({"l1": 0.1, "l2": 0.0, "spec": 1.0})


def test_progress_bar_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = folder_of(tmp_path, full_scale_sine(2.0))
    compute_bandwidth(folder, seconds=1.0)  # fast: the bar's delay hides it
    assert capsys.readouterr().err == ""
    compute_bandwidth(folder, seconds=1.0, progress=True)
    assert "bandwidth" in capsys.readouterr().err
