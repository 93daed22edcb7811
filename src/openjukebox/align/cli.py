"""`openjukebox align`: forced alignment of an existing recording to its lyrics (issue 7).

The recording is read at the VQ-VAE's sample rate (other rates are resampled on reading; stereo is downmixed),
encoded to top-level codes, and the lyric top prior is teacher-forced over every window with the lyrics
(`aligner.align_codes`); the outputs (align.json, lyrics.lrc, alignment.png, karaoke.html) go into `--out`.
Only the VQ-VAE and the top prior are loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from openjukebox.checkpoints.hierarchy import OFFICIAL_MODELS
from openjukebox.errors import OpenJukeboxError

TOP_LEVEL = 2


def add_align_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("song", type=Path, help="the recording to align (wav, flac, ogg, mp3, ...)")
    p.add_argument("--lyrics", type=Path, required=True, metavar="FILE", help="text file with the song's lyrics")
    p.add_argument(
        "--model",
        default="5b_lyrics",
        help=f"{', '.join(m for m in OFFICIAL_MODELS if 'lyrics' in m)} (imported with `openjukebox import`), demo "
        "(the bundled demo model) or a model folder with vqvae/ and prior_level_2/ (default 5b_lyrics)",
    )
    p.add_argument("--artist", required=True, help="artist name the prior is conditioned on")
    p.add_argument("--genre", required=True, help="genre the prior is conditioned on")
    p.add_argument("--out", type=Path, help="output folder (default: SONG's folder / <song name>_align)")
    p.add_argument("--title", default="", help="title in the outputs (default: the song's file name)")
    p.add_argument("--layer", type=int, help="attention layer to read (default: the model's alignment layer)")
    p.add_argument("--head", type=int, help="attention head to read (with --layer)")
    p.add_argument("--hop-fraction", type=float, default=0.125, help="window hop as a fraction of the window")
    p.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="prior weights precision")


def read_lyrics(path: Path) -> str:
    if not path.is_file():
        raise OpenJukeboxError(f"{path}: no such lyrics file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise OpenJukeboxError(f"{path}: the lyrics file is empty")
    return text


def align_cli(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from openjukebox.align.aligner import align_codes
    from openjukebox.align.outputs import write_alignment
    from openjukebox.audio import load_audio
    from openjukebox.checkpoints.hierarchy import resolve_model
    from openjukebox.sample.cli import load_pipeline

    if (args.layer is None) != (args.head is None):
        raise OpenJukeboxError("give both --layer and --head, or neither")
    if not args.song.is_file():
        raise OpenJukeboxError(f"{args.song}: no such audio file")
    lyrics = read_lyrics(args.lyrics)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dirs = resolve_model(args.model, levels=(TOP_LEVEL,))
    pipeline = load_pipeline(dirs, device, [TOP_LEVEL], args.precision)
    prior, labeller = pipeline.priors[TOP_LEVEL], pipeline.labellers[TOP_LEVEL]
    c = prior.config
    if c.lyrics is None or labeller is None:
        raise OpenJukeboxError(
            f"model {args.model}: its top prior has no lyrics conditioning, so it cannot align lyrics"
        )
    vqvae = pipeline.vqvae
    sr = vqvae.config.sample_rate
    window = c.n_ctx * c.hop_length
    audio = load_audio(args.song, sr)  # resampled to the VQ-VAE's rate when the file's differs
    if len(audio) < window:
        raise OpenJukeboxError(
            f"{args.song}: {len(audio) / sr:.2f} s is shorter than one window of the model ({window / sr:.2f} s)"
        )
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(audio))[None].to(device)  # (1, T)
        codes = vqvae.encode(x, levels=[TOP_LEVEL])[0][:, : len(audio) // c.hop_length].long()  # (1, frames)
    prior.to(device)
    alignment = align_codes(
        prior,
        labeller,
        codes,
        args.artist,
        args.genre,
        lyrics,
        total_length=len(audio),
        hop_fraction=args.hop_fraction,
        layer=args.layer,
        head=args.head,
        source="forced",
    )
    out = args.out if args.out is not None else args.song.with_name(f"{args.song.stem}_align")
    if out.exists() and not out.is_dir():
        raise OpenJukeboxError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = write_alignment(out, alignment, args.song, args.title)
    print(
        f"aligned {len(alignment.words)} words over {alignment.duration:.1f} s "
        f"(layer {alignment.layer}, head {alignment.head})"
    )
    for issue in alignment.issues:
        print(f"line {issue.line + 1} {issue.kind}: {issue.text.strip()!r} ({issue.detail})")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
