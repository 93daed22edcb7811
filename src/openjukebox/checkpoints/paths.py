"""Where models live on disk (no heavy imports: the CLI uses this to build its help text)."""

from __future__ import annotations

import os
from pathlib import Path

from openjukebox.errors import OpenJukeboxError


def models_home() -> Path:
    """Where imported models live: $OPENJUKEBOX_HOME/models (default ~/.openjukebox/models)."""
    return Path(os.environ.get("OPENJUKEBOX_HOME", Path.home() / ".openjukebox")) / "models"


def default_vqvae_dir() -> Path:
    """Where `openjukebox import vqvae.pth.tar` puts the released VQ-VAE by default."""
    return models_home() / "official-vqvae"


def resolve_vqvae_dir(path: str | os.PathLike | None) -> Path:
    """`path`, or the default VQ-VAE folder when None; a missing default is explained, not a bare 'not found'."""
    if path is not None:
        return Path(path)
    path = default_vqvae_dir()
    if not path.is_dir():
        raise OpenJukeboxError(f"no VQ-VAE at {path}; pass --vqvae DIR or run `openjukebox import vqvae.pth.tar` first")
    return path
