"""The training engine in one process: learning, gradient accumulation, run-dir contents, user errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from toy_task import ToyTask, toy_config

from openjukebox.errors import OpenJukeboxError
from openjukebox.train import TrainConfig, Trainer


def test_loss_falls(tmp_path: Path) -> None:
    task = ToyTask(seed=3)
    result = Trainer(task, toy_config(60, lr=2e-2, decay="none"), tmp_path, progress=False).fit()
    assert result.step == 60 and not result.interrupted
    losses = torch.stack(task.losses)
    assert losses[-10:].mean() < 0.3 * losses[:10].mean(), (losses[:10].mean(), losses[-10:].mean())
    assert set(result.metrics) >= {"loss", "mse", "commit", "constant", "grad_norm", "lr", "samples_per_s"}
    assert result.metrics["constant"] == 1.0
    assert task.media_steps == [7, 14, 21, 28, 35, 42, 49, 56]
    assert any((tmp_path / "tb").iterdir())


def _one_step(tmp_path: Path, batch_size: int, grad_accum: int) -> tuple[dict[str, torch.Tensor], float]:
    task = ToyTask(seed=5, batch_size=batch_size, codebook=False, dropout=0.0)
    # eps >> |grad| turns Adam's first step into lr/eps * grad, so the update is linear in the gradient.
    config = TrainConfig(
        steps=1, batch_size=batch_size, grad_accum=grad_accum, lr=1.0, eps=10.0, warmup_steps=0, grad_clip=0.0
    )
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    result = Trainer(task, config, tmp_path, progress=False).fit()
    after = task.model.state_dict()
    assert not torch.equal(after["inp.weight"], before["inp.weight"])
    return after, result.metrics["grad_norm"]


def test_grad_accumulation_matches_large_batch(tmp_path: Path) -> None:
    accumulated, norm_a = _one_step(tmp_path / "a", batch_size=2, grad_accum=2)
    large, norm_b = _one_step(tmp_path / "b", batch_size=4, grad_accum=1)
    assert norm_a == pytest.approx(norm_b, rel=1e-5)
    for k in large:
        torch.testing.assert_close(accumulated[k], large[k], rtol=1e-5, atol=1e-7)


def test_run_dir_holds_no_pickles_and_resumes_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Trainer(ToyTask(seed=1), toy_config(10), tmp_path, progress=False).fit()
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "tb" not in p.relative_to(tmp_path).parts]
    suffixes = {p.suffix for p in files if p.name != ".lock"}
    assert suffixes == {".safetensors", ".json"}, files
    for p in files:
        assert not p.read_bytes().startswith(b"\x80"), f"{p} looks like a pickle"
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest == {"step": 10, "checkpoint": "checkpoints/step_00000010"}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000005", "step_00000010"]
    names = sorted(p.name for p in (tmp_path / latest["checkpoint"]).iterdir())
    assert names == ["config.json", "model.safetensors", "train_state.json", "train_state.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == "toy" and config["format_version"] == 1
    weights = load_file(tmp_path / "model.safetensors")
    assert torch.equal(weights["head.weight"], weights["head_alias.weight"])  # tied weights saved apart

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("something unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    result = Trainer(ToyTask(seed=1), toy_config(12), tmp_path, resume=True, progress=False).fit()
    assert result.step == 12
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000010", "step_00000012"]


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(OpenJukeboxError, match="unknown keys bogus"):
        TrainConfig.from_dict({"steps": 3, "bogus": 1})
    with pytest.raises(OpenJukeboxError, match="precision"):
        TrainConfig(precision="fp8")
    assert TrainConfig.from_dict(TrainConfig(betas=(0.9, 0.95)).to_dict()) == TrainConfig(betas=(0.9, 0.95))
    with pytest.raises(OpenJukeboxError, match="nothing to resume"):
        Trainer(ToyTask(), toy_config(10), tmp_path, resume=True, progress=False).fit()
    if not torch.cuda.is_available():
        with pytest.raises(OpenJukeboxError, match="needs a CUDA GPU"):
            Trainer(ToyTask(), toy_config(10, precision="bf16"), tmp_path, progress=False).fit()
    Trainer(ToyTask(), toy_config(10), tmp_path, progress=False).fit()
    with pytest.raises(OpenJukeboxError, match="already holds a training run"):
        Trainer(ToyTask(), toy_config(10), tmp_path, progress=False).fit()
    with pytest.raises(OpenJukeboxError, match=r"batch_size \(4 -> 8\)"):
        Trainer(ToyTask(), toy_config(12, batch_size=8), tmp_path, resume=True, progress=False).fit()
    with pytest.raises(OpenJukeboxError, match="past steps=8"):
        Trainer(ToyTask(), toy_config(8), tmp_path, resume=True, progress=False).fit()
    other = ToyTask(dropout=0.5)
    with pytest.raises(OpenJukeboxError, match="model config differs"):
        Trainer(other, toy_config(12), tmp_path, resume=True, progress=False).fit()


def test_resume_cleans_up_after_a_crash(tmp_path: Path) -> None:
    Trainer(ToyTask(seed=1), toy_config(10), tmp_path, progress=False).fit()
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_00000011-dead").mkdir()  # a save interrupted mid-write
    (root / "step_00000015").mkdir()  # renamed into place, but latest.json was never updated
    (root / "step_00000015" / "model.safetensors").write_bytes(b"garbage")
    Trainer(ToyTask(seed=1), toy_config(15), tmp_path, resume=True, progress=False).fit()
    assert sorted(p.name for p in root.iterdir()) == ["step_00000010", "step_00000015"]
    assert (
        load_file(root / "step_00000015" / "model.safetensors").keys()
        == load_file(tmp_path / "model.safetensors").keys()
    )
