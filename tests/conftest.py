"""Shared fixtures: small real audio files written with soundfile, and a tiny VQ-VAE checkpoint."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 44100


def write_tones(folder: Path, freqs=(220.0, 330.0, 440.0, 550.0), seconds: float = 3.0, sr: int = SR) -> Path:
    """Stereo tones with a slow tremolo and a little noise, one file per frequency."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    for i, f in enumerate(freqs):
        x = 0.4 * np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
        x = x + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"tone{i}.wav", np.stack([x, 0.8 * x], axis=1).astype(np.float32), sr)
    return folder


@pytest.fixture(scope="session")
def import_script() -> Iterator[Callable[[Path, str], ModuleType]]:
    """`import_script(path, name)` imports a file that is not part of a package (bench/, scripts/) as module
    `name`, registered in sys.modules (dataclasses look their module up) until the session ends."""
    names: list[str] = []

    def load(path: Path, name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        names.append(name)
        return module

    yield load
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session", autouse=True)
def _private_openjukebox_home(tmp_path_factory):
    """No test reads or writes the user's ~/.openjukebox (imported models, the library of generated songs)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENJUKEBOX_HOME", str(tmp_path_factory.mktemp("openjukebox_home")))
        yield


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models are dominated by per-op overhead, and with more threads than free
    cores (a busy CI box) OpenMP's spinning makes them orders of magnitude slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tones_dir(tmp_path_factory) -> Path:
    return write_tones(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def tiny_vqvae_dir(tmp_path_factory) -> Path:
    """An untrained tiny VQ-VAE with random codebooks, saved in our checkpoint format."""
    from openjukebox.checkpoints.vqvae import save_vqvae
    from openjukebox.vqvae import VQVAE, get_preset

    torch.manual_seed(0)
    model = VQVAE(get_preset("tiny"))
    for codebook in model.codebooks:
        codebook.embed.normal_(std=0.1)
        codebook.initted.fill_(True)
    return save_vqvae(tmp_path_factory.mktemp("tiny_vqvae"), model)
