"""Train the toy task from the command line (for the subprocess and torchrun tests).

    python tests/train/run_toy.py RUN_DIR --steps N [--resume] [--sleep-per-step S] [--num-workers W]

Exits 0 when training ends or is stopped by SIGTERM/SIGINT (after saving), 1 on an `OpenJukeboxError`.
Each rank writes RUN_DIR/final_rank{R}.json with a hash of every tensor of its final state and the toy
codebook's counters, so tests can compare ranks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy_task import ToyTask, toy_config

from openjukebox.errors import OpenJukeboxError
from openjukebox.train import Trainer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep-per-step", type=float, default=0.0)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    task = ToyTask(seed=7, rank=rank)
    config = toy_config(args.steps, num_workers=args.num_workers)
    task.sleep_per_micro_step = args.sleep_per_step / config.grad_accum
    try:
        result = Trainer(task, config, args.run_dir, resume=args.resume, progress=False).fit()
    except OpenJukeboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    state = task.model.state_dict()
    summary = {
        "step": result.step,
        "interrupted": result.interrupted,
        "hashes": {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in state.items()},
        "seen": float(task.model.codebook.seen),
        "restarts": int(task.model.codebook.restarts),
    }
    (args.run_dir / f"final_rank{rank}.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
