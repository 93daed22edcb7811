"""Training a VQ-VAE on a folder of audio files: the VQ-VAE `TrainTask` and the `vqvae train` command.

Batches are random crops (a pure function of the micro-batch index, so resumes are exact); losses are
divided by the dataset's bandwidth statistics, computed once at the start of a run and saved in
`RUN_DIR/bandwidth.json`. The shared engine (`openjukebox.train`) does the rest: DDP, schedule, clipping,
checkpoints, TensorBoard. TensorBoard also gets reconstructed audio and spectral convergence per level.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openjukebox.checkpoints.format import model_config_json, read_config
from openjukebox.data.audio_folder import AudioFolder
from openjukebox.data.bandwidth import Bandwidth, compute_bandwidth
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import write_json_atomic
from openjukebox.train.config import add_schedule_arguments
from openjukebox.vqvae.config import PRESETS, VQVAEConfig, get_preset
from openjukebox.vqvae.losses import spectral_convergence_db, vqvae_loss
from openjukebox.vqvae.model import VQVAE

logger = logging.getLogger(__name__)

BANDWIDTH_FILE = "bandwidth.json"


class VQVAETask:
    """The VQ-VAE as a `TrainTask`: crops in, weighted multi-level loss out."""

    def __init__(self, model: VQVAE, folder: AudioFolder, bandwidth: Bandwidth, batch_size: int, seed: int) -> None:
        self.model, self.folder, self.bandwidth = model, folder, bandwidth.to_dict()
        self.batch_size, self.seed = batch_size, seed

    def batch(self, index: int, rank: int, world_size: int) -> torch.Tensor:
        # One stream of crops shared by all ranks: rank r takes every world_size-th batch.
        return self.folder.batch(self.seed, index * world_size + rank, self.batch_size).squeeze(-1)  # (B, T)

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        out = model(batch)
        total, terms = vqvae_loss(batch, out.recons, out.commit_losses, self.model.config.loss, self.bandwidth)
        return total, {**terms, **out.metrics}

    def model_config(self) -> dict[str, Any]:
        return model_config_json("vqvae", self.model.config)

    def log_media(self, writer: Any, step: int) -> None:
        """Reconstructions of a fixed crop (not a training batch) through every level, and their quality."""
        audio = self.folder.batch(self.seed + 1, 0, 1).squeeze(-1)
        sr = self.model.config.sample_rate
        writer.add_audio("audio/target", audio[0].clamp(-1, 1), step, sample_rate=sr)
        zs = self.model.encode(audio, chunk_seconds=None)
        for level, z in enumerate(zs):
            recon = self.model.decode(z, level, chunk_seconds=None)[:, : audio.shape[1]]
            writer.add_audio(f"audio/recon_l{level}", recon[0].clamp(-1, 1), step, sample_rate=sr)
            writer.add_scalar(f"spectral_convergence_db/l{level}", spectral_convergence_db(audio, recon), step)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="folder of audio files (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, TensorBoard logs (tb/), weights")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size (default: small)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--init-from", type=Path, help="start from this VQ-VAE checkpoint folder (fine-tuning)")
    add_schedule_arguments(p, "crops")
    p.add_argument(
        "--sample-length", type=int, default=65536, help="crop length in samples (a multiple of 128; 65536 = 1.5 s)"
    )
    p.add_argument("--media-every", type=int, default=500, help="TensorBoard audio every N steps (0 = never)")
    p.add_argument("--workers", type=int, default=1, help="data loader processes prefetching crops")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, crops and codebook restarts")
    p.add_argument(
        "--bandwidth-seconds", type=float, default=600.0, help="audio used for the loss-normalising statistics"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _model_config(args: argparse.Namespace) -> VQVAEConfig:
    """The config of a new run (preset or --init-from) or of the run being resumed."""
    if args.resume:
        return VQVAEConfig.from_dict(read_config(args.out, "vqvae"))
    if args.init_from:
        return VQVAEConfig.from_dict(read_config(args.init_from, "vqvae"))
    return get_preset(args.preset)


def _bandwidth(args: argparse.Namespace, folder: AudioFolder) -> Bandwidth:
    path = args.out / BANDWIDTH_FILE
    if path.is_file():
        return Bandwidth.from_dict(json.loads(path.read_text()))
    if args.resume:
        raise OpenJukeboxError(f"{args.out}: no {BANDWIDTH_FILE}; is this a VQ-VAE run folder?")
    bandwidth = compute_bandwidth(folder, seconds=args.bandwidth_seconds, seed=args.seed)
    write_json_atomic(path, bandwidth.to_dict())  # every rank computes the same values; writes are atomic
    return bandwidth


def train_vqvae(args: argparse.Namespace) -> None:
    from openjukebox.checkpoints.vqvae import load_vqvae
    from openjukebox.train.config import train_config_from_args
    from openjukebox.train.engine import Trainer

    if args.sample_length % 128:
        raise OpenJukeboxError(f"--sample-length must be a multiple of 128 (the top hop), got {args.sample_length}")
    if args.resume and args.init_from:
        raise OpenJukeboxError("--resume and --init-from exclude each other")
    if not args.resume and (args.out / "latest.json").exists():
        raise OpenJukeboxError(f"{args.out}: holds a run already; pass --resume to continue it or choose another --out")
    config = _model_config(args)
    folder = AudioFolder(args.data, config.sample_rate, args.sample_length)
    logger.info("data: %s", folder)
    args.out.mkdir(parents=True, exist_ok=True)
    bandwidth = _bandwidth(args, folder)
    torch.manual_seed(args.seed)
    model = VQVAE(config)
    if args.init_from:
        model = load_vqvae(args.init_from).train()
        # Pretend every code was used as often as in a uniform codebook, so that none restarts at once.
        for level, codebook in enumerate(model.codebooks):
            codebook.restore_(args.batch_size * args.sample_length / config.hop_lengths[level] / config.l_bins)
        logger.info("fine-tuning from %s", args.init_from)
    train_config = train_config_from_args(args, media_every=args.media_every)
    task = VQVAETask(model, folder, bandwidth, args.batch_size, args.seed)
    result = Trainer(task, train_config, args.out, resume=args.resume, progress=not args.no_progress).fit()
    if result.interrupted:
        print(f"stopped at step {result.step}; continue with the same command plus --resume")
    else:
        print(f"trained {result.step} steps -> {args.out} (load it with --vqvae {args.out})")
