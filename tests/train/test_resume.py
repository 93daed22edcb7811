"""Killed or stopped runs resume bit for bit: the final state equals an uninterrupted run's (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from toy_task import ToyTask, toy_config

from openjukebox.train import Trainer

RUN_TOY = Path(__file__).resolve().parent / "run_toy.py"
STEPS = 24


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run, in this process (run_toy.py builds the same task and config)."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("reference")
    Trainer(ToyTask(seed=7), toy_config(STEPS), run_dir, progress=False).fit()
    return run_dir


def _start(run_dir: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(RUN_TOY), str(run_dir), "--steps", str(STEPS), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float = 30.0) -> int:
    """Wait until the run has saved a checkpoint and is still training; return that checkpoint's step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        try:
            step = json.loads((run_dir / "latest.json").read_text())["step"]
        except (FileNotFoundError, json.JSONDecodeError):
            step = 0
        if step >= 5:
            return step
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def _assert_same_final_state(run_dir: Path, reference: Path) -> None:
    name = f"checkpoints/step_{STEPS:08d}"
    for file in ("model.safetensors", f"{name}/model.safetensors", f"{name}/train_state.safetensors"):
        got, want = load_file(run_dir / file), load_file(reference / file)
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), f"{file}: {k} differs from the uninterrupted run"
    got_state = json.loads((run_dir / name / "train_state.json").read_text())
    want_state = json.loads((reference / name / "train_state.json").read_text())
    assert got_state == want_state


def _assert_complete(run_dir: Path) -> int:
    latest = json.loads((run_dir / "latest.json").read_text())
    names = sorted(p.name for p in (run_dir / latest["checkpoint"]).iterdir())
    assert names == ["config.json", "model.safetensors", "train_state.json", "train_state.safetensors"]
    load_file(run_dir / latest["checkpoint"] / "model.safetensors")
    return latest["step"]


def _resume(run_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(RUN_TOY), str(run_dir), "--steps", str(STEPS), "--resume"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "final_rank0.json").read_text())["step"] == STEPS


def test_sigkill_then_resume_is_bit_identical(tmp_path: Path, reference: Path) -> None:
    proc = _start(tmp_path, "--sleep-per-step", "0.1")
    _wait_for_checkpoint(proc, tmp_path)
    time.sleep(0.23)  # land somewhere in the middle of a later step (or a save)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    step = _assert_complete(tmp_path)
    assert 5 <= step < STEPS
    _resume(tmp_path)
    _assert_same_final_state(tmp_path, reference)


def test_sigterm_saves_the_current_step_and_resumes(tmp_path: Path, reference: Path) -> None:
    proc = _start(tmp_path, "--sleep-per-step", "0.1", "--num-workers", "1")
    _wait_for_checkpoint(proc, tmp_path)
    time.sleep(0.13)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    step = _assert_complete(tmp_path)
    assert f"saved checkpoint at step {step}; resume with --resume" in stderr
    assert 5 < step < STEPS
    assert json.loads((tmp_path / "final_rank0.json").read_text())["interrupted"] is True
    _resume(tmp_path)
    _assert_same_final_state(tmp_path, reference)
