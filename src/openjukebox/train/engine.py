"""The training loop every model family shares (Jukebox §6.1, rebuilt on DDP, autocast and safetensors).

`Trainer(task, config, run_dir).fit()` runs `config.steps` optimizer steps of `task` in one process or under
`torchrun`: AdamW with a warm-up/decay schedule, gradient accumulation, global-norm clipping, optional CUDA
autocast, TensorBoard and a progress bar on rank 0, checkpoints every `save_every` steps, at the end and on
SIGTERM/SIGINT. A run resumed from a checkpoint continues bit for bit as if it had never stopped (on CPU):
data is a pure function of the micro-batch index and the RNGs are re-seeded from (seed, step, rank) at every
step, so a checkpoint only needs weights, optimizer, scheduler and grad-scaler state.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from openjukebox.checkpoints.format import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, load_state_dict_checked
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import write_json_atomic
from openjukebox.train import checkpoint as ckpt
from openjukebox.train.batches import micro_batches, to_device
from openjukebox.train.config import TrainConfig, check_resumable
from openjukebox.train.distributed import (
    Dist,
    broadcast_module_state,
    init_dist,
    ranks_identical,
    set_distributed_hooks,
)
from openjukebox.train.metrics import MetricWindow
from openjukebox.train.optim import build_optimizer, build_scheduler, lr_factor
from openjukebox.train.rng import seed_step
from openjukebox.train.task import TrainTask, log_media_hook

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """How `fit` ended."""

    step: int  # optimizer steps completed
    interrupted: bool  # stopped by SIGTERM/SIGINT before config.steps
    checkpoint: Path | None  # the checkpoint written last (None on ranks other than 0)
    metrics: dict[str, float] = field(default_factory=dict)  # the last logged window, averaged over ranks


@dataclass
class _Session:
    """What one call of `fit` trains with."""

    dist: Dist
    model: nn.Module  # the task's model, on the device
    wrapped: nn.Module  # the DDP wrapper under torchrun, else `model`
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 only
    model_config: dict[str, Any]
    writer: Any = None  # SummaryWriter on rank 0


def _comparable(model_config: dict[str, Any]) -> Any:
    # The package version may change between sessions without changing the model.
    return json.loads(json.dumps({k: v for k, v in model_config.items() if k != "openjukebox_version"}))


class Trainer:
    """Trains `task.model` into `run_dir`; see the module docstring and `openjukebox.train.checkpoint`.

    Args:
        task: the model family's data, loss and config (`TrainTask`).
        config: optimiser, schedule, precision and cadence.
        run_dir: where checkpoints, TensorBoard logs and the latest weights go (shared by all ranks).
        resume: continue from `run_dir/latest.json`; without it `run_dir` must not hold a run yet.
        device: override the device (default: `cuda:LOCAL_RANK` if CUDA is available, else CPU).
        progress: show a tqdm bar on rank 0.
    """

    def __init__(
        self,
        task: TrainTask,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        self.task, self.config, self.run_dir = task, config, Path(run_dir)
        self.resume, self.device, self.progress = resume, device, progress
        self.step = 0  # optimizer steps completed
        self._stop_signal: str | None = None

    def fit(self) -> FitResult:
        """Train up to `config.steps` (or until SIGTERM/SIGINT); the last state is always checkpointed."""
        self._stop_signal = None
        d = init_dist(self.device)
        try:
            with self._run_dir_lock(d), self._signal_handlers(), logging_redirect_tqdm():
                s = self._setup(d)
                start = self._restore(s)
                return self._loop(s, start)
        finally:
            d.close()

    # --- setup ----------------------------------------------------------------------------------------------
    def _setup(self, d: Dist) -> _Session:
        cfg = self.config
        self._check_precision(d)
        model = self.task.model.to(d.device)
        model.train()
        hooked = set_distributed_hooks(model, d)
        optimizer = build_optimizer(model, cfg)
        s = _Session(
            dist=d,
            model=model,
            wrapped=model,
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, cfg),
            scaler=torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None,
            model_config=self._model_config(),
        )
        if d.is_main:
            n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            logger.info(
                "training %s parameters on %d x %s (%s); %d modules reduce across ranks",
                f"{n_params:,}",
                d.world_size,
                d.device,
                cfg.precision,
                hooked,
            )
        return s

    def _restore(self, s: _Session) -> int:
        """Load the latest checkpoint when resuming, make all ranks equal, wrap in DDP; return the start step."""
        d, start = s.dist, 0
        latest = ckpt.read_latest(self.run_dir)
        if not self.resume and latest is not None:
            raise OpenJukeboxError(
                f"{self.run_dir} already holds a training run (at step {latest[0]}); "
                "resume it with --resume or choose another run directory"
            )
        if self.resume:
            if latest is None:
                raise OpenJukeboxError(f"nothing to resume in {self.run_dir}: no {ckpt.LATEST_FILE}")
            start = self._load(s, latest[1])
        broadcast_module_state(s.model, d)
        if d.distributed:
            sync = {"forward_sync_buffers": False}  # buffers are synchronised by the modules themselves
            if "forward_sync_buffers" not in inspect.signature(DistributedDataParallel).parameters:
                sync = {"broadcast_buffers": False}  # torch < 2.13
            ids = [d.device.index] if d.device.type == "cuda" else None
            s.wrapped = DistributedDataParallel(s.model, device_ids=ids, init_sync=False, **sync)
        if d.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run_dir / ckpt.TRAIN_CONFIG_FILE, self.config.to_dict())
            if start == 0:
                write_json_atomic(self.run_dir / CONFIG_FILE, s.model_config)
        return start

    def _load(self, s: _Session, folder: Path) -> int:
        c = ckpt.load_checkpoint(folder)
        changed = check_resumable(TrainConfig.from_dict(c.state["train_config"]), self.config, c.step)
        if c.state["world_size"] != s.dist.world_size:
            raise OpenJukeboxError(
                f"cannot resume: the run used {c.state['world_size']} processes, this one has {s.dist.world_size}"
            )
        if _comparable(c.model_config) != _comparable(s.model_config):
            raise OpenJukeboxError(f"cannot resume: the model config differs from {c.path / CONFIG_FILE}")
        load_state_dict_checked(s.model, c.model_state, str(c.path / WEIGHTS_FILE))
        ckpt.restore_train_state(c, s.optimizer, s.scheduler, s.scaler)
        if {"steps", "decay", "decay_start"} & set(changed):
            # The schedule changed: the next step already follows the new one.
            for group, base in zip(s.optimizer.param_groups, s.scheduler.base_lrs):
                group["lr"] = base * lr_factor(c.step, self.config)
        if s.dist.is_main:
            extra = f" (changed: {', '.join(changed)})" if changed else ""
            logger.info("resuming from %s at step %d%s", c.path, c.step, extra)
        return c.step

    # --- the loop -------------------------------------------------------------------------------------------
    def _loop(self, s: _Session, start: int) -> FitResult:
        cfg, d = self.config, s.dist
        s.writer = self._writer(d, start)
        show = self.progress and d.is_main
        bar = tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True, disable=not show)
        batches = micro_batches(self.task, cfg, d, start)
        media = log_media_hook(self.task)
        window = MetricWindow()
        logged: dict[str, float] = {}
        saved: Path | None = None
        self.step = start
        try:
            for step in range(start, cfg.steps):
                seed_step(cfg.seed, step, d.rank)
                lr = s.optimizer.param_groups[0]["lr"]
                self._step(s, batches, window)
                self.step = done = step + 1
                bar.update(1)
                if done % cfg.log_every == 0 or done == cfg.steps:
                    logged = self._log(s, window, lr, done, bar)
                if media is not None and cfg.media_every and done % cfg.media_every == 0 and d.is_main:
                    self._log_media(media, s, done)
                stop = d.any(self._stop_signal is not None)  # every rank stops at the same step
                if done % cfg.save_every == 0 or done == cfg.steps or stop:
                    saved = self._save(s, done)
                if stop:
                    if d.is_main:
                        logger.warning(
                            "stopped by %s: saved checkpoint at step %d; resume with --resume",
                            self._stop_signal or "another rank",
                            done,
                        )
                    break
            else:
                if d.is_main:
                    logger.info("finished at step %d; weights in %s", self.step, self.run_dir / WEIGHTS_FILE)
            if not ranks_identical(s.model, d):
                raise OpenJukeboxError(
                    f"the {d.world_size} processes ended with different weights (a bug; please report)"
                )
            if d.distributed and d.is_main:
                logger.info("all %d processes hold identical weights and buffers", d.world_size)
            d.barrier()
            return FitResult(self.step, self.step < cfg.steps, saved, logged)
        finally:
            del batches  # shuts DataLoader workers down
            bar.close()
            if s.writer is not None:
                s.writer.close()

    def _step(self, s: _Session, batches: Iterator[Any], window: MetricWindow) -> None:
        """One optimizer step: grad_accum micro-steps (gradients synchronised on the last), clip, update."""
        cfg, d = self.config, s.dist
        s.optimizer.zero_grad(set_to_none=True)
        for micro in range(cfg.grad_accum):
            batch = to_device(next(batches), d.device)
            last = micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if last or not d.distributed else s.wrapped.no_sync():
                with self._autocast(d):
                    loss, metrics = self.task.loss(s.wrapped, batch)
                assert loss.ndim == 0, f"task.loss must return a scalar, got shape {tuple(loss.shape)}"
                scaled = loss / cfg.grad_accum
                (s.scaler.scale(scaled) if s.scaler is not None else scaled).backward()
            window.add({"loss": loss, **metrics})
        if s.scaler is not None:
            s.scaler.unscale_(s.optimizer)
        params = [p for group in s.optimizer.param_groups for p in group["params"]]
        if cfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        elif hasattr(torch.nn.utils, "get_total_norm"):  # measured for the log only
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        else:  # torch < 2.6: an infinite limit leaves the gradients as they are
            grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        if s.scaler is not None:
            s.scaler.step(s.optimizer)  # skipped when the gradients overflowed
            s.scaler.update()
        else:
            s.optimizer.step()
        s.scheduler.step()
        window.add({"grad_norm": grad_norm})
        window.end_step()

    def _log(self, s: _Session, window: MetricWindow, lr: float, step: int, bar: tqdm) -> dict[str, float]:
        steps, elapsed = window.steps, time.perf_counter() - window.started
        values = window.reduce(s.dist)
        samples_per_s = steps * self.config.samples_per_step * s.dist.world_size / max(elapsed, 1e-9)
        values.update(lr=lr, samples_per_s=samples_per_s, step_time_s=elapsed / max(steps, 1))
        tokens = getattr(self.task, "tokens_per_sample", None)
        if tokens:
            values["tokens_per_s"] = samples_per_s * tokens
        if not math.isfinite(values["loss"]) and self.config.precision != "fp16":
            raise OpenJukeboxError(
                f"the loss became {values['loss']} by step {step}; lower the learning rate or check the data "
                "(the last checkpoint is untouched)"
            )
        if s.dist.is_main:
            for name, value in values.items():
                group = "perf" if name in ("samples_per_s", "tokens_per_s", "step_time_s") else "train"
                s.writer.add_scalar(f"{group}/{name}", value, step)
            bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.3g}", refresh=False)
            # The console line keeps the headline numbers; per-level and per-term values go to TensorBoard.
            summary = " ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()) if "/" not in k)
            logger.info("step %d/%d %s", step, self.config.steps, summary)
            logger.debug("step %d/%d %s", step, self.config.steps, values)
        return values

    def _log_media(self, media: Any, s: _Session, step: int) -> None:
        s.model.eval()
        try:
            with torch.no_grad():
                media(s.writer, step)
        finally:
            s.model.train()

    def _save(self, s: _Session, step: int) -> Path | None:
        if not s.dist.is_main:
            return None
        model_state = s.model.state_dict()
        for name, value in model_state.items():
            if not isinstance(value, torch.Tensor):
                raise OpenJukeboxError(f"cannot save model state {name!r}: {type(value).__name__} is not a tensor")
        tensors, state = ckpt.capture_train_state(
            step, s.dist.world_size, self.config, s.optimizer, s.scheduler, s.scaler
        )
        path = ckpt.save_checkpoint(
            self.run_dir, step, model_state, s.model_config, tensors, state, self.config.keep_checkpoints
        )
        s.writer.flush()
        logger.info("saved checkpoint %s", path)
        return path

    # --- helpers --------------------------------------------------------------------------------------------
    def _model_config(self) -> dict[str, Any]:
        config = dict(self.task.model_config())
        config.setdefault("format_version", FORMAT_VERSION)
        try:
            json.dumps(config)
        except TypeError as e:
            raise OpenJukeboxError(f"task.model_config() is not JSON-serialisable ({e})") from None
        return config

    def _check_precision(self, d: Dist) -> None:
        p = self.config.precision
        if p != "fp32" and d.device.type != "cuda":
            raise OpenJukeboxError(f"precision {p} needs a CUDA GPU; this run is on {d.device}: use fp32")
        if p == "bf16" and not torch.cuda.is_bf16_supported():
            raise OpenJukeboxError("precision bf16 is not supported by this GPU: use fp16 or fp32")

    def _autocast(self, d: Dist) -> contextlib.AbstractContextManager:
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(device_type=d.device.type, dtype=dtype)

    def _writer(self, d: Dist, start: int) -> Any:
        if not d.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter  # slow import; rank 0 only

        # purge_step drops events logged after the checkpoint by a session that was then killed.
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=start if start else None)

    @contextlib.contextmanager
    def _run_dir_lock(self, d: Dist) -> Iterator[None]:
        if not d.is_main:
            yield
            return
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise OpenJukeboxError(f"{self.run_dir} is in use by another training process") from None
            yield

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        """SIGTERM/SIGINT set a flag: the current step finishes, a checkpoint is saved, `fit` returns.
        A second SIGINT (Ctrl-C twice) aborts at once without saving."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
