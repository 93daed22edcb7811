"""Lyric-prior window loader speed: `CodeCrops.batch` with lyric windows (and alignment-loss targets) from word
timings, with each song's words encoded once (`SongLabels`' cache) against encoding them for every window.

    python bench/code_crops.py --model src/openjukebox/models/demo --songs WORK/test [--batches 200] [--repeats 5]

SONGS is a folder of songs with word-timed sidecars (`openjukebox data synth`, e.g. a lyrics recipe's held-out
WORK/test); it is indexed and encoded with MODEL's VQ-VAE here (skipped when done). The windows are those of
MODEL's top prior (n_ctx, lyric window, artist/genre vocabularies), `--lyric-jitter` as the demo recipe's (24),
drawn in batches of `--batch-size` (8, as `prior train`). Three loaders, each timed `--repeats` times over the
same `--batches` batches, alternating, median reported in ms per batch:

- lyrics: `CodeCrops(...)`, the label vectors with their lyric windows;
- lyrics + sung keys: `CodeCrops(..., sung_keys=True)`, also the per-code targets of `prior train --align-loss`;
- the same two with each song's cache emptied before every window: the words encoded once per window, or twice
  with sung keys, as before the cache (the reference).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from openjukebox.checkpoints.prior import load_prior, load_vocabularies
from openjukebox.data.code_cache import encode_songs, open_code_cache
from openjukebox.data.code_crops import CodeCrops
from openjukebox.data.index import build_index, open_index
from openjukebox.data.songs import VocabularyIds
from openjukebox.prior.train import lyrics_vocab, timing_range


class UncachedCrops(CodeCrops):
    """CodeCrops that encode a song's words again for every window (each song's cache emptied first)."""

    def __init__(self, *args, twice: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.twice = twice

    def example_at(self, song: int, start: int, lyric_shift: int = 0):
        labels = self.songs[song].labels
        if labels is not None and labels.words is not None:
            labels._timed.clear()
            if self.twice:  # the window's encoding and the sung keys' own, as before the cache
                labels.lyrics(start * self.hop_length, self.sample_length, self.n_tokens, self.lyrics_vocab)
                labels._timed.clear()
        return super().example_at(song, start, lyric_shift)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model folder with vqvae/ and a lyric prior_level_2/")
    p.add_argument("--songs", type=Path, required=True, help="songs with word-timed sidecars")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lyric-jitter", type=int, default=24)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    top = a.model / "prior_level_2"
    if not (top / "config.json").is_file() or not (a.model / "vqvae" / "config.json").is_file():
        print(f"error: {a.model} has no vqvae/ and prior_level_2/ model", file=sys.stderr)
        return 2
    config = load_prior(top).config
    vocab = load_vocabularies(top)
    if config.labels is None or not config.n_tokens or vocab is None:
        print(f"error: {top} is not a lyric prior with vocabularies", file=sys.stderr)
        return 2
    build_index(a.songs, progress=False)
    encode_songs(a.songs, a.model / "vqvae", device="cpu", progress=False)
    cache = open_code_cache(a.songs, a.model / "vqvae")
    kw = dict(
        n_tokens=config.n_tokens,
        lyrics_vocab=lyrics_vocab(config),
        max_genres=config.labels.max_bow_genre_size,
        lyric_jitter=a.lyric_jitter,
        **timing_range(config),
    )
    with open_index(a.songs) as index:
        args = (index, cache, 2, config.n_ctx, VocabularyIds(*vocab))
        loaders = {
            "lyrics": CodeCrops(*args, **kw),
            "lyrics + sung keys": CodeCrops(*args, sung_keys=True, **kw),
            "lyrics, words encoded per window (reference)": UncachedCrops(*args, twice=False, **kw),
            "lyrics + sung keys, words encoded twice per window (reference)": UncachedCrops(
                *args, twice=True, sung_keys=True, **kw
            ),
        }
    timed = sum(1 for s in loaders["lyrics"].songs if s.labels is not None and s.labels.words is not None)
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(a.repeats):
        for name, crops in loaders.items():
            t = time.perf_counter()
            for i in range(a.batches):
                crops.batch(0, i, a.batch_size)
            times[name].append((time.perf_counter() - t) / a.batches * 1e3)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{platform.machine()}, torch {torch.__version__}, 1 thread; {len(loaders['lyrics'])} songs "
        f"({timed} word-timed), n_ctx {config.n_ctx}, {config.n_tokens} lyric tokens, batch {a.batch_size}, "
        f"{a.batches} batches x {a.repeats} repeats\n"
    )
    print("| loader | ms per batch (median) |\n|---|---:|")
    for name, ms in median.items():
        print(f"| {name} | {ms:.2f} |")
    names = list(median)
    print(
        f"\nspeed-up from the cache: {median[names[2]] / median[names[0]]:.1f}x (lyrics), "
        f"{median[names[3]] / median[names[1]]:.1f}x (with sung keys)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
