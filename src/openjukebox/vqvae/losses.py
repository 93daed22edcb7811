"""VQ-VAE losses and metrics as pure functions (Jukebox paper §3.3, appendix B.1).

Audio tensors are (N, T) mono. Reconstruction and spectral losses are divided by dataset "bandwidth"
statistics (mean |x|, variance, mean |STFT| norm; see `openjukebox.data.bandwidth`) so that their scale does
not depend on loudness. `vqvae_loss` combines them per level with the weights of a `VQVAELossConfig` and
returns every term for logging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from openjukebox.audio.stft import DEFAULT_STFT, MULTISPECTRAL_STFTS, stft_magnitude
from openjukebox.vqvae.config import VQVAELossConfig


def _norm(x: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm over all but the first dimension."""
    return x.reshape(x.shape[0], -1).pow(2).sum(dim=-1).sqrt()


def l1_loss(target: torch.Tensor, pred: torch.Tensor, bandwidth_l1: float = 1.0) -> torch.Tensor:
    return torch.mean(torch.abs(target - pred)) / bandwidth_l1


def l2_loss(target: torch.Tensor, pred: torch.Tensor, bandwidth_l2: float = 1.0) -> torch.Tensor:
    return torch.mean((target - pred) ** 2) / bandwidth_l2


def linf_loss(target: torch.Tensor, pred: torch.Tensor, k: int, bandwidth_l2: float = 1.0) -> torch.Tensor:
    """Mean of the k largest squared residuals of each example (k clipped to the length)."""
    residual = ((target - pred) ** 2).reshape(target.shape[0], -1)
    values, _ = torch.topk(residual, min(k, residual.shape[1]), dim=1)
    return torch.mean(values) / bandwidth_l2


def recon_loss(
    target: torch.Tensor, pred: torch.Tensor, weights: VQVAELossConfig, bandwidth: Mapping[str, float]
) -> torch.Tensor:
    """The reconstruction loss named by `weights.recon`; lmix = l1*w1 + l2*w2 + linf*winf."""
    if weights.recon == "l1":
        return l1_loss(target, pred, bandwidth["l1"])
    if weights.recon == "l2":
        return l2_loss(target, pred, bandwidth["l2"])
    if weights.recon == "linf":
        return linf_loss(target, pred, weights.linf_k, bandwidth["l2"])
    loss = weights.lmix_l2 * l2_loss(target, pred, bandwidth["l2"])
    loss = loss + weights.lmix_linf * linf_loss(target, pred, weights.linf_k, bandwidth["l2"])
    if weights.lmix_l1:
        loss = loss + weights.lmix_l1 * l1_loss(target, pred, bandwidth["l1"])
    return loss


def spectral_loss(target: torch.Tensor, pred: torch.Tensor, stft: tuple[int, int, int] = DEFAULT_STFT) -> torch.Tensor:
    """Per-example || |STFT(target)| - |STFT(pred)| ||_2, shape (N,)."""
    return _norm(stft_magnitude(target, *stft) - stft_magnitude(pred, *stft))


def multispectral_loss(
    target: torch.Tensor, pred: torch.Tensor, stfts: Sequence[tuple[int, int, int]] = MULTISPECTRAL_STFTS
) -> torch.Tensor:
    """Mean of `spectral_loss` over several STFT resolutions, shape (N,)."""
    return sum(spectral_loss(target, pred, s) for s in stfts) / len(stfts)


def spectral_convergence(
    target: torch.Tensor, pred: torch.Tensor, epsilon: float = 2e-3, stft: tuple[int, int, int] = DEFAULT_STFT
) -> torch.Tensor:
    """Per-example ||S - Ŝ|| / ||S|| on |STFT| (N,); examples whose ||S|| <= epsilon count as 0."""
    spec_target = stft_magnitude(target, *stft)
    gt_norm = _norm(spec_target)
    residual_norm = _norm(spec_target - stft_magnitude(pred, *stft))
    mask = (gt_norm > epsilon).float()
    return residual_norm * mask / torch.clamp(gt_norm, min=epsilon)


def spectral_convergence_db(target: torch.Tensor, pred: torch.Tensor) -> float:
    """Mean spectral convergence over examples, in dB (20·log10; lower is better, as in the paper's Table 1)."""
    sc = spectral_convergence(target, pred).mean().clamp_min(1e-12)
    return float(20 * torch.log10(sc))


def vqvae_loss(
    target: torch.Tensor,
    recons: Sequence[torch.Tensor],
    commit_losses: Sequence[torch.Tensor],
    weights: VQVAELossConfig,
    bandwidth: Mapping[str, float],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total VQ-VAE loss and its named terms.

    Args:
        target: input audio (N, T).
        recons: per level, that level's decoder output (N, T).
        commit_losses: per level, the codebook commitment loss.
        weights: loss weights.
        bandwidth: dataset statistics with keys l1, l2, spec.
    """
    target = target.float()
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=target.device)
    for level, pred in enumerate(recons):
        pred = pred.float()
        recon = recon_loss(target, pred, weights, bandwidth)
        total = total + recon
        terms[f"recon/l{level}"] = recon
        if weights.spectral:
            spec = spectral_loss(target, pred).mean() / bandwidth["spec"]
            total = total + weights.spectral * spec
            terms[f"spectral/l{level}"] = spec
        if weights.multispectral:
            multispec = multispectral_loss(target, pred).mean() / bandwidth["spec"]
            total = total + weights.multispectral * multispec
            terms[f"multispectral/l{level}"] = multispec
        terms[f"commit/l{level}"] = commit_losses[level]
    total = total + weights.commit * sum(commit_losses)
    terms["loss"] = total
    return total, terms
