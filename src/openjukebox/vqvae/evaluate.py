"""VQ-VAE evaluation: per-level spectral convergence (dB) and codebook usage on held-out audio.

Spectral convergence ||S - Ŝ|| / ||S|| on |STFT| (2048/256/1536), averaged over crops, reported as
20·log10 (the paper's Table 1 reports -21 / -12 / -8 dB for the official bottom / middle / top levels on
its data). Codebook usage: the share of codes used at least once, and the entropy of the code histogram in
bits (log2 of l_bins = every code equally used).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from openjukebox.vqvae.losses import spectral_convergence
from openjukebox.vqvae.model import VQVAE


@torch.inference_mode()
def evaluate(
    model: VQVAE, folder: Any, seconds: float, crop_seconds: float, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Evaluate `model` on crops drawn from an `AudioFolder` (deterministic in `seed`)."""
    n_crops = max(1, round(seconds / crop_seconds))
    sc_sum = [0.0] * model.levels
    counts = [torch.zeros(model.config.l_bins, dtype=torch.long) for _ in range(model.levels)]
    for i in tqdm(range(n_crops), desc="eval", unit="crop", disable=not progress):
        audio = folder.batch(seed, i, 1).squeeze(-1)  # (1, T)
        zs = model.encode(audio)
        for level in range(model.levels):
            recon = model.decode(zs[level], level)[:, : audio.shape[1]]
            sc_sum[level] += float(spectral_convergence(audio, recon).mean())
            counts[level] += torch.bincount(zs[level].view(-1), minlength=model.config.l_bins)
    levels = []
    for level in range(model.levels):
        sc = sc_sum[level] / n_crops
        prob = counts[level].double() / counts[level].sum()
        nz = prob[prob > 0]
        levels.append(
            {
                "level": level,
                "hop_length": model.hop_lengths[level],
                "spectral_convergence_db": 20 * math.log10(max(sc, 1e-12)),
                "codes_used": int((counts[level] > 0).sum()),
                "usage": float((counts[level] > 0).double().mean()),
                "entropy_bits": float(-(nz * nz.log2()).sum()),
            }
        )
    return {"seconds": n_crops * crop_seconds, "crops": n_crops, "l_bins": model.config.l_bins, "levels": levels}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['crops']} crops, {result['seconds']:.0f} s of audio, {result['l_bins']} codes per level",
        f"{'level':>5} {'hop':>5} {'spec. conv. (dB)':>17} {'codes used':>11} {'usage':>7} {'entropy (bits)':>15}",
    ]
    for r in result["levels"]:
        lines.append(
            f"{r['level']:>5} {r['hop_length']:>5} {r['spectral_convergence_db']:>17.2f} {r['codes_used']:>11} "
            f"{r['usage']:>7.1%} {r['entropy_bits']:>15.2f}"
        )
    return "\n".join(lines)


def evaluate_cli(args: argparse.Namespace) -> None:
    from openjukebox.checkpoints.paths import resolve_vqvae_dir
    from openjukebox.checkpoints.vqvae import load_vqvae
    from openjukebox.data.audio_folder import AudioFolder
    from openjukebox.fileio import write_json_atomic

    model = load_vqvae(resolve_vqvae_dir(args.vqvae))
    crop = int(args.crop_seconds * model.config.sample_rate) // model.hop_lengths[-1] * model.hop_lengths[-1]
    folder = AudioFolder(args.data, model.config.sample_rate, crop)
    result = evaluate(model, folder, args.seconds, crop / model.config.sample_rate, seed=args.seed)
    result["data"] = str(args.data)
    print(format_table(result))
    if args.json:
        write_json_atomic(Path(args.json), result)
        print(f"wrote {args.json}")
