"""Training one level's prior on cached VQ-VAE codes: the prior `TrainTask` and the `prior train` command.

Jukebox trains each level separately (Dhariwal et al. 2020, §4 and §6): the top prior models level-2 codes given
artist, genre, timing and lyrics; each upsampler models level-L codes given the codes of level L + 1 and artist
and genre. The codes come from the code cache (`openjukebox data encode`), cut into labelled windows by
`CodeCrops`; the shared engine (`openjukebox.train`) does DDP, schedule, autocast, checkpoints and TensorBoard.

Logged: `train/loss` (the objective, bits per token), `train/music_loss` (bits per music code), for lyric
models `train/lyric_loss` (bits per lyric character, weighted in the objective by `lyrics.loss_fraction` and
the lyrics' share of the tokens), and every `--val-every` steps the same numbers on a held-out split of the
songs (`val/loss_level{L}`, `val/music_loss_level{L}`, `val/lyric_loss_level{L}`).

Alignment loss (`--align-loss W`, our addition; the original's alignment emerged unsupervised in large priors):
in songs with word timings (`openjukebox data synth` records them) every code sung inside a word has a target,
the lyric key of the character sung then (`data.lyrics.sung_keys`). The objective adds W times the bits per
supervised code of -log2(the weight the alignment layer/head of the config gives that key) (`train/align_loss`;
`val/align_loss_level2` on held-out windows, whose `val/loss` stays the prior's objective alone), so that this
head's attention follows the singing and `openjukebox align` reads word timings from it.

Label ids: priors with our own ids (`labels.ids == "ours"`) get their artist/genre vocabularies from the
dataset, saved beside the weights (`artists.json`, `genres.json`), with label tables at least the preset's size.
Fine-tuning (`--init`) appends the names the saved vocabularies lack and grows the tables (`Prior.grow_labels`),
so existing ids and rows stay as they were. The released priors' ids ("v2", "v3") come from the official tables.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openjukebox.checkpoints.format import model_config_json, read_config
from openjukebox.data.code_crops import BALANCES, CodeCrops
from openjukebox.data.lyrics import VOCAB_V2, VOCAB_V3, LyricsVocab
from openjukebox.data.vocab import Vocabulary
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import read_json_object, write_json_atomic
from openjukebox.prior.config import PRESET_NAMES, PriorConfig, prior_preset, with_label_bins
from openjukebox.prior.model import Prior
from openjukebox.train.config import add_schedule_arguments
from openjukebox.vqvae.config import VQVAEConfig

logger = logging.getLogger(__name__)

VAL_SEED = 1_000_003  # validation windows: fixed, and apart from the training stream
DATA_SETTINGS_FILE = "prior_data.json"  # what a resumed run must repeat about the data (DATA_SETTINGS)
# setting -> (option, value in runs saved before the setting existed)
DATA_SETTINGS: dict[str, tuple[str, Any]] = {
    "val_fraction": ("--val-fraction", None),
    "lyric_jitter": ("--lyric-jitter", 0),
    "label_dropout": ("--label-dropout", 0.0),
    "balance": ("--balance", "length"),
    "align_loss": ("--align-loss", 0.0),
}


def check_align_loss(config: PriorConfig, weight: float) -> None:
    """A clear error for an alignment-loss weight the prior cannot train with (negative, or no alignment head)."""
    if weight < 0:
        raise OpenJukeboxError(f"the alignment loss weight must be >= 0, got {weight}")
    if weight and config.alignment is None:
        raise OpenJukeboxError("--align-loss needs a lyrics prior with an alignment layer and head in its config")


class PriorTask:
    """One level's prior as a `TrainTask`: code windows in, bits per token out.

    Args:
        model: the prior being trained.
        data: training windows (`CodeCrops` of the prior's level and n_ctx).
        batch_size, seed: windows per micro-batch per rank; seed of the window stream.
        val: held-out windows for `validate` (None: no validation).
        val_batches: batches in one validation pass (always the same windows).
        precision: the run's precision, for autocast during validation on CUDA.
        align_loss: weight of the alignment loss (0: none); `data` must carry `sung` keys (`sung_keys=True`).
    """

    def __init__(
        self,
        model: Prior,
        data: CodeCrops,
        batch_size: int,
        seed: int,
        *,
        val: CodeCrops | None = None,
        val_batches: int = 4,
        precision: str = "fp32",
        align_loss: float = 0.0,
    ) -> None:
        c = model.config
        check_align_loss(c, align_loss)
        if align_loss and not data.sung_keys:
            raise ValueError("an alignment loss needs windows with sung-character targets (CodeCrops(sung_keys=True))")
        self.align_loss = align_loss
        for crops in (data, val):
            if crops is not None and (crops.level, crops.n_ctx) != (c.level, c.n_ctx):
                raise ValueError(f"windows of level {crops.level} x {crops.n_ctx} for a level-{c.level} prior")
        self.model, self.data, self.val = model, data, val
        self.batch_size, self.seed, self.val_batches, self.precision = batch_size, seed, val_batches, precision
        self.tokens_per_sample = c.n_ctx  # the engine logs tokens/s with it
        self.last_val: dict[str, float] = {}

    def batch(self, index: int, rank: int, world_size: int) -> dict[str, torch.Tensor]:
        # One stream of windows shared by all ranks: rank r takes every world_size-th batch.
        return self.data.batch(self.seed, index * world_size + rank, self.batch_size)

    def _forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """(the prior's objective, metrics); with an alignment loss, metrics["align_loss"] is still attached to
        the graph (`loss` adds it to the objective)."""
        if not self.align_loss:
            out = model(batch["codes"], batch.get("upper"), batch.get("y"))
        else:
            from openjukebox.align.attention import record_layers, sung_key_bits

            layer, head = self.model.config.alignment  # type: ignore[misc]
            # the hook sits on our module; a DDP wrapper's forward runs through the same layers
            with record_layers(self.model, [layer], stop=False, detach=False) as calls:
                out = model(batch["codes"], batch.get("upper"), batch.get("y"))
        metrics = {"music_loss": out.music_loss.detach()}
        if self.model.config.lyrics is not None:
            metrics["lyric_loss"] = out.lyric_loss.detach()
        if self.align_loss:
            metrics["align_loss"] = sung_key_bits(self.model, calls[layer], layer, head, batch["sung"])
        return out.loss, metrics

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        loss, metrics = self._forward(model, batch)
        if self.align_loss:
            bits = metrics["align_loss"]
            metrics["align_loss"] = bits.detach()
            loss = loss + self.align_loss * bits
        return loss, metrics

    def model_config(self) -> dict[str, Any]:
        return model_config_json("prior", self.model.config)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss (the prior's objective, without the alignment loss), music and lyric loss (bits per token) and
        the alignment loss (bits per sung code) over the fixed validation windows."""
        if self.val is None:
            return {}
        device = next(self.model.parameters()).device
        autocast: contextlib.AbstractContextManager = contextlib.nullcontext()
        if device.type == "cuda" and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            autocast = torch.autocast(device_type="cuda", dtype=dtype)
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        try:
            for i in range(self.val_batches):
                batch = {k: v.to(device) for k, v in self.val.batch(VAL_SEED, i, self.batch_size).items()}
                with autocast:
                    loss, metrics = self._forward(self.model, batch)
                for name, value in {"loss": loss, **metrics}.items():
                    sums[name] = sums.get(name, 0.0) + float(value)
        finally:
            self.model.train(was_training)
        self.last_val = {name: total / self.val_batches for name, total in sums.items()}
        return self.last_val

    def log_media(self, writer: Any, step: int) -> None:
        """Validation losses (the engine calls this every `media_every` steps, on rank 0)."""
        level = self.model.config.level
        for name, value in self.validate().items():
            writer.add_scalar(f"val/{name}_level{level}", value, step)
        if self.last_val:
            logger.info("step %d validation: %s", step, " ".join(f"{k} {v:.4g}" for k, v in self.last_val.items()))


# --- configs and label ids ------------------------------------------------------------------------------------
_VQVAE_FIELDS = ("levels", "downs_t", "strides_t", "bins", "sample_rate")


def _describe(values: dict[str, Any]) -> str:
    return (
        f"{values['levels']} levels, downs_t {list(values['downs_t'])}, strides_t {list(values['strides_t'])}, "
        f"{values['bins']} codes at {values['sample_rate']} Hz"
    )


def fit_to_vqvae(config: PriorConfig, vqvae: VQVAEConfig, *, adapt: bool, what: str, vqvae_dir: Path) -> PriorConfig:
    """`config` checked against (or, with `adapt`, given) the VQ-VAE's levels, hops, code count and rate."""
    theirs = dict(
        levels=vqvae.levels,
        downs_t=tuple(vqvae.downs_t),
        strides_t=tuple(vqvae.strides_t),
        bins=vqvae.l_bins,
        sample_rate=vqvae.sample_rate,
    )
    ours = {name: getattr(config, name) for name in _VQVAE_FIELDS}
    if ours == theirs:
        return config
    if not adapt:
        raise OpenJukeboxError(
            f"{what} was made for a VQ-VAE with {_describe(ours)}; {vqvae_dir} has {_describe(theirs)}"
        )
    labels = config.labels
    if labels is not None and labels.timing:  # our presets' shortest song is one window
        hop = vqvae.hop_lengths[config.level] if config.level < vqvae.levels else 1
        labels = replace(labels, min_duration=round(config.n_ctx * hop / vqvae.sample_rate, 2))
    try:
        return replace(config, **theirs, labels=labels)
    except ValueError as e:
        raise OpenJukeboxError(f"{what} does not fit the VQ-VAE in {vqvae_dir}: {e}") from None


def extend_vocabulary(saved: Vocabulary, dataset: Vocabulary) -> Vocabulary:
    """`saved` with the names of `dataset` it does not know appended: existing ids never change."""
    added = [(n, c) for n, c in zip(dataset.names[1:], dataset.counts[1:], strict=True) if n not in saved]
    if not added:
        return saved
    return Vocabulary(saved.names + tuple(n for n, _ in added), saved.counts + tuple(c for _, c in added), saved.kind)


def lyrics_vocab(config: PriorConfig) -> LyricsVocab:
    """The character table of a lyric prior: v3 (79 tokens, 1b_lyrics) or v2 (80)."""
    if config.lyrics is not None and config.lyrics.n_vocab == VOCAB_V3.n_vocab:
        return VOCAB_V3
    return VOCAB_V2


def timing_range(config: PriorConfig) -> dict[str, Any]:
    """CodeCrops' song length limits (samples) for a top prior's timing embeddings (none without timing)."""
    labels = config.labels
    if labels is None or not labels.timing:
        return {}
    assert labels.min_duration is not None and labels.max_duration is not None
    return dict(
        min_length=math.ceil(labels.min_duration * config.sample_rate),
        max_length=math.floor(labels.max_duration * config.sample_rate),
    )


def grow_to_vocabularies(model: Prior, artists: Vocabulary, genres: Vocabulary, seed: int) -> None:
    """Grow the label tables of `model` (ours ids) so the vocabularies fit; existing rows are untouched."""
    labels = model.config.labels
    assert labels is not None
    artist_bins, genre_bins = max(labels.artist_bins, len(artists)), max(labels.genre_bins, len(genres))
    if (artist_bins, genre_bins) != (labels.artist_bins, labels.genre_bins):
        logger.info(
            "label tables grow from %d artists, %d genres to %d, %d",
            labels.artist_bins,
            labels.genre_bins,
            artist_bins,
            genre_bins,
        )
        model.grow_labels(artist_bins, genre_bins, generator=torch.Generator().manual_seed(seed))


# --- the command ----------------------------------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset folder (indexed and encoded) or its index file")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, TensorBoard logs (tb/), weights")
    p.add_argument(
        "--level",
        type=int,
        help="0 (bottom upsampler), 1 (middle upsampler) or 2 (top prior); default: the preset's (2 for small/tiny)",
    )
    p.add_argument("--preset", help=f"model: {', '.join(PRESET_NAMES)} (default: small)")
    p.add_argument("--init", type=Path, help="start from this saved prior folder (fine-tuning)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--vqvae", type=Path, help="the VQ-VAE whose codes to model (default: the imported official VQ-VAE)")
    p.add_argument("--cache", type=Path, help="code cache folder (default: DATA/.openjukebox-codes)")
    p.add_argument("--ids", type=Path, help="folder of the official artist/genre id tables (v2/v3 priors)")
    add_schedule_arguments(p, "windows")
    p.add_argument(
        "--weight-decay", type=float, default=0.0, help="decoupled weight decay (Jukebox used 0.01 for priors)"
    )
    p.add_argument(
        "--lyric-jitter",
        type=int,
        default=0,
        help="move each training lyric window of a song with word timings by up to this many characters, so the "
        "prior learns to find the sung words in the lyrics (sampling and alignment use the linear rule's windows)",
    )
    p.add_argument(
        "--label-dropout",
        type=float,
        default=0.0,
        help="share of training windows whose artist and genre are replaced by 'unknown', so that the prior can be "
        "sampled with classifier-free guidance (`openjukebox sample --guidance`); default 0, as the original",
    )
    p.add_argument(
        "--balance",
        choices=BALANCES,
        default="length",
        help="how a training window's song is drawn: by its length (default, as the original), or every genre "
        "(first genre tag) or every artist the same share of the windows, then by length",
    )
    p.add_argument(
        "--align-loss",
        type=float,
        default=0.0,
        help="weight of the alignment loss (lyrics priors; songs with word timings): train the config's alignment "
        "head to attend to the character being sung; default 0, as the original",
    )
    p.add_argument("--val-every", type=int, default=500, help="validation loss every N steps (0 = never)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the songs held out for validation")
    p.add_argument("--val-batches", type=int, default=4, help="batches in one validation pass")
    p.add_argument("--workers", type=int, default=1, help="data loader processes prefetching windows")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the windows")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run_config(args: argparse.Namespace, vqvae: VQVAEConfig, vqvae_dir: Path) -> PriorConfig:
    """The config a run starts from: the resumed run's, the --init prior's, or a preset fitted to the VQ-VAE."""
    from openjukebox.checkpoints.prior import load_prior_config

    if args.resume:
        config, what = load_prior_config(args.out), f"the run in {args.out}"
    elif args.init:
        config, what = load_prior_config(args.init), f"the prior in {args.init}"
    else:
        name = args.preset or "small"
        config, what = prior_preset(name, args.level), f"prior preset {name!r}"
    if args.level is not None and args.level != config.level:
        raise OpenJukeboxError(f"--level {args.level}: {what} is a level-{config.level} model")
    # Our own presets take the VQ-VAE's code count and hops; released presets and saved priors must match it.
    own = not (args.resume or args.init) and (config.labels is None or config.labels.ids == "ours")
    return fit_to_vqvae(config, vqvae, adapt=own, what=what, vqvae_dir=vqvae_dir)


def model_and_labels(
    args: argparse.Namespace, config: PriorConfig, index: Any
) -> tuple[Prior, Any, Vocabulary | None, Vocabulary | None]:
    """(model, label ids for CodeCrops, artists, genres): label tables sized (new run) or grown (--init) to fit
    the vocabularies; official ids for the released label sets."""
    from openjukebox.checkpoints.prior import load_prior, load_vocabularies
    from openjukebox.data.official_ids import load_official_ids
    from openjukebox.data.songs import OfficialIds, VocabularyIds, build_vocabularies

    labels = config.labels
    ids: Any = None
    artists = genres = None
    if labels is not None and labels.ids != "ours":
        ids = OfficialIds(*load_official_ids(labels.ids, args.ids))
    elif labels is not None and args.resume:
        vocabs = load_vocabularies(args.out)
        if vocabs is None:
            raise OpenJukeboxError(f"{args.out}: no artists.json/genres.json; is this a prior run folder?")
        artists, genres = vocabs
    elif labels is not None:
        artists, genres = build_vocabularies(index)
        if args.init:
            saved = load_vocabularies(args.init)
            if saved is None:
                raise OpenJukeboxError(f"{args.init}: a prior with its own label ids needs artists.json, genres.json")
            grown = extend_vocabulary(saved[0], artists), extend_vocabulary(saved[1], genres)
            added = len(grown[0]) - len(saved[0]), len(grown[1]) - len(saved[1])
            if any(added):
                logger.info("new in this dataset: %d artists, %d genre words (appended to the vocabularies)", *added)
            artists, genres = grown
        else:
            bins = max(labels.artist_bins, len(artists)), max(labels.genre_bins, len(genres))
            config = with_label_bins(config, *bins)
    if artists is not None and genres is not None:
        ids = VocabularyIds(artists, genres)

    if args.init and not args.resume:
        model = load_prior(args.init).train()
        if artists is not None and genres is not None:
            grow_to_vocabularies(model, artists, genres, args.seed)
        logger.info("fine-tuning from %s", args.init)
    else:
        torch.manual_seed(args.seed)
        model = Prior(config)
    return model, ids, artists, genres


def _check_data_settings(args: argparse.Namespace) -> None:
    """On resume, the split of the songs, the lyric jitter, the label dropout and the balance must be those the run
    started with (a run from before a setting existed had its default)."""
    path = args.out / DATA_SETTINGS_FILE
    if args.resume and path.is_file():
        saved = read_json_object(path)
        for key, (option, default) in DATA_SETTINGS.items():
            value = getattr(args, key)
            if saved.get(key, default) != value:
                raise OpenJukeboxError(
                    f"cannot resume: the run started with {option} {saved.get(key, default)}, not {value}; "
                    "pass the same value"
                )


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_prior(args: argparse.Namespace) -> None:
    from openjukebox.checkpoints.paths import resolve_vqvae_dir
    from openjukebox.checkpoints.prior import save_prior
    from openjukebox.data.code_cache import DEFAULT_CACHE_NAME, CodeCache, vqvae_fingerprint
    from openjukebox.data.index import open_index
    from openjukebox.train.config import train_config_from_args
    from openjukebox.train.engine import Trainer

    if args.resume and args.init:
        raise OpenJukeboxError("--resume and --init exclude each other")
    if args.preset is not None and (args.resume or args.init):
        raise OpenJukeboxError("--preset is for new runs; --init and --resume take the saved model's config")
    if args.resume and not (args.out / "latest.json").is_file():
        raise OpenJukeboxError(f"nothing to resume in {args.out}: no latest.json (start a run without --resume)")
    if not args.resume and (args.out / "latest.json").exists():
        raise OpenJukeboxError(f"{args.out}: holds a run already; pass --resume to continue it or choose another --out")
    if not 0.0 <= args.val_fraction < 1.0:
        raise OpenJukeboxError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    train_config = train_config_from_args(args, media_every=args.val_every)
    vqvae_dir = resolve_vqvae_dir(args.vqvae)
    vqvae = VQVAEConfig.from_dict(read_config(vqvae_dir, "vqvae"))
    _check_data_settings(args)
    config = run_config(args, vqvae, vqvae_dir)
    check_align_loss(config, args.align_loss)  # before the data is read

    with open_index(args.data) as index:
        model, ids, artists, genres = model_and_labels(args, config, index)
        c = model.config  # label tables may have grown
        data_dir = args.data if args.data.is_dir() else index.root
        cache = CodeCache(args.cache or data_dir / DEFAULT_CACHE_NAME, vqvae_fingerprint(vqvae_dir))
        max_genres = c.labels.max_bow_genre_size if c.labels is not None else 1
        kw: dict[str, Any] = dict(n_tokens=c.n_tokens, lyrics_vocab=lyrics_vocab(c), max_genres=max_genres)
        kw.update(lyric_jitter=args.lyric_jitter, label_dropout=args.label_dropout, balance=args.balance)
        kw.update(sung_keys=args.align_loss > 0)
        kw.update(timing_range(c))
        # The held-out songs depend on --val-fraction only (not on whether validation runs), so that the training
        # windows of a resumed run are the same as before.
        songs = CodeCrops(index, cache, c.level, c.n_ctx, ids, val_fraction=args.val_fraction, **kw)
    data = songs.subset("train") if args.val_fraction > 0 else songs
    if args.align_loss > 0 and not any(s.labels is not None and s.labels.words for s in data.songs):
        raise OpenJukeboxError(
            "--align-loss: none of the training songs has word timings (a 'words' list in its .json sidecar, as "
            "`openjukebox data synth` writes)"
        )
    val = None
    if args.val_fraction > 0 and args.val_every > 0:
        try:
            val = songs.subset("val")
        except OpenJukeboxError as e:
            logger.warning("no validation: %s", e)
    logger.info("training data: %s; validation: %s", data, val)
    if val is None:
        train_config = train_config.replace(media_every=0)

    if _is_rank0():
        args.out.mkdir(parents=True, exist_ok=True)
        if artists is not None and genres is not None and not args.resume:
            from openjukebox.checkpoints.prior import ARTISTS_FILE, GENRES_FILE

            artists.save(args.out / ARTISTS_FILE)  # with the run from the start: every checkpoint is usable
            genres.save(args.out / GENRES_FILE)
        if not args.resume:
            write_json_atomic(args.out / DATA_SETTINGS_FILE, {key: getattr(args, key) for key in DATA_SETTINGS})
    task = PriorTask(
        model, data, args.batch_size, args.seed, val=val, val_batches=args.val_batches, precision=args.precision,
        align_loss=args.align_loss,
    )  # fmt: skip
    trainer = Trainer(
        task, train_config, args.out, resume=args.resume, device=args.device, progress=not args.no_progress
    )
    result = trainer.fit()
    if not _is_rank0():
        return
    if result.interrupted:
        print(f"stopped at step {result.step}; continue with the same command plus --resume")
        return
    save_prior(args.out, model, artists, genres)  # the run folder is a prior folder (with its vocabularies)
    music = result.metrics.get("music_loss")
    summary = f" (music loss {music:.3f} bits/token)" if music is not None else ""
    print(f"trained the level-{c.level} prior for {result.step} steps{summary} -> {args.out}")
