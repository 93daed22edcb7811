"""Our checkpoint format: a folder with `model.safetensors` (weights and buffers) and `config.json`.

config.json = {"format_version": 1, "kind": "vqvae", "config": {...}, "openjukebox_version": "..."}; it
fully rebuilds the model, so nothing about a model has to be re-typed to use it. Nothing here unpickles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from openjukebox import __version__
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import atomic_path, read_json_object, write_json_atomic

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def model_config_json(kind: str, config: Any) -> dict[str, Any]:
    """The config.json content for a model of `kind` built from dataclass `config`."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config.to_dict(),
        "openjukebox_version": __version__,
    }


def save_state_dict(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    """Write tensors to a safetensors file atomically (shared storage is cloned apart)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def save_model(folder: str | os.PathLike, model: torch.nn.Module, kind: str, config: Any) -> Path:
    """Save `model` and its config into `folder` (created if needed). Weights first, config last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_state_dict(folder / WEIGHTS_FILE, model.state_dict())
    write_json_atomic(folder / CONFIG_FILE, model_config_json(kind, config))
    return folder


def read_config(folder: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The `config` dict of a checkpoint folder, checking kind and format version."""
    path = Path(folder) / CONFIG_FILE
    if not Path(folder).is_dir():
        raise OpenJukeboxError(f"{folder}: not a checkpoint folder (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    if not path.is_file():
        raise OpenJukeboxError(f"{folder}: no {CONFIG_FILE}; is this an openjukebox checkpoint folder?")
    meta = read_json_object(path)
    if "config" not in meta:
        raise OpenJukeboxError(f"{path}: not an openjukebox model config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise OpenJukeboxError(f"{path}: format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    if meta.get("kind") != kind:
        raise OpenJukeboxError(f"{folder}: holds a {meta.get('kind')!r} model, not a {kind!r}")
    return meta["config"]


def load_weights(folder: str | os.PathLike, model: torch.nn.Module) -> torch.nn.Module:
    """Load `model.safetensors` from `folder` into `model` strictly, with a readable error on mismatch."""
    path = Path(folder) / WEIGHTS_FILE
    load_state_dict_checked(model, read_safetensors(path), str(path))
    return model


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, with one-line errors for a missing or damaged file."""
    if not Path(path).is_file():
        raise OpenJukeboxError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise OpenJukeboxError(f"{path}: unreadable ({e})") from None


def load_state_dict_checked(
    model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, assign: bool = False
) -> None:
    """`load_state_dict(strict=True)` with one-line errors naming the first mismatching keys.

    `assign=True` makes the model's parameters the given tensors (for models built on the meta device)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise OpenJukeboxError(f"{where}: weights do not match the model: {'; '.join(parts)}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise OpenJukeboxError(
                f"{where}: {k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}"
            )
    model.load_state_dict(state, strict=True, assign=assign)
