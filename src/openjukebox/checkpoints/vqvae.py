"""Loading and saving VQ-VAE checkpoints in our format."""

from __future__ import annotations

import os
from pathlib import Path

from openjukebox.checkpoints.format import load_weights, read_config, save_model
from openjukebox.vqvae import VQVAE, VQVAEConfig

KIND = "vqvae"


def save_vqvae(folder: str | os.PathLike, model: VQVAE) -> Path:
    return save_model(folder, model, KIND, model.config)


def load_vqvae(folder: str | os.PathLike) -> VQVAE:
    """Rebuild a VQ-VAE from its checkpoint folder (config.json + model.safetensors), in eval mode."""
    config = VQVAEConfig.from_dict(read_config(folder, KIND))
    return load_weights(folder, VQVAE(config)).eval()
