"""The command line: help, the encode/decode round trip, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from openjukebox.checkpoints.codes import load_codes
from openjukebox.cli import build_parser, main

SR = 44100


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openjukebox.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["import"],
        ["encode"],
        ["decode"],
        ["vqvae", "train"],
        ["vqvae", "eval"],
        ["data", "index"],
        ["data", "synth"],
        ["data", "encode"],
    ],
    ids=str,
)
def test_help_explains_every_option(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: openjukebox" in out
    for action in build_parser()._actions:  # every option of the top level has a help text
        assert action.help or action.dest == "command"


def test_encode_decode_round_trip(tmp_path, tones_dir, tiny_vqvae_dir, capsys):
    audio = tones_dir / "tone0.wav"
    codes_path = tmp_path / "codes.npz"
    assert main(["encode", str(audio), "-o", str(codes_path), "--vqvae", str(tiny_vqvae_dir)]) == 0
    codes = load_codes(codes_path)
    n = sf.info(audio).frames
    assert sorted(codes.zs) == [0, 1, 2] and codes.length == n
    assert [codes.zs[lv].shape[1] for lv in range(3)] == [-(-n // 128) * 128 // h for h in (8, 32, 128)]
    for level in range(3):
        out = tmp_path / f"l{level}.wav"
        assert (
            main(["decode", str(codes_path), "--level", str(level), "-o", str(out), "--vqvae", str(tiny_vqvae_dir)])
            == 0
        )
        info = sf.info(out)
        assert info.frames == n and info.samplerate == SR
    assert "level 2 ->" in capsys.readouterr().out


def test_encode_only_some_levels_and_decode_default(tmp_path, tones_dir, tiny_vqvae_dir):
    codes_path = tmp_path / "codes.npz"
    assert (
        main(
            [
                "encode",
                str(tones_dir / "tone1.wav"),
                "-o",
                str(codes_path),
                "--levels",
                "2",
                "--vqvae",
                str(tiny_vqvae_dir),
            ]
        )
        == 0
    )
    assert sorted(load_codes(codes_path).zs) == [2]
    assert main(["decode", str(codes_path), "-o", str(tmp_path / "x.wav"), "--vqvae", str(tiny_vqvae_dir)]) == 0


def _bad_inputs(tmp_path, tiny_vqvae_dir, tones_dir):
    """(argv, expected message fragment) for every kind of bad input."""
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, dtype=np.float32), SR)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(4096, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"\x00" * 100)
    not_vqvae = tmp_path / "prior.pth.tar"  # looks like a prior (so it is imported as one) but is incomplete
    torch.save({"model": {"prior.x_emb.weight": torch.zeros(2, 2)}}, not_vqvae)
    no_model = tmp_path / "nomodel.pth.tar"
    torch.save({"weights": {}}, no_model)
    zip_not_torch = tmp_path / "other.pth.tar"
    with zipfile.ZipFile(zip_not_torch, "w") as z:
        z.writestr("a.txt", "x")
    bad_codes = tmp_path / "codes.npz"
    bad_codes.write_text("x")
    good_codes = tmp_path / "good.npz"
    main(["encode", str(tones_dir / "tone0.wav"), "-o", str(good_codes), "--vqvae", str(tiny_vqvae_dir)])
    v = ["--vqvae", str(tiny_vqvae_dir)]
    return [
        (["encode", str(tmp_path / "missing.wav"), "-o", "x.npz", *v], "no such file"),
        (["encode", str(tmp_path), "-o", "x.npz", *v], "folder"),
        (["encode", str(text), "-o", "x.npz", *v], "not an audio file"),
        (["encode", str(empty), "-o", "x.npz", *v], "empty"),
        (["encode", str(short), "-o", "x.npz", *v], "too short"),
        (["encode", str(nan), "-o", "x.npz", *v], "NaN"),
        (["encode", str(tones_dir / "tone0.wav"), "-o", "x.npz", "--levels", "3", *v], "out of range"),
        (["encode", str(tones_dir / "tone0.wav"), "-o", "x.npz", "--vqvae", str(tmp_path)], "config.json"),
        (["decode", str(bad_codes), "-o", "x.wav", *v], "not a codes file"),
        (["decode", str(good_codes), "--level", "5", "-o", "x.wav", *v], "no level 5"),
        (["decode", str(good_codes), "-o", str(tmp_path / "x.mp3"), *v], ".mp3"),
        (["import", str(tmp_path / "missing.pth.tar"), "-o", str(tmp_path / "o")], "no such file"),
        (["import", str(garbage), "-o", str(tmp_path / "o")], "not a PyTorch checkpoint"),
        (["import", str(zip_not_torch), "-o", str(tmp_path / "o")], "not a PyTorch checkpoint"),
        (["import", str(not_vqvae), "-o", str(tmp_path / "o")], "not a Jukebox prior checkpoint"),
        (["import", str(no_model), "-o", str(tmp_path / "o")], "no 'model'"),
        (["vqvae", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")], "no such folder"),
        (
            ["vqvae", "train", "--data", str(tones_dir), "--out", str(tmp_path / "r"), "--sample-length", "1000"],
            "multiple of 128",
        ),
        (["vqvae", "train", "--data", str(tones_dir), "--out", str(tmp_path / "r2"), "--resume"], "config.json"),
        (["vqvae", "eval", "--data", str(tmp_path / "none"), *v], "no such folder"),
    ]


def test_bad_input_gives_one_line_error(tmp_path, tiny_vqvae_dir, tones_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for argv, fragment in _bad_inputs(tmp_path, tiny_vqvae_dir, tones_dir):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err, argv
        assert err[-1].startswith("openjukebox: error: ") and fragment in err[-1], (argv, err)
    assert not list(tmp_path.glob("x.*")), "nothing half-written"


def test_no_traceback_in_a_real_process(tmp_path):
    garbage = tmp_path / "vqvae.pth.tar"
    garbage.write_text("hello")
    result = run_cli("import", str(garbage), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"openjukebox: error: {garbage}: not a PyTorch checkpoint (expected a torch.save zip archive)"
    )
    assert not (tmp_path / "out").exists()


def test_evil_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "vqvae.pth.tar"
    torch.save({"model": {}, "hps": Evil()}, path)
    assert main(["import", str(path), "-o", str(tmp_path / "o")]) == 1
    assert not marker.exists()


def test_missing_default_vqvae_is_explained(tmp_path, monkeypatch, tones_dir, capsys):
    monkeypatch.setenv("OPENJUKEBOX_HOME", str(tmp_path / "home"))
    assert main(["encode", str(tones_dir / "tone0.wav"), "-o", str(tmp_path / "c.npz")]) == 1
    assert "openjukebox import vqvae.pth.tar" in capsys.readouterr().err
