"""Lyrics alignment accuracy: forced alignment vs the linear baseline on held-out synthetic songs (issue 7).

    python bench/align.py eval --model MODEL_DIR --songs HELDOUT_DIR [--json OUT] [--device cuda]
    python bench/align.py choose-head --model MODEL_DIR --songs DEV_DIR     # store the alignment head

`eval`: every `song_NNNN.flac` in HELDOUT_DIR with its `song_NNNN.json` sidecar (`openjukebox data synth` writes
the true start and end of every sung word there) is read at the VQ-VAE's sample rate, encoded to top-level codes
and aligned to its lyrics by the model's lyric top prior (`align.align_codes`, exactly what `openjukebox align`
does, with the song's own artist and genre; names the prior does not know get id 0, the unknown bucket, with a
warning). Two word-onset predictions are scored against the true word starts:

- aligner: the start of each word of the `Alignment`;
- linear: the original's heuristic for its training data (`data.lyrics.lyric_window`): the n characters of the
  lyrics as the prior reads them spread evenly over the song, character k starting at k * duration / n; a word's
  onset is the start of its first character.

Predicted and true words are paired in order (difflib on lower-cased words, so a word the prior's character table
mangles does not shift the rest); unpaired true words are counted as missed. Reported per song and over all
words: median and mean absolute onset error (seconds), and the share of true words whose paired onset is within
`--tolerance` (default 0.3 s) of the truth (missed words count as outside). Markdown table on stdout, `--json OUT`
for the numbers.

`choose-head`: `align.choose_alignment_head` on the songs of DEV_DIR (held out from training, and apart from the
test songs `eval` runs on), then the choice is stored in MODEL_DIR/prior_level_2's config (`with_alignment`,
saved with `checkpoints.prior.save_prior`, keeping the artist/genre vocabularies), so `openjukebox align` and
`openjukebox sample` read that head without --layer/--head. scripts/train_lyrics_model.py runs it, except for a
top prior trained with `prior train --align-loss`: its config already names the head that loss trained, and the
monotonicity score may well prefer an untrained one (it did on the demo's top prior: BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import difflib
import json
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOP_LEVEL = 2
TOLERANCE = 0.3  # seconds: the "within 0.3 s"


# ---------------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Onsets:
    """Words in sung order with their onset (seconds)."""

    words: list[str]
    starts: list[float]


def linear_onsets(text: str, duration: float) -> Onsets:
    """The linear baseline: character k of `text` (n characters) starts at k * duration / n; a word (a maximal
    run of non-whitespace characters, as the aligner's words) starts at its first character."""
    n = len(text)
    if n == 0:
        return Onsets([], [])
    found = list(re.finditer(r"\S+", text))
    return Onsets([m.group() for m in found], [m.start() * duration / n for m in found])


def _norm(word: str) -> str:
    return re.sub(r"[^0-9a-z']", "", word.lower())


def pair_words(true_words: Sequence[str], predicted_words: Sequence[str]) -> list[tuple[int, int]]:
    """(true index, predicted index) of the words matched in order (difflib's longest matching blocks on the
    normalised words; words equal after normalisation only)."""
    matcher = difflib.SequenceMatcher(a=[_norm(w) for w in true_words], b=[_norm(w) for w in predicted_words])
    matcher.autojunk = False
    pairs = []
    for block in matcher.get_matching_blocks():
        pairs.extend((block.a + k, block.b + k) for k in range(block.size))
    return pairs


def onset_scores(truth: Onsets, predicted: Onsets, tolerance: float = TOLERANCE) -> dict[str, float | int]:
    """Median / mean absolute onset error over the paired words, share of the true words within `tolerance`
    (unpaired true words count as misses). Errors are NaN when no word pairs."""
    pairs = pair_words(truth.words, predicted.words)
    errors = np.array([abs(predicted.starts[j] - truth.starts[i]) for i, j in pairs], dtype=np.float64)
    n = len(truth.words)
    return {
        "words": n,
        "paired": len(pairs),
        "median_error": float(np.median(errors)) if len(errors) else float("nan"),
        "mean_error": float(errors.mean()) if len(errors) else float("nan"),
        "within": float((errors <= tolerance).sum() / n) if n else float("nan"),
        "errors": errors.tolist(),  # kept for the overall numbers; dropped from the printed tables
    }


def summarize(per_song: Sequence[dict], method: str, tolerance: float = TOLERANCE) -> dict[str, float | int]:
    """The overall numbers of one method: over all words of all songs (not a mean of song medians)."""
    errors = np.array([e for s in per_song for e in s[method]["errors"]], dtype=np.float64)
    n = sum(int(s[method]["words"]) for s in per_song)
    return {
        "words": n,
        "paired": len(errors),
        "median_error": float(np.median(errors)) if len(errors) else float("nan"),
        "mean_error": float(errors.mean()) if len(errors) else float("nan"),
        "within": float((errors <= tolerance).sum() / n) if n else float("nan"),
    }


def evaluate_song(
    truth: Onsets, text: str, duration: float, aligned: Onsets, tolerance: float = TOLERANCE
) -> dict[str, dict]:
    """Scores of the aligner's onsets and of the linear baseline over `text` (the lyrics as the prior reads them)
    for one song of `duration` seconds."""
    return {
        "aligner": onset_scores(truth, aligned, tolerance),
        "linear": onset_scores(truth, linear_onsets(text, duration), tolerance),
    }


def read_truth(sidecar: Path) -> tuple[dict, Onsets]:
    """The sidecar's metadata and its true word onsets."""
    from openjukebox.errors import OpenJukeboxError

    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        words = meta["words"]
        return meta, Onsets([str(w["word"]) for w in words], [float(w["start"]) for w in words])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OpenJukeboxError(f"{sidecar}: not a synth sidecar with word timings ({e})") from e


def song_files(folder: Path, limit: int | None = None) -> list[tuple[Path, Path]]:
    """(audio, sidecar) of the songs in `folder` (not recursive), sorted by name."""
    from openjukebox.errors import OpenJukeboxError

    if not folder.is_dir():
        raise OpenJukeboxError(f"{folder}: no such folder of held-out songs")
    pairs = [(p, p.with_suffix(".json")) for p in sorted(folder.glob("*.flac")) if p.with_suffix(".json").is_file()]
    if not pairs:
        raise OpenJukeboxError(f"{folder}: no song (.flac with a .json sidecar) to evaluate")
    return pairs[:limit] if limit else pairs


# ---------------------------------------------------------------------------------------------------- model


@dataclass
class TopModel:
    vqvae: object
    prior: object
    labeller: object
    device: str


def load_top_model(model: Path, device: str) -> TopModel:
    """The VQ-VAE and the lyric top prior of a model folder, with a labeller that maps unknown names to id 0."""
    import torch

    from openjukebox.checkpoints.hierarchy import resolve_model
    from openjukebox.checkpoints.prior import load_prior, load_vocabularies
    from openjukebox.checkpoints.vqvae import load_vqvae
    from openjukebox.errors import OpenJukeboxError
    from openjukebox.prior.labeller import Labeller

    dirs = resolve_model(model, levels=(TOP_LEVEL,))
    vqvae = load_vqvae(dirs.vqvae).to(device)
    prior = load_prior(dirs.priors[TOP_LEVEL], dtype=torch.float32).to(device).eval()
    if prior.config.lyrics is None or prior.config.labels is None:
        raise OpenJukeboxError(f"{model}: its top prior has no lyrics conditioning")
    vocab = load_vocabularies(dirs.priors[TOP_LEVEL])
    artists, genres = vocab if vocab is not None else (None, None)
    return TopModel(vqvae, prior, Labeller(prior.config, artists, genres, unknown_ok=True), device)


def top_codes(m: TopModel, audio_path: Path):
    """((1, frames) long top-level codes, length in samples) of a recording, as `openjukebox align` encodes it."""
    import torch

    from openjukebox.audio import load_audio

    c = m.prior.config
    audio = load_audio(audio_path, m.vqvae.config.sample_rate)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(audio))[None].to(m.device)  # (1, T)
        codes = m.vqvae.encode(x, levels=[TOP_LEVEL])[0][:, : len(audio) // c.hop_length].long()
    return codes, len(audio)


def _genre(meta: dict) -> str:
    g = meta.get("genre", "")
    return str(g[0] if isinstance(g, list) and g else g)


def evaluate_folder(
    m: TopModel,
    songs: Sequence[tuple[Path, Path]],
    hop_fraction: float,
    batch_size: int,
    tolerance: float,
    layer: int | None = None,
    head: int | None = None,
) -> list[dict]:
    from openjukebox.align.aligner import align_codes

    rows = []
    for audio_path, sidecar in songs:
        meta, truth = read_truth(sidecar)
        t0 = time.perf_counter()
        codes, n_samples = top_codes(m, audio_path)
        alignment = align_codes(
            m.prior,
            m.labeller,
            codes,
            str(meta.get("artist", "")),
            _genre(meta),
            str(meta["lyrics"]),
            total_length=n_samples,
            hop_fraction=hop_fraction,
            layer=layer,
            head=head,
            batch_size=batch_size,
        )
        aligned = Onsets([w.word for w in alignment.words], [w.start for w in alignment.words])
        duration = n_samples / m.vqvae.config.sample_rate
        row = evaluate_song(truth, alignment.text, duration, aligned, tolerance)
        row.update(
            song=audio_path.name,
            seconds=round(duration, 3),
            layer=alignment.layer,
            head=alignment.head,
            align_seconds=round(time.perf_counter() - t0, 2),
        )
        rows.append(row)
        print(
            f"{audio_path.name}: aligner median {row['aligner']['median_error']:.2f} s, "
            f"linear {row['linear']['median_error']:.2f} s ({row['align_seconds']:.1f} s)",
            file=sys.stderr,
        )
    return rows


# ---------------------------------------------------------------------------------------------------- report


def _fmt(stats: dict) -> str:
    return f"{stats['median_error']:.2f} | {stats['mean_error']:.2f} | {100 * stats['within']:.0f}%"


def markdown(rows: Sequence[dict], overall: dict, tolerance: float) -> str:
    t = f"{tolerance:g}"
    lines = [
        f"| song | seconds | words | aligner median (s) | aligner mean (s) | aligner within {t} s "
        f"| linear median (s) | linear mean (s) | linear within {t} s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| {r['song']} | {r['seconds']:.1f} | {r['aligner']['words']}"
        lines.append(f"{head} | {_fmt(r['aligner'])} | {_fmt(r['linear'])} |")
    seconds = sum(r["seconds"] for r in rows)
    lines.append(
        f"| **all** | {seconds:.1f} | {overall['aligner']['words']} | {_fmt(overall['aligner'])} "
        f"| {_fmt(overall['linear'])} |"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- commands


def machine() -> str:
    """CPU model and core count (for the record next to the numbers)."""
    import os

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def run_eval(args: argparse.Namespace) -> dict:
    import torch

    device = _device(args.device)
    if (args.layer is None) != (args.head is None):
        from openjukebox.errors import OpenJukeboxError

        raise OpenJukeboxError("give both --layer and --head, or neither")
    songs = song_files(args.songs, args.limit)
    m = load_top_model(args.model, device)
    t0 = time.perf_counter()
    rows = evaluate_folder(m, songs, args.hop_fraction, args.batch_size, args.tolerance, args.layer, args.head)
    overall = {method: summarize(rows, method, args.tolerance) for method in ("aligner", "linear")}
    result = {
        "model": str(args.model),
        "songs_dir": str(args.songs),
        "tolerance": args.tolerance,
        "hop_fraction": args.hop_fraction,
        "layer": rows[0]["layer"],
        "head": rows[0]["head"],
        "device": device,
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "overall": overall,
        "songs": [{k: v for k, v in r.items()} for r in rows],
    }
    for r in result["songs"]:
        for method in ("aligner", "linear"):
            r[method] = {k: v for k, v in r[method].items() if k != "errors"}
    print(f"model {args.model}, layer {result['layer']} head {result['head']}, {len(rows)} songs, {device}\n")
    print(markdown(rows, overall, args.tolerance))
    if args.json is not None:
        from openjukebox.fileio import write_json_atomic

        write_json_atomic(args.json, result)
    return result


def run_choose_head(args: argparse.Namespace) -> tuple[int, int, float]:
    """Choose the alignment head on the dev songs and store it in MODEL/prior_level_2's config."""
    import torch

    from openjukebox.align.aligner import AlignmentExample, choose_alignment_head, with_alignment
    from openjukebox.checkpoints.hierarchy import prior_dir_name
    from openjukebox.checkpoints.prior import load_vocabularies, save_prior
    from openjukebox.prior.model import Prior

    device = _device(args.device)
    m = load_top_model(args.model, device)
    examples = []
    for audio_path, sidecar in song_files(args.songs, args.limit):
        meta, _ = read_truth(sidecar)
        codes, n_samples = top_codes(m, audio_path)
        examples.append(
            AlignmentExample(codes, str(meta.get("artist", "")), _genre(meta), str(meta["lyrics"]), n_samples)
        )
    t0 = time.perf_counter()
    layer, head, score = choose_alignment_head(m.prior, m.labeller, examples, hop_fraction=args.hop_fraction)
    print(f"alignment head: layer {layer} head {head} (score {score:.3f}, {time.perf_counter() - t0:.1f} s)")
    config = with_alignment(m.prior.config, layer, head)
    with torch.device("meta"):
        chosen = Prior(config)
    chosen.load_state_dict(m.prior.state_dict(), assign=True)  # same weights, config with the head
    folder = Path(args.model) / prior_dir_name(TOP_LEVEL)
    vocab = load_vocabularies(folder)
    artists, genres = vocab if vocab is not None else (None, None)
    save_prior(folder, chosen.cpu(), artists, genres)
    print(f"stored in {folder / 'config.json'}")
    return layer, head, score


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("eval", "word-onset error of the aligner and the linear baseline on held-out songs"),
        ("choose-head", "choose the alignment layer/head on dev songs and store it in the model's top prior"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--model", type=Path, required=True, help="model folder with vqvae/ and prior_level_2/")
        s.add_argument("--songs", type=Path, required=True, help="folder of synth songs (.flac + .json sidecar)")
        s.add_argument("--limit", type=int, help="only the first N songs (by name)")
        s.add_argument("--hop-fraction", type=float, default=0.125, help="window hop as a fraction of the window")
        s.add_argument("--device", help="cpu or cuda (default: cuda if available)")
        if name == "eval":
            s.add_argument("--batch-size", type=int, default=8, help="windows per forward")
            s.add_argument("--tolerance", type=float, default=TOLERANCE, help="seconds counted as a hit")
            s.add_argument("--layer", type=int, help="attention layer (default: the model's alignment layer)")
            s.add_argument("--head", type=int, help="attention head (with --layer)")
            s.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from openjukebox.errors import OpenJukeboxError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "eval":
            run_eval(args)
        else:
            run_choose_head(args)
    except OpenJukeboxError as e:
        print(f"bench/align.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
