"""Tests for openjukebox.data.audio_folder: scanning, rejection, crops, deterministic batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from openjukebox.audio import load_audio
from openjukebox.data.audio_folder import AudioFolder
from openjukebox.data.batches import SeededBatches
from openjukebox.errors import OpenJukeboxError

SR = 22050


def noise(sr: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    n = round(sr * seconds)
    return (np.random.default_rng(seed).standard_normal((n, channels)) * 0.2).astype(np.float32)


@pytest.fixture
def music(tmp_path: Path) -> Path:
    """A folder of usable files in three formats and rates, plus files that must be rejected or ignored."""
    root = tmp_path / "music"
    (root / "sub" / "deeper").mkdir(parents=True)
    sf.write(root / "a.wav", noise(48000, 3.0, channels=2, seed=1), 48000)
    sf.write(root / "sub" / "b.flac", noise(44100, 2.0, seed=2), 44100)
    sf.write(root / "sub" / "deeper" / "c.OGG", noise(SR, 1.5, seed=3), SR, subtype="VORBIS")
    sf.write(root / "short.wav", noise(SR, 0.05), SR)
    sf.write(root / "empty.wav", np.zeros((0, 1), np.float32), SR)
    (root / "fake.wav").write_text("not audio")
    (root / "notes.txt").write_text("ignored: not an audio extension")
    (root / "folder.wav").mkdir()  # a folder with an audio extension is not a file
    return root


def test_scan_keeps_usable_files_in_sorted_order(music: Path) -> None:
    folder = AudioFolder(music, SR, 4410)
    assert [p.relative_to(music).as_posix() for p in folder.files] == ["a.wav", "sub/b.flac", "sub/deeper/c.OGG"]
    assert len(folder) == 3
    assert folder.total_duration_s == pytest.approx(6.5, abs=1e-3)
    np.testing.assert_allclose(folder.durations_s, [3.0, 2.0, 1.5], atol=1e-3)


def test_rejected_files_are_recorded_with_reasons(music: Path) -> None:
    rejected = dict(AudioFolder(music, SR, 4410).rejected)
    assert sorted(p.name for p in rejected) == ["empty.wav", "fake.wav", "short.wav"]
    assert rejected[music / "fake.wav"].startswith("not an audio file")
    assert "too short (0.05 s" in rejected[music / "short.wav"]
    assert "too short (0.00 s" in rejected[music / "empty.wav"]


def test_min_duration_rejects_more(music: Path) -> None:
    folder = AudioFolder(music, SR, 4410, min_duration_s=1.8)
    assert [p.name for p in folder.files] == ["a.wav", "b.flac"]
    assert "need at least 1.80 s" in dict(folder.rejected)[music / "sub" / "deeper" / "c.OGG"]


def test_errors_name_the_folder(tmp_path: Path, music: Path) -> None:
    with pytest.raises(OpenJukeboxError, match="no such folder"):
        AudioFolder(tmp_path / "missing", SR, 100)
    with pytest.raises(OpenJukeboxError, match="not a folder"):
        AudioFolder(music / "a.wav", SR, 100)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(OpenJukeboxError) as e:
        AudioFolder(tmp_path / "texts", SR, 100)
    assert str(e.value).startswith(f"{tmp_path / 'texts'}: no audio files")
    with pytest.raises(OpenJukeboxError) as e:
        AudioFolder(music, SR, SR * 10)  # every file is shorter than one crop
    msg = str(e.value)
    assert msg.startswith(f"{music}: all 6 audio files rejected") and "a.wav (too short" in msg
    assert "and 3 more" in msg


def test_crops_and_batches_have_the_right_shape(music: Path) -> None:
    folder = AudioFolder(music, SR, 4410)
    crop = folder.crop(np.random.default_rng(0))
    assert crop.shape == (4410,) and crop.dtype == np.float32
    batch = folder.batch(seed=0, index=0, batch_size=5)
    assert batch.shape == (5, 4410, 1) and batch.dtype == torch.float32


def test_batches_are_a_pure_function_of_seed_and_index(music: Path) -> None:
    a, b = AudioFolder(music, SR, 4410), AudioFolder(music, SR, 4410)
    first = a.batch(seed=3, index=17, batch_size=4)
    a.batch(seed=3, index=5, batch_size=4)  # no hidden state between calls
    assert torch.equal(first, b.batch(seed=3, index=17, batch_size=4))
    assert not torch.equal(first, a.batch(seed=3, index=18, batch_size=4))
    assert not torch.equal(first, a.batch(seed=4, index=17, batch_size=4))
    with pytest.raises(ValueError):
        a.batch(seed=-1, index=0, batch_size=4)


def test_crop_reads_only_its_frames_and_matches_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "long").mkdir()
    path = tmp_path / "long" / "long.wav"
    sf.write(path, noise(48000, 20.0, channels=2), 48000, subtype="FLOAT")
    folder = AudioFolder(tmp_path / "long", 44100, 2048)
    full = load_audio(path, 44100)

    requested: list[int] = []
    read = sf.SoundFile.read

    def counting_read(self: sf.SoundFile, frames: int = -1, *args: object, **kwargs: object) -> np.ndarray:
        requested.append(frames)
        return read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    rng = np.random.default_rng(0)
    for _ in range(5):
        crop = folder.crop(rng)
        # Locate the crop in the whole file by its first samples (noise: the match is unique), then compare.
        windows = np.lib.stride_tricks.sliding_window_view(full, 16)
        start = int(np.argmin(np.abs(windows - crop[:16]).sum(axis=1)))
        np.testing.assert_allclose(crop, full[start : start + 2048], atol=1e-5)
    assert all(0 < n < 48000 for n in requested), requested  # a few thousand frames each, never the file


def test_files_are_drawn_in_proportion_to_duration(tmp_path: Path) -> None:
    sf.write(tmp_path / "one.wav", np.full(SR, 0.25, np.float32), SR, subtype="FLOAT")
    sf.write(tmp_path / "three.wav", np.full(3 * SR, -0.5, np.float32), SR, subtype="FLOAT")
    folder = AudioFolder(tmp_path, SR, 64)
    rng = np.random.default_rng(0)
    first = np.array([folder.crop(rng)[0] for _ in range(600)])
    assert set(np.unique(first)) == {np.float32(0.25), np.float32(-0.5)}
    assert np.mean(first == np.float32(-0.5)) == pytest.approx(0.75, abs=0.06)


def test_crop_batches_for_a_dataloader(music: Path) -> None:
    folder = AudioFolder(music, SR, 1024)
    batches = SeededBatches(folder, seed=7, batch_size=3, start_index=10, length=4)
    assert len(batches) == 4
    assert torch.equal(batches[2], folder.batch(7, 12, 3))
    with pytest.raises(IndexError):
        batches[4]
    loaded = list(DataLoader(batches, batch_size=None, num_workers=2))
    assert len(loaded) == 4
    for i, batch in enumerate(loaded):
        assert torch.equal(batch, folder.batch(7, 10 + i, 3))
