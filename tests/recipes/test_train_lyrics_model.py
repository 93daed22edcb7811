"""scripts/train_lyrics_model.py's guided stage: which runs continue with label dropout, with what, and which run
folder each level of the model comes from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_lyrics_model.py"


@pytest.fixture(scope="module")
def recipe(import_script):
    return import_script(SCRIPT, "train_lyrics_model")


def _option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_demo_preset_continues_every_level_with_label_dropout(recipe, tmp_path):
    s = recipe.PRESETS["demo"]
    args = argparse.Namespace(seed=0, device="cpu", precision="fp32")
    vqvae = tmp_path / "runs" / "vqvae"
    steps = {level: recipe.train_guided(s, args, tmp_path, level, vqvae) for level in (2, 1, 0)}
    for level, (name, cmd, (out, _)) in steps.items():
        assert name == f"guided level {level}" and out == tmp_path / "runs" / f"prior_level_{level}_guided"
        assert _option(cmd, "--init") == str(tmp_path / "runs" / f"prior_level_{level}")  # from the first run
        assert _option(cmd, "--label-dropout") == "0.2" and _option(cmd, "--level") == str(level)
        assert _option(cmd, "--seed") == "1"  # a window stream apart from the first run's
    top, up = steps[2][1], steps[0][1]
    assert steps[2][2][1] == 12_000 and _option(top, "--balance") == "length" and "--lyric-jitter" in top
    assert _option(top, "--lr") == "0.0005" and _option(top, "--batch-size") == "8"
    assert steps[0][2][1] == 6000 and _option(up, "--balance") == "genre" and "--lyric-jitter" not in up
    assert _option(up, "--lr") == "0.0002"
    # a run stopped part-way continues from its checkpoint; a finished one is skipped
    out = tmp_path / "runs" / "prior_level_0_guided"
    (out / "checkpoints").mkdir(parents=True)
    assert "--resume" in recipe.train_guided(s, args, tmp_path, 0, vqvae)[1]
    (out / "model.safetensors").touch()
    (out / "DONE").touch()
    assert recipe.train_guided(s, args, tmp_path, 0, vqvae) is None


def test_levels_without_guided_steps_keep_their_first_run(recipe, tmp_path):
    s = recipe.PRESETS["quick"]
    args = argparse.Namespace(seed=0, device=None, precision="fp32")
    for level in (2, 1, 0):
        assert recipe.train_guided(s, args, tmp_path, level, tmp_path / "vqvae") is None
        assert recipe.guided_run(s, tmp_path, level)[1] == 0
    assert recipe.guided_run(recipe.PRESETS["demo"], tmp_path, 1) == (tmp_path / "runs" / "prior_level_1_guided", 6000)
