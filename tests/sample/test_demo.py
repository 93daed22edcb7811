"""The bundled demo model: shipped inside the package, small, and `openjukebox demo` (what `make demo` runs) works
end to end with no network: sample all three levels, decode, align the lyrics, write the karaoke page."""

from __future__ import annotations

import json
import socket

import pytest
import soundfile as sf

from openjukebox.checkpoints.hierarchy import DEMO_DIR, resolve_model
from openjukebox.checkpoints.prior import load_prior, load_vocabularies
from openjukebox.checkpoints.vqvae import load_vqvae
from openjukebox.cli import main
from openjukebox.prior.config import prior_preset
from openjukebox.vqvae.config import get_preset

MB = 1 << 20


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the demo tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_demo_weights_are_small_and_load_as_the_demo_presets():
    dirs = resolve_model("demo")
    files = [p for p in DEMO_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 50 * MB
    assert all(p.stat().st_size <= 16 * MB for p in files)
    vqvae = load_vqvae(dirs.vqvae)
    assert vqvae.config == get_preset("demo")
    for level, folder in dirs.priors.items():
        c, preset = load_prior(folder).config, prior_preset("demo", level)
        assert (c.level, c.width, c.depth, c.n_ctx) == (level, preset.width, preset.depth, preset.n_ctx)
        assert load_vocabularies(folder) is not None
    top = load_prior(dirs.priors[2]).config
    assert top.lyrics is not None and top.lyrics.alignment_layer is not None  # chosen on held-out songs


def test_demo_command_writes_songs_lyrics_and_karaoke(tmp_path, no_network, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--seconds", "2", "--out", str(out), "--seed", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert str(out / "level_0" / "item_0.wav") in printed and "karaoke.html" in printed
    audio, sr = sf.read(out / "level_0" / "item_0.wav")
    assert sr == 44100 and len(audio) >= 1.9 * sr and abs(audio).max() > 0
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == "demo" and run["artist"] == "june meadow"
    for level in (2, 1, 0):  # guided towards the artist and genre at every level by default
        assert json.loads((out / f"level_{level}" / "metadata.json").read_text())["settings"]["guidance"] == 3.0
    words = json.loads((out / "align" / "item_0" / "align.json").read_text())["words"]
    assert [w["word"] for w in words][:3] == ["golden", "light", "across"]
    assert (out / "align" / "item_0" / "karaoke.html").stat().st_size > 1000
    assert (out / "align" / "item_0" / "lyrics.lrc").read_text().count("<") >= len(words)  # a time per word
    first = (out / "level_0" / "item_0.wav").read_bytes()
    # Running it again replaces the earlier demo run, and the same seed gives the same song.
    assert main(args) == 0
    assert (out / "level_0" / "item_0.wav").read_bytes() == first


def test_demo_refuses_a_folder_that_is_not_an_earlier_demo(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["demo", "--seconds", "2", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not overwriting" in err[0]
    assert (out / "keep.txt").read_text() == "precious"


def test_demo_unknown_artist_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--artist", "june medow", "--seconds", "2", "--out", str(tmp_path / "d")]) != 0
    err = capsys.readouterr().err
    assert "june meadow" in err and "Traceback" not in err  # the closest known name is suggested
