"""Averaging logged metrics over a window of steps and across ranks without a GPU sync per step.

Tensor metrics are summed on their device as they arrive and turned into Python floats only when the
window is reduced (every `log_every` steps), in one all-reduce and one device-to-host copy.
"""

from __future__ import annotations

import time

import torch

from openjukebox.train.distributed import Dist


class MetricWindow:
    """Running sums of named scalars since the last `reduce`."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, metrics: dict[str, float | torch.Tensor]) -> None:
        for name, value in metrics.items():
            if isinstance(value, torch.Tensor):
                assert value.numel() == 1, f"metric {name!r} must be a scalar, got shape {tuple(value.shape)}"
                value = value.detach().float().reshape(())
            else:
                value = float(value)
            self._sums[name] = self._sums[name] + value if name in self._sums else value
            self._counts[name] = self._counts.get(name, 0) + 1

    def end_step(self) -> None:
        self.steps += 1

    def reduce(self, d: Dist) -> dict[str, float]:
        """Mean of each metric over the window and over ranks; resets the window.

        Every rank must call this at the same step with the same metric names.
        """
        names = sorted(self._sums)
        means = [torch.as_tensor(self._sums[n], dtype=torch.float32, device=d.device) / self._counts[n] for n in names]
        values = torch.stack(means) if means else torch.zeros(0, device=d.device)
        if d.distributed:
            d.all_reduce_(values)
            values /= d.world_size
        out = dict(zip(names, values.tolist()))
        self._sums.clear()
        self._counts.clear()
        self.steps = 0
        self.started = time.perf_counter()
        return out
