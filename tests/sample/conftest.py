"""A complete tiny model folder (random weights): VQ-VAE, three priors and their vocabularies."""

from __future__ import annotations

import pytest
import torch

from openjukebox.checkpoints.prior import save_prior
from openjukebox.checkpoints.vqvae import save_vqvae
from openjukebox.data.vocab import Vocabulary
from openjukebox.prior import Prior, prior_preset
from openjukebox.vqvae import VQVAE
from openjukebox.vqvae.config import PRESETS


def build_tiny_model(folder, seed: int = 0):
    torch.manual_seed(seed)
    save_vqvae(folder / "vqvae", VQVAE(PRESETS["tiny"]).eval())
    artists = Vocabulary.build(["alice", "bob"], kind="artist")
    genres = Vocabulary.build(["rock", "jazz"], kind="genre")
    for level in (0, 1, 2):
        save_prior(folder / f"prior_level_{level}", Prior(prior_preset("tiny", level)).eval(), artists, genres)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
