"""The code cache: `openjukebox data encode DIR --vqvae CKPT` and its read API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from openjukebox.audio import load_audio
from openjukebox.checkpoints.codes import load_codes
from openjukebox.checkpoints.vqvae import load_vqvae, save_vqvae
from openjukebox.data.code_cache import (
    DEFAULT_CACHE_NAME,
    CodeCache,
    encode_cli,
    encode_songs,
    open_code_cache,
    vqvae_fingerprint,
)
from openjukebox.data.index import build_index, open_index


def _dataset(tmp_path: Path, n: int = 3) -> Path:
    """An indexed folder of n one-second stereo tones (the index refuses shorter songs)."""
    root = tmp_path / "songs"
    root.mkdir()
    sr = 44100
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    for i in range(n):
        x = 0.4 * np.sin(2 * np.pi * 110 * (i + 2) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(root / f"tone{i}.wav", np.stack([x, 0.8 * x], axis=1).astype(np.float32), sr)
    build_index(root, progress=False)
    return root


def _songs(root: Path):
    with open_index(root) as index:
        return index.songs("ok")


def _cache_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*.npz"))


def test_encode_all_songs_matches_model_encode(tmp_path, tiny_vqvae_dir):
    root = _dataset(tmp_path, n=2)
    summary = encode_songs(root, tiny_vqvae_dir, device="cpu", progress=False)
    assert (summary.encoded, summary.cached, summary.failed) == (2, 0, [])

    fingerprint = vqvae_fingerprint(tiny_vqvae_dir)
    cache_dir = root / DEFAULT_CACHE_NAME
    assert summary.cache_folder == cache_dir / fingerprint
    songs = _songs(root)
    files = _cache_files(cache_dir)
    assert len(files) == 2
    assert files == sorted(cache_dir / fingerprint / s.content_hash[:2] / f"{s.content_hash}.npz" for s in songs)
    assert not [p for p in cache_dir.rglob("*") if ".tmp-" in p.name]

    info = json.loads((cache_dir / fingerprint / "vqvae.json").read_text())
    model = load_vqvae(tiny_vqvae_dir)
    sr = model.config.sample_rate
    assert info["hop_lengths"] == list(model.hop_lengths)
    assert info["l_bins"] == model.config.l_bins
    assert info["sample_rate"] == sr
    assert Path(info["vqvae_folder"]) == Path(tiny_vqvae_dir).resolve()

    cache = open_code_cache(root, tiny_vqvae_dir)
    assert isinstance(cache, CodeCache) and cache.fingerprint == fingerprint
    for song in songs:
        assert song.content_hash in cache
        codes = cache.get(song.content_hash)
        assert codes is not None and codes.extra == {"path": song.path}
        audio = load_audio(root / song.path, sr)
        with torch.inference_mode():
            expected = model.encode(torch.from_numpy(audio)[None])
        assert sorted(codes.zs) == list(range(len(expected)))
        for level, z in enumerate(expected):
            np.testing.assert_array_equal(codes.zs[level], z.numpy())
        assert codes.length == len(audio)
        assert codes.hop_lengths == tuple(model.hop_lengths)
    assert "0" * 64 not in cache and cache.get("0" * 64) is None
    # the cache folder itself (not the dataset folder) also works
    assert open_code_cache(cache_dir, tiny_vqvae_dir).folder == cache.folder


def test_resume_skips_cached_and_reencodes_missing(tmp_path, tiny_vqvae_dir, capsys):
    root = _dataset(tmp_path)
    cache_dir = tmp_path / "cache"
    encode_songs(root, tiny_vqvae_dir, cache_dir, device="cpu", progress=False)
    files = _cache_files(cache_dir)
    mtimes = {p: p.stat().st_mtime_ns for p in files}

    args = argparse.Namespace(dir=root, vqvae=Path(tiny_vqvae_dir), cache=cache_dir)
    encode_cli(args)
    out = capsys.readouterr().out
    assert "encoded 0, skipped (cached) 3, failed 0" in out
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    files[1].unlink()
    files[2].write_bytes(b"not a zip")  # a damaged file counts as missing
    summary = encode_songs(root, tiny_vqvae_dir, cache_dir, device="cpu", progress=False)
    assert (summary.encoded, summary.cached, summary.failed) == (2, 1, [])
    assert files[0].stat().st_mtime_ns == mtimes[files[0]]
    assert _cache_files(cache_dir) == files
    load_codes(files[2])


def test_duplicate_songs_are_encoded_once(tmp_path, tiny_vqvae_dir):
    root = _dataset(tmp_path, n=2)
    (root / "copy.wav").write_bytes((root / "tone0.wav").read_bytes())
    build_index(root, progress=False)
    summary = encode_songs(root, tiny_vqvae_dir, device="cpu", progress=False)
    assert (summary.encoded, summary.cached, summary.failed) == (2, 1, [])
    assert len(_cache_files(root / DEFAULT_CACHE_NAME)) == 2


def test_different_vqvae_gets_its_own_folder(tmp_path, tiny_vqvae_dir):
    from openjukebox.vqvae import VQVAE, get_preset

    torch.manual_seed(1)
    other = VQVAE(get_preset("tiny"))
    for codebook in other.codebooks:
        codebook.embed.normal_(std=0.1)
        codebook.initted.fill_(True)
    other_dir = save_vqvae(tmp_path / "other_vqvae", other)

    root = _dataset(tmp_path, n=2)
    a = encode_songs(root, tiny_vqvae_dir, device="cpu", progress=False)
    b = encode_songs(root, other_dir, device="cpu", progress=False)
    assert vqvae_fingerprint(tiny_vqvae_dir) != vqvae_fingerprint(other_dir)
    assert a.cache_folder != b.cache_folder and a.cache_folder.parent == b.cache_folder.parent
    assert (a.encoded, b.encoded, b.cached) == (2, 2, 0)
    assert len(_cache_files(a.cache_folder)) == len(_cache_files(b.cache_folder)) == 2


def test_song_deleted_or_changed_after_indexing_fails_and_run_continues(tmp_path, tiny_vqvae_dir, capsys):
    root = _dataset(tmp_path)
    songs = _songs(root)
    (root / songs[0].path).unlink()
    # content changed since indexing: its codes would be filed under a stale hash, so it is refused too
    changed = bytearray((root / songs[1].path).read_bytes())
    changed[-4:] = b"\0\0\0\0"
    (root / songs[1].path).write_bytes(bytes(changed))
    summary = encode_songs(root, tiny_vqvae_dir, device="cpu", progress=False)
    assert (summary.encoded, summary.cached) == (1, 0)
    reasons = dict(summary.failed)
    assert sorted(reasons) == [songs[0].path, songs[1].path]
    assert "deleted" in reasons[songs[0].path] and "changed" in reasons[songs[1].path]
    cache = open_code_cache(root, tiny_vqvae_dir)
    assert songs[0].content_hash not in cache and songs[1].content_hash not in cache
    assert songs[2].content_hash in cache

    encode_cli(argparse.Namespace(dir=root, vqvae=Path(tiny_vqvae_dir), cache=None))
    out = capsys.readouterr().out
    assert "encoded 0, skipped (cached) 1, failed 2" in out
    assert songs[0].path in out and "deleted" in out


def test_missing_vqvae_files_is_a_user_error(tmp_path):
    from openjukebox.errors import OpenJukeboxError

    with pytest.raises(OpenJukeboxError, match="not a VQ-VAE checkpoint"):
        vqvae_fingerprint(tmp_path)


def test_interrupted_write_leaves_no_partial_file_and_resumes(tmp_path, tiny_vqvae_dir, monkeypatch):
    root = _dataset(tmp_path, n=2)
    real_savez = np.savez_compressed
    calls = []

    def savez_then_die(f, **arrays):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"PK\x03\x04 half a file")
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of writing the second song
        real_savez(f, **arrays)

    monkeypatch.setattr(np, "savez_compressed", savez_then_die)
    with pytest.raises(KeyboardInterrupt):
        encode_songs(root, tiny_vqvae_dir, device="cpu", progress=False)
    monkeypatch.setattr(np, "savez_compressed", real_savez)
    cache_dir = root / DEFAULT_CACHE_NAME
    assert len(_cache_files(cache_dir)) == 1
    assert not [p for p in cache_dir.rglob("*") if ".tmp-" in p.name]

    summary = encode_songs(root, tiny_vqvae_dir, device="cpu", progress=False)
    assert (summary.encoded, summary.cached, summary.failed) == (1, 1, [])
