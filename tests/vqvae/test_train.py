"""Training the VQ-VAE through the CLI: loss falls, TensorBoard gets every term, SIGKILL + resume is exact,
two `torchrun` processes end with identical weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from openjukebox.checkpoints.vqvae import load_vqvae
from openjukebox.cli import main

TINY = ["--preset", "tiny", "--sample-length", "8192", "--batch-size", "4", "--bandwidth-seconds", "5",
        "--warmup-steps", "5", "--lr", "1e-3", "--workers", "0", "--no-progress"]  # fmt: skip


def _train_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["vqvae", "train", "--data", str(data), "--out", str(out), "--steps", str(steps), *TINY, *extra]


def test_training_reduces_loss_and_logs_everything(tmp_path, tones_dir):
    out = tmp_path / "run"
    assert main(_train_args(tones_dir, out, 80, "--log-every", "10", "--media-every", "40", "--save-every", "40")) == 0
    events = EventAccumulator(str(out / "tb"), size_guidance={"audio": 0, "scalars": 0}).Reload()
    loss = [e.value for e in events.Scalars("train/loss")]
    assert loss[-1] < 0.6 * loss[0], f"loss should clearly fall: {loss}"
    tags = set(events.Tags()["scalars"])
    for level in range(3):
        assert {f"train/{k}/l{level}" for k in ("recon", "multispectral", "commit", "usage", "entropy")} <= tags
        assert f"spectral_convergence_db/l{level}" in tags
    assert {"audio/target", "audio/recon_l0", "audio/recon_l2"} <= set(events.Tags()["audio"])
    model = load_vqvae(out)  # the run folder is a usable checkpoint
    assert all(bool(cb.initted) for cb in model.codebooks)


# One thread per process: the tiny model gains nothing from more, and oversubscribed OpenMP threads spin.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "openjukebox.cli", *args], env=ENV, **kw)


def test_sigkill_and_resume_is_bit_identical(tmp_path, tones_dir):
    steps = 40
    reference = tmp_path / "uninterrupted"
    assert _run(_train_args(tones_dir, reference, steps, "--save-every", "5")).wait(timeout=600) == 0

    killed = tmp_path / "killed"
    proc = _run(_train_args(tones_dir, killed, steps, "--save-every", "5"), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step_00000015").exists():  # mid-run, after a few checkpoints
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / f"step_{steps:08d}").exists(), "killed too late to prove anything"

    assert _run(_train_args(tones_dir, killed, steps, "--resume", "--save-every", "5")).wait(timeout=600) == 0
    expected, got = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_two_processes_end_identical(tmp_path, tones_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "openjukebox.cli", *_train_args(tones_dir, out, 6, "--save-every", "3")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 x cpu" in result.stderr
    assert "all 2 processes hold identical weights and buffers" in result.stderr
    assert load_vqvae(out).codebooks[0].initted


@pytest.mark.parametrize("bad", [["--resume", "--init-from", "x"], ["--precision", "bf16"]])
def test_bad_training_options(tmp_path, tones_dir, bad, capsys):
    assert main(_train_args(tones_dir, tmp_path / "r", 2, *bad)) == 1
    assert capsys.readouterr().err.startswith("openjukebox: error: ")
