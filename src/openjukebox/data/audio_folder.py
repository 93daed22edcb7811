"""The training dataset of raw audio: random fixed-length crops from a folder of audio files.

Like the original Jukebox's `FilesAudioDataset` (Dhariwal et al. 2020, section 5.1), a crop is taken from a
file chosen with probability proportional to its duration, at a uniform start. Unlike it, there is no index of
the dataset's crops: a batch is a pure function of (seed, step), so training resumes bit-identically from the
step number alone, and DataLoader workers can build any batch in any order.

Only the frames of a crop are decoded (`openjukebox.audio.io.read_segment`), so long files cost no more than
short ones. File durations come from headers at construction; unreadable or too short files are skipped and
listed in `AudioFolder.rejected`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from openjukebox.audio.io import SUPPORTED_EXTENSIONS, audio_info, read_segment, resampled_length
from openjukebox.errors import OpenJukeboxError

log = logging.getLogger(__name__)

_LISTED_REJECTS = 3  # rejected files quoted in an error message


class AudioFolder:
    """Random crops of `sample_length` samples at rate `sr` from the audio files under `root` (recursive).

    Args:
        root: folder scanned recursively for SUPPORTED_EXTENSIONS, in sorted order.
        sr: sample rate of the crops; files at other rates are resampled.
        sample_length: samples per crop.
        min_duration_s: skip files shorter than this; files shorter than one crop are always skipped.
    """

    def __init__(
        self, root: str | os.PathLike, sr: int, sample_length: int, *, min_duration_s: float | None = None
    ) -> None:
        if sr <= 0 or sample_length <= 0:
            raise ValueError(f"need sr > 0 and sample_length > 0; got {sr}, {sample_length}")
        self.root = Path(root)
        self.sr = sr
        self.sample_length = sample_length
        self.min_duration_s = max(min_duration_s or 0.0, sample_length / sr)
        if not self.root.exists():
            raise OpenJukeboxError(f"{self.root}: no such folder")
        if not self.root.is_dir():
            raise OpenJukeboxError(f"{self.root}: not a folder")

        self.files: list[Path] = []
        self.rejected: list[tuple[Path, str]] = []
        lengths: list[int] = []  # samples at sr
        candidates = _scan(self.root)
        for path in candidates:
            reason, length = self._check(path)
            if reason is None:
                self.files.append(path)
                lengths.append(length)
            else:
                self.rejected.append((path, reason))
        if not candidates:
            exts = " ".join(SUPPORTED_EXTENSIONS)
            raise OpenJukeboxError(f"{self.root}: no audio files (looked for {exts} in all subfolders)")
        if not self.files:
            raise OpenJukeboxError(f"{self.root}: all {len(candidates)} audio files rejected: {self._rejects()}")
        if self.rejected:
            n_rejected, n_found = len(self.rejected), len(candidates)
            log.warning("%s: skipped %d of %d audio files: %s", self.root, n_rejected, n_found, self._rejects())
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self._ends = np.cumsum(self.lengths)  # file i owns positions [ends[i-1], ends[i]) of the concatenation

    def _check(self, path: Path) -> tuple[str | None, int]:
        """(None, length at sr) for a usable file, or (reason, 0)."""
        try:
            info = audio_info(path)
        except OpenJukeboxError as e:
            return str(e).removeprefix(f"{path}: "), 0
        length = resampled_length(info.frames, info.sample_rate, self.sr)
        if info.duration_s < self.min_duration_s or length < self.sample_length:
            return f"too short ({info.duration_s:.2f} s; need at least {self.min_duration_s:.2f} s)", 0
        return None, length

    def _rejects(self) -> str:
        listed = "; ".join(f"{p.relative_to(self.root)} ({why})" for p, why in self.rejected[:_LISTED_REJECTS])
        more = len(self.rejected) - _LISTED_REJECTS
        return listed + (f"; and {more} more" if more > 0 else "")

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (
            f"AudioFolder({str(self.root)!r}, sr={self.sr}, sample_length={self.sample_length}: "
            f"{len(self)} files, {self.total_duration_s:.1f} s)"
        )

    @property
    def durations_s(self) -> np.ndarray:
        """(n_files,) duration of each usable file in seconds (at sr)."""
        return self.lengths / self.sr

    @property
    def total_duration_s(self) -> float:
        return float(self.lengths.sum() / self.sr)

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """A float32 (sample_length,) mono crop; two draws from `rng` decide which file and where."""
        i, start = draw_crop(rng, self._ends, self.lengths, self.sample_length)
        return read_crop(self.files[i], self.sr, start, self.sample_length)

    def batch(self, seed: int, index: int, batch_size: int) -> torch.Tensor:
        """(batch_size, sample_length, 1) float32 crops, a pure function of (seed, index, batch_size)."""
        if seed < 0 or index < 0 or batch_size <= 0:
            raise ValueError(f"need seed >= 0, index >= 0, batch_size > 0; got {seed}, {index}, {batch_size}")
        rng = np.random.default_rng([seed, index])
        crops = np.stack([self.crop(rng) for _ in range(batch_size)])  # (B, T)
        return torch.from_numpy(crops).unsqueeze(-1)  # (B, T, 1)


def draw_crop(rng: np.random.Generator, ends: np.ndarray, lengths: np.ndarray, sample_length: int) -> tuple[int, int]:
    """(file, start) of a random crop: two draws from `rng`. `ends` = cumsum(lengths).

    Drawing a position over all files' samples picks file i with probability lengths[i] / total; the start is
    then uniform over the file's valid crop positions.
    """
    i = int(np.searchsorted(ends, rng.integers(ends[-1]), side="right"))
    return i, int(rng.integers(lengths[i] - sample_length + 1))


def read_crop(path: Path, sr: int, start: int, sample_length: int) -> np.ndarray:
    """`sample_length` samples from `start` (only those frames decoded), zero-padded where the file ends early."""
    audio = read_segment(path, sr, start, sample_length)
    if len(audio) < sample_length:  # header frame counts can be estimates (MP3 without a Xing tag)
        audio = np.pad(audio, (0, sample_length - len(audio)))
    return audio


def _scan(root: Path) -> list[Path]:
    """Audio files under root by extension (case-insensitive), sorted by relative path for determinism."""
    found = [p for p in root.rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
