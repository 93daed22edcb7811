"""Processes and devices: one process per device, launched by `torchrun` (Jukebox §6.1 used MPI + DDP).

`Dist` reads RANK / WORLD_SIZE / LOCAL_RANK, starts the process group (NCCL on CUDA, gloo on CPU) plus a
small gloo group for control messages (the stop flag) that never waits on the GPU, and hands modules that
reduce outside autograd (codebook EMA statistics, random restarts) the all-reduce and broadcast they need.
In a single process every collective is the identity.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from openjukebox.errors import OpenJukeboxError


@dataclass
class Dist:
    """Rank, world size and device of this process, and the collectives the engine uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we started the process group, so we tear it down
    control: object | None = None  # gloo group for CPU-side control messages

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # --- collectives (identity in a single process) -------------------------------------------------------
    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over ranks in place and return it."""
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast_(self, t: torch.Tensor, src: int) -> torch.Tensor:
        """Overwrite `t` with rank `src`'s value in place and return it."""
        if self.distributed:
            dist.broadcast(t, src)
        return t

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank (over the CPU control group: no GPU sync)."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.control)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_dist(device: str | torch.device | None = None, timeout_s: float = 1800.0) -> Dist:
    """Set up this process from torchrun's environment (or as a single process when it is absent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OpenJukeboxError(f"device {device} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size == 1:
        return Dist(device=device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s), **kwargs
        )
        owns = True
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return Dist(rank, world_size, local_rank, device, owns, control)


def set_distributed_hooks(module: nn.Module, d: Dist) -> int:
    """Give every submodule with `set_distributed(all_reduce, broadcast)` this process's collectives.

    Returns how many modules were hooked (for the log).
    """
    all_reduce: Callable[[torch.Tensor], torch.Tensor] = d.all_reduce_
    broadcast: Callable[[torch.Tensor, int], torch.Tensor] = d.broadcast_
    hooked = 0
    for m in module.modules():
        hook = getattr(m, "set_distributed", None)
        if callable(hook):
            hook(all_reduce, broadcast)
            hooked += 1
    return hooked


@torch.no_grad()
def broadcast_module_state(module: nn.Module, d: Dist) -> None:
    """Make every parameter and buffer equal to rank 0's, so all ranks start from identical weights."""
    if not d.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        d.broadcast_(t.data, 0)


@torch.no_grad()
def state_digest(module: nn.Module) -> int:
    """A 63-bit digest of every parameter and buffer (names, dtypes, bytes): equal iff the states are equal."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def ranks_identical(module: nn.Module, d: Dist) -> bool:
    """Whether every rank holds exactly the same weights and buffers (always True in one process)."""
    if not d.distributed:
        return True
    digest = torch.tensor([state_digest(module)], dtype=torch.int64)
    low, high = digest.clone(), digest.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=d.control)
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=d.control)
    return bool(low == high)
