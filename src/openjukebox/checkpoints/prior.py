"""Loading and saving prior checkpoints in our format.

A prior folder holds `config.json` (kind "prior", the full `PriorConfig`) and `model.safetensors`, plus, for
priors whose labels use our own vocabularies (`labels.ids == "ours"`), `artists.json` and `genres.json` (the
`Vocabulary` files mapping names to the ids the label tables were trained with).
"""

from __future__ import annotations

import os
from pathlib import Path

from openjukebox.checkpoints.format import load_weights, read_config, save_model
from openjukebox.data.vocab import Vocabulary
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, PriorConfig

KIND = "prior"
ARTISTS_FILE = "artists.json"
GENRES_FILE = "genres.json"


def save_prior(
    folder: str | os.PathLike,
    model: Prior,
    artists: Vocabulary | None = None,
    genres: Vocabulary | None = None,
) -> Path:
    """Save `model` (and its vocabularies, required when its labels use our own ids) into `folder`."""
    labels = model.config.labels
    if labels is not None and labels.ids == "ours":
        if artists is None or genres is None:
            raise OpenJukeboxError(
                "a prior with its own label ids must be saved with its artist and genre vocabularies"
            )
        if len(artists) > labels.artist_bins or len(genres) > labels.genre_bins:
            raise OpenJukeboxError(
                f"vocabularies ({len(artists)} artists, {len(genres)} genres) exceed the label tables "
                f"({labels.artist_bins}, {labels.genre_bins})"
            )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if artists is not None:
        artists.save(folder / ARTISTS_FILE)
    if genres is not None:
        genres.save(folder / GENRES_FILE)
    return save_model(folder, model, KIND, model.config)


def load_prior_config(folder: str | os.PathLike) -> PriorConfig:
    return PriorConfig.from_dict(read_config(folder, KIND))


def load_prior(folder: str | os.PathLike) -> Prior:
    """Rebuild a prior from its checkpoint folder, in eval mode."""
    return load_weights(folder, Prior(load_prior_config(folder))).eval()


def load_vocabularies(folder: str | os.PathLike) -> tuple[Vocabulary, Vocabulary] | None:
    """(artists, genres) saved with a prior, or None if it has none (official ids or no labels)."""
    folder = Path(folder)
    if not (folder / ARTISTS_FILE).is_file() and not (folder / GENRES_FILE).is_file():
        return None
    return Vocabulary.load(folder / ARTISTS_FILE), Vocabulary.load(folder / GENRES_FILE)
