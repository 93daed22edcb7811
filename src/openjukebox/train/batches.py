"""The stream of micro-batches a rank trains on, prefetched by DataLoader workers when asked.

Micro-batch `i` is `task.batch(i, rank, world_size)` with `i = step * grad_accum + micro`, so a run that
resumes at step `s` simply starts the stream at `s * grad_accum`; nothing about the data needs saving.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from openjukebox.train.config import TrainConfig
from openjukebox.train.distributed import Dist
from openjukebox.train.task import TrainTask


class _MicroBatches(Dataset):
    """Micro-batches [start, stop) of a task for one rank; item i is `task.batch(start + i, ...)`."""

    def __init__(self, task: TrainTask, start: int, stop: int, rank: int, world_size: int) -> None:
        self.task, self.start, self.stop, self.rank, self.world_size = task, start, stop, rank, world_size

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Any:
        return self.task.batch(self.start + i, self.rank, self.world_size)


def _worker_ignores_signals(_: int) -> None:
    # Ctrl-C reaches the whole process group; the main process stops cleanly and shuts its workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def micro_batches(task: TrainTask, config: TrainConfig, d: Dist, start_step: int) -> Iterator[Any]:
    """Micro-batches from step `start_step` to `config.steps` for this rank, as CPU objects."""
    data = _MicroBatches(task, start_step * config.grad_accum, config.steps * config.grad_accum, d.rank, d.world_size)
    workers = config.num_workers
    loader = DataLoader(
        data,
        batch_size=None,  # task.batch returns whole micro-batches
        num_workers=workers,
        pin_memory=d.device.type == "cuda",
        worker_init_fn=_worker_ignores_signals if workers else None,
        prefetch_factor=max(2, config.grad_accum) if workers else None,
        generator=torch.Generator().manual_seed(config.seed),  # leave the global RNG alone
    )
    return iter(loader)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested dict/list/tuple/dataclass) batch to `device`; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {f.name: to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **fields)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # NamedTuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
