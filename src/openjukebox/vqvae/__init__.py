"""The hierarchical VQ-VAE: audio <-> codes at three levels (0 = bottom, hop 8; 2 = top, hop 128)."""

from openjukebox.vqvae.config import PRESETS, VQVAEConfig, VQVAELossConfig, get_preset
from openjukebox.vqvae.model import VQVAE, VQVAEOutput

__all__ = ["PRESETS", "VQVAE", "VQVAEConfig", "VQVAELossConfig", "VQVAEOutput", "get_preset"]
