"""Labelled-crop loader throughput: examples/s of `SongCrops` through a torch DataLoader.

    python bench/loader.py [--songs 10] [--seconds 60] [--sample-length 1048576] [--workers 2]
                           [--batch-size 1] [--batches 40] [--n-tokens 512] [--vqvae-step] [--json OUT]

Writes `--songs` generated FLAC songs (44.1 kHz stereo, `--seconds` long, a tone mix plus noise) with sidecar
JSON (artist, genre, lyrics; every third song with word timings) into a temporary folder, indexes it, and times
`--batches` batches of `--batch-size` crops of the official top-level sample length (1048576 samples, 23.8 s)
with their labels (artist, genre words, timing, a `--n-tokens` lyric window), through
`DataLoader(SeededBatches(...), batch_size=None, num_workers=--workers)`. The first batch (worker start-up) is
timed separately. The same is timed in the main process (num_workers=0) for comparison.

`--vqvae-step` also times one CPU training step (forward, loss, backward, optimiser step) of the `small`
VQ-VAE preset on one crop of the same length, to compare with the loader's time per example.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from openjukebox.data.batches import SeededBatches
from openjukebox.data.index import build_index, open_index
from openjukebox.data.songs import SongCrops, build_vocabularies

SR = 44100
ARTISTS = ["The Alphas", "Bravo", "Charlie Trio", "Delta"]
GENRES = ["Blues Rock", "pop", "jazz", ["rock", "indie pop"]]
LYRICS_LINE = "We walk the line until the morning light, and sing along\n"


def write_songs(root: Path, n: int, seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    for i in range(n):
        f = 110.0 * (1 + i % 7)
        x = 0.3 * np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
        x = x + 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"song{i:02d}.flac", np.stack([x, 0.9 * x], axis=1).astype(np.float32), SR)
        meta: dict = {"artist": ARTISTS[i % 4], "genre": GENRES[i % 4], "lyrics": LYRICS_LINE * 40}
        if i % 3 == 0:
            words = (LYRICS_LINE * 40).split()
            step = seconds / len(words)
            meta["words"] = [{"word": w, "start": j * step, "end": (j + 0.8) * step} for j, w in enumerate(words)]
        (root / f"song{i:02d}.json").write_text(json.dumps(meta))


def time_loader(crops: SongCrops, batch_size: int, batches: int, workers: int) -> dict[str, float]:
    loader = DataLoader(
        SeededBatches(crops, seed=0, batch_size=batch_size, length=batches + 1),
        batch_size=None,
        num_workers=workers,
        persistent_workers=False,
    )
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t1 = time.perf_counter()
    n = 0
    for batch in it:
        n += len(batch["audio"])
    t2 = time.perf_counter()
    assert first["audio"].shape == (batch_size, crops.sample_length)
    steady = t2 - t1
    return {
        "workers": workers,
        "first_batch_s": t1 - t0,
        "examples": n,
        "seconds": steady,
        "examples_per_s": n / steady,
        "ms_per_example": 1000 * steady / n,
    }


def time_vqvae_step(sample_length: int, repeats: int = 1) -> dict[str, float]:
    from openjukebox.vqvae.config import get_preset
    from openjukebox.vqvae.losses import vqvae_loss
    from openjukebox.vqvae.model import VQVAE

    torch.manual_seed(0)
    model = VQVAE(get_preset("small"))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    bandwidth = {"l1": 0.1, "l2": 0.01, "spec": 100.0}
    x = 0.1 * torch.randn(1, sample_length)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        out = model(x)
        loss, _ = vqvae_loss(x, out.recons, out.commit_losses, model.config.loss, bandwidth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"threads": torch.get_num_threads(), "step_s": statistics.median(times[1:]), "warmup_s": times[0]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--songs", type=int, default=10)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--sample-length", type=int, default=1048576)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--n-tokens", type=int, default=512)
    p.add_argument("--vqvae-step", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    print("$ python " + shlex.join(["bench/loader.py", *(sys.argv[1:] if argv is None else argv)]), flush=True)

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_songs(root, args.songs, args.seconds)
        t1 = time.perf_counter()
        print(build_index(root, progress=False).format())
        t2 = time.perf_counter()
        print(f"wrote {args.songs} x {args.seconds:g} s FLAC songs in {t1 - t0:.1f} s, indexed in {t2 - t1:.1f} s")
        with open_index(root) as index:
            artists, genres = build_vocabularies(index)
            crops = SongCrops(index, SR, args.sample_length, artists, genres, n_tokens=args.n_tokens)
        print(crops)
        for workers in (args.workers, 0):
            r = time_loader(crops, args.batch_size, args.batches, workers)
            results[f"loader_workers_{workers}"] = r
            print(
                f"DataLoader num_workers={workers} batch_size={args.batch_size}: "
                f"{r['examples_per_s']:.2f} examples/s, {r['ms_per_example']:.1f} ms/example "
                f"({r['examples']} examples in {r['seconds']:.2f} s; first batch {r['first_batch_s']:.2f} s)",
                flush=True,
            )
    if args.vqvae_step:
        v = time_vqvae_step(args.sample_length)
        results["vqvae_small_step"] = v
        loader_ms = results[f"loader_workers_{args.workers}"]["ms_per_example"]
        print(
            f"small VQ-VAE CPU training step, batch 1 x {args.sample_length} samples, {v['threads']} threads: "
            f"{1000 * v['step_s']:.0f} ms (loader: {loader_ms:.1f} ms/example, "
            f"{loader_ms / (1000 * v['step_s']):.2%} of a step)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
