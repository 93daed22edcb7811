"""Training: one engine for every model family (loop, optimiser, schedule, checkpoints, distributed).

A model family implements `TrainTask` (data, loss, model config); `Trainer(task, config, run_dir).fit()`
does the rest. See `engine.py` for the loop and `checkpoint.py` for the run-directory layout.
"""

from openjukebox.train.config import TrainConfig
from openjukebox.train.engine import FitResult, Trainer
from openjukebox.train.optim import lr_factor
from openjukebox.train.task import TrainTask

__all__ = ["FitResult", "TrainConfig", "TrainTask", "Trainer", "lr_factor"]
