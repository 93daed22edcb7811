"""The `openjukebox` command line: thin layers over the library, one subcommand per job.

Every error a user can cause is printed as one line (`openjukebox: error: ...`) with exit status 1;
interrupting with Ctrl-C exits with 130. Heavy imports happen inside the commands so `--help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from openjukebox import __version__
from openjukebox.checkpoints.paths import default_vqvae_dir, resolve_vqvae_dir
from openjukebox.errors import OpenJukeboxError


def _vqvae_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vqvae",
        type=Path,
        default=None,
        help="VQ-VAE checkpoint folder (config.json + model.safetensors): a training run folder or the output of "
        f"`openjukebox import`. Default: {default_vqvae_dir()} (where `openjukebox import vqvae.pth.tar` puts it).",
    )


def _load_vqvae(path: Path | None):
    from openjukebox.checkpoints.vqvae import load_vqvae

    return load_vqvae(resolve_vqvae_dir(path))


def _progress(desc: str):
    """A callback(done, total) that shows a tqdm bar once there is more than one step."""
    from tqdm import tqdm

    state: dict = {}

    def update(done: int, total: int) -> None:
        if total <= 1:
            return
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="chunk", file=sys.stderr)
        state["bar"].update(done - state["bar"].n)
        if done == total:
            state["bar"].close()

    return update


# --- commands ---------------------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> None:
    from openjukebox.checkpoints.huggingface import import_huggingface, is_huggingface_checkpoint
    from openjukebox.checkpoints.original import import_vqvae
    from openjukebox.checkpoints.original_prior import import_prior, official_model_name, original_kind
    from openjukebox.checkpoints.prior import load_prior_config
    from openjukebox.checkpoints.vqvae import save_vqvae

    if is_huggingface_checkpoint(args.checkpoint):
        if args.preset is not None:
            raise OpenJukeboxError("--preset: only for released .pth.tar priors, not for a Hugging Face folder")
        for part, folder in import_huggingface(args.checkpoint, args.output).items():
            print(f"imported {part} -> {folder}")
        return
    if args.preset is not None or original_kind(args.checkpoint) == "prior":
        out = import_prior(args.checkpoint, args.output, preset=args.preset)
        config = load_prior_config(out)
        print(f"imported the {official_model_name(config)} level-{config.level} prior -> {out}")
        return
    out = args.output or default_vqvae_dir()
    model = import_vqvae(args.checkpoint)
    save_vqvae(out, model)
    n = sum(p.numel() for p in model.parameters())
    print(f"imported VQ-VAE ({n / 1e6:.2f} M parameters, hops {list(model.hop_lengths)}) -> {out}")


def cmd_encode(args: argparse.Namespace) -> None:
    import torch

    from openjukebox.audio import load_audio
    from openjukebox.checkpoints.codes import CodesFile, save_codes

    model = _load_vqvae(args.vqvae)
    sr = model.config.sample_rate
    audio = load_audio(args.audio, sr, min_samples=model.hop_lengths[-1])
    levels = args.levels or list(range(model.levels))
    bad = [lv for lv in levels if not 0 <= lv < model.levels]
    if bad:
        raise OpenJukeboxError(f"--levels: {bad} out of range 0..{model.levels - 1}")
    with torch.inference_mode():
        zs = model.encode(
            torch.from_numpy(audio)[None], levels=levels, chunk_seconds=args.chunk_seconds, progress=_progress("encode")
        )
    codes = CodesFile(
        zs={lv: z.numpy() for lv, z in zip(levels, zs, strict=True)},
        sample_rate=sr,
        hop_lengths=model.hop_lengths,
        l_bins=model.config.l_bins,
        length=len(audio),
        extra={"source": str(args.audio)},
    )
    save_codes(args.output, codes)
    sizes = ", ".join(f"level {lv}: {z.shape[1]}" for lv, z in zip(levels, zs, strict=True))
    print(f"{args.audio}: {len(audio) / sr:.2f} s -> {args.output} ({sizes} codes)")


def cmd_decode(args: argparse.Namespace) -> None:
    import torch

    from openjukebox.audio import save_audio
    from openjukebox.checkpoints.codes import load_codes

    codes = load_codes(args.codes)
    level = min(codes.zs) if args.level is None else args.level
    if level not in codes.zs:
        raise OpenJukeboxError(f"{args.codes}: has no level {level} codes (it has levels {sorted(codes.zs)})")
    model = _load_vqvae(args.vqvae)
    codes.check_compatible(model.hop_lengths, model.config.l_bins, model.config.sample_rate, str(args.codes))
    z = torch.from_numpy(codes.zs[level])
    if int(z.min()) < 0 or int(z.max()) >= model.config.l_bins:
        raise OpenJukeboxError(f"{args.codes}: level {level} codes outside 0..{model.config.l_bins - 1}")
    with torch.inference_mode():
        audio = model.decode(z, level, chunk_seconds=args.chunk_seconds, progress=_progress("decode"))
    audio = audio[:, : codes.length]
    outputs = (
        [args.output]
        if audio.shape[0] == 1
        else [args.output.with_name(f"{args.output.stem}_{i}{args.output.suffix}") for i in range(audio.shape[0])]
    )
    for path, wav in zip(outputs, audio.numpy(), strict=True):
        save_audio(path, wav, model.config.sample_rate)
        print(f"level {level} -> {path} ({wav.shape[0] / model.config.sample_rate:.2f} s)")


def cmd_vqvae_train(args: argparse.Namespace) -> None:
    from openjukebox.vqvae.train import train_vqvae

    train_vqvae(args)


def cmd_vqvae_eval(args: argparse.Namespace) -> None:
    from openjukebox.vqvae.evaluate import evaluate_cli

    evaluate_cli(args)


def cmd_prior_train(args: argparse.Namespace) -> None:
    from openjukebox.prior.train import train_prior

    train_prior(args)


def cmd_data_index(args: argparse.Namespace) -> None:
    from openjukebox.data.index import index_cli

    index_cli(args)


def cmd_data_synth(args: argparse.Namespace) -> None:
    from openjukebox.data.synth import synth_cli

    synth_cli(args)


def cmd_data_encode(args: argparse.Namespace) -> None:
    from openjukebox.data.code_cache import encode_cli

    args.vqvae = resolve_vqvae_dir(args.vqvae)
    encode_cli(args)


def cmd_sample(args: argparse.Namespace) -> None:
    from openjukebox.sample.cli import sample_cli

    sample_cli(args)


def cmd_demo(args: argparse.Namespace) -> None:
    from openjukebox.sample.demo import demo_cli

    demo_cli(args)


def cmd_align(args: argparse.Namespace) -> None:
    from openjukebox.align.cli import align_cli

    align_cli(args)


def cmd_songs(args: argparse.Namespace) -> None:
    from openjukebox.sample.library import songs_cli

    songs_cli(args)


# --- parser -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openjukebox",
        description="OpenAI Jukebox rebuilt: VQ-VAE audio codes, training and import of the released checkpoints.",
    )
    parser.add_argument("--version", action="version", version=f"openjukebox {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (debug level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "import",
        help="convert a released Jukebox checkpoint (vqvae.pth.tar, prior_level_N.pth.tar, or a Hugging Face "
        "Jukebox folder) into our format",
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="the released file, e.g. vqvae.pth.tar (read with weights_only, streamed), or a Hugging Face Jukebox "
        "model folder (config.json + pytorch_model*.bin or model*.safetensors): imports the VQ-VAE and all priors",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help=f"output folder (default {default_vqvae_dir()} for the VQ-VAE; <models>/<model>/prior_level_<N> for "
        "priors, where `openjukebox sample --model 5b|5b_lyrics|1b_lyrics` looks); for a Hugging Face folder, a "
        "model folder (OUT/vqvae, OUT/prior_level_N: `--model OUT`)",
    )
    p.add_argument("--preset", help="official prior preset for values the file's hps lack (priors only)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("encode", help="audio file -> VQ-VAE codes (.npz) at every level")
    p.add_argument("audio", type=Path, help="audio file (wav, flac, ogg, mp3, ...): downmixed to mono, resampled")
    p.add_argument("-o", "--output", type=Path, required=True, help="codes file to write (.npz)")
    p.add_argument("--levels", type=int, nargs="+", help="levels to encode (default all; 0 = bottom, hop 8)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="encode long audio in chunks of this length")
    _vqvae_option(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="VQ-VAE codes (.npz) -> audio file, through one level's decoder")
    p.add_argument("codes", type=Path, help="codes file written by `openjukebox encode` or by sampling")
    p.add_argument("--level", type=int, help="level to decode (default: the finest level in the file)")
    p.add_argument("-o", "--output", type=Path, required=True, help="audio file to write (.wav or .flac)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="decode long audio in chunks of this length")
    _vqvae_option(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser(
        "sample",
        help="generate songs (all three levels, windowed, resumable) into a run folder",
        description="Generate songs with a released model or one of ours. Every window is saved, so an "
        "interrupted run continues with `openjukebox sample --resume RUN_DIR` and gives the same bits.",
    )
    from openjukebox.sample.cli import add_sample_arguments

    add_sample_arguments(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "demo",
        help="a song with lyrics from the bundled demo model (no download) into out/demo: wavs, lyrics, karaoke",
        description="Sample a short song with lyrics from the small bundled demo model on the CPU (what `make demo` "
        "runs). Running it again replaces the previous demo run.",
    )
    from openjukebox.sample.demo import add_demo_arguments

    add_demo_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "align",
        help="align lyrics to a recording: word times (align.json, lyrics.lrc), attention PNG, karaoke page",
        description="Forced alignment of an existing recording: encode it with the VQ-VAE, teacher-force the lyric "
        "top prior with the lyrics over every window, and read word times off its lyrics attention.",
    )
    from openjukebox.align.cli import add_align_arguments

    add_align_arguments(p)
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("songs", help="list the songs generated on this machine (the library of sampling runs)")
    p.set_defaults(func=cmd_songs)

    vq = sub.add_parser("vqvae", help="train or evaluate a VQ-VAE").add_subparsers(
        dest="vqvae_command", required=True, metavar="ACTION"
    )
    from openjukebox.vqvae.train import add_train_arguments

    p = vq.add_parser("train", help="train a VQ-VAE on a folder of audio files (random crops)")
    add_train_arguments(p)
    p.set_defaults(func=cmd_vqvae_train)

    p = vq.add_parser("eval", help="per-level spectral convergence (dB) and codebook usage on a folder of audio")
    p.add_argument("--data", type=Path, required=True, help="folder of audio files (searched recursively)")
    p.add_argument("--seconds", type=float, default=60.0, help="total audio to evaluate, in seconds")
    p.add_argument("--crop-seconds", type=float, default=5.0, help="length of each evaluated crop")
    p.add_argument("--seed", type=int, default=0, help="seed of the crop positions")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    _vqvae_option(p)
    p.set_defaults(func=cmd_vqvae_eval)

    pr = sub.add_parser("prior", help="train a prior (one level) on the cached codes of a dataset").add_subparsers(
        dest="prior_command", required=True, metavar="ACTION"
    )
    from openjukebox.prior.train import add_train_arguments as add_prior_train_arguments

    p = pr.add_parser(
        "train", help="train one level's prior (top prior or upsampler) on the codes cached by `data encode`"
    )
    add_prior_train_arguments(p)
    p.set_defaults(func=cmd_prior_train)

    data = sub.add_parser("data", help="song datasets: index a folder of songs with their metadata").add_subparsers(
        dest="data_command", required=True, metavar="ACTION"
    )
    p = data.add_parser(
        "index",
        help="build or update the SQLite index of a folder of songs (audio + sidecar JSON / manifest / tags)",
    )
    p.add_argument("dir", type=Path, help="folder of songs, searched recursively")
    p.add_argument("--db", type=Path, help="index file (default: DIR/.openjukebox-index.sqlite)")
    p.set_defaults(func=cmd_data_index)

    p = data.add_parser(
        "synth",
        help="build an offline corpus of synthetic sung songs (6 genres x 4 artists) with exact word timings",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write songs (.flac) and sidecars (.json) into")
    p.add_argument("--songs", type=int, default=200, help="number of songs")
    p.add_argument("--seed", type=int, default=0, help="seed: the same seed gives byte-identical songs")
    p.set_defaults(func=cmd_data_synth)

    p = data.add_parser(
        "encode", help="precompute the codes of every indexed song (all levels) into a cache, for prior training"
    )
    p.add_argument("dir", type=Path, help="dataset folder, indexed with `openjukebox data index`")
    p.add_argument("--cache", type=Path, help="cache folder (default: DIR/.openjukebox-codes); runs resume")
    _vqvae_option(p)
    p.set_defaults(func=cmd_data_encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except OpenJukeboxError as e:
        print(f"openjukebox: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("openjukebox: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
