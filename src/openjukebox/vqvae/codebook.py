"""The vector-quantisation codebook of one VQ-VAE level (Jukebox paper §3.1; VQ-VAE-2 EMA updates).

State lives in buffers: `embed` (the codes, l_bins x emb_width), the EMA statistics `embed_sum` and
`cluster_size`, and `initted`. Codes are the nearest codebook vectors by squared L2 distance; the quantised
latents pass gradients straight through to the encoder, which alone sees the commitment loss (the codebook is
learned by EMA, not by gradient). On the first training batch the codebook is initialised from encoder
outputs; afterwards codes whose EMA count falls below `threshold` are restarted at random current encoder
outputs. Across processes, counts and sums are all-reduced and the random restarts broadcast from rank 0
through functions injected with `set_distributed` (identity in a single process).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


def _identity_all_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


def _identity_broadcast(t: torch.Tensor, src: int) -> torch.Tensor:
    return t


@dataclass
class CodebookOutput:
    codes: torch.Tensor  # (N, T) long
    quantized: torch.Tensor  # (N, C, T), straight-through
    commit_loss: torch.Tensor  # scalar
    metrics: dict[str, torch.Tensor]


class Codebook(nn.Module):
    def __init__(self, l_bins: int, emb_width: int, mu: float = 0.99, threshold: float = 1.0) -> None:
        super().__init__()
        self.l_bins, self.emb_width, self.mu, self.threshold = l_bins, emb_width, mu, threshold
        self.register_buffer("embed", torch.zeros(l_bins, emb_width))
        self.register_buffer("embed_sum", torch.zeros(l_bins, emb_width))
        self.register_buffer("cluster_size", torch.zeros(l_bins))
        self.register_buffer("initted", torch.tensor(False))
        self._all_reduce: Callable[[torch.Tensor], torch.Tensor] = _identity_all_reduce
        self._broadcast: Callable[[torch.Tensor, int], torch.Tensor] = _identity_broadcast

    def set_distributed(
        self,
        all_reduce: Callable[[torch.Tensor], torch.Tensor],
        broadcast: Callable[[torch.Tensor, int], torch.Tensor],
    ) -> None:
        """Inject the cross-process sum (in place) and broadcast used by the EMA update."""
        self._all_reduce, self._broadcast = all_reduce, broadcast

    # --- quantisation -------------------------------------------------------------------------------------
    def _nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (M, C) -> (codes (M,), squared distance to the chosen code (M,))."""
        k_w = self.embed.t()
        # ||x||² - 2 x·k + ||k||², in this order: the same floating-point rounding as the original, so that
        # near-ties pick the same code.
        distance = (
            torch.sum(x**2, dim=-1, keepdim=True) - 2 * torch.matmul(x, k_w) + torch.sum(k_w**2, dim=0, keepdim=True)
        )
        min_distance, codes = torch.min(distance, dim=-1)
        return codes, min_distance

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (N, C, T) -> codes (N, T)."""
        n, c, t = x.shape
        flat = x.permute(0, 2, 1).reshape(-1, c)  # (N*T, C)
        return self._nearest(flat)[0].view(n, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (N, T) -> latents (N, C, T)."""
        return nn.functional.embedding(codes, self.embed).permute(0, 2, 1)

    def forward(self, x: torch.Tensor, update: bool | None = None) -> CodebookOutput:
        """Quantise latents (N, C, T); when `update` (default: in training mode) also run the EMA update."""
        update = self.training if update is None else update
        n, c, t = x.shape
        flat = x.permute(0, 2, 1).reshape(-1, c).float()  # (N*T, C)
        prenorm = torch.linalg.vector_norm(flat - flat.mean()) / math.sqrt(flat.numel())
        if update and not bool(self.initted):
            self.init_(flat)
        codes, min_distance = self._nearest(flat)
        metrics = {"fit": min_distance.mean(), "prenorm": prenorm}
        if update:
            metrics.update(self.update_(flat, codes))
        quantized = nn.functional.embedding(codes, self.embed)
        commit_loss = torch.linalg.vector_norm(quantized.detach() - flat) ** 2 / flat.numel()
        quantized = flat + (quantized - flat).detach()  # straight-through estimator
        quantized = quantized.view(n, t, c).permute(0, 2, 1).to(x.dtype)
        return CodebookOutput(codes.view(n, t), quantized, commit_loss, metrics)

    # --- state updates ------------------------------------------------------------------------------------
    def _random_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """l_bins random rows of x (tiled with small noise when x has fewer rows), identical on all ranks."""
        m, c = x.shape
        if m < self.l_bins:
            x = x.repeat((self.l_bins + m - 1) // m, 1)
            x = x + torch.randn_like(x) * (0.01 / math.sqrt(c))
        picked = x[torch.randperm(x.shape[0], device=x.device)][: self.l_bins].contiguous()
        return self._broadcast(picked, 0)

    @torch.no_grad()
    def init_(self, x: torch.Tensor) -> None:
        """Data-driven initialisation from encoder outputs x (M, C)."""
        self.embed.copy_(self._random_vectors(x))
        self.embed_sum.copy_(self.embed)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def restore_(self, expected_usage: float) -> None:
        """Prepare imported or pretrained codes for further training: pretend each was used `expected_usage`
        times per batch so that none is restarted at once."""
        self.embed_sum.copy_(self.embed * expected_usage)
        self.cluster_size.fill_(expected_usage)
        self.initted.fill_(True)

    @torch.no_grad()
    def update_(self, x: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """EMA update of the codebook from encoder outputs x (M, C) and their codes (M,); restarts dead codes."""
        onehot = torch.zeros(self.l_bins, x.shape[0], device=x.device)
        onehot.scatter_(0, codes.view(1, -1), 1)
        batch_sum = self._all_reduce(torch.matmul(onehot, x))  # (l_bins, C)
        batch_count = self._all_reduce(onehot.sum(dim=-1))  # (l_bins,)
        random_codes = self._random_vectors(x)
        old = self.embed.clone()
        self.embed_sum.mul_(self.mu).add_(batch_sum, alpha=1 - self.mu)
        self.cluster_size.mul_(self.mu).add_(batch_count, alpha=1 - self.mu)
        alive = (self.cluster_size >= self.threshold).float().view(-1, 1)
        self.embed.copy_(alive * (self.embed_sum / self.cluster_size.view(-1, 1)) + (1 - alive) * random_codes)
        prob = batch_count / batch_count.sum()
        return {
            "entropy": -torch.sum(prob * torch.log(prob + 1e-8)),
            "used_curr": (batch_count >= self.threshold).sum().float(),
            "usage": alive.sum(),
            "dk": torch.linalg.vector_norm(self.embed - old) / math.sqrt(old.numel()),
        }
