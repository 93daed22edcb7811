"""A whole model: the VQ-VAE and one prior per level, as folders in our format.

Our own models (trained with `vqvae train` and `prior train`, or the demo model) are one folder:

    MODEL_DIR/vqvae/            VQ-VAE checkpoint folder
    MODEL_DIR/prior_level_2/    top prior (with artists.json / genres.json when it has its own label ids)
    MODEL_DIR/prior_level_1/    upsamplers
    MODEL_DIR/prior_level_0/

The released models are imported by `openjukebox import` into $OPENJUKEBOX_HOME/models: the VQ-VAE into
`official-vqvae/`, the priors into `<model>/prior_level_<level>/`. `5b_lyrics` and `1b_lyrics` share the
upsamplers released with `5b` (as in the original), so their levels 0 and 1 resolve to `5b/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from openjukebox.checkpoints.paths import default_vqvae_dir, models_home
from openjukebox.errors import OpenJukeboxError

OFFICIAL_MODELS = ("5b", "5b_lyrics", "1b_lyrics")
VQVAE_DIR = "vqvae"
# The bundled demo model (scripts/train_demo.sh, MODEL_CARD.md): package data, so it needs no download.
DEMO_MODEL = "demo"
DEMO_DIR = Path(__file__).resolve().parent.parent / "models" / DEMO_MODEL


def prior_dir_name(level: int) -> str:
    return f"prior_level_{level}"


def official_prior_dir(model: str, level: int) -> Path:
    """Where the released prior of `level` used by `model` lives once imported."""
    if model not in OFFICIAL_MODELS:
        raise OpenJukeboxError(f"unknown released model {model!r}; known: {', '.join(OFFICIAL_MODELS)}")
    owner = model if level == 2 else "5b"  # the upsamplers are released once, with 5b
    return models_home() / owner / prior_dir_name(level)


@dataclass(frozen=True)
class ModelDirs:
    name: str  # as the user gave it
    vqvae: Path
    priors: dict[int, Path]  # level -> prior folder


def resolve_model(model: str | os.PathLike, levels: tuple[int, ...] = (0, 1, 2)) -> ModelDirs:
    """The folders of a released model name or of our own model folder; missing parts are explained."""
    name = str(model)
    if name == DEMO_MODEL:
        if not (DEMO_DIR / VQVAE_DIR / "config.json").is_file():
            raise OpenJukeboxError(f"the bundled demo model is missing from {DEMO_DIR}; reinstall openjukebox")
        model = DEMO_DIR
    if name in OFFICIAL_MODELS:
        vqvae = default_vqvae_dir()
        priors = {level: official_prior_dir(name, level) for level in levels}
        missing = [str(p) for p in [vqvae, *priors.values()] if not (p / "config.json").is_file()]
        if missing:
            raise OpenJukeboxError(
                f"model {name!r} is not imported: missing {', '.join(missing)}; download the released checkpoints "
                f"and run `openjukebox import FILE.pth.tar` for the VQ-VAE and each prior level"
            )
        return ModelDirs(name, vqvae, priors)
    folder = Path(model)
    if not folder.is_dir():
        raise OpenJukeboxError(
            f"{folder}: no such model folder (use {', '.join(OFFICIAL_MODELS)} or a folder with vqvae/ and "
            f"prior_level_N/)"
        )
    vqvae = folder / VQVAE_DIR
    priors = {level: folder / prior_dir_name(level) for level in levels}
    missing = [p.name for p in [vqvae, *priors.values()] if not (p / "config.json").is_file()]
    if missing:
        raise OpenJukeboxError(f"{folder}: not a complete model folder (missing {', '.join(missing)})")
    return ModelDirs(name, vqvae, priors)
