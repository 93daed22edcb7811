"""The training configuration shared by every model family (Jukebox §6.1: Adam, warm-up, clipping, fp16).

`TrainConfig` holds only what the engine needs; model and loss settings belong to each model's own config and
task. Values are checked at construction so a typo fails before any work starts. `check_resumable` decides
which differences between a checkpoint's config and the current one still give a correct resume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openjukebox.errors import OpenJukeboxError

DECAYS = ("none", "linear", "cosine")
PRECISIONS = ("fp32", "bf16", "fp16")

# Fields that may change between a checkpoint and its resume: they affect bookkeeping or the future of the
# schedule, not how the steps already taken are reproduced. Every other field must match.
RESUME_MAY_CHANGE = frozenset(
    {"steps", "decay", "decay_start", "save_every", "log_every", "media_every", "keep_checkpoints", "num_workers"}
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, precision, checkpointing and logging cadence."""

    steps: int = 10_000  # optimizer steps in the whole run
    batch_size: int = 4  # examples per rank per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0  # decoupled (AdamW)
    warmup_steps: int = 100  # linear warm-up: step s trains at lr * (s + 1) / warmup_steps
    decay: str = "none"  # "none" | "linear" | "cosine": from decay_start down to 0 at `steps`
    decay_start: int = 0
    grad_clip: float = 1.0  # max global gradient norm; 0 = off (the norm is logged either way)
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (bf16/fp16: CUDA autocast; fp16 adds a GradScaler)
    save_every: int = 1000
    log_every: int = 10
    media_every: int = 0  # call task.log_media every N steps; 0 = never
    keep_checkpoints: int = 2
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes that prefetch batches; 0 = in the training process

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # from JSON
            object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
            _check(name, getattr(self, name), int, "a positive integer", lambda v: v >= 1)
        for name in ("warmup_steps", "decay_start", "media_every", "num_workers", "seed"):
            _check(name, getattr(self, name), int, "an integer >= 0", lambda v: v >= 0)
        for name in ("lr", "eps"):
            _check(name, getattr(self, name), (int, float), "a number > 0", lambda v: v > 0)
        for name in ("weight_decay", "grad_clip"):
            _check(name, getattr(self, name), (int, float), "a number >= 0", lambda v: v >= 0)
        _check("betas", self.betas, tuple, "two numbers in [0, 1)", lambda v: len(v) == 2)
        for beta in self.betas:
            _check("betas", beta, (int, float), "two numbers in [0, 1)", lambda v: 0 <= v < 1)
        if self.decay not in DECAYS:
            raise OpenJukeboxError(f"train config: decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        if self.precision not in PRECISIONS:
            raise OpenJukeboxError(
                f"train config: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.decay != "none" and self.decay_start >= self.steps:
            raise OpenJukeboxError(f"train config: decay_start ({self.decay_start}) must be below steps ({self.steps})")

    @property
    def samples_per_step(self) -> int:
        """Examples per optimizer step on one rank."""
        return self.batch_size * self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OpenJukeboxError(f"train config: unknown keys {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise OpenJukeboxError(f"train config: unknown keys {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


def _check(name: str, value: Any, types: type | tuple[type, ...], what: str, ok: Callable[[Any], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
        raise OpenJukeboxError(f"train config: {name} must be {what}, got {value!r}")


def check_resumable(saved: TrainConfig, current: TrainConfig, step: int) -> list[str]:
    """Raise unless a run saved with `saved` at `step` can continue under `current`.

    Returns the names of the changed fields that are allowed (for a log line).
    """
    changed = [f.name for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(current, f.name)]
    breaking = [name for name in changed if name not in RESUME_MAY_CHANGE]
    if breaking:
        details = ", ".join(f"{n} ({getattr(saved, n)!r} -> {getattr(current, n)!r})" for n in breaking)
        raise OpenJukeboxError(
            f"cannot resume: the training config changed in a way that would not reproduce the run: {details}; "
            "use the original values or start a new run directory"
        )
    if current.steps < step:
        raise OpenJukeboxError(f"cannot resume: the checkpoint is at step {step}, past steps={current.steps}")
    return changed


def add_schedule_arguments(p: Any, what: str = "crops") -> None:
    """The command-line options every `... train` command shares (one per `TrainConfig` field they set)."""
    p.add_argument("--steps", type=int, default=10_000, help="optimizer steps in the whole run")
    p.add_argument("--batch-size", type=int, default=4, help=f"{what} per process per micro-step")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (Adam)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up")
    p.add_argument("--decay", choices=list(DECAYS), default="none", help="learning-rate decay to 0")
    p.add_argument("--decay-start", type=int, default=0, help="step at which the decay begins")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global gradient norm (0 = off)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="bf16/fp16: CUDA only")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and on SIGTERM/Ctrl-C)")
    p.add_argument("--log-every", type=int, default=10, help="TensorBoard scalars every N steps")


def train_config_from_args(args: Any, media_every: int) -> TrainConfig:
    """The `TrainConfig` of a `... train` command's parsed options (see `add_schedule_arguments`)."""
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        weight_decay=getattr(args, "weight_decay", 0.0),
        warmup_steps=args.warmup_steps,
        decay=args.decay,
        decay_start=args.decay_start,
        grad_clip=args.grad_clip,
        precision=args.precision,
        save_every=args.save_every,
        log_every=args.log_every,
        media_every=media_every,
        seed=args.seed,
        num_workers=args.workers,
    )
