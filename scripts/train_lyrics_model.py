"""Train a lyric model on the synthetic corpus, from nothing to a model folder `openjukebox align` (and, with
upsamplers, `openjukebox sample`) can use.

    python scripts/train_lyrics_model.py --work runs/lyrics --quick           # plumbing check: minutes on 2 CPUs
    python scripts/train_lyrics_model.py --work runs/demo --preset demo       # the demo model (scripts/train_demo.sh)
    python scripts/train_lyrics_model.py --work runs/lyrics --device cuda     # the real recipe (default preset)
    python scripts/train_lyrics_model.py --work runs/lyrics --vqvae runs/vqvae   # reuse a trained VQ-VAE

Steps (each is skipped when its output is already there, so a stopped run continues where it stopped; the
training steps themselves resume from their latest checkpoint with `--resume`):

1. `openjukebox data synth`: --songs + --dev-songs + --test-songs songs with one seed into WORK/synth; the songs
   are split by index: the first --songs are the training corpus (WORK/corpus/synth), the next --dev-songs are held out
   for choosing the alignment head (WORK/dev), the last --test-songs are held out for `bench/align.py eval`
   (WORK/test). Held-out songs are never indexed, encoded or trained on. (The synth plan cycles through all 24
   artists every 24 songs, so with --songs >= 24 every held-out artist is known to the prior; with fewer, an
   unknown artist is labelled with id 0 by the bench.)
   With --music (the demo preset), the Wesnoth soundtrack (`make music-deps`) is linked into WORK/corpus/wesnoth.
2. `openjukebox data index WORK/corpus`.
3. `openjukebox vqvae train` (WORK/runs/vqvae), unless --vqvae gives one to reuse.
4. `openjukebox data encode WORK/corpus --vqvae ...`.
5. `openjukebox prior train --level 2` (WORK/runs/prior_level_2): the lyric top prior. It trains on the corpus's
   sidecar word timings (lyric windows from the sung words, `data.lyrics.lyric_window_from_words`, moved by up
   to --lyric-jitter characters). With --upsampler-steps > 0 the two upsamplers (levels 1 and 0) train at the
   same time, one CPU thread per process. A run is marked DONE only when it reached its last step; one stopped by
   SIGTERM or Ctrl-C continues from its checkpoint when the recipe is run again.
   With --guided-steps N (the demo preset), the top prior then trains N more steps from its weights (`--init`,
   WORK/runs/prior_level_2_guided) with --label-dropout, so that it can be sampled with classifier-free guidance
   (`openjukebox sample --guidance`); that run is the model's top prior. With --guided-upsampler-steps M, each
   upsampler likewise trains M more steps (WORK/runs/prior_level_N_guided, at --guided-upsampler-lr, windows
   drawn by --upsampler-balance: `genre` gives every genre the same share, so that the two hours of orchestral
   Wesnoth music do not outweigh the sung songs), side by side with the top prior's. With --aligned-steps K,
   the top prior then trains K more steps from those weights (WORK/runs/prior_level_2_aligned, at --aligned-lr,
   label dropout as before) with the alignment loss (`prior train --align-loss`, weight --align-loss): its
   alignment head learns to attend to the character being sung, from the synth songs' word timings. The last
   stage with steps is the model's level.
6. The model folder WORK/model: vqvae/ and prior_level_N/ (config, weights, artist/genre vocabularies) copied
   from the run folders (without their checkpoints and logs). WORK/recipe.json records settings and timings.
7. `bench/align.py choose-head --model WORK/model --songs WORK/dev`: the lyric layer/head whose attention is most
   monotonic on the dev songs (`align.choose_alignment_head`) is stored in prior_level_2/config.json
   (`with_alignment` + `checkpoints.prior.save_prior`, keeping the vocabularies). Skipped when the top prior
   comes from the aligned run: its config's head is the one the alignment loss trained (the monotonicity score
   picked another head, whose word onsets were 6.4 s off where the trained head's were 1.4 s; BENCHMARKS.md).
8. `bench/align.py eval --model WORK/model --songs WORK/test --json WORK/align.json`: word-onset error vs the
   linear baseline (skip with --no-eval).

The quick and default presets train no upsamplers: alignment reads only the VQ-VAE and the top prior
(`openjukebox align --model WORK/model`). For `openjukebox sample`, add --upsampler-steps N.

Presets (any option overrides them):

- `--quick`: 12 / 1 / 2 songs (train / dev / test); VQ-VAE `tiny`, 150 steps x 2 crops; prior `tiny` (n_ctx 64 =
  0.19 s, 16 lyric tokens), 150 steps x 4 windows. Measured: 2 minutes with OMP_NUM_THREADS=1 on a 2-core
  AMD EPYC VM (synth 12 s, VQ-VAE 73 s, encode 14 s, prior 5 s, head 6 s, eval 5 s; BENCHMARKS.md).
- `--preset demo`: 136 / 8 / 16 songs plus the 41 Wesnoth tracks; VQ-VAE `demo` 2400 steps x 4 crops; top prior
  `demo` (n_ctx 512 = 1.5 s, 128 lyric tokens, --lyric-jitter 24) 12 000 steps x 8 windows and upsamplers `demo`
  (8 layers of width 128) 24 000 steps, lr 5e-4 with cosine decay; then, with label dropout 0.2, 12 000 steps of
  the top prior and 6000 of each upsampler (lr 2e-4, genre-balanced windows); then 16 000 steps of the top prior
  with the alignment loss (weight 0.3, lr 2e-4). About 3 h 45 min on 2 CPU cores, estimated from its parts
  (MODEL_CARD.md): VQ-VAE 41 min; the three priors side by side about 95 min (each upsampler 0.175 s a step on one
  core, 70 min of it; the top prior ~45 min of one core); the guided steps about 50 min (the upsamplers' 6000
  steps took 18 min side by side; the top prior's 12 000 took 25 min on both cores alone); the aligned steps
  33 min on both cores. Without the aligned steps (`--aligned-steps 0`) the median word-onset error on the
  held-out songs was 6.2 s, worse than spreading the words evenly (2.1 s); with them, 0.26 s (BENCHMARKS.md).
- default: 480 / 8 / 24 songs; VQ-VAE `small`, 20 000 steps x 4 crops of 1.5 s; prior `small` (n_ctx 1024 =
  3 s, 128 lyric tokens, 10 layers of width 256), 40 000 steps x 8 windows. Meant for a GPU (`--device cuda
  --precision bf16`; `vqvae train` picks CUDA by itself). Measured on one CPU thread (same VM): VQ-VAE `small`
  3.5 s per step of 4 crops (20 000 steps ~ 19 h), prior `small` 0.31 s per step of 2 windows (~1.2 s at 8:
  40 000 steps ~ 14 h); synth ~1 s per song per core (480 songs ~ 4 h of audio: ~5 min on 2 cores). A GPU run
  is expected to take a few hours in all (not measured yet). Check the rate with a short run first (e.g.
  --vqvae-steps 200 --prior-steps 200, steps/s in the log).

The quick preset proves the plumbing only: its prior is far too small (a 0.19 s window, 16 lyric characters) and
too short-trained to learn alignment, so its onset error is not expected to beat the linear baseline. The default
preset is the real evaluation (goal: median onset error <= 0.3 s, clearly better than the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MUSIC_PACKAGE = "wesnoth-1.16-music"  # GPL-2+, 41 tracks, 44.1 kHz Ogg Vorbis with artist/genre tags
MUSIC_DIR = Path("/usr/share/games/wesnoth/1.16/data/core/music")

# Every preset has every key; a command-line option of the same name overrides it.
_COMMON = dict(
    decay="none",
    prior_lr=3e-4,
    prior_warmup_steps=100,
    lyric_jitter=0,
    guided_steps=0,
    label_dropout=0.0,
    upsampler_steps=0,
    upsampler_batch_size=8,
    guided_upsampler_steps=0,
    guided_upsampler_lr=2e-4,
    upsampler_balance="length",
    aligned_steps=0,
    aligned_lr=2e-4,
    align_loss=0.3,
    music=False,
)
PRESETS: dict[str, dict[str, object]] = {
    "quick": dict(
        _COMMON,
        songs=12,
        dev_songs=1,
        test_songs=2,
        vqvae_preset="tiny",
        vqvae_steps=150,
        vqvae_batch_size=2,
        prior_preset="tiny",
        prior_steps=150,
        prior_batch_size=4,
        save_every=1000,
    ),
    # The bundled demo model (scripts/train_demo.sh): the whole hierarchy on 2 CPU cores in about 3 h 45 min.
    "demo": dict(
        _COMMON,
        songs=136,
        dev_songs=8,
        test_songs=16,
        music=True,
        vqvae_preset="demo",
        vqvae_steps=2400,
        vqvae_batch_size=4,
        prior_preset="demo",
        prior_steps=12_000,
        prior_batch_size=8,
        upsampler_steps=24_000,
        decay="cosine",
        prior_lr=5e-4,
        prior_warmup_steps=500,
        lyric_jitter=24,
        guided_steps=12_000,
        label_dropout=0.2,
        guided_upsampler_steps=6000,
        upsampler_balance="genre",
        aligned_steps=16_000,
        save_every=1000,
    ),
    "default": dict(
        _COMMON,
        songs=480,
        dev_songs=8,
        test_songs=24,
        vqvae_preset="small",
        vqvae_steps=20_000,
        vqvae_batch_size=4,
        prior_preset="small",
        prior_steps=40_000,
        prior_batch_size=8,
        save_every=1000,
    ),
}


def log(message: str) -> None:
    print(f"[train_lyrics_model {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], timings: dict[str, float], name: str) -> None:
    """Run one step as a subprocess (its output goes straight to ours); a failure stops the recipe."""
    run_parallel([(name, cmd, None)], timings)


def finished(run_dir: Path, steps: int) -> bool:
    """Whether a training run folder's latest checkpoint is at (or past) `steps`."""
    latest = run_dir / "latest.json"
    return latest.is_file() and int(json.loads(latest.read_text()).get("step", -1)) >= steps


# A step: (name, command, (training run folder, its steps) or None for a step that is not a training run).
Step = tuple[str, list[str], tuple[Path, int] | None]


def run_parallel(steps: list[Step], timings: dict[str, float]) -> None:
    """Run steps side by side (one CPU thread each when there are several); wait for all; any failure stops.
    A training run that reached its last step is marked DONE (a rerun of the recipe then skips it); one stopped
    early (SIGTERM, Ctrl-C) is a failure, continued from its checkpoint by a rerun."""
    env = dict(os.environ, OMP_NUM_THREADS="1") if len(steps) > 1 else None
    t0 = time.perf_counter()
    procs = []
    for name, cmd, training in steps:
        log(f"{name}: {' '.join(cmd)}")
        procs.append((name, training, subprocess.Popen(cmd, cwd=REPO, env=env)))
    failed = []
    for name, training, proc in procs:
        code = proc.wait()
        timings[name] = time.perf_counter() - t0
        log(f"{name}: {'done' if code == 0 else f'failed (exit {code})'} after {timings[name]:.0f} s")
        if code != 0:
            failed.append(f"{name!r} (exit {code})")
        elif training is not None:
            run_dir, n_steps = training
            if finished(run_dir, n_steps):
                (run_dir / "DONE").touch()
            else:  # stopped by SIGTERM / Ctrl-C: its checkpoint is there, a rerun continues it
                failed.append(f"{name!r} (stopped before step {n_steps})")
    if failed:
        raise SystemExit(f"train_lyrics_model: error: step {', '.join(failed)} failed")


def save_recipe(work: Path, settings: dict[str, object], timings: dict[str, float]) -> None:
    """WORK/recipe.json: the settings and how long each step took (merged with earlier runs of the recipe, whose
    finished steps are skipped), for the record; the model card takes training times from the TensorBoard logs."""
    path = work / "recipe.json"
    old = json.loads(path.read_text()).get("timings_s", {}) if path.is_file() else {}
    record = {
        "settings": settings,
        "timings_s": {**old, **{k: round(v, 1) for k, v in timings.items()}},
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores".strip(),
        "updated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def openjukebox(*args: str) -> list[str]:
    return [sys.executable, "-m", "openjukebox.cli", *args]


def split_songs(synth: Path, work: Path, n_train: int, n_dev: int, n_test: int) -> None:
    """Move the synth songs (by index) into corpus/synth/, dev/ and test/ (audio + sidecar; the stems stay)."""
    splits = (("corpus/synth", 0, n_train), ("dev", n_train, n_train + n_dev), ("test", n_train + n_dev, None))
    for name, lo, hi in splits:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(lo, hi if hi is not None else n_train + n_dev + n_test):
            for suffix in (".flac", ".json"):
                src = synth / f"song_{index:04d}{suffix}"
                if src.exists():
                    shutil.move(src, folder / src.name)


def copy_checkpoint(run_dir: Path, dest: Path) -> None:
    """A run folder's final weights, config and vocabularies (no checkpoints/, tb/), as a checkpoint folder."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "artists.json", "genres.json", "bandwidth.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, dest / name)


def link_music(source: Path, dest: Path) -> int:
    """Symbolic links in `dest` to every .ogg of the Wesnoth music folder (the files stay where apt put them)."""
    tracks = sorted(source.glob("*.ogg")) if source.is_dir() else []
    if not tracks:
        raise SystemExit(f"train_lyrics_model: error: no music in {source}; run `make music-deps` (apt package "
                         f"{MUSIC_PACKAGE}) or pass --no-music")  # fmt: skip
    dest.mkdir(parents=True, exist_ok=True)
    for track in tracks:
        link = dest / track.name
        if not link.is_symlink():
            link.symlink_to(track)
    return len(tracks)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="working folder: data, runs, model/")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="sizes and steps (default: default)")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--seed", type=int, default=0, help="seed of the synth corpus and of the training runs")
    p.add_argument("--songs", type=int, help="training songs")
    p.add_argument("--dev-songs", type=int, help="held-out songs for choosing the alignment head")
    p.add_argument("--test-songs", type=int, help="held-out songs for bench/align.py eval")
    p.add_argument("--music", action=argparse.BooleanOptionalAction, help=f"add the {MUSIC_PACKAGE} tracks")
    p.add_argument("--vqvae", type=Path, help="reuse this trained VQ-VAE folder (skips VQ-VAE training)")
    p.add_argument("--vqvae-preset", help="tiny, demo, small or official")
    p.add_argument("--vqvae-steps", type=int)
    p.add_argument("--vqvae-batch-size", type=int)
    p.add_argument("--decay", choices=("none", "linear", "cosine"), help="learning-rate decay of every run")
    p.add_argument("--prior-preset", help="tiny, demo or small (our own label ids)")
    p.add_argument("--prior-steps", type=int)
    p.add_argument("--prior-batch-size", type=int)
    p.add_argument("--prior-lr", type=float, help="peak learning rate of the priors")
    p.add_argument("--prior-warmup-steps", type=int)
    p.add_argument("--lyric-jitter", type=int, help="top prior: move training lyric windows by up to N characters")
    p.add_argument(
        "--guided-steps",
        type=int,
        help="then train the top prior this many more steps with --label-dropout, for classifier-free guidance",
    )
    p.add_argument("--label-dropout", type=float, help="share of unlabelled windows in the guided runs")
    p.add_argument("--upsampler-steps", type=int, help="0: no upsamplers (alignment needs only the top prior)")
    p.add_argument("--upsampler-batch-size", type=int)
    p.add_argument(
        "--guided-upsampler-steps",
        type=int,
        help="then train each upsampler this many more steps with --label-dropout and --upsampler-balance",
    )
    p.add_argument("--guided-upsampler-lr", type=float, help="peak learning rate of the upsamplers' guided runs")
    p.add_argument(
        "--upsampler-balance", choices=("length", "genre", "artist"), help="window draw of the upsamplers' guided runs"
    )
    p.add_argument("--aligned-steps", type=int, help="then train the top prior N more steps with --align-loss")
    p.add_argument("--aligned-lr", type=float, help="peak learning rate of the aligned run")
    p.add_argument("--align-loss", type=float, help="weight of the alignment loss in the aligned run")
    p.add_argument("--save-every", type=int, help="training checkpoints every N steps")
    p.add_argument("--device", help="cpu or cuda for the priors and the alignment (default: cuda if available)")
    p.add_argument("--precision", default="fp32", help="training precision: fp32, or bf16 on a GPU")
    p.add_argument("--no-eval", action="store_true", help="stop after storing the alignment head")
    return p


def train_prior(s: dict[str, object], args: argparse.Namespace, work: Path, level: int, vqvae_dir: Path) -> Step | None:
    """The `prior train` step of one level, or None when it is already trained (marked DONE)."""
    out = work / "runs" / f"prior_level_{level}"
    if (out / "model.safetensors").is_file() and (out / "DONE").is_file():
        log(f"prior level {level}: {out} already trained")
        return None
    kind = "prior" if level == 2 else "upsampler"
    steps, batch = s[f"{kind}_steps"], s[f"{kind}_batch_size"]
    # a stopped run continues from its checkpoint (its saved config, so no --preset)
    resume = ["--resume"] if (out / "checkpoints").is_dir() else ["--preset", str(s["prior_preset"])]
    device = ["--device", args.device] if args.device else []
    cmd = openjukebox(
        "prior", "train", "--data", str(work / "corpus"), "--vqvae", str(vqvae_dir), "--out", str(out),
        "--level", str(level), "--steps", str(steps), "--batch-size", str(batch),
        "--lr", str(s["prior_lr"]), "--warmup-steps", str(s["prior_warmup_steps"]), "--decay", str(s["decay"]),
        "--decay-start", str(s["prior_warmup_steps"]), "--save-every", str(s["save_every"]),
        "--val-every", "0", "--val-fraction", "0", "--seed", str(args.seed), "--precision", args.precision,
        "--no-progress", *device, *resume,
    )  # fmt: skip
    if level == 2:
        cmd += ["--lyric-jitter", str(s["lyric_jitter"])]
    return f"prior level {level}", cmd, (out, int(steps))


# The runs that continue each level's first run, in order: each starts from the weights of the one before it.
STAGES = ("guided", "aligned")


def stage_run(s: dict[str, object], work: Path, level: int, stage: str) -> tuple[Path, int]:
    """A continued run of one level (runs/prior_level_N_<stage>) and its steps (0: the level has none; the
    aligned stage is the top prior's only)."""
    key = f"{stage}_steps" if level == 2 else "guided_upsampler_steps" if stage == "guided" else None
    steps = int(s[key]) if key else 0
    return work / "runs" / f"prior_level_{level}_{stage}", steps


def model_run(s: dict[str, object], work: Path, level: int, before: str | None = None) -> Path:
    """The run folder whose weights are the level's model: its last stage with steps (before `before`, if given),
    else its first run."""
    run = work / "runs" / f"prior_level_{level}"
    for stage in STAGES[: STAGES.index(before)] if before else STAGES:
        out, steps = stage_run(s, work, level, stage)
        if steps > 0:
            run = out
    return run


def train_stage(
    s: dict[str, object], args: argparse.Namespace, work: Path, level: int, vqvae_dir: Path, stage: str
) -> Step | None:
    """The step that continues one level's prior (`--init` from the run before) with label dropout, so that
    `sample --guidance` can sample it; None when the level has no such steps or they are done (DONE).
    `guided`: the level's first continuation (the top prior as before, the upsamplers at --guided-upsampler-lr
    with --upsampler-balance windows). `aligned`: then the top prior at --aligned-lr with the alignment loss."""
    out, steps = stage_run(s, work, level, stage)
    if steps <= 0:
        return None
    if (out / "model.safetensors").is_file() and (out / "DONE").is_file():
        log(f"{stage} level {level}: {out} already trained")
        return None
    start = ["--resume"] if (out / "checkpoints").is_dir() else ["--init", str(model_run(s, work, level, stage))]
    device = ["--device", args.device] if args.device else []
    warmup = str(min(200, steps // 10))
    batch = s["prior_batch_size"] if level == 2 else s["upsampler_batch_size"]
    extra = ["--lyric-jitter", str(s["lyric_jitter"])] if level == 2 else []
    if stage == "aligned":
        lr, balance = s["aligned_lr"], "length"
        extra += ["--align-loss", str(s["align_loss"])]
    elif level == 2:
        lr, balance = s["prior_lr"], "length"
    else:
        lr, balance = s["guided_upsampler_lr"], s["upsampler_balance"]
    seed = args.seed + 1 + STAGES.index(stage)  # each stage its own window stream
    cmd = openjukebox(
        "prior", "train", "--data", str(work / "corpus"), "--vqvae", str(vqvae_dir), "--out", str(out),
        "--level", str(level), "--steps", str(steps), "--batch-size", str(batch),
        "--lr", str(lr), "--warmup-steps", warmup, "--decay", str(s["decay"]), "--decay-start", warmup,
        "--save-every", str(s["save_every"]), "--val-every", "0", "--val-fraction", "0", "--seed", str(seed),
        "--precision", args.precision, "--no-progress", "--label-dropout", str(s["label_dropout"]),
        "--balance", str(balance), *extra, *device, *start,
    )  # fmt: skip
    return f"{stage} level {level}", cmd, (out, steps)


def aligned_head(s: dict[str, object], work: Path) -> bool:
    """Whether the model's top prior comes from the aligned run, whose config names the head the alignment loss
    trained: then that head is kept (the monotonicity score of choose-head prefers an untrained one)."""
    return model_run(s, work, 2) == stage_run(s, work, 2, "aligned")[0]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = dict(PRESETS["quick" if args.quick else args.preset])
    for key in settings:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    s = settings
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    device = ["--device", args.device] if args.device else []
    timings: dict[str, float] = {}
    log(f"settings: {s}")
    n_train, n_dev, n_test = int(s["songs"]), int(s["dev_songs"]), int(s["test_songs"])
    if n_train < 1 or n_dev < 1 or n_test < 1:
        raise SystemExit("train_lyrics_model: error: --songs, --dev-songs and --test-songs must be >= 1")

    corpus, dev, test = work / "corpus", work / "dev", work / "test"
    if not (test / f"song_{n_train + n_dev + n_test - 1:04d}.json").is_file():
        synth = work / "synth"
        total = str(n_train + n_dev + n_test)
        run(
            openjukebox("data", "synth", "--out", str(synth), "--songs", total, "--seed", str(args.seed)),
            timings,
            "synth",
        )
        split_songs(synth, work, n_train, n_dev, n_test)
    else:
        log("synth: corpus, dev and test songs already there")
    if s["music"]:
        log(f"music: {link_music(MUSIC_DIR, corpus / 'wesnoth')} tracks of {MUSIC_PACKAGE} linked into {corpus}")

    run(openjukebox("data", "index", str(corpus)), timings, "index")

    if args.vqvae is not None:
        vqvae_dir = args.vqvae.resolve()
        log(f"vqvae: reusing {vqvae_dir}")
    else:
        vqvae_dir = work / "runs" / "vqvae"
        if (vqvae_dir / "model.safetensors").is_file() and (vqvae_dir / "DONE").is_file():
            log(f"vqvae: {vqvae_dir} already trained")
        else:
            resume = ["--resume"] if (vqvae_dir / "checkpoints").is_dir() else []
            cmd = openjukebox(
                "vqvae", "train", "--data", str(corpus), "--out", str(vqvae_dir), "--preset", str(s["vqvae_preset"]),
                "--steps", str(s["vqvae_steps"]), "--batch-size", str(s["vqvae_batch_size"]),
                "--decay", str(s["decay"]), "--decay-start", "100", "--save-every", str(s["save_every"]),
                "--media-every", "0", "--seed", str(args.seed), "--no-progress", "--precision", args.precision, *resume,
            )  # fmt: skip
            run(cmd, timings, "vqvae train")
            (vqvae_dir / "DONE").touch()
            save_recipe(work, s, timings)

    run(openjukebox("data", "encode", str(corpus), "--vqvae", str(vqvae_dir)), timings, "encode")

    # The top prior and the upsamplers are independent: on a CPU they train side by side, one thread each.
    levels = (2, 1, 0) if int(s["upsampler_steps"]) > 0 else (2,)
    steps = [step for level in levels if (step := train_prior(s, args, work, level, vqvae_dir)) is not None]
    if steps:
        run_parallel(steps, timings)
    save_recipe(work, s, timings)

    # Then the levels with guided steps continue from those weights with label dropout, side by side too, and
    # then the top prior's aligned steps from those (STAGES).
    for stage in STAGES:
        steps = [step for level in levels if (step := train_stage(s, args, work, level, vqvae_dir, stage)) is not None]
        if steps:
            run_parallel(steps, timings)
        save_recipe(work, s, timings)

    model = work / "model"
    copy_checkpoint(vqvae_dir, model / "vqvae")
    for level in levels:
        copy_checkpoint(model_run(s, work, level), model / f"prior_level_{level}")
    log(f"model folder: {model} (vqvae/, {', '.join(f'prior_level_{level}/' for level in levels)})")

    bench = [sys.executable, str(REPO / "bench" / "align.py")]
    if aligned_head(s, work):
        lyrics = json.loads((model / "prior_level_2" / "config.json").read_text())["config"]["lyrics"]
        log(f"choose head: kept layer {lyrics['alignment_layer']} head {lyrics['alignment_head']}, the aligned run's")
    else:
        run([*bench, "choose-head", "--model", str(model), "--songs", str(dev), *device], timings, "choose head")
    if not args.no_eval:
        cmd = [*bench, "eval", "--model", str(model), "--songs", str(test), "--json", str(work / "align.json"), *device]
        run(cmd, timings, "eval")
    save_recipe(work, s, timings)
    log("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    log(f"done: openjukebox align SONG --lyrics LYRICS.txt --model {model} --artist A --genre G")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
