"""A tiny `TrainTask` for the engine tests: regression through an MLP with a codebook-like side module.

`ToyCodebook` mimics the VQ-VAE codebook's awkward parts: EMA statistics in buffers updated in `forward`,
cross-rank sums and a rank-0 broadcast through `set_distributed`, and random restarts drawn from the global
torch RNG. The model also has dropout (global RNG) and a tied weight (shared storage in the state dict).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from openjukebox.train import TrainConfig


class ToyCodebook(nn.Module):
    def __init__(self, bins: int = 8, width: int = 4, mu: float = 0.9, threshold: float = 0.5) -> None:
        super().__init__()
        self.mu, self.threshold = mu, threshold
        self.register_buffer("embed", torch.randn(bins, width))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("seen", torch.zeros((), dtype=torch.float64))  # rows seen by all ranks together
        self.register_buffer("restarts", torch.zeros((), dtype=torch.int64))
        self.register_buffer("initted", torch.tensor(False))  # a bool buffer, as in the real codebook
        self._all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
        self._broadcast: Callable[[torch.Tensor, int], torch.Tensor] = lambda t, src: t

    def set_distributed(
        self, all_reduce: Callable[[torch.Tensor], torch.Tensor], broadcast: Callable[[torch.Tensor, int], torch.Tensor]
    ) -> None:
        self._all_reduce, self._broadcast = all_reduce, broadcast

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (N, W) -> (straight-through quantised z (N, W), commitment loss)."""
        codes = torch.cdist(z.detach(), self.embed).argmin(dim=1)  # (N,)
        if self.training:
            self._update(z.detach(), codes)
            self.initted.fill_(True)
        q = self.embed[codes]
        commit = ((z - q) ** 2).mean()
        return z + (q - z).detach(), commit

    @torch.no_grad()
    def _update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = nn.functional.one_hot(codes, self.embed.shape[0]).float()  # (N, bins)
        counts = self._all_reduce(onehot.sum(0))
        sums = self._all_reduce(onehot.t() @ z)  # (bins, W)
        self.seen += self._all_reduce(torch.tensor(float(z.shape[0]), dtype=torch.float64, device=z.device))
        self.cluster_size.mul_(self.mu).add_(counts, alpha=1 - self.mu)
        means = sums / counts.clamp(min=1).unsqueeze(1)
        used = (counts > 0).unsqueeze(1)
        self.embed.copy_(torch.where(used, self.mu * self.embed + (1 - self.mu) * means, self.embed))
        # Dead codes restart at random current inputs: drawn on every rank, rank 0's choice wins.
        picks = z[torch.randint(z.shape[0], (self.embed.shape[0],), device=z.device)] + 0.01 * torch.randn_like(
            self.embed
        )
        picks = self._broadcast(picks.contiguous(), 0)
        dead = (self.cluster_size < self.threshold).unsqueeze(1)
        self.restarts += int(dead.sum())
        self.embed.copy_(torch.where(dead, picks, self.embed))


class ToyModel(nn.Module):
    def __init__(self, d_in: int = 8, hidden: int = 32, d_out: int = 2, dropout: float = 0.1, codebook: bool = True):
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, d_out)
        self.head_alias = self.head  # a tied module: two state-dict keys share storage
        self.codebook = ToyCodebook() if codebook else None
        self.proj = nn.Linear(hidden, 4) if codebook else None
        self.from_code = nn.Linear(4, d_out) if codebook else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.drop(torch.tanh(self.inp(x)))  # (N, hidden)
        y = self.head(h)
        if self.codebook is None:
            return y, torch.zeros((), device=x.device)
        zq, commit = self.codebook(self.proj(h))
        return y + 0.1 * self.from_code(zq), commit


def _sample_seed(seed: int, j: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"toy:{seed}:{j}".encode(), digest_size=8).digest(), "little") >> 1


class ToyTask:
    """y = W x + noise; sample j (a global index) is a pure function of (seed, j)."""

    def __init__(
        self, seed: int = 0, batch_size: int = 4, rank: int = 0, codebook: bool = True, dropout: float = 0.1
    ) -> None:
        self.seed, self.batch_size, self.codebook, self.dropout = seed, batch_size, codebook, dropout
        torch.manual_seed(seed + rank)  # ranks start different: the engine must broadcast rank 0's weights
        self.model = ToyModel(dropout=dropout, codebook=codebook)
        self.w_true = torch.randn(2, 8, generator=torch.Generator().manual_seed(seed))
        self.sleep_per_micro_step = 0.0
        self.losses: list[torch.Tensor] = []
        self.media_steps: list[int] = []

    def batch(self, index: int, rank: int, world_size: int) -> dict[str, torch.Tensor]:
        first = (index * world_size + rank) * self.batch_size
        xs = [
            torch.randn(8, generator=torch.Generator().manual_seed(_sample_seed(self.seed, j)))
            for j in range(first, first + self.batch_size)
        ]
        x = torch.stack(xs)  # (B, 8)
        return {"x": x, "y": x @ self.w_true.t() + 0.01 * torch.sin(x[:, :2] * 7.0)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.sleep_per_micro_step:
            time.sleep(self.sleep_per_micro_step)
        pred, commit = model(batch["x"])
        mse = ((pred - batch["y"]) ** 2).mean()
        loss = mse + 0.25 * commit
        self.losses.append(loss.detach())
        return loss, {"mse": mse, "commit": commit, "constant": 1.0}

    def model_config(self) -> dict[str, Any]:
        return {"kind": "toy", "config": {"codebook": self.codebook, "dropout": self.dropout}}

    def log_media(self, writer: Any, step: int) -> None:
        self.media_steps.append(step)
        writer.add_scalar("media/step", step, step)


def toy_config(steps: int, **overrides: Any) -> TrainConfig:
    """The config every resume test uses (overrides for the others)."""
    base = dict(
        steps=steps,
        batch_size=4,
        grad_accum=2,
        lr=1e-2,
        warmup_steps=4,
        decay="linear",
        decay_start=6,
        save_every=5,
        log_every=3,
        media_every=7,
        keep_checkpoints=2,
        seed=1234,
    )
    base.update(overrides)
    return TrainConfig(**base)
