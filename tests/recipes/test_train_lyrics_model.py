"""scripts/train_lyrics_model.py's continued stages (guided, then aligned): which runs continue with label dropout,
from which weights, with what, and which run folder each level of the model comes from."""

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
    steps = {level: recipe.train_stage(s, args, tmp_path, level, vqvae, "guided") for level in (2, 1, 0)}
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
    assert "--resume" in recipe.train_stage(s, args, tmp_path, 0, vqvae, "guided")[1]
    (out / "model.safetensors").touch()
    (out / "DONE").touch()
    assert recipe.train_stage(s, args, tmp_path, 0, vqvae, "guided") is None


def test_aligned_stage_continues_only_the_top_prior_with_the_alignment_loss(recipe, tmp_path):
    s = dict(recipe.PRESETS["demo"], aligned_steps=4000)
    args = argparse.Namespace(seed=0, device="cpu", precision="fp32")
    vqvae = tmp_path / "runs" / "vqvae"
    name, cmd, (out, steps) = recipe.train_stage(s, args, tmp_path, 2, vqvae, "aligned")
    assert name == "aligned level 2" and out == tmp_path / "runs" / "prior_level_2_aligned" and steps == 4000
    assert _option(cmd, "--init") == str(tmp_path / "runs" / "prior_level_2_guided")  # from the guided weights
    assert _option(cmd, "--align-loss") == "0.3" and _option(cmd, "--lr") == "0.0002"
    assert _option(cmd, "--label-dropout") == "0.2" and _option(cmd, "--seed") == "2" and "--lyric-jitter" in cmd
    assert recipe.model_run(s, tmp_path, 2) == out  # the model's top prior comes from the last stage
    assert recipe.aligned_head(s, tmp_path) and not recipe.aligned_head(dict(s, aligned_steps=0), tmp_path)
    for level in (1, 0):  # the upsamplers have no lyrics: their last stage stays the guided one
        assert recipe.train_stage(s, args, tmp_path, level, vqvae, "aligned") is None
        assert recipe.model_run(s, tmp_path, level) == tmp_path / "runs" / f"prior_level_{level}_guided"
    # without guided steps, the aligned run starts from the first run
    s = dict(s, guided_steps=0)
    assert _option(recipe.train_stage(s, args, tmp_path, 2, vqvae, "aligned")[1], "--init") == str(
        tmp_path / "runs" / "prior_level_2"
    )
    assert recipe.model_run(dict(s, aligned_steps=0), tmp_path, 2) == tmp_path / "runs" / "prior_level_2"


def test_levels_without_continued_steps_keep_their_first_run(recipe, tmp_path):
    s = recipe.PRESETS["quick"]
    args = argparse.Namespace(seed=0, device=None, precision="fp32")
    for level in (2, 1, 0):
        for stage in recipe.STAGES:
            assert recipe.train_stage(s, args, tmp_path, level, tmp_path / "vqvae", stage) is None
            assert recipe.stage_run(s, tmp_path, level, stage)[1] == 0
        assert recipe.model_run(s, tmp_path, level) == tmp_path / "runs" / f"prior_level_{level}"
    assert recipe.stage_run(recipe.PRESETS["demo"], tmp_path, 1, "guided") == (
        tmp_path / "runs" / "prior_level_1_guided",
        6000,
    )
