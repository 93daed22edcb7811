"""`openjukebox demo` (what `make demo` runs): a song with lyrics from the bundled demo model, with no download.

The demo model (package data under `openjukebox/models/demo`, trained by scripts/train_demo.sh, described in
MODEL_CARD.md) samples all three levels on the CPU; the run folder is an ordinary `openjukebox sample` run
(run.json, codes, wavs and spectrograms per level, lyrics alignment with LRC and karaoke page), so
`openjukebox sample --resume` and `openjukebox align` work on it as on any other run.

Running the demo again replaces the previous demo run in the same folder; any other non-empty folder is refused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from openjukebox.checkpoints.hierarchy import DEMO_MODEL
from openjukebox.errors import OpenJukeboxError

DEFAULT_OUT = Path("out/demo")
DEFAULT_ARTIST = "june meadow"
DEFAULT_GENRE = "folk"
DEFAULT_GUIDANCE = 3.0  # genre heard in 68 % of the demo's songs with it, 46 % without (MODEL_CARD.md)
DEFAULT_LYRICS = "golden light across the river\nsing with me tonight\n"
# Top-level windows overlap by half instead of the original's 7/8: 4x fewer top windows, so the demo stays quick.
DEMO_HOP_FRACTION = "2=0.5,1=0.5,0=0.5"


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--artist", default=DEFAULT_ARTIST, help=f"an artist the demo model knows (default {DEFAULT_ARTIST!r})"
    )
    p.add_argument("--genre", default=DEFAULT_GENRE, help=f"a genre the demo model knows (default {DEFAULT_GENRE!r})")
    p.add_argument("--lyrics-file", type=Path, help="text file with the lyrics (default: two built-in lines)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the song (default 12)")
    p.add_argument("--n-samples", type=int, default=1, help="songs generated together (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same songs")
    p.add_argument("--levels", default="2,1,0", help="levels to sample (default 2,1,0; 2 = the top level only)")
    p.add_argument(
        "--guidance",
        type=float,
        default=DEFAULT_GUIDANCE,
        help="classifier-free guidance towards the artist and genre, at every level (the demo's priors were trained "
        f"with label dropout; MODEL_CARD.md measures 1 and 3); 1: none; default {DEFAULT_GUIDANCE:g}",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"run folder (default {DEFAULT_OUT})")


def _is_demo_run(folder: Path) -> bool:
    try:
        return json.loads((folder / "run.json").read_text()).get("model") == DEMO_MODEL
    except (OSError, ValueError, AttributeError):
        return False


def _clear_previous_demo(out: Path) -> None:
    """Remove an earlier demo run in `out`; refuse to touch a folder that holds anything else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OpenJukeboxError(f"{out}: exists and is not a folder")
    if any(out.iterdir()):
        if not _is_demo_run(out):
            raise OpenJukeboxError(f"{out}: not empty and not an earlier demo run; not overwriting it (choose --out)")
        shutil.rmtree(out)


def demo_cli(args: argparse.Namespace) -> None:
    from openjukebox.sample.cli import add_sample_arguments, sample_cli

    out: Path = args.out
    if args.lyrics_file is not None and not args.lyrics_file.is_file():
        raise OpenJukeboxError(f"{args.lyrics_file}: no such lyrics file")
    _clear_previous_demo(out)
    # An ordinary `openjukebox sample` run: its defaults, then the demo's.
    parser = argparse.ArgumentParser(add_help=False)
    add_sample_arguments(parser)
    sample_args = parser.parse_args([])
    sample_args.model, sample_args.out, sample_args.device = DEMO_MODEL, out, "cpu"
    sample_args.artist, sample_args.genre = args.artist, args.genre
    sample_args.seconds, sample_args.n_samples, sample_args.seed = args.seconds, args.n_samples, args.seed
    sample_args.levels, sample_args.hop_fraction = args.levels, DEMO_HOP_FRACTION
    sample_args.guidance = str(args.guidance)  # every level: all three priors were trained with label dropout
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sample_args.lyrics_file = args.lyrics_file
        if args.lyrics_file is None:  # run.json keeps the text itself, so the file need not outlive the run
            sample_args.lyrics_file = Path(tmp) / "lyrics.txt"
            sample_args.lyrics_file.write_text(DEFAULT_LYRICS, encoding="utf-8")
        sample_cli(sample_args)
    seconds = time.perf_counter() - t0
    finest = min(int(level) for level in args.levels.split(","))
    print(f"\nthe demo took {seconds:.1f} s (loading the model and sampling); everything is in {out}/:")
    for item in range(args.n_samples):
        print(f"  song {item}:  {out / f'level_{finest}' / f'item_{item}.wav'}")
        align = out / "align" / f"item_{item}"
        if align.is_dir():
            print(f"  lyrics:  {align / 'align.json'}, {align / 'lyrics.lrc'}")
            print(f"  karaoke: {align / 'karaoke.html'} (open it in a browser)")
    print(f"  metadata: {out / f'level_{finest}' / 'metadata.json'}, {out / 'run.json'}")
