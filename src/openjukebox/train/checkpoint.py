"""Training checkpoints on disk: complete or absent, never pickled (Jukebox §6.1 saved `.pth.tar` pickles).

Run directory layout:

    run_dir/
      config.json  model.safetensors     latest weights for users (checkpoints.format layout)
      train_config.json                  the TrainConfig of the current (or last) session
      latest.json                        {"step": N, "checkpoint": "checkpoints/step_0000000N"}
      checkpoints/step_0000000N/
        model.safetensors  config.json   weights + buffers, model config
        train_state.safetensors          optimizer (and grad scaler) tensors
        train_state.json                 step, train config, optimizer groups/scalars, scheduler state
      tb/                                TensorBoard events

A checkpoint is written into a hidden temporary folder, every file fsynced, then renamed into place; the
user-facing weights are refreshed next and `latest.json` is replaced atomically last. A crash at any point
leaves `latest.json` naming a complete checkpoint (or no `latest.json` at all).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openjukebox.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE, read_safetensors, save_state_dict
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import atomic_path, fsync_dir, read_json_object, write_json_atomic
from openjukebox.train.config import TrainConfig
from openjukebox.train.optim import optimizer_state_from_flat, optimizer_state_to_flat

TRAIN_STATE_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest.json"
TRAIN_CONFIG_FILE = "train_config.json"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


@dataclass
class Checkpoint:
    """A loaded training checkpoint."""

    step: int
    path: Path
    model_state: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    state_tensors: dict[str, torch.Tensor]
    state: dict[str, Any]  # train_state.json


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def read_latest(run_dir: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete checkpoint in `run_dir`, or None if there is none."""
    path = run_dir / LATEST_FILE
    if not path.is_file():
        return None
    meta = read_json_object(path)
    try:
        step, folder = int(meta["step"]), run_dir / str(meta["checkpoint"])
    except (KeyError, TypeError, ValueError):
        raise OpenJukeboxError(f"{path}: not a checkpoint pointer") from None
    if not folder.is_dir():
        raise OpenJukeboxError(f"{path}: points to {folder}, which does not exist")
    return step, folder


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    model_config: dict[str, Any],
    state_tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` completely, point `latest.json` at it, and prune all but the newest `keep`."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    latest = read_latest(run_dir)
    assert latest is None or latest[0] != step, f"checkpoint {step} is already saved and referenced"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # (not mkdtemp, which would make it private)
    try:
        save_state_dict(tmp / WEIGHTS_FILE, model_state)
        write_json_atomic(tmp / CONFIG_FILE, model_config)
        save_state_dict(tmp / STATE_TENSORS_FILE, state_tensors)
        write_json_atomic(tmp / STATE_JSON_FILE, state)
        if final.exists():  # left by a run that crashed before pointing latest.json at it
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with atomic_path(run_dir / WEIGHTS_FILE) as weights:
        shutil.copyfile(final / WEIGHTS_FILE, weights)
    write_json_atomic(run_dir / CONFIG_FILE, model_config)
    write_json_atomic(run_dir / LATEST_FILE, {"step": step, "checkpoint": f"{CHECKPOINTS_DIR}/{final.name}"})
    prune_checkpoints(run_dir, keep)
    return final


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read every file of a checkpoint folder (tensors on CPU)."""
    state = read_json_object(folder / STATE_JSON_FILE)
    if state.get("format_version") != TRAIN_STATE_VERSION:
        raise OpenJukeboxError(
            f"{folder / STATE_JSON_FILE}: train state version {state.get('format_version')} "
            f"is not {TRAIN_STATE_VERSION}"
        )
    return Checkpoint(
        step=int(state["step"]),
        path=folder,
        model_state=read_safetensors(folder / WEIGHTS_FILE),
        model_config=read_json_object(folder / CONFIG_FILE),
        state_tensors=read_safetensors(folder / STATE_TENSORS_FILE),
        state=state,
    )


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints up to the one `latest.json` names, unreferenced newer
    ones (left by a crash), and temporary folders of interrupted saves."""
    latest = read_latest(run_dir)
    root = run_dir / CHECKPOINTS_DIR
    if latest is None or not root.is_dir():
        return
    steps = sorted(int(m.group(1)) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir())
    kept = [s for s in steps if s <= latest[0]][-keep:]
    assert latest[0] in kept, "the referenced checkpoint must survive pruning"
    for s in steps:
        if s not in kept:
            shutil.rmtree(root / checkpoint_name(s), ignore_errors=True)
    for p in root.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


def capture_train_state(
    step: int,
    world_size: int,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything besides the model that a resume needs, as (train_state tensors, train_state.json)."""
    opt_tensors, opt_meta = optimizer_state_to_flat(optimizer)
    state = {
        "format_version": TRAIN_STATE_VERSION,
        "step": step,
        "world_size": world_size,
        "train_config": config.to_dict(),
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "rng": "re-seeded at every step from (seed, step, rank); nothing to restore",
    }
    return {f"optimizer.{k}": v for k, v in opt_tensors.items()}, state


def restore_train_state(
    c: Checkpoint,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Load optimizer, scheduler and grad-scaler state saved by `capture_train_state`."""
    opt_tensors = {k.removeprefix("optimizer."): v for k, v in c.state_tensors.items()}
    try:
        optimizer.load_state_dict(optimizer_state_from_flat(opt_tensors, c.state["optimizer"]))
    except (ValueError, KeyError) as e:
        raise OpenJukeboxError(f"cannot resume: the optimizer state in {c.path} does not fit the model ({e})") from None
    scheduler.load_state_dict(c.state["scheduler"])
    if scaler is not None and c.state.get("grad_scaler"):
        scaler.load_state_dict(c.state["grad_scaler"])
