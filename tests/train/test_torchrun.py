"""Two CPU processes under torchrun (gloo): identical weights on both ranks, reductions across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch.distributed as dist
from toy_task import toy_config

RUN_TOY = Path(__file__).resolve().parent / "run_toy.py"


def test_two_process_torchrun(tmp_path: Path) -> None:
    assert dist.is_available() and dist.is_gloo_available()
    steps = 8
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(RUN_TOY)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, str(tmp_path), "--steps", str(steps)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"final_rank{r}.json").read_text()) for r in range(2)]
    # Ranks start from different random weights (ToyTask seeds with seed + rank): rank 0's are broadcast,
    # gradients are averaged by DDP and codebook restarts are broadcast, so the ranks never drift apart.
    assert ranks[0]["hashes"] == ranks[1]["hashes"]
    # The EMA counter is all-reduced: each rank counts the rows of both.
    config = toy_config(steps)
    assert ranks[0]["seen"] == steps * config.grad_accum * config.batch_size * 2
    assert ranks[0]["restarts"] > 0
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == steps
    state = json.loads((tmp_path / f"checkpoints/step_{steps:08d}/train_state.json").read_text())
    assert state["world_size"] == 2
