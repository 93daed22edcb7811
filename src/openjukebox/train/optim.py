"""Optimiser, learning-rate schedule, and their state as plain tensors + JSON (Jukebox §6.1).

AdamW (decoupled weight decay, as in the original `adam_step`) with a LambdaLR schedule built from the pure
function `lr_factor(step, config)`: a linear warm-up, then optionally a linear or cosine decay to zero at
`config.steps`. Optimiser and scheduler state are flattened into a `{name: tensor}` dict for safetensors and
a JSON dict for everything else, so checkpoints never contain pickles.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from openjukebox.errors import OpenJukeboxError
from openjukebox.train.config import TrainConfig


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of `config.lr` for optimizer step `step` (0-based).

    Warm-up: (step + 1) / warmup_steps until it reaches 1, so the first step already trains.
    Decay from `decay_start`: linear (steps - step) / (steps - decay_start) or the matching half cosine; it
    reaches 0 at `steps` (one past the last step), so no step is wasted at lr 0.
    """
    factor = 1.0
    if config.warmup_steps > 0:
        factor = min(1.0, (step + 1) / config.warmup_steps)
    if config.decay != "none" and step >= config.decay_start:
        progress = min(1.0, (step - config.decay_start) / (config.steps - config.decay_start))
        if config.decay == "linear":
            factor *= 1.0 - progress
        else:  # cosine
            factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OpenJukeboxError("nothing to train: the model has no parameters that require gradients")
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))


def optimizer_state_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `optimizer.state_dict()` into tensors named `state.{param}.{key}` and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in sd["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = _json_value(value, f"optimizer state {key}")
    groups = [{k: _json_value(v, f"optimizer group {k}") for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "state_scalars": scalars}


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the dict `optimizer.load_state_dict` expects from `optimizer_state_to_flat`'s output."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, rest in meta["state_scalars"].items():
        state.setdefault(int(index), {}).update(rest)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _json_value(value: Any, what: str) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return value
    raise OpenJukeboxError(f"cannot save {what}: {type(value).__name__} is neither a tensor nor JSON")
