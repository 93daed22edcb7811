"""Tests for openjukebox.audio.io: decoding, downmix, resampling, windows, errors, writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from openjukebox.audio import SUPPORTED_EXTENSIONS, audio_info, load_audio, read_segment, save_audio
from openjukebox.errors import OpenJukeboxError

HAS_MP3 = "MP3" in sf.available_formats()
needs_mp3 = pytest.mark.skipif(not HAS_MP3, reason="this libsndfile build has no MP3 support (needs >= 1.1)")

# (extension, soundfile.write keyword arguments, whether the codec is lossless)
FORMATS = [
    ("wav", {}, True),
    ("flac", {}, True),
    ("ogg", {"subtype": "VORBIS"}, False),
    pytest.param("mp3", {}, False, marks=needs_mp3),
]


def sine(freq: float, sr: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tonal(sr: int, seconds: float) -> np.ndarray:
    """(T, 2) vibrato tone: unlike noise, a tone makes MP3 use its bit reservoir, which breaks naive seeks."""
    t = np.arange(round(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(t)))
    return np.stack([x, 0.7 * x], axis=1).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def noise(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, channels)) * 0.2).astype(np.float32)


def test_supported_extensions_cover_the_common_formats() -> None:
    assert {".wav", ".flac", ".ogg", ".aiff"} <= set(SUPPORTED_EXTENSIONS)
    assert (".mp3" in SUPPORTED_EXTENSIONS) == HAS_MP3
    assert all(ext == ext.lower() and ext.startswith(".") for ext in SUPPORTED_EXTENSIONS)


def test_stereo_48k_resampled_to_44k_keeps_length_and_pitch(tmp_path: Path) -> None:
    x = sine(440, 48000, 2.0)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([x, 0.5 * x], axis=1), 48000, subtype="FLOAT")
    audio = load_audio(path, 44100)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 88200
    assert abs(peak_hz(audio, 44100) - 440) < 1.0
    middle = slice(1000, -1000)  # away from the resampler's edges
    np.testing.assert_allclose(audio[middle], 0.75 * sine(440, 44100, 2.0)[middle], atol=2e-3)


def test_downmix_is_the_mean_of_channels(tmp_path: Path) -> None:
    x = noise(1000, channels=3)
    sf.write(tmp_path / "three.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "three.wav", 16000), x.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize(("ext", "kwargs", "lossless"), FORMATS)
def test_reads_each_format(tmp_path: Path, ext: str, kwargs: dict, lossless: bool) -> None:
    x = sine(440, 44100, 1.0)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, np.stack([x, x], axis=1), 44100, **kwargs)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (44100, 2)
    audio = load_audio(path, 44100)
    assert abs(len(audio) - len(x)) <= (0 if lossless else 2 * 1152)
    assert abs(peak_hz(audio, 44100) - 440) < 2.0
    if lossless:
        np.testing.assert_allclose(audio, x, atol=1 / 32768)


def test_audio_info_reads_the_header(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, noise(24000, channels=2), 48000)
    info = audio_info(path)
    assert info.path == path
    assert (info.sample_rate, info.channels, info.frames, info.format) == (48000, 2, 24000, "FLAC")
    assert info.duration_s == pytest.approx(0.5)


@pytest.mark.parametrize(("ext", "kwargs", "lossless"), FORMATS)
@pytest.mark.parametrize("src_sr", [44100, 48000])
def test_windows_equal_slices_of_the_whole_file(
    tmp_path: Path, ext: str, kwargs: dict, lossless: bool, src_sr: int
) -> None:
    # Lossy codecs have seek bugs in libsndfile (MP3 bit reservoir, last Ogg page); windows must still match.
    path = tmp_path / f"tonal.{ext}"
    sf.write(path, tonal(src_sr, 3.0), src_sr, **kwargs)
    full = load_audio(path, 44100)
    n = len(full)
    for start in [0, 7, 3000, 50001, n - 20000, n - 3000, n - 100]:
        np.testing.assert_allclose(read_segment(path, 44100, start, 1000), full[start : start + 1000], atol=1e-5)
    part = load_audio(path, 44100, offset_s=0.5, duration_s=0.25)
    np.testing.assert_allclose(part, full[22050 : 22050 + 11025], atol=1e-5)
    assert len(read_segment(path, 44100, n - 10, 1000)) == 10


def test_normalize_scales_the_peak_and_leaves_silence(tmp_path: Path) -> None:
    sf.write(tmp_path / "quiet.wav", sine(440, 16000, 0.5, amplitude=0.1), 16000, subtype="FLOAT")
    assert np.abs(load_audio(tmp_path / "quiet.wav", 16000, normalize=True)).max() == pytest.approx(0.99)
    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    assert not load_audio(tmp_path / "silent.wav", 16000, normalize=True).any()


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OpenJukeboxError) as e:
        load_audio(tmp_path / "nope.wav", 44100)
    assert message(e).startswith(str(tmp_path / "nope.wav")) and "no such file" in message(e)
    with pytest.raises(OpenJukeboxError, match="no such file"):
        audio_info(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "song.wav").mkdir()
    with pytest.raises(OpenJukeboxError) as e:
        load_audio(tmp_path / "song.wav", 44100)
    assert message(e).startswith(str(tmp_path / "song.wav")) and "folder" in message(e)


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "song.wav"
    path.write_text("this is not audio\n" * 10)
    for call in (lambda: load_audio(path, 44100), lambda: audio_info(path)):
        with pytest.raises(OpenJukeboxError) as e:
            call()
        assert message(e).startswith(f"{path}: not an audio file") and "libsndfile" in message(e)
        assert "\n" not in message(e)


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 44100)
    assert audio_info(path).frames == 0
    with pytest.raises(OpenJukeboxError, match=r"empty\.wav: empty audio file"):
        load_audio(path, 44100)


def test_too_short_names_length_and_minimum(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, sine(440, 48000, 0.5), 48000)
    with pytest.raises(OpenJukeboxError) as e:
        load_audio(path, 44100, min_samples=44100)
    assert message(e).startswith(f"{path}: too short") and "0.50 s" in message(e) and "1.00 s" in message(e)
    assert len(load_audio(path, 44100, min_samples=22050)) == 22050


def test_nan_samples(tmp_path: Path) -> None:
    x = sine(440, 16000, 0.5)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(OpenJukeboxError, match=r"nan\.wav: contains NaN"):
        load_audio(tmp_path / "nan.wav", 22050)
    x[100] = np.inf
    sf.write(tmp_path / "inf.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(OpenJukeboxError, match="infinite"):
        load_audio(tmp_path / "inf.wav", 16000)


def test_offset_past_the_end(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", sine(440, 16000, 1.0), 16000)
    with pytest.raises(OpenJukeboxError, match=r"offset 2\.00 s is past the end"):
        load_audio(tmp_path / "a.wav", 16000, offset_s=2.0)


@pytest.mark.parametrize(
    ("name", "subtype", "atol"), [("a.wav", "PCM_16", 1 / 32768), ("a.wav", "FLOAT", 0), ("a.flac", "PCM_24", 1e-6)]
)
def test_save_round_trips(tmp_path: Path, name: str, subtype: str, atol: float) -> None:
    x = noise(4000, channels=2)
    save_audio(tmp_path / name, x, 22050, subtype=subtype)
    y, sr = sf.read(tmp_path / name, dtype="float32")
    assert sr == 22050 and y.shape == (4000, 2)
    np.testing.assert_allclose(y, x, atol=atol)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left behind


def test_save_clips_and_writes_mono(tmp_path: Path) -> None:
    save_audio(tmp_path / "loud.wav", np.array([0.5, 1.5, -3.0], np.float32), 8000, subtype="FLOAT")
    y, _ = sf.read(tmp_path / "loud.wav", dtype="float32")
    np.testing.assert_array_equal(y, [0.5, 1.0, -1.0])


def test_save_rejects_other_formats(tmp_path: Path) -> None:
    with pytest.raises(OpenJukeboxError) as e:
        save_audio(tmp_path / "out.mp3", np.zeros(10, np.float32), 44100)
    assert message(e).startswith(str(tmp_path / "out.mp3")) and ".mp3" in message(e) and ".wav" in message(e)
    with pytest.raises(OpenJukeboxError, match="FLOAT"):
        save_audio(tmp_path / "out.flac", np.zeros(10, np.float32), 44100, subtype="FLOAT")
    with pytest.raises(OpenJukeboxError, match="NaN"):
        save_audio(tmp_path / "out.wav", np.full(10, np.nan, np.float32), 44100)
    with pytest.raises(ValueError, match="shape"):
        save_audio(tmp_path / "out.wav", np.zeros((2, 1000), np.float32), 44100)
    assert list(tmp_path.iterdir()) == []
