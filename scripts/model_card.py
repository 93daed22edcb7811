"""Measure a model trained by scripts/train_lyrics_model.py and write the numbers into its model card.

    python scripts/model_card.py --work runs/demo --model src/openjukebox/models/demo --card MODEL_CARD.md

Everything is measured here, from the recipe's working folder (WORK/corpus: the training songs, indexed;
WORK/test: held-out synthetic songs; WORK/runs: the training runs; WORK/align.json: `bench/align.py eval`):

- training data: songs, hours, artists and genres per source folder of the corpus;
- training: per run, optimizer steps, wall-clock time and the last logged loss (from its TensorBoard log);
- VQ-VAE: per-level spectral convergence and codebook usage on the held-out songs (`vqvae.evaluate`);
- priors: bits per token of each level on windows of the held-out songs (as the training's validation);
- lyrics alignment: word-onset error on the held-out songs, from WORK/align.json;
- conditioning faithfulness: a logistic-regression classifier on log-mel statistics, trained on clips of the
  training corpus, names the genre and the artist of songs the model generates for every artist it knows
  (with that artist's genre); the classifier's own accuracy on the held-out songs is reported beside it.

The numbers go to --json and, as a Markdown section, between the `<!-- measured:begin -->` and
`<!-- measured:end -->` markers of --card (the rest of the card is prose and is left alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from openjukebox.checkpoints.hierarchy import resolve_model
from openjukebox.checkpoints.prior import load_prior, load_vocabularies
from openjukebox.checkpoints.vqvae import load_vqvae
from openjukebox.data.audio_folder import AudioFolder
from openjukebox.data.code_cache import encode_songs, open_code_cache
from openjukebox.data.code_crops import CodeCrops
from openjukebox.data.index import build_index, open_index
from openjukebox.data.songs import VocabularyIds
from openjukebox.prior.train import PriorTask, lyrics_vocab, timing_range
from openjukebox.vqvae.evaluate import evaluate

BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
PRIOR_EVAL_SEED = 7  # the held-out windows of `conditioning_use`
N_MELS = 64


def log(message: str) -> None:
    print(f"[model_card {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data + training


def corpus_summary(corpus: Path) -> dict:
    """Songs, hours, artists and genres of the indexed training corpus, per top-level source folder."""
    by_source: dict[str, dict] = defaultdict(lambda: {"songs": 0, "hours": 0.0, "artists": set(), "genres": set()})
    with open_index(corpus) as index:
        for r in index.songs("ok"):
            s = by_source[r.path.split("/")[0] if "/" in r.path else "."]
            s["songs"] += 1
            s["hours"] += (r.duration_s or 0.0) / 3600
            s["artists"].add(r.artist or "?")
            s["genres"].update(r.genres)
    return {
        k: {**v, "hours": round(v["hours"], 2), "artists": len(v["artists"]), "genres": sorted(v["genres"])}
        for k, v in sorted(by_source.items())
    }


def model_summary(model_dir: Path) -> dict[str, dict[str, int]]:
    """Parameters (codebooks included) and weights-file size of every part of the model folder."""
    from safetensors import safe_open

    out = {}
    for folder in sorted(p for p in model_dir.iterdir() if (p / "model.safetensors").is_file()):
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not a dict)
        out[folder.name] = {"parameters": params, "bytes": (folder / "model.safetensors").stat().st_size}
    return out


def training_summary(run: Path) -> dict:
    """Steps, wall time and the last logged loss of a training run, from its TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    tag = next((t for t in ("train/loss", "loss") if t in tags), None) or next(t for t in tags if "loss" in t)
    scalars = events.Scalars(tag)
    walls = [s.wall_time for t in tags for s in events.Scalars(t)]
    last = [s.value for s in scalars[-5:]]
    return {
        "steps": scalars[-1].step,
        "hours": round((max(walls) - min(walls)) / 3600, 2),
        "final_loss": round(float(np.mean(last)), 4),
        "loss_tag": tag,
    }


# ------------------------------------------------------------------------------------------------ held-out quality


def vqvae_quality(vqvae_dir: Path, test: Path, seconds: float) -> dict:
    model = load_vqvae(vqvae_dir)
    folder = AudioFolder(test, model.config.sample_rate, 4 * 65536)
    return evaluate(model, folder, seconds=seconds, crop_seconds=4 * 65536 / model.config.sample_rate, progress=False)


def prior_bits(model_dir: Path, vqvae_dir: Path, test: Path, batches: int) -> dict[int, dict[str, float]]:
    """Bits per token of every prior on fixed windows of the held-out songs (indexed and encoded here)."""
    build_index(test, progress=False)
    encode_songs(test, vqvae_dir, device="cpu", progress=False)
    cache = open_code_cache(test, vqvae_dir)
    out = {}
    with open_index(test) as index:
        for level in (2, 1, 0):
            folder = model_dir / f"prior_level_{level}"
            if not (folder / "config.json").is_file():
                continue
            prior = load_prior(folder)
            c = prior.config
            vocab = load_vocabularies(folder)
            ids = VocabularyIds(*vocab) if vocab is not None and c.labels is not None else None
            max_genres = c.labels.max_bow_genre_size if c.labels is not None else 1
            kw = dict(n_tokens=c.n_tokens, lyrics_vocab=lyrics_vocab(c), max_genres=max_genres, **timing_range(c))
            crops = CodeCrops(index, cache, level, c.n_ctx, ids, **kw)
            task = PriorTask(prior, crops, 8, 0, val=crops, val_batches=batches)
            out[level] = {k: round(v, 4) for k, v in task.validate().items()}
            if level == 2 and c.labels is not None:
                out[level]["conditioning"] = conditioning_use(prior, crops, batches, max_genres)
            log(f"prior level {level}: {out[level]}")
    return out


@torch.no_grad()
def conditioning_use(prior, crops: CodeCrops, batches: int, max_genres: int) -> dict[str, float]:
    """How much the top prior relies on its labels: its music loss (bits per token) on the same held-out windows
    with their own labels, with the artist and genre of another window of the batch, and with another window's
    lyrics (the batch rolled by one). A prior that ignores a label loses nothing when it is wrong."""
    n_tokens = prior.config.n_tokens
    names = ("own", "other_artist_genre", "other_lyrics")
    sums = dict.fromkeys(names, 0.0)
    for i in range(batches):
        b = crops.batch(PRIOR_EVAL_SEED, i, 8)
        y = b["y"]
        for name in names:
            yy = y.clone()
            if name == "other_artist_genre":  # y = [total, offset, length, artist, genres..., lyrics...]
                yy[:, 3 : 4 + max_genres] = torch.roll(y[:, 3 : 4 + max_genres], 1, 0)
            elif name == "other_lyrics" and n_tokens:
                yy[:, -n_tokens:] = torch.roll(y[:, -n_tokens:], 1, 0)
            sums[name] += float(prior(b["codes"], b.get("upper"), yy).music_loss)
    return {name: round(total / batches, 4) for name, total in sums.items()}


# ------------------------------------------------------------------------------------------------ faithfulness


def logmel_features(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mean and standard deviation over time of a 64-band log-mel spectrogram (2048-point STFT, hop 512)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    spec = torch.stft(x, 2048, 512, window=torch.hann_window(2048), return_complex=True).abs() ** 2  # (F, T)
    mel = torch.from_numpy(mel_filters(sr, 2048, N_MELS)) @ spec
    logmel = torch.log10(mel + 1e-8)
    return torch.cat([logmel.mean(1), logmel.std(1)]).numpy()


def mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale from 0 Hz to sr / 2."""
    mel = np.linspace(0.0, 2595 * np.log10(1 + (sr / 2) / 700), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    bins = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up, down = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


class LogisticRegression:
    """Multinomial logistic regression (standardised features, L2 penalty), fitted with L-BFGS."""

    def __init__(self, l2: float = 1e-3) -> None:
        self.l2 = l2

    def fit(self, x: np.ndarray, y: list[str]) -> LogisticRegression:
        self.classes = sorted(set(y))
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        xs = torch.from_numpy((x - self.mean) / self.std).float()
        target = torch.tensor([self.classes.index(v) for v in y])
        self.w = torch.zeros(xs.shape[1], len(self.classes), requires_grad=True)
        self.b = torch.zeros(len(self.classes), requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=500, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xs @ self.w + self.b, target) + self.l2 * (self.w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    def predict(self, x: np.ndarray) -> list[str]:
        with torch.no_grad():
            logits = torch.from_numpy((x - self.mean) / self.std).float() @ self.w + self.b
        return [self.classes[i] for i in logits.argmax(1).tolist()]


def song_clips(path: Path, sr: int, seconds: float, clips: int) -> list[np.ndarray]:
    """`clips` evenly spaced clips of `seconds` from a song (mono, at `sr`)."""
    from openjukebox.audio.io import load_audio

    audio = load_audio(path, sr)  # (T,) mono
    n = int(seconds * sr)
    if len(audio) < n:
        return []
    return [audio[s : s + n] for s in np.linspace(0, len(audio) - n, clips).astype(int)]


def corpus_table(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, artist, genre) of every 'ok' song with an artist and a genre."""
    with open_index(folder) as index:
        return [(folder / r.path, r.artist, r.genres[0]) for r in index.songs("ok") if r.artist and r.genres]


def faithfulness(
    model_dir: Path, corpus: Path, test: Path, seconds: float, samples: int, clips: int, seed: int, total: float
) -> dict:
    from openjukebox.sample.cli import load_pipeline
    from openjukebox.sample.pipeline import Song, seconds_to_length
    from openjukebox.sample.settings import default_sampling

    dirs = resolve_model(model_dir)
    pipeline = load_pipeline(dirs, "cpu", [0, 1, 2])
    sr = pipeline.vqvae.config.sample_rate
    songs = corpus_table(corpus)
    feats, genres, artists = [], [], []
    for path, artist, genre in songs:
        for clip in song_clips(path, sr, seconds, clips):
            feats.append(logmel_features(clip, sr))
            genres.append(genre.lower())
            artists.append(artist.lower())
    x = np.stack(feats)
    genre_clf, artist_clf = LogisticRegression().fit(x, genres), LogisticRegression().fit(x, artists)
    log(f"classifier: {len(x)} clips of {len(songs)} songs, {len(set(genres))} genres, {len(set(artists))} artists")

    # The classifier's own accuracy on the held-out songs (one clip each; their artists are all in the corpus).
    held = [(p, a.lower(), g.lower()) for p, a, g in corpus_table(test)]
    clips = [song_clips(p, sr, seconds, 1)[0] for p, _, _ in held]

    def accuracy(features: np.ndarray) -> tuple[float, float]:
        genre = float(np.mean([p == g for p, (_, _, g) in zip(genre_clf.predict(features), held)]))
        return genre, float(np.mean([p == a for p, (_, a, _) in zip(artist_clf.predict(features), held)]))

    held_genre, held_artist = accuracy(np.stack([logmel_features(c, sr) for c in clips]))
    # The same clips through the VQ-VAE (encode, decode level 0): what the classifier can recognise at best in
    # audio that went through this codec, as every generated song does.
    with torch.inference_mode():
        recon = [
            pipeline.vqvae.decode(pipeline.vqvae.encode(torch.from_numpy(c)[None])[0], 0)[0, : len(c)] for c in clips
        ]
    recon_genre, recon_artist = accuracy(np.stack([logmel_features(r.numpy(), sr) for r in recon]))

    # Generated songs: every artist with that artist's (first) genre, `samples` songs each, all three levels.
    genre_of = {}
    for _, artist, genre in songs:
        genre_of.setdefault(artist.lower(), genre.lower())
    length = seconds_to_length(seconds, sr, pipeline.vqvae.hop_lengths[-1])
    total_length = max(length, seconds_to_length(total, sr, pipeline.vqvae.hop_lengths[-1]))
    # sampled as `openjukebox demo` samples: the original's settings, windows overlapping by half at every level
    settings = {level: dataclasses.replace(default_sampling(level), hop_fraction=0.5) for level in (0, 1, 2)}
    rows = []
    t0 = time.perf_counter()
    for i, (artist, genre) in enumerate(sorted(genre_of.items())):
        song = Song(artist, genre, "", total_length)
        zs = pipeline.ancestral_sample(song, samples, length, seed + i, settings=settings)
        with torch.no_grad():
            audio = pipeline.vqvae.decode(zs[0], 0)[:, :length].numpy()
        fx = np.stack([logmel_features(a, sr) for a in audio])
        for g, a in zip(genre_clf.predict(fx), artist_clf.predict(fx)):
            rows.append({"artist": artist, "genre": genre, "predicted_genre": g, "predicted_artist": a})
        log(f"generated {i + 1}/{len(genre_of)} ({artist} / {genre}); {time.perf_counter() - t0:.0f} s so far")
    per_genre: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        per_genre[r["genre"]].append(r["predicted_genre"] == r["genre"])
    return {
        "seconds": seconds,
        "song_seconds": total,
        "samples_per_artist": samples,
        "classifier_training_clips": len(x),
        "classifier_heldout_genre_accuracy": round(held_genre, 3),
        "classifier_heldout_artist_accuracy": round(held_artist, 3),
        "classifier_heldout_songs": len(held),
        "classifier_reconstructed_genre_accuracy": round(recon_genre, 3),
        "classifier_reconstructed_artist_accuracy": round(recon_artist, 3),
        "generated": len(rows),
        "genre_accuracy": round(float(np.mean([r["predicted_genre"] == r["genre"] for r in rows])), 3),
        "artist_accuracy": round(float(np.mean([r["predicted_artist"] == r["artist"] for r in rows])), 3),
        "genre_accuracy_by_genre": {g: round(float(np.mean(v)), 3) for g, v in sorted(per_genre.items())},
        "chance_genre": round(max(Counter(r["genre"] for r in rows).values()) / len(rows), 3),
        "chance_artist": round(1 / len(genre_of), 3),
        "sampling_seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------ the card


def markdown(m: dict) -> str:
    lines = [f"Measured by `python scripts/model_card.py` on {m['machine']}, {m['date']}.", ""]
    lines += ["**The model**", "", "| part | parameters | weights file |", "|---|---:|---:|"]
    for name, part in m["model"].items():
        lines.append(f"| {name} | {part['parameters'] / 1e6:.2f} M | {part['bytes'] / 2**20:.1f} MiB |")
    lines += [""]
    lines += ["**Training data** (`WORK/corpus`)", "", "| source | songs | hours | artists | genres |"]
    lines += ["|---|---:|---:|---:|---|"]
    for name, s in m["corpus"].items():
        lines.append(f"| {name}/ | {s['songs']} | {s['hours']} | {s['artists']} | {', '.join(s['genres'])} |")
    lines += ["", "**Training runs** (wall clock from the TensorBoard logs)", ""]
    lines += ["| run | steps | hours | last logged loss |", "|---|---:|---:|---:|"]
    for name, t in m["training"].items():
        lines.append(f"| {name} | {t['steps']} | {t['hours']} | {t['final_loss']} ({t['loss_tag']}) |")
    v = m["vqvae"]
    lines += ["", f"**VQ-VAE** on {v['seconds']:.0f} s of held-out songs ({v['crops']} crops)", ""]
    lines += ["| level | hop | spectral convergence (dB) | codes used | code entropy (bits) |"]
    lines += ["|---|---:|---:|---:|---:|"]
    for lv in v["levels"]:
        lines.append(
            f"| {lv['level']} | {lv['hop_length']} | {lv['spectral_convergence_db']:.2f} | "
            f"{lv['codes_used']}/{v['l_bins']} | {lv['entropy_bits']:.2f} |"
        )
    lines += ["", "**Priors**: bits per token on windows of the held-out songs", ""]
    lines += ["| level | loss | music | lyrics |", "|---|---:|---:|---:|"]
    for level, b in sorted(m["priors"].items(), reverse=True):
        lyric = f"{b['lyric_loss']:.3f}" if "lyric_loss" in b else "-"
        lines.append(f"| {level} | {b['loss']:.3f} | {b['music_loss']:.3f} | {lyric} |")
    cond = next((b["conditioning"] for b in m["priors"].values() if "conditioning" in b), None)
    if cond:
        own = cond["own"]
        lines += [
            "",
            "How much the top prior uses its conditioning: music bits per token on the same held-out windows with",
            "their own labels, and with those of another window",
            "",
            "| labels | music bits/token | vs own |",
            "|---|---:|---:|",
            f"| own | {own:.3f} | |",
            f"| another window's artist and genre | {cond['other_artist_genre']:.3f} | "
            f"{100 * (cond['other_artist_genre'] / own - 1):+.1f}% |",
            f"| another window's lyrics | {cond['other_lyrics']:.3f} | "
            f"{100 * (cond['other_lyrics'] / own - 1):+.1f}% |",
        ]
    a = m.get("alignment")
    if a:
        lines += ["", f"**Lyrics alignment** (forced, {a['songs']} held-out songs, {a['words']} words)", ""]
        lines += ["| method | median onset error (s) | mean (s) | within 0.3 s |", "|---|---:|---:|---:|"]
        for method in ("aligner", "linear"):
            s = a[method]
            lines.append(f"| {method} | {s['median_error']:.2f} | {s['mean_error']:.2f} | {100 * s['within']:.0f}% |")
    f = m.get("faithfulness")
    if f:
        lines += [
            "",
            f"**Conditioning faithfulness**: {f['generated']} generated songs: the first {f['seconds']:g} s of a "
            f"{f['song_seconds']:g} s song, {f['samples_per_artist']} per artist, each with the artist's genre, "
            f"no lyrics; classified by a logistic "
            f"regression on log-mel statistics trained on {f['classifier_training_clips']} clips of the corpus",
            "",
            "| | generated songs | chance | held-out real songs | the same through the VQ-VAE (level 0) |",
            "|---|---:|---:|---:|---:|",
            f"| genre recognised | {100 * f['genre_accuracy']:.0f}% | {100 * f['chance_genre']:.0f}% | "
            f"{100 * f['classifier_heldout_genre_accuracy']:.0f}% | "
            f"{100 * f['classifier_reconstructed_genre_accuracy']:.0f}% |",
            f"| artist recognised | {100 * f['artist_accuracy']:.0f}% | {100 * f['chance_artist']:.0f}% | "
            f"{100 * f['classifier_heldout_artist_accuracy']:.0f}% | "
            f"{100 * f['classifier_reconstructed_artist_accuracy']:.0f}% |",
            "",
            "The last column is the ceiling this codec leaves the classifier: generated songs are decoded by the same"
            " VQ-VAE.",
            "",
            "Per genre: " + ", ".join(f"{g} {100 * v:.0f}%" for g, v in f["genre_accuracy_by_genre"].items()),
        ]
    return "\n".join(lines)


def write_card(card: Path, section: str) -> None:
    text = card.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"model_card: error: {card} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    tmp = card.with_suffix(".tmp")
    tmp.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
    tmp.replace(card)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="the recipe's working folder (corpus/, test/, runs/)")
    p.add_argument("--model", type=Path, required=True, help="model folder (vqvae/, prior_level_N/)")
    p.add_argument("--card", type=Path, help="Markdown file with the measured-section markers to fill in")
    p.add_argument("--json", type=Path, help="write the numbers here (default WORK/model_card.json)")
    p.add_argument("--vqvae-seconds", type=float, default=240.0, help="held-out audio for the VQ-VAE figures")
    p.add_argument("--prior-batches", type=int, default=16, help="batches of 8 held-out windows per prior level")
    p.add_argument("--seconds", type=float, default=8.0, help="length of generated songs and classifier clips")
    p.add_argument("--samples", type=int, default=2, help="generated songs per artist")
    p.add_argument(
        "--song-seconds", type=float, default=30.0, help="song length the timing conditioning of generated songs says"
    )
    p.add_argument("--clips", type=int, default=4, help="classifier training clips per corpus song")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-faithfulness", action="store_true", help="skip the generation and classifier")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    work, model = args.work.resolve(), args.model.resolve()
    corpus, test = work / "corpus", work / "test"
    for need in (corpus, test, model / "vqvae"):
        if not need.is_dir():
            raise SystemExit(f"model_card: error: {need}: no such folder")
    m: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "model": model_summary(model),
        "corpus": corpus_summary(corpus),
        "training": {
            run.name: training_summary(run) for run in sorted((work / "runs").iterdir()) if (run / "tb").is_dir()
        },
    }
    log("VQ-VAE")
    m["vqvae"] = vqvae_quality(model / "vqvae", test, args.vqvae_seconds)
    log("priors")
    m["priors"] = prior_bits(model, model / "vqvae", test, args.prior_batches)
    align = work / "align.json"
    if align.is_file():
        a = json.loads(align.read_text())
        m["alignment"] = {"songs": len(a["songs"]), "words": a["overall"]["aligner"]["words"], **a["overall"]}
    if not args.no_faithfulness:
        log("faithfulness")
        m["faithfulness"] = faithfulness(
            model, corpus, test, args.seconds, args.samples, args.clips, args.seed, args.song_seconds
        )
    out = args.json or work / "model_card.json"
    out.write_text(json.dumps(m, indent=2) + "\n")
    section = markdown(m)
    if args.card:
        write_card(args.card, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
