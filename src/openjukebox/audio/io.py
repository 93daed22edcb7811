"""Audio files in and out: decoding, downmixing, resampling and writing, with user-facing errors.

Everything that touches an audio file on disk goes through here. Reading uses libsndfile (through soundfile),
which handles WAV, FLAC, Ogg Vorbis/Opus, MP3 (libsndfile 1.1+), AIFF, AU and CAF; resampling uses soxr.
Audio comes out as float32 mono, the downmix being the mean of the channels as in the original Jukebox
(Dhariwal et al. 2020, section 5.1: "we downmix to mono"). Any problem a user can cause (a missing file, a
text file named .wav, an empty or too short file, NaN samples) raises `OpenJukeboxError` whose message
starts with the path.

Windows (`read_segment`) are read without decoding the rest of the file, and they land on the same sample
grid as resampling the whole file: reading starts on a "block" boundary (the shortest span holding a whole
number of samples at both rates) a little before the window, so the resampler's edge transient is trimmed
off and a window equals the matching slice of `load_audio(path, sr)` to float32 precision.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import atomic_path

_EXTENSION_FORMATS = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aiff": "AIFF",
    ".aif": "AIFF",
    ".au": "AU",
    ".caf": "CAF",
}


def _extension_readable(ext: str, fmt: str) -> bool:
    if fmt not in sf.available_formats():
        return False
    return ext != ".opus" or "OPUS" in sf.available_subtypes("OGG")


# File extensions scanned for in dataset folders: the ones this libsndfile build can decode.
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(
    ext for ext, fmt in _EXTENSION_FORMATS.items() if _extension_readable(ext, fmt)
)
_SAVE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}

# libsndfile 1.2's seeking in compressed files is not sample exact (checked against decoding from the start):
# - MP3: the first ~2 MPEG frames after a seek can decode wrongly (bit reservoir), so we seek this many frames
#   earlier and drop them;
# - Ogg Vorbis: a seek into the last Ogg page lands some samples off, so windows in the last few seconds are
#   read from a seek point this far before the end. (A second seek on one handle is also wrong: we open a
#   fresh handle for every window and seek once.)
_MP3_PREROLL = 4 * 1152
_OGG_TAIL_S = 10
# Samples of context kept on each side of a window at both rates; soxr HQ's edge transient is < 300.
_RESAMPLE_MARGIN = 1024


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, without decoding it."""

    path: Path
    sample_rate: int
    channels: int
    frames: int  # per channel, at sample_rate
    duration_s: float
    format: str  # libsndfile's major format: "WAV", "FLAC", "OGG", "MP3", ...


def _open(path: str | os.PathLike) -> sf.SoundFile:
    """Open `path` for reading, turning every failure into a one-line OpenJukeboxError."""
    p = Path(path)
    if not p.exists():
        raise OpenJukeboxError(f"{p}: no such file")
    if p.is_dir():
        raise OpenJukeboxError(f"{p}: is a folder, not an audio file")
    try:
        f = sf.SoundFile(p)
    except (sf.SoundFileError, RuntimeError, TypeError) as e:
        reason = getattr(e, "error_string", None) or str(e)
        if not os.access(p, os.R_OK):
            raise OpenJukeboxError(f"{p}: cannot read the file (permission denied)") from None
        raise OpenJukeboxError(f"{p}: not an audio file or unsupported format (libsndfile: {reason})") from None
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise OpenJukeboxError(f"{p}: not an audio file (header gives {f.samplerate} Hz, {f.channels} channels)")
    return f


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file (nothing is decoded). Zero-length files are reported, not refused."""
    with _open(path) as f:
        return AudioInfo(
            path=Path(path),
            sample_rate=f.samplerate,
            channels=f.channels,
            frames=f.frames,
            duration_s=f.frames / f.samplerate,
            format=f.format,
        )


def resampled_length(frames: int, src_sr: int, sr: int) -> int:
    """Number of samples `frames` samples at `src_sr` become at `sr` (soxr rounds to the nearest)."""
    return (frames * sr + src_sr // 2) // src_sr


def _read_frames(f: sf.SoundFile, start: int, frames: int) -> np.ndarray:
    """Frames [start, start + frames) as float32 (n, channels); n < frames at the end; frames=-1 reads all."""
    if start >= f.frames > 0:
        return np.zeros((0, f.channels), dtype=np.float32)
    preroll = 0
    if f.format == "MP3":
        preroll = min(start, _MP3_PREROLL)
    elif f.format == "OGG":
        preroll = max(start - max(f.frames - _OGG_TAIL_S * f.samplerate, 0), 0)
    f.seek(start - preroll)
    data = f.read(frames + preroll if frames >= 0 else -1, dtype="float32", always_2d=True)
    return data[preroll:]


def _downmix(data: np.ndarray, path: Path) -> np.ndarray:
    """(n, channels) -> (n,) mean of channels; refuses NaN/inf so they never reach the resampler or a model."""
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise OpenJukeboxError(f"{path}: contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _read_window(f: sf.SoundFile, path: Path, sr: int, start: int, length: int | None) -> np.ndarray:
    """Samples [start, start + length) of the file resampled to `sr`, mono float32; length None = to the end."""
    src_sr = f.samplerate
    if src_sr == sr:
        return _downmix(_read_frames(f, start, -1 if length is None else length), path)
    g = math.gcd(src_sr, sr)
    src_block, dst_block = src_sr // g, sr // g
    margin = max(math.ceil(_RESAMPLE_MARGIN / src_block), math.ceil(_RESAMPLE_MARGIN / dst_block))
    first = max(start // dst_block - margin, 0)  # in blocks
    if length is None:
        frames = -1
    else:
        last = -(-(start + length) // dst_block) + margin
        frames = (last - first) * src_block
    mono = _downmix(_read_frames(f, first * src_block, frames), path)
    if len(mono) == 0:
        return mono
    out = soxr.resample(mono, src_sr, sr, quality="HQ")
    skip = start - first * dst_block
    return out[skip:] if length is None else out[skip : skip + length]


def read_segment(path: str | os.PathLike, sr: int, start: int, length: int) -> np.ndarray:
    """Mono float32 samples [start, start + length) of `path` at rate `sr`, decoding only that part.

    Positions are in samples at `sr`. The result is shorter than `length` (possibly empty) where the file ends
    first. It equals `load_audio(path, sr)[start:start + length]` to float32 precision.
    """
    if sr <= 0 or start < 0 or length < 0:
        raise ValueError(f"need sr > 0, start >= 0, length >= 0; got {sr}, {start}, {length}")
    p = Path(path)
    with _open(p) as f:
        return _read_window(f, p, sr, start, length)


def load_audio(
    path: str | os.PathLike,
    sr: int,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    normalize: bool = False,
    min_samples: int = 0,
) -> np.ndarray:
    """Decode `path` to float32 mono (T,) at `sr`: channels averaged, resampled with soxr (HQ) if needed.

    Args:
        offset_s, duration_s: read only this part of the file (duration None = to the end; the result is
            shorter than duration_s where the file ends first).
        normalize: scale so that the peak |sample| is 0.99 (silence is left as is).
        min_samples: refuse files shorter than this after resampling.
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if offset_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ValueError(f"need offset_s >= 0 and duration_s > 0; got {offset_s}, {duration_s}")
    p = Path(path)
    with _open(p) as f:
        if f.frames == 0:
            raise OpenJukeboxError(f"{p}: empty audio file (0 samples)")
        start = round(offset_s * sr)
        if start > 0 and start >= resampled_length(f.frames, f.samplerate, sr):
            total_s = f.frames / f.samplerate
            raise OpenJukeboxError(f"{p}: offset {offset_s:.2f} s is past the end of the audio ({total_s:.2f} s)")
        length = None if duration_s is None else max(round(duration_s * sr), 1)
        audio = _read_window(f, p, sr, start, length)
    if len(audio) == 0:
        raise OpenJukeboxError(f"{p}: empty audio file (0 samples decoded)")
    if len(audio) < min_samples:
        raise OpenJukeboxError(f"{p}: too short ({len(audio) / sr:.2f} s; need at least {min_samples / sr:.2f} s)")
    if normalize:
        peak = float(np.abs(audio).max())
        if peak > 0:
            audio = audio * np.float32(0.99 / peak)
    return audio


def save_audio(path: str | os.PathLike, audio: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> None:
    """Write (T,) mono or (T, C) audio to a .wav or .flac file, atomically; samples are clipped to [-1, 1].

    Args:
        subtype: libsndfile sample format, e.g. "PCM_16" (default), "PCM_24", or "FLOAT" (WAV only).
    """
    p = Path(path)
    fmt = _SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise OpenJukeboxError(f"{p}: cannot write '{p.suffix}' files; use .wav or .flac")
    if not sf.check_format(fmt, subtype):
        raise OpenJukeboxError(f"{p}: cannot write {subtype} samples to a {fmt} file")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or (audio.ndim == 2 and audio.shape[1] > 16):
        raise ValueError(f"expected (T,) or (T, C) audio with C <= 16, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise OpenJukeboxError(f"{p}: refusing to write audio containing NaN or infinite samples")
    audio = np.clip(audio, -1.0, 1.0)
    with atomic_path(p) as tmp:
        sf.write(tmp, audio, sr, format=fmt, subtype=subtype)
