"""Measure a model trained by scripts/train_lyrics_model.py and write the numbers into its model card.

    python scripts/model_card.py --work runs/demo --model src/openjukebox/models/demo --card MODEL_CARD.md

Everything is measured here, from the recipe's working folder (WORK/corpus: the training songs, indexed;
WORK/test: held-out synthetic songs; WORK/runs: the training runs; WORK/align.json: `bench/align.py eval`):

- training data: songs, hours, artists and genres per source folder of the corpus;
- training: per run, optimizer steps, wall-clock time (less pauses) and the last logged loss (from its TensorBoard
  log);
- VQ-VAE: per-level spectral convergence and codebook usage on the held-out songs (`vqvae.evaluate`);
- priors: bits per token of each level on windows of the held-out songs (as the training's validation);
- lyrics alignment: word-onset error on the held-out songs, from WORK/align.json;
- conditioning faithfulness: logistic-regression classifiers on log-mel statistics, trained on clips of the
  training corpus (each as it is and through the VQ-VAE), name the genre and the artist of songs the model
  generates for every artist it knows (with that artist's genre), without and with classifier-free guidance
  (--guidance); the classifiers' own accuracy on the held-out songs, as they are and through the VQ-VAE, is
  reported beside it.

The numbers go to --json and, as a Markdown section, between the `<!-- measured:begin -->` and
`<!-- measured:end -->` markers of --card (the rest of the card is prose and is left alone).
`--render JSON --card CARD` writes the section again from an earlier run's numbers, measuring nothing.
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


PAUSE_S = 300.0  # a gap this long between two logged steps is a pause (stopped, killed and resumed), not training


def active_hours(walls: list[float], pause_s: float = PAUSE_S) -> float:
    """Hours between the first and the last of the wall times, less every gap of `pause_s` or more between two
    consecutive ones (a run paused, or stopped and resumed later, logs nothing meanwhile)."""
    if len(walls) < 2:
        return 0.0
    gaps = np.diff(np.sort(np.asarray(walls, dtype=np.float64)))
    return float(gaps[gaps < pause_s].sum()) / 3600


def training_summary(run: Path) -> dict:
    """Steps, wall time (less pauses: `active_hours`) and the last logged loss of a training run, from its
    TensorBoard events."""
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
        "hours": round(active_hours(walls), 2),
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


def singing_artists(folder: Path) -> set[str]:
    """The artists (lower case) with lyrics in the corpus: the synthetic singers; the Wesnoth tracks have none."""
    with open_index(folder) as index:
        return {r.artist.lower() for r in index.songs("ok") if r.artist and r.lyrics}


LYRIC_SECONDS_PER_LINE = 6.0  # the synthetic corpus: about 5 lines in a 30 s song


def generated_lyrics(seconds: float, seed: int) -> str:
    """Lyrics as the synthetic corpus's songs have them: one generated line per 6 s of song."""
    import random

    from openjukebox.data.synth.styles import lyric_line

    rng = random.Random(seed)
    return "\n".join(lyric_line(rng) for _ in range(max(1, round(seconds / LYRIC_SECONDS_PER_LINE))))


class Judge:
    """A genre and an artist classifier (`LogisticRegression` on `logmel_features`), and their accuracy."""

    def __init__(self, features: np.ndarray, labels: list[tuple[str, str]]) -> None:
        self.genre = LogisticRegression().fit(features, [g for _, g in labels])
        self.artist = LogisticRegression().fit(features, [a for a, _ in labels])

    def predict(self, features: np.ndarray) -> list[tuple[str, str]]:
        """(artist, genre) per row."""
        return list(zip(self.artist.predict(features), self.genre.predict(features)))

    def accuracy(self, features: np.ndarray, want: list[tuple[str, str]]) -> dict[str, float]:
        return self.score(self.predict(features), want)

    @staticmethod
    def score(got: list[tuple[str, str]], want: list[tuple[str, str]]) -> dict[str, float]:
        """Share of rows whose predicted genre / artist is the wanted one."""
        return {
            "genre": round(float(np.mean([p[1] == w[1] for p, w in zip(got, want)])), 3),
            "artist": round(float(np.mean([p[0] == w[0] for p, w in zip(got, want)])), 3),
        }


def faithfulness(
    model_dir: Path,
    corpus: Path,
    test: Path,
    seconds: float,
    samples: int,
    clips: int,
    seed: int,
    total: float,
    guidances: list[float],
) -> dict:
    """Train genre and artist classifiers on corpus clips, check them on the held-out songs, then classify songs
    the model generates for every artist it knows (with the artist's genre), once per guidance scale.

    Two pairs of classifiers (`Judge`):
    - "song": on every corpus clip twice, as it is and through the VQ-VAE (encoded, decoded from level 0). Every
      generated song goes through that decoder, whose noise and lost highs would otherwise pass for a genre of
      their own (a classifier of the raw clips alone recognised only 50 % of genres and 12 % of artists in real
      held-out songs sent through this codec). It judges the generated songs (all three levels).
    - "top level": on the corpus clips decoded from their top-level codes alone. It judges the generated top-level
      codes, decoded the same way: whether the top prior, which carries the artist and genre conditioning, makes
      the requested style, apart from what the upsamplers make of it.
    Beside them: every held-out clip regenerated by the upsamplers from its own top-level codes, judged as
    generated songs are: the best the upsamplers leave the song classifiers (one clip per song was too few to
    tell two sets of upsamplers apart)."""
    from openjukebox.sample.cli import load_pipeline
    from openjukebox.sample.pipeline import Song, seconds_to_length
    from openjukebox.sample.settings import default_sampling

    pipeline = load_pipeline(resolve_model(model_dir), "cpu", [0, 1, 2])
    vqvae, sr = pipeline.vqvae, pipeline.vqvae.config.sample_rate
    length = seconds_to_length(seconds, sr, vqvae.hop_lengths[-1])
    total_length = max(length, seconds_to_length(total, sr, vqvae.hop_lengths[-1]))

    @torch.inference_mode()
    def views(clip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
        """Features of a clip: as it is, through the VQ-VAE (level 0), from its top-level codes alone; and those
        codes, (1, frames)."""
        codes = vqvae.encode(torch.from_numpy(clip)[None])
        decoded = [vqvae.decode(codes[level], level)[0, : len(clip)].numpy() for level in (0, len(codes) - 1)]
        features = [logmel_features(x, sr) for x in (clip, *decoded)]
        return features[0], features[1], features[2], codes[-1]

    def table(
        rows: list[tuple[Path, str, str]], name: str
    ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]], list[tuple[str, str]]]:
        out, labels = [], []
        t0 = time.perf_counter()
        for i, (path, artist, genre) in enumerate(rows):
            for clip in song_clips(path, sr, seconds, clips):
                out.append(views(clip))
                labels.append((artist.lower(), genre.lower()))
            if (i + 1) % 20 == 0 or i + 1 == len(rows):
                log(f"{name}: clips of {i + 1}/{len(rows)} songs; {time.perf_counter() - t0:.0f} s so far")
        return out, labels

    songs, held_songs = corpus_table(corpus), corpus_table(test)  # the held-out artists are all in the corpus
    train, train_labels = table(songs, "corpus")
    song_judge = Judge(np.stack([v for t in train for v in t[:2]]), [x for x in train_labels for _ in range(2)])
    top_judge = Judge(np.stack([t[2] for t in train]), train_labels)
    log(f"classifiers: {len(train)} clips of {len(songs)} songs")
    held, held_labels = table(held_songs, "held-out")
    heldout = {
        "as_is": song_judge.accuracy(np.stack([t[0] for t in held]), held_labels),
        "through_vqvae": song_judge.accuracy(np.stack([t[1] for t in held]), held_labels),
        "top_level": top_judge.accuracy(np.stack([t[2] for t in held]), held_labels),
    }

    demo = {level: dataclasses.replace(default_sampling(level), hop_fraction=0.5) for level in (0, 1, 2)}
    upsampled = []
    t0 = time.perf_counter()
    for i, ((*_, top), (artist, genre)) in enumerate(zip(held, held_labels)):
        top = top[:, : length // vqvae.hop_lengths[-1]]  # the codes of the first `length` samples
        zs = pipeline.upsample({2: top}, Song(artist, genre, "", total_length), length, seed + i, settings=demo)
        with torch.no_grad():
            upsampled.append(logmel_features(vqvae.decode(zs[0], 0)[0, :length].numpy(), sr))
        if (i + 1) % 8 == 0 or i + 1 == len(held):
            log(f"upsampled: {i + 1}/{len(held)} held-out clips; {time.perf_counter() - t0:.0f} s so far")
    heldout["upsampled"] = song_judge.accuracy(np.stack(upsampled), held_labels)
    log(f"held-out songs: {heldout}")

    # Generated songs: every artist with that artist's (first) genre, `samples` songs each, all three levels; the
    # artists who sing in the corpus get lyrics like theirs (without, a prior trained on sung songs only makes
    # something the corpus never had).
    singers = singing_artists(corpus)
    genre_of = {}
    for _, artist, genre in songs:
        genre_of.setdefault(artist.lower(), genre.lower())
    generated = {}
    for guidance in guidances:
        # sampled as `openjukebox demo` samples: windows overlapping by half at every level, guidance at the top
        settings = {**demo, 2: dataclasses.replace(demo[2], guidance=guidance)}
        song_x, top_x, want = [], [], []
        t0 = time.perf_counter()
        for i, (artist, genre) in enumerate(sorted(genre_of.items())):
            song = Song(artist, genre, generated_lyrics(total, seed + i) if artist in singers else "", total_length)
            zs = pipeline.ancestral_sample(song, samples, length, seed + i, settings=settings)
            with torch.no_grad():
                song_x += [logmel_features(a, sr) for a in vqvae.decode(zs[0], 0)[:, :length].numpy()]
                top_x += [logmel_features(a, sr) for a in vqvae.decode(zs[2], 2)[:, :length].numpy()]
            want += [(artist, genre)] * samples
            log(f"guidance {guidance:g}: generated {i + 1}/{len(genre_of)} ({artist} / {genre}); "
                f"{time.perf_counter() - t0:.0f} s so far")  # fmt: skip
        predicted = song_judge.predict(np.stack(song_x))
        by_genre: dict[str, list[bool]] = defaultdict(list)
        for (_, g), (_, p) in zip(want, predicted):
            by_genre[g].append(p == g)
        generated[f"{guidance:g}"] = {
            "song": Judge.score(predicted, want),
            "top_level": top_judge.accuracy(np.stack(top_x), want),
            "song_genre_by_genre": {g: round(float(np.mean(v)), 3) for g, v in sorted(by_genre.items())},
            "sampling_seconds": round(time.perf_counter() - t0, 1),
            "rows": [
                {"artist": a, "genre": g, "predicted_artist": pa, "predicted_genre": pg}
                for (a, g), (pa, pg) in zip(want, predicted)
            ],
        }
    return {
        "seconds": seconds,
        "song_seconds": total,
        "samples_per_artist": samples,
        "generated": len(genre_of) * samples,
        "classifier_training_clips": len(train),
        "heldout_clips": len(held),
        "upsampled_heldout_clips": len(upsampled),
        "heldout": heldout,
        "chance": {
            "genre": round(max(Counter(genre_of.values()).values()) / len(genre_of), 3),
            "artist": round(1 / len(genre_of), 3),
        },
        "by_guidance": generated,
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
    lines += ["", "**Training runs** (wall clock from the TensorBoard logs, less pauses of 5 minutes or more)", ""]
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
        scales = list(f["by_guidance"])
        names = {g: "no guidance" if g == "1" else f"guidance {g}" for g in scales}
        h, gen = f["heldout"], f["by_guidance"]
        upsampled = f.get("upsampled_heldout_clips", f.get("upsampled_heldout_songs"))  # the older runs' name
        lines += [
            "",
            f"**Conditioning faithfulness**: {f['generated']} generated songs per setting: the first "
            f"{f['seconds']:g} s of a {f['song_seconds']:g} s song, {f['samples_per_artist']} per artist, each with "
            "the artist's genre and, for the artists who sing in the corpus, lyrics made as the corpus's (one "
            "generated line per 6 s). Two pairs of logistic regressions on log-mel statistics name their genre and "
            f"artist, trained on {f['classifier_training_clips']} clips of the corpus: the song classifiers on "
            "each clip as it is and through the VQ-VAE, the top-level classifiers on each clip decoded from its "
            f"top-level codes. Their own accuracy is measured on {f['heldout_clips']} clips of the held-out songs, "
            f"and on {upsampled} of those clips regenerated by the upsamplers from their own top-level codes, as "
            "generated songs are.",
            "",
            "| | held-out real songs | through the VQ-VAE (level 0) | their top-level codes through the upsamplers | "
            + " | ".join(f"generated, {names[g]}" for g in scales)
            + " | chance |",
            "|---|---:|---:|---:|" + "---:|" * len(scales) + "---:|",
        ]
        for what in ("genre", "artist"):
            cells = [h["as_is"][what], h["through_vqvae"][what], h["upsampled"][what]]
            cells += [gen[g]["song"][what] for g in scales] + [f["chance"][what]]
            lines.append(f"| {what} recognised | " + " | ".join(f"{100 * v:.0f}%" for v in cells) + " |")
        lines += [
            "",
            "The top level alone (the top prior's codes, decoded without the upsamplers; top-level classifiers):",
            "",
            "| | held-out real songs | " + " | ".join(f"generated, {names[g]}" for g in scales) + " | chance |",
            "|---|---:|" + "---:|" * len(scales) + "---:|",
        ]
        for what in ("genre", "artist"):
            cells = [h["top_level"][what]] + [gen[g]["top_level"][what] for g in scales] + [f["chance"][what]]
            lines.append(f"| {what} recognised | " + " | ".join(f"{100 * v:.0f}%" for v in cells) + " |")
        for g in scales:
            by_genre = gen[g]["song_genre_by_genre"]
            heard = Counter(r["predicted_genre"] for r in gen[g]["rows"]).most_common()
            lines += [
                "",
                f"Songs per genre, {names[g]}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in by_genre.items()),
                "",
                f"Genres the song classifier heard, {names[g]} (songs of {len(gen[g]['rows'])}): "
                + ", ".join(f"{k} {n}" for k, n in heard),
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
    p.add_argument("--work", type=Path, help="the recipe's working folder (corpus/, test/, runs/)")
    p.add_argument("--model", type=Path, help="model folder (vqvae/, prior_level_N/)")
    p.add_argument("--card", type=Path, help="Markdown file with the measured-section markers to fill in")
    p.add_argument(
        "--render", type=Path, metavar="JSON", help="measure nothing: write the section from an earlier run's numbers"
    )
    p.add_argument("--json", type=Path, help="write the numbers here (default WORK/model_card.json)")
    p.add_argument("--vqvae-seconds", type=float, default=240.0, help="held-out audio for the VQ-VAE figures")
    p.add_argument("--prior-batches", type=int, default=16, help="batches of 8 held-out windows per prior level")
    p.add_argument("--seconds", type=float, default=8.0, help="length of generated songs and classifier clips")
    p.add_argument("--samples", type=int, default=2, help="generated songs per artist")
    p.add_argument(
        "--song-seconds", type=float, default=30.0, help="song length the timing conditioning of generated songs says"
    )
    p.add_argument("--clips", type=int, default=4, help="classifier training clips per corpus song")
    p.add_argument(
        "--guidance",
        default="1,3",
        help="comma-separated top-level guidance scales to generate with (default 1,3: none, and 3)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-faithfulness", action="store_true", help="skip the generation and classifier")
    args = p.parse_args(argv)
    try:
        guidances = [float(g) for g in args.guidance.split(",")]
    except ValueError:
        raise SystemExit(f"model_card: error: --guidance {args.guidance!r}: expected numbers like 1,3") from None
    if args.render:
        try:
            section = markdown(json.loads(args.render.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"model_card: error: {args.render}: not a model_card.py run's numbers ({e!r})") from None
        if args.card:
            write_card(args.card, section)
        print(section)
        return 0
    if args.work is None or args.model is None:
        raise SystemExit("model_card: error: --work and --model are needed (or --render JSON)")
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
            model, corpus, test, args.seconds, args.samples, args.clips, args.seed, args.song_seconds, guidances
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
