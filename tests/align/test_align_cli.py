"""`openjukebox align` on a tiny model folder (random weights): the outputs it writes and one-line errors for bad
input. Runs the subcommand's own parser and handler, as cli.py's `main` does."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from openjukebox.align.cli import add_align_arguments, align_cli
from openjukebox.checkpoints.prior import save_prior
from openjukebox.checkpoints.vqvae import save_vqvae
from openjukebox.data.vocab import Vocabulary
from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import Prior, prior_preset
from openjukebox.vqvae import VQVAE
from openjukebox.vqvae.config import PRESETS

LYRICS = "hello there\nmy old friend\n"


def build_model(folder, lyrics: bool = True):
    """VQ-VAE and top prior of the tiny presets (the aligner needs nothing else), random weights."""
    torch.manual_seed(0)
    save_vqvae(folder / "vqvae", VQVAE(PRESETS["tiny"]).eval())
    artists = Vocabulary.build(["alice", "bob"], kind="artist")
    genres = Vocabulary.build(["rock", "jazz"], kind="genre")
    config = prior_preset("tiny", 2)
    if not lyrics:
        config = replace(config, lyrics=None, attn_order=2)
    prior = Prior(config).eval()
    with torch.no_grad():
        for p in prior.parameters():
            p.normal_(0, 0.3)
    save_prior(folder / "prior_level_2", prior, artists, genres)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("align_model"))


def write_song(path, seconds: float, sr: int = 22050):
    t = np.arange(int(seconds * sr)) / sr
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    sf.write(path, np.stack([audio, audio], axis=1).astype(np.float32), sr)  # stereo, not the model's rate
    return path


def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    add_align_arguments(p)
    align_cli(p.parse_args(argv))


@pytest.fixture
def files(tmp_path):
    song = write_song(tmp_path / "song.wav", 1.0)
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS)
    return song, lyrics


def test_align_writes_outputs(model_dir, files, tmp_path, capsys):
    song, lyrics = files
    out = tmp_path / "out"
    run([str(song), "--lyrics", str(lyrics), "--model", str(model_dir), "--artist", "alice", "--genre", "rock",
         "--out", str(out), "--device", "cpu"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "aligned 5 words over 1.0 s (layer 9, head 0)" in printed
    assert {p.name for p in out.iterdir()} == {"align.json", "lyrics.lrc", "alignment.png", "karaoke.html"}
    data = json.loads((out / "align.json").read_text())
    assert data["source"] == "forced" and (data["layer"], data["head"]) == (9, 0)
    words = data["words"]
    assert [w["word"] for w in words] == LYRICS.split()
    assert all(0 <= w["start"] <= w["end"] <= 1.01 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)


def test_default_out_folder_and_explicit_head(model_dir, files):
    song, lyrics = files
    run([str(song), "--lyrics", str(lyrics), "--model", str(model_dir), "--artist", "bob", "--genre", "jazz",
         "--layer", "9", "--head", "1", "--device", "cpu"])  # fmt: skip
    data = json.loads((song.parent / "song_align" / "align.json").read_text())
    assert (data["layer"], data["head"]) == (9, 1)


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty_lyrics", "lyrics file is empty"),
        ("no_vocab_chars", "no character in the model's lyric vocabulary"),
        ("missing_lyrics", "no such lyrics file"),
        ("short_audio", "shorter than one window of the model"),
        ("missing_audio", "no such audio file"),
        ("layer_only", "give both --layer and --head"),
        ("not_a_lyric_layer", "not a lyrics layer"),
        ("unknown_artist", "carol"),
    ],
)
def test_bad_input(case, message, model_dir, files, tmp_path):
    song, lyrics = files
    argv = [str(song), "--lyrics", str(lyrics), "--model", str(model_dir), "--artist", "alice", "--genre", "rock",
            "--out", str(tmp_path / "o"), "--device", "cpu"]  # fmt: skip
    if case == "empty_lyrics":
        lyrics.write_text(" \n\n")
    elif case == "no_vocab_chars":
        lyrics.write_text("\u2603 \u2603\n")
    elif case == "missing_lyrics":
        argv[2] = str(tmp_path / "nope.txt")
    elif case == "short_audio":
        argv[0] = str(write_song(tmp_path / "short.wav", 0.1))  # the tiny top window is 0.19 s
    elif case == "missing_audio":
        argv[0] = str(tmp_path / "nope.wav")
    elif case == "layer_only":
        argv += ["--layer", "9"]
    elif case == "not_a_lyric_layer":
        argv += ["--layer", "2", "--head", "0"]
    elif case == "unknown_artist":
        argv[6] = "carol"
    with pytest.raises(OpenJukeboxError, match=message) as e:
        run(argv)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o").exists()


def test_model_without_lyrics(tmp_path, files):
    song, lyrics = files
    folder = build_model(tmp_path / "plain", lyrics=False)
    with pytest.raises(OpenJukeboxError, match="no lyrics conditioning"):
        run([str(song), "--lyrics", str(lyrics), "--model", str(folder), "--artist", "alice", "--genre", "rock",
             "--device", "cpu"])  # fmt: skip
