"""`openjukebox prior train` from the command line: the whole data path (index, encode, train) and the
one-line errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from openjukebox.checkpoints.prior import load_prior, load_vocabularies
from openjukebox.cli import main

SR = 44100


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """Three labelled 1.2 s songs (indexed by the tests that need an index)."""
    root = tmp_path_factory.mktemp("prior_cli") / "songs"
    root.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(round(1.2 * SR)) / SR
    for i, artist in enumerate(["Alpha", "Bravo", "Alpha"]):
        x = 0.4 * np.sin(2 * np.pi * 110 * (i + 2) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"song{i}.wav", x.astype(np.float32), SR)
        (root / f"song{i}.json").write_text(json.dumps({"artist": artist, "genre": "rock", "lyrics": "la la la"}))
    return root


def _train(data: Path, vqvae: Path, out: Path, *extra: str) -> int:
    args = ["prior", "train", "--data", str(data), "--vqvae", str(vqvae), "--out", str(out), "--steps", "3",
            "--batch-size", "2", "--workers", "0", "--no-progress", "--val-every", "0", *extra]  # fmt: skip
    return main(args)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("openjukebox: error: "), err
    return lines[0]


def test_index_encode_train(tmp_path, songs, tiny_vqvae_dir, capsys):
    torch.set_num_threads(1)
    data = tmp_path / "songs"
    data.mkdir()
    for f in songs.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    assert main(["data", "index", str(data)]) == 0
    assert main(["data", "encode", str(data), "--vqvae", str(tiny_vqvae_dir)]) == 0
    out = tmp_path / "top"
    assert _train(data, tiny_vqvae_dir, out, "--preset", "tiny", "--level", "2") == 0
    assert "trained the level-2 prior for 3 steps" in capsys.readouterr().out
    assert load_prior(out).config.level == 2
    assert load_vocabularies(out)[0].names == ("unknown", "Alpha", "Bravo")

    # a second session continues the run: same folder, more steps, the same held-out songs
    assert _train(data, tiny_vqvae_dir, out, "--resume", "--steps", "5", "--val-fraction", "0.5") == 1
    assert "cannot resume: the run started with --val-fraction 0.1, not 0.5" in _one_line_error(capsys)
    assert _train(data, tiny_vqvae_dir, out, "--resume", "--steps", "5") == 0
    assert json.loads((out / "latest.json").read_text())["step"] == 5

    # the run folder already holds a run: a new one is refused
    assert _train(data, tiny_vqvae_dir, out, "--preset", "tiny") == 1
    assert "holds a run already" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--preset", "huge"], "unknown prior preset 'huge'; known: 5b, 5b_lyrics, 1b_lyrics"),
        (["--preset", "5b", "--level", "1"], "prior preset '5b' is a level-2 model, not level 1"),
        (["--preset", "tiny", "--level", "3"], "level must be 0, 1 or 2, not 3"),
        (
            ["--preset", "upsampler_level_1"],
            "was made for a VQ-VAE with 3 levels, downs_t [3, 2, 2], strides_t [2, 2, 2], 2048 codes at 44100 Hz;",
        ),
        (["--resume", "--init", "x"], "--resume and --init exclude each other"),
        (["--resume", "--preset", "tiny"], "--preset is for new runs"),
        (["--resume"], "nothing to resume in"),
        (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1), got 1.5"),
        (["--init", "nowhere"], "nowhere: not a checkpoint folder"),
    ],
)
def test_option_errors(tmp_path, songs, tiny_vqvae_dir, capsys, options, message):
    assert _train(songs, tiny_vqvae_dir, tmp_path / "run", *options) == 1
    assert message in _one_line_error(capsys)


def test_data_errors(tmp_path, songs, tiny_vqvae_dir, capsys):
    data = tmp_path / "songs"
    data.mkdir()
    for f in songs.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    assert _train(data, tiny_vqvae_dir, tmp_path / "run", "--preset", "tiny") == 1
    assert "no song index here; run `openjukebox data index DIR` first" in _one_line_error(capsys)

    assert main(["data", "index", str(data)]) == 0
    capsys.readouterr()
    assert _train(data, tiny_vqvae_dir, tmp_path / "run", "--preset", "tiny") == 1
    line = _one_line_error(capsys)
    assert "3 of 3 indexed songs have no cached codes" in line and "openjukebox data encode" in line

    assert main(["data", "encode", str(data), "--vqvae", str(tiny_vqvae_dir)]) == 0
    capsys.readouterr()
    # the tiny top window is 0.19 s; the small upsampler's is 1024 x 32 samples = 0.74 s, the small top
    # prior's 1024 x 128 = 2.97 s: longer than every song
    assert _train(data, tiny_vqvae_dir, tmp_path / "run", "--preset", "small", "--level", "2") == 1
    assert "none of 3 songs has a usable length (song0.wav: too short (1.20 s" in _one_line_error(capsys)
