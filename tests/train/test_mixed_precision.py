"""Mixed precision on CUDA (bf16 autocast; fp16 autocast + GradScaler, whose state must survive a resume)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from toy_task import ToyTask, toy_config

from openjukebox.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_precisions_train_and_resume(tmp_path: Path, precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    first = Trainer(ToyTask(seed=2), toy_config(10, precision=precision), tmp_path, progress=False).fit()
    assert first.step == 10
    task = ToyTask(seed=2)
    result = Trainer(task, toy_config(12, precision=precision), tmp_path, resume=True, progress=False).fit()
    assert result.step == 12
    assert torch.isfinite(torch.tensor(result.metrics["loss"]))
    assert next(task.model.parameters()).device.type == "cuda"
