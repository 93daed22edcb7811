"""`openjukebox sample` end to end on a tiny model: outputs, SIGKILL + --resume bit-identity, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openjukebox.cli import main

ARGS = ["--artist", "alice", "--genre", "rock", "--seconds", "0.6", "--n-samples", "2", "--seed", "5"]


def _args(model: Path, lyrics: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--model", str(model), "--lyrics-file", str(lyrics), *ARGS, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def lyrics_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lyrics") / "lyrics.txt"
    path.write_text("Hello darkness, my old friend\nI've come to talk with you again\n")
    return path


@pytest.fixture(scope="module")
def reference_run(tiny_model_dir, lyrics_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference"
    assert main(_args(tiny_model_dir, lyrics_file, out)) == 0
    return out


@pytest.fixture(scope="module")
def reference_run_original_rng(tiny_model_dir, lyrics_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference_original_rng"
    assert main(_args(tiny_model_dir, lyrics_file, out, "--rng", "original")) == 0
    return out


def _codes(run: Path, level: int) -> dict[str, np.ndarray]:
    with np.load(run / f"level_{level}" / "codes.npz") as data:
        return {k: data[k] for k in data.files if k != "meta"}


def test_outputs_of_every_level(reference_run):
    for level, hop in ((2, 128), (1, 32), (0, 8)):
        folder = reference_run / f"level_{level}"
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["seed"] == 5 and meta["artist"] == "alice" and meta["level"] == level
        assert meta["prior"]["level"] == level and meta["openjukebox_version"]
        codes = _codes(reference_run, level)
        assert codes[f"z{level}"].shape == (2, int(0.6 * 44100) // 128 * 128 // hop)
        for i in range(2):
            audio, sr = sf.read(folder / f"item_{i}.wav")
            assert sr == 44100 and len(audio) == codes[f"z{level}"].shape[1] * hop
            assert (folder / f"item_{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_sample_gets_its_lyrics_alignment(reference_run):
    from openjukebox.align.outputs import read_alignment

    for i in range(2):
        folder = reference_run / "align" / f"item_{i}"
        assert {p.name for p in folder.iterdir()} >= {"align.json", "lyrics.lrc", "alignment.png", "karaoke.html"}
        alignment = read_alignment(folder / "align.json")
        starts = [w.start for w in alignment.words]
        assert len(starts) == 12 and starts == sorted(starts) and alignment.source == "sampled"
        assert "[00:" in (folder / "lyrics.lrc").read_text()


@pytest.mark.parametrize("rng", ["window", "original"])
@pytest.mark.parametrize("kill_when", ["top level", "upsampling"])
def test_sigkill_then_resume_is_bit_identical(tiny_model_dir, lyrics_file, request, tmp_path, kill_when, rng):
    # rng "original": one generator for the whole run, whose state is saved with the codes after every window.
    reference_run = request.getfixturevalue("reference_run" if rng == "window" else "reference_run_original_rng")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "openjukebox.cli", *_args(tiny_model_dir, lyrics_file, out, "--rng", rng)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state, deadline = out / "state.npz", time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            top_started = state.is_file() and os.path.getmtime(state) > os.path.getmtime(out / "run.json")
            if kill_when == "top level" and top_started and not (out / "level_2").exists():
                break
            if kill_when == "upsampling" and (out / "level_2" / "metadata.json").is_file():
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "level_0" / "metadata.json").exists()
    assert main(["sample", "--resume", str(out)]) == 0
    for level in (2, 1, 0):
        want, got = _codes(reference_run, level), _codes(out, level)
        assert all(np.array_equal(want[k], got[k]) for k in want), f"level {level} codes differ"
        for i in range(2):
            name = f"level_{level}/item_{i}.wav"
            assert (out / name).read_bytes() == (reference_run / name).read_bytes(), name


def test_the_two_rng_modes_draw_differently_and_are_recorded(reference_run, reference_run_original_rng):
    window, original = _codes(reference_run, 0)["z0"], _codes(reference_run_original_rng, 0)["z0"]
    assert window.shape == original.shape and not np.array_equal(window, original)
    for run, rng in ((reference_run, "window"), (reference_run_original_rng, "original")):
        assert json.loads((run / "run.json").read_text())["rng"] == rng
        assert json.loads((run / "level_0" / "metadata.json").read_text())["rng"] == rng


def test_position_decode_gives_the_same_codes_and_is_recorded(tiny_model_dir, lyrics_file, reference_run, tmp_path):
    """--decode position (the CUDA graph's step, run op by op on the CPU) draws the eager loop's codes here."""
    out = tmp_path / "position"
    assert main(_args(tiny_model_dir, lyrics_file, out, "--levels", "2", "--decode", "position")) == 0
    assert np.array_equal(_codes(out, 2)["z2"], _codes(reference_run, 2)["z2"])
    assert json.loads((out / "run.json").read_text())["decode"] == "position"
    assert json.loads((out / "level_2" / "metadata.json").read_text())["decode"] == "position"
    assert json.loads((reference_run / "level_0" / "metadata.json").read_text())["decode"] == "auto"


def test_guidance_changes_the_top_codes_and_is_recorded(tiny_model_dir, lyrics_file, reference_run, tmp_path):
    """(A large scale: the untrained tiny prior's labels move its logits very little.)"""
    out = tmp_path / "guided"
    assert main(_args(tiny_model_dir, lyrics_file, out, "--levels", "2", "--guidance", "2=1000")) == 0
    guided, plain = _codes(out, 2)["z2"], _codes(reference_run, 2)["z2"]
    assert guided.shape == plain.shape and not np.array_equal(guided, plain)
    settings = json.loads((out / "level_2" / "metadata.json").read_text())["settings"]
    assert settings["guidance"] == 1000.0
    assert json.loads((reference_run / "level_2" / "metadata.json").read_text())["settings"]["guidance"] == 1.0
    assert main(_args(tiny_model_dir, lyrics_file, tmp_path / "bad", "--guidance", "-1")) == 1


def test_progress_bars_count_tokens_with_rate_eta_and_window():
    """A bar per level over its new tokens (so tokens/s and the ETA follow the tokens), the window in the postfix;
    in a log (not a terminal) a line per finished window, not per token."""
    import io

    from openjukebox.sample.cli import ProgressBars
    from openjukebox.sample.pipeline import Progress

    out = io.StringIO()
    bars = ProgressBars(file=out)
    top = Progress(level=2, windows_total=2, tokens_total=100)
    for windows, tokens in [(0, 10), (0, 30), (0, 50), (1, 50), (1, 80), (2, 100)]:
        top.windows_done, top.tokens_done = windows, tokens
        bars(top)
    lower = Progress(level=1, windows_total=3, tokens_total=600, tokens_done=2)
    bars(lower)  # a new bar: no rate from the first tokens
    lower.windows_done, lower.tokens_done = 1, 200
    bars(lower)
    bars.close()
    lines = out.getvalue().replace("\r", "\n").split("\n")
    assert any("level 2:  50%" in x and "50/100" in x and "window 2/2" in x and "tok/s" in x for x in lines)
    assert any("level 2: 100%" in x and "100/100" in x for x in lines)
    assert not any("30/100" in x or "80/100" in x for x in lines)  # throttled: no redraw within a window
    assert not any("2/600" in x for x in lines)
    assert any("level 1:  33%" in x and "200/600" in x and "window 2/3" in x for x in lines)
    assert any("<" in x and "level 1" in x for x in lines)  # elapsed<remaining: the ETA


def test_resume_with_a_different_model_is_refused(tiny_model_dir, lyrics_file, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "run"
    assert main(_args(model, lyrics_file, out, "--levels", "2")) == 0
    config = model / "prior_level_2" / "config.json"
    config.write_text(config.read_text() + "\n")  # any change to a part of the model
    capsys.readouterr()
    assert main(["sample", "--resume", str(out)]) == 1
    assert "different model (changed: prior_level_2)" in capsys.readouterr().err


def test_runs_are_listed_in_the_library(tiny_model_dir, lyrics_file, tmp_path, capsys):
    out = tmp_path / "listed"
    assert main(_args(tiny_model_dir, lyrics_file, out, "--levels", "2")) == 0
    capsys.readouterr()
    assert main(["songs"]) == 0
    listing = capsys.readouterr().out
    assert str(out.resolve()) in listing and "levels 2" in listing and "alice / rock" in listing


def test_top_level_only_and_upsample_mode(tiny_model_dir, lyrics_file, reference_run, tmp_path):
    top = tmp_path / "top"
    assert main(_args(tiny_model_dir, lyrics_file, top, "--levels", "2")) == 0
    assert (top / "level_2" / "item_0.wav").is_file() and not (top / "level_1").exists()
    assert np.array_equal(_codes(top, 2)["z2"], _codes(reference_run, 2)["z2"])
    up = tmp_path / "up"
    codes = str(top / "level_2" / "codes.npz")
    assert main(_args(tiny_model_dir, lyrics_file, up, "--mode", "upsample", "--codes", codes)) == 0
    assert np.array_equal(_codes(up, 0)["z0"], _codes(reference_run, 0)["z0"])  # same seed, same windows


def test_primed_mode_keeps_the_prompt(tiny_model_dir, lyrics_file, reference_run, tmp_path):
    out = tmp_path / "primed"
    prompt = str(reference_run / "level_0" / "item_0.wav")
    assert main(_args(tiny_model_dir, lyrics_file, out, "--prompt", prompt, "--prompt-seconds", "0.2")) == 0
    assert json.loads((out / "run.json").read_text())["mode"] == "primed"
    assert _codes(out, 2)["z2"].shape == (2, 206)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--artist", "alicia"], "closest known: 'alice'"),
        (["--genre", "polka"], "unknown genre"),
        (["--seconds", "0"], "--seconds must be > 0"),
        (["--seconds", "700"], "at most 600"),
        (["--prompt", "missing.wav"], "no such audio file"),
        (["--mode", "continue"], "needs --codes"),
        (["--temperature", "2=-1"], "temperature must be > 0"),
        (["--top-k", "x=1"], "--top-k"),
        (["--decode", "graph", "--device", "cpu"], "--decode graph needs a CUDA device"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_model_dir, lyrics_file, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert main(_args(tiny_model_dir, lyrics_file, out, *extra)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openjukebox: error:") and message in err[0], err
    assert not out.exists()


def test_unreadable_or_short_prompt_is_refused_before_the_run_folder_is_made(
    tiny_model_dir, lyrics_file, tmp_path, capsys
):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(4410, dtype=np.float32), 44100)  # 0.1 s
    for prompt, message in ((not_audio, "not an audio file"), (short, "0.10 s long, shorter than the 0.20 s")):
        out = tmp_path / prompt.stem
        assert main(_args(tiny_model_dir, lyrics_file, out, "--prompt", str(prompt), "--prompt-seconds", "0.2")) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()


def test_lyrics_problems_and_existing_folder(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("love * and & money")
    assert main(_args(tiny_model_dir, bad, tmp_path / "a")) == 1
    assert "'*' '&'" in capsys.readouterr().err
    assert main(_args(tiny_model_dir, bad, tmp_path / "b", "--drop-unknown-chars", "--levels", "2")) == 0
    capsys.readouterr()
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "mine.txt").write_text("precious")
    assert main(_args(tiny_model_dir, bad, keep)) == 1
    assert "not empty" in capsys.readouterr().err and (keep / "mine.txt").read_text() == "precious"
    assert main(["sample", "--resume", str(tmp_path / "nothing")]) == 1
    assert main(["sample", "--model", str(tmp_path), "--out", str(tmp_path / "c")]) == 1
