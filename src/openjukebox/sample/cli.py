"""`openjukebox sample`: generate songs with a whole model, into a resumable run folder."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from openjukebox.checkpoints.hierarchy import OFFICIAL_MODELS, ModelDirs, resolve_model
from openjukebox.errors import OpenJukeboxError
from openjukebox.sample.settings import DECODE_MODES, MODES, RNG_MODES, LevelSampling, default_sampling

if TYPE_CHECKING:  # the CLI imports this module to build its help text: torch is imported only when sampling
    from openjukebox.sample.pipeline import Pipeline, Progress, WindowRequest
    from openjukebox.sample.run import RunSpec

LEVEL_OPTIONS = {
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "hop_fraction": float,
    "chunk_size": int,
    "max_batch_size": int,
    "guidance": float,
}


def cached_window_sampler(r: WindowRequest, decode: str = "auto"):
    """One window through the prior's key/value-cached sampler; decode: its token loop (`sample_prior`)."""
    from openjukebox.prior.sampling import sample_prior

    s = r.settings

    def progress(done: int, total: int) -> None:
        if r.progress is not None:
            r.progress(done)

    return sample_prior(
        r.prior,
        r.context.shape[0],
        r.upper,
        r.y,
        prompt=r.context if r.context.shape[1] else None,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        chunk_size=s.chunk_size,
        length=r.length,
        generator=r.generator,
        progress=progress,
        decode=decode,
        guidance=s.guidance,
    )


def parse_per_level(text: str, kind: type, option: str) -> dict[int, object]:
    """ "0.98" (every level) or "2=0.98,1=0.99" (some levels) -> {level: value}."""
    out: dict[int, object] = {}
    try:
        if "=" not in text:
            value = kind(text)
            return {level: value for level in (0, 1, 2)}
        for part in text.split(","):
            level, value = part.split("=")
            if level.strip() not in ("0", "1", "2"):
                raise ValueError(f"level {level.strip()!r}")
            out[int(level)] = kind(value)
    except ValueError as e:
        raise OpenJukeboxError(f"--{option.replace('_', '-')} {text!r}: expected V or L=V,L=V ({e})") from None
    return out


def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="5b_lyrics",
        help=f"{', '.join(OFFICIAL_MODELS)} (imported with `openjukebox import`), demo (the bundled demo model) or a "
        "model folder with vqvae/ and prior_level_{0,1,2}/ (default 5b_lyrics)",
    )
    p.add_argument("--out", type=Path, help="run folder to create (must not exist or be empty)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run; other options ignored")
    p.add_argument("--mode", choices=MODES, help="default: ancestral, or primed with --prompt, continue with --codes")
    p.add_argument("--artist", default="unknown", help="artist name (as the model's labels know it)")
    p.add_argument("--genre", default="unknown", help="genre name")
    p.add_argument("--lyrics-file", type=Path, help="text file with the lyrics (lyric models)")
    p.add_argument(
        "--drop-unknown-chars",
        action="store_true",
        help="leave out lyric characters the model has no token for (default: refuse and list them)",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="length to generate, in seconds (default 20)")
    p.add_argument(
        "--total-seconds", type=float, help="length of the whole song for the timing conditioning (default --seconds)"
    )
    p.add_argument("--n-samples", type=int, default=1, help="samples generated together (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same songs")
    p.add_argument(
        "--rng",
        choices=RNG_MODES,
        default=RNG_MODES[0],
        help="window (default): each window draws from a generator seeded from --seed and its position; original: "
        "every window draws in turn from one generator seeded with --seed, as the original code does after "
        "torch.manual_seed(seed), so the same codes as the original code (both resume bit for bit)",
    )
    p.add_argument("--prompt", type=Path, help="audio file whose start the songs continue (primed mode)")
    p.add_argument("--prompt-seconds", type=float, default=12.0, help="seconds of --prompt used (default 12)")
    p.add_argument("--codes", type=Path, help="codes file of an earlier run to extend (continue) or upsample")
    p.add_argument("--levels", default="2,1,0", help="levels to sample, e.g. 2 for the top level only (default 2,1,0)")
    defaults = {level: default_sampling(level) for level in (0, 1, 2)}
    for name in LEVEL_OPTIONS:
        shown = ", ".join(f"{level}={getattr(defaults[level], name)}" for level in (2, 1, 0))
        p.add_argument(
            f"--{name.replace('_', '-')}",
            metavar="V|L=V,...",
            help=f"per level (0 = bottom) or one value for all; defaults {shown}",
        )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="prior weights and activations (bf16/fp16 halve memory traffic on GPU; logits and draws stay fp32)",
    )
    p.add_argument(
        "--decode",
        choices=DECODE_MODES,
        default=DECODE_MODES[0],
        help="the token loop: auto (default) replays each step as a CUDA graph on a GPU and runs the eager loop on "
        "the CPU (the original's codes); eager: op by op everywhere; graph: CUDA graph (GPU only); position: the "
        "graph's step op by op (for debugging)",
    )


def _spec_from_args(args: argparse.Namespace, dirs: ModelDirs, sr: int, top_hop: int, max_seconds: float) -> RunSpec:
    if not args.seconds > 0:
        raise OpenJukeboxError(f"--seconds must be > 0, got {args.seconds}")
    total_seconds = args.total_seconds or args.seconds
    if total_seconds < args.seconds:
        raise OpenJukeboxError(f"--total-seconds {total_seconds} is shorter than --seconds {args.seconds}")
    if total_seconds >= max_seconds:
        raise OpenJukeboxError(f"the song may last at most {max_seconds:g} s for this model, got {total_seconds:g} s")
    length = max(top_hop, math.floor(args.seconds * sr / top_hop) * top_hop)
    mode = args.mode or ("primed" if args.prompt else "continue" if args.codes else "ancestral")
    prompt_length = 0
    if mode == "primed":
        if args.prompt is None:
            raise OpenJukeboxError("primed sampling needs --prompt AUDIO")
        if not args.prompt.is_file():
            raise OpenJukeboxError(f"{args.prompt}: no such audio file")
        prompt_length = math.floor(args.prompt_seconds * sr / top_hop) * top_hop
        if prompt_length <= 0:
            raise OpenJukeboxError(f"--prompt-seconds must cover at least {top_hop / sr:.3f} s")
        if prompt_length >= length:
            raise OpenJukeboxError(f"the prompt ({args.prompt_seconds:g} s) must be shorter than --seconds")
        from openjukebox.audio.io import audio_info, resampled_length
        from openjukebox.sample.run import check_prompt_length

        info = audio_info(args.prompt)  # an unreadable or short prompt is refused before the run folder is made
        check_prompt_length(args.prompt, resampled_length(info.frames, info.sample_rate, sr), prompt_length, sr)
    if mode in ("continue", "upsample") and args.codes is None:
        raise OpenJukeboxError(f"{mode} sampling needs --codes FILE (level_N/codes.npz of an earlier run)")
    lyrics = ""
    if args.lyrics_file is not None:
        if not args.lyrics_file.is_file():
            raise OpenJukeboxError(f"{args.lyrics_file}: no such lyrics file")
        lyrics = args.lyrics_file.read_text(encoding="utf-8", errors="replace")
    try:
        levels = sorted({int(x) for x in args.levels.split(",")}, reverse=True)
    except ValueError:
        raise OpenJukeboxError(f"--levels {args.levels!r}: expected a comma-separated list of 0, 1, 2") from None
    if not set(levels) <= {0, 1, 2} or not levels:
        raise OpenJukeboxError(f"--levels {args.levels!r}: levels are 0, 1 and 2")
    if mode == "upsample":
        levels = [level for level in levels if level < 2]
    settings = {level: default_sampling(level).__dict__.copy() for level in (0, 1, 2)}
    for name, kind in LEVEL_OPTIONS.items():
        text = getattr(args, name)
        if text is not None:
            for level, value in parse_per_level(text, kind, name).items():
                settings[level][name] = value
    for level, fields in settings.items():
        try:
            LevelSampling(**fields)
        except ValueError as e:
            raise OpenJukeboxError(f"level {level}: {e}") from None
    from openjukebox.sample.run import RunSpec, model_fingerprints

    return RunSpec(
        model=str(args.model),
        mode=mode,
        length=length,
        n_samples=args.n_samples,
        seed=args.seed,
        rng=args.rng,
        decode=args.decode,
        artist=args.artist,
        genre=args.genre,
        lyrics=lyrics,
        total_length=math.floor(total_seconds * sr / top_hop) * top_hop,
        levels=levels,
        settings={str(level): fields for level, fields in settings.items()},
        prompt=None if args.prompt is None else str(args.prompt),
        prompt_length=prompt_length,
        codes=None if args.codes is None else str(args.codes),
        device=str(args.device),
        precision=args.precision,
        fingerprints=model_fingerprints(dirs),
    )


PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def load_pipeline(
    dirs: ModelDirs, device: str, levels: list[int], precision: str = "fp32", decode: str = "auto"
) -> Pipeline:
    import functools

    import torch

    from openjukebox.checkpoints.prior import load_prior, load_vocabularies
    from openjukebox.checkpoints.vqvae import load_vqvae
    from openjukebox.prior.labeller import Labeller
    from openjukebox.sample.pipeline import Pipeline

    vqvae = load_vqvae(dirs.vqvae).to(device)
    priors, labellers = {}, {}
    for level in levels:
        prior = load_prior(dirs.priors[level], dtype=getattr(torch, PRECISIONS[precision]))
        vocab = load_vocabularies(dirs.priors[level])
        priors[level] = prior
        if prior.config.labels is None:
            labellers[level] = None
        else:
            artists, genres = vocab if vocab is not None else (None, None)
            labellers[level] = Labeller(prior.config, artists, genres)
    sampler = functools.partial(cached_window_sampler, decode=decode)
    return Pipeline(vqvae, priors, labellers, sampler, device=device)


def check_song(pipeline: Pipeline, spec: RunSpec, allow_dropped_chars: bool = False) -> None:
    """Names and lyrics the model cannot condition on are errors before any sampling starts (the original maps
    unknown names to id 0 and drops unknown characters silently)."""
    from openjukebox.data.lyrics import encode_lyrics
    from openjukebox.data.official_ids import IdTable

    song = spec.song()
    for level in spec.levels:
        labeller = pipeline.labellers.get(level)
        if labeller is None:
            continue
        for table, name in ((labeller.artists, spec.artist), (labeller.genres, spec.genre)):
            if isinstance(table, IdTable):
                table.lookup(name)  # raises with the closest names
        if labeller.lyrics_vocab is not None:
            if not spec.lyrics.strip():
                raise OpenJukeboxError("this is a lyrics model: give the lyrics with --lyrics-file")
            encoded = encode_lyrics(spec.lyrics, labeller.lyrics_vocab)
            if encoded.dropped and not allow_dropped_chars:
                chars = " ".join(repr(c) for c in encoded.dropped)
                raise OpenJukeboxError(
                    f"lyrics: characters outside the model's lyric vocabulary: {chars} "
                    f"(edit them out, or pass --drop-unknown-chars to leave them out)"
                )
        pipeline.base_labels(level, song, 1)


class ProgressBars:
    """One tqdm bar per level counting the level's new tokens (all samples together), so that its rate (tokens/s)
    and ETA follow the tokens as they are drawn, window after window; the window being sampled is in the postfix.
    Redrawn at most twice a second on a terminal; a log (not a terminal) gets a line every 10 s and one per window.
    """

    def __init__(self, file=None) -> None:
        self.file = file  # default: stderr
        self.bar = None
        self.level = None
        self.shown = 0.0
        self.windows_done = -1

    def __call__(self, p: Progress) -> None:
        import time

        from tqdm import tqdm

        now = time.perf_counter()
        out = self.file or sys.stderr
        interval = 0.5 if out.isatty() else 10.0
        if p.level != self.level:
            self.close()
            self.level = p.level
            self.bar = tqdm(
                total=p.tokens_total or None,
                desc=f"level {p.level}",
                unit="tok",
                unit_scale=p.tokens_total >= 10_000,  # 12.3k/40.9k; small counts as they are
                dynamic_ncols=True,
                mininterval=interval,
                file=self.file,
            )
            self.shown, self.windows_done = now, p.windows_done  # the first tokens' rate would mean nothing
            self.bar.update(p.tokens_done)
            return
        if now - self.shown < interval and p.windows_done == self.windows_done:
            return
        self.shown, self.windows_done = now, p.windows_done
        self.bar.update(p.tokens_done - self.bar.n)
        window = min(p.windows_done + 1, p.windows_total)
        self.bar.set_postfix_str(f"window {window}/{p.windows_total}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def sample_cli(args: argparse.Namespace) -> None:
    import torch

    from openjukebox.sample.run import SampleRun, check_new_run_folder

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.resume is not None:
        run = SampleRun.open(args.resume)
        dirs = resolve_model(run.spec.model)
        run.check_model(dirs)
        pipeline = load_pipeline(dirs, run.spec.device, sorted(run.spec.levels), run.spec.precision, run.spec.decode)
    else:
        if args.out is None:
            raise OpenJukeboxError("give --out RUN_DIR for a new run, or --resume RUN_DIR")
        check_new_run_folder(args.out)  # before loading any model
        if args.decode == "graph" and not str(args.device).startswith("cuda"):
            raise OpenJukeboxError(f"--decode graph needs a CUDA device, not {args.device}")
        dirs = resolve_model(args.model)
        levels = sorted({int(x) for x in args.levels.split(",") if x.strip().isdigit()} or {0, 1, 2})
        pipeline = load_pipeline(
            dirs, args.device, [lv for lv in levels if lv in dirs.priors], args.precision, args.decode
        )
        top = pipeline.priors.get(2)
        sr = pipeline.vqvae.config.sample_rate
        labels = None if top is None else top.config.labels
        max_seconds = labels.max_duration if labels is not None and labels.max_duration else float("inf")
        spec = _spec_from_args(args, dirs, sr, pipeline.vqvae.hop_lengths[-1], max_seconds)
        check_song(pipeline, spec, args.drop_unknown_chars)
        run = SampleRun.create(args.out, spec)
    bars = ProgressBars()
    try:
        run.execute(pipeline, progress=bars)
    finally:
        bars.close()
    print(f"done: {run.folder} (levels {', '.join(str(level) for level in run.spec.levels)})")
