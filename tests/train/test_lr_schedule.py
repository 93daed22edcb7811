"""`lr_factor`: linear warm-up, then optional linear or cosine decay to zero at `steps`."""

from __future__ import annotations

import math

import pytest

from openjukebox.train import TrainConfig, lr_factor


def test_warmup_is_linear_and_starts_above_zero() -> None:
    cfg = TrainConfig(steps=1000, warmup_steps=4)
    assert [lr_factor(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(0, TrainConfig(warmup_steps=0)) == 1.0


def test_linear_decay_reaches_zero_at_steps() -> None:
    cfg = TrainConfig(steps=110, warmup_steps=0, decay="linear", decay_start=10)
    assert lr_factor(9, cfg) == 1.0
    assert lr_factor(10, cfg) == 1.0
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(109, cfg) == pytest.approx(0.01)
    assert lr_factor(110, cfg) == 0.0


def test_cosine_decay() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=0, decay="cosine", decay_start=0)
    assert lr_factor(0, cfg) == 1.0
    assert lr_factor(50, cfg) == pytest.approx(0.5)
    assert lr_factor(25, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(100, cfg) == pytest.approx(0.0)


def test_warmup_and_decay_multiply() -> None:
    cfg = TrainConfig(steps=20, warmup_steps=10, decay="linear", decay_start=0)
    assert lr_factor(4, cfg) == pytest.approx(0.5 * (16 / 20))
