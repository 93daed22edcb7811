"""Loading and saving prior checkpoints in our format.

A prior folder holds `config.json` (kind "prior", the full `PriorConfig`) and `model.safetensors`, plus, for
priors whose labels use our own vocabularies (`labels.ids == "ours"`), `artists.json` and `genres.json` (the
`Vocabulary` files mapping names to the ids the label tables were trained with).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from openjukebox.checkpoints.format import (
    WEIGHTS_FILE,
    load_state_dict_checked,
    read_config,
    read_safetensors,
    save_model,
)
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


def load_prior(folder: str | os.PathLike, dtype: torch.dtype | None = torch.float32) -> Prior:
    """Rebuild a prior from its checkpoint folder, in eval mode, with floating-point weights in `dtype` (None: as
    stored; imported 5b tops keep the released fp16 weights on disk).

    The model is built on the meta device and takes the loaded tensors as its parameters, so loading a 5B-parameter
    prior needs memory for one copy of its weights, not two."""
    config = load_prior_config(folder)
    with torch.device("meta"):
        model = Prior(config)
    state = read_safetensors(Path(folder) / WEIGHTS_FILE)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    load_state_dict_checked(model, state, str(Path(folder) / WEIGHTS_FILE), assign=True)
    if not config.merged_decoder:  # assign=True replaced the shared Parameter: tie the output projection again
        model.prior.x_out.weight = model.prior.x_emb.weight
    return model.eval()


def load_vocabularies(folder: str | os.PathLike) -> tuple[Vocabulary, Vocabulary] | None:
    """(artists, genres) saved with a prior, or None if it has none (official ids or no labels)."""
    folder = Path(folder)
    if not (folder / ARTISTS_FILE).is_file() and not (folder / GENRES_FILE).is_file():
        return None
    return Vocabulary.load(folder / ARTISTS_FILE), Vocabulary.load(folder / GENRES_FILE)
