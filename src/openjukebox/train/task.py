"""The contract between the training engine and a model family (VQ-VAE, priors).

A `TrainTask` owns the model, the data and the loss; the engine owns everything else (devices, processes,
optimiser, schedule, precision, checkpoints, logging). Keeping the data a pure function of the micro-batch
index is what makes resuming exact: the data position is just the step number.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class TrainTask(Protocol):
    """What a model family implements to be trained by `openjukebox.train.Trainer`.

    Rules that resume determinism and multi-process training rely on:

    - `batch(index, rank, world_size)` is a pure function of its arguments: it must not use the global RNGs
      (`torch`, `random`, `numpy`); derive a `torch.Generator` from the index instead. It may run in a
      DataLoader worker process (when `num_workers > 0`), so it must not touch CUDA or the model. It returns
      CPU tensors (or dicts/lists/tuples of them); the engine moves them to the device.
    - `loss(model, batch)` calls `model(...)` (the DDP wrapper's forward, so gradients are synchronised) and
      returns `(loss, metrics)`: the scalar to minimise and named scalars (floats or 0-d tensors) to log.
      Every rank must return the same metric names on every step. Randomness in the model (dropout, codebook
      restarts) may use the global torch RNG: the engine re-seeds it at every step.
    - All mutable model state lives in parameters and persistent buffers (it is what a checkpoint holds).
    - Modules that reduce across processes outside autograd define `set_distributed(all_reduce, broadcast)`.
    """

    model: nn.Module

    def batch(self, index: int, rank: int, world_size: int) -> Any:
        """Micro-batch number `index` (= step * grad_accum + micro) for `rank` of `world_size`."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        """The scalar loss to backpropagate and named metrics to log."""
        ...

    def model_config(self) -> dict[str, Any]:
        """JSON-able dict written as config.json beside every checkpoint; it fully rebuilds the model."""
        ...


def log_media_hook(task: TrainTask) -> Any:
    """The task's optional `log_media(writer: SummaryWriter, step: int) -> None`, or None.

    Called on rank 0 only, every `media_every` steps, with the model in eval mode and gradients off.
    """
    hook = getattr(task, "log_media", None)
    return hook if callable(hook) else None
