"""The song index: metadata sources and their priority, rejections, incremental re-runs, kill safety."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import TCON, TIT2, TPE1, USLT
from mutagen.mp3 import MP3
from mutagen.oggvorbis import OggVorbis

from openjukebox.data import index as index_mod
from openjukebox.data.index import (
    DEFAULT_DB_NAME,
    SongIndex,
    build_index,
    index_cli,
    open_index,
)
from openjukebox.data.metadata import Word
from openjukebox.errors import OpenJukeboxError


def _tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 330 * t).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def _write(path: Path, seconds: float = 1.5, sr: int = 8000, channels: int = 1, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(seconds, sr, channels), sr, **kw)
    return path


def _sidecar(audio: Path, obj) -> None:
    audio.with_suffix(".json").write_text(json.dumps(obj))


WORDS = [{"word": "hello", "start": 0.1, "end": 0.4}, {"word": "world", "start": 0.5, "end": 1.0}]


def make_dataset(root: Path) -> Path:
    # 1. sidecar with everything, over a csv entry that it must win against
    a = _write(root / "sidecar.wav")
    _sidecar(
        a, {"artist": "Side Car", "genre": ["rock", "blues"], "lyrics": "hello world", "title": "S", "words": WORDS}
    )
    # 3. tags only: stereo 48 kHz FLAC with Vorbis comments
    f = FLAC(_write(root / "stereo48k.flac", sr=48000, channels=2))
    f["artist"], f["genre"], f["lyrics"], f["title"] = "Flac Artist", "jazz", "flac lyrics", "F"
    f.save()
    # 2 + 3 merged: jsonl gives the artist, the Ogg's tags the rest (UNSYNCEDLYRICS)
    o = OggVorbis(_write(root / "sub" / "merged.ogg", format="OGG", subtype="VORBIS"))
    o["artist"], o["genre"], o["unsyncedlyrics"] = "Tag Artist", "pop", "ogg lyrics"
    o.save()
    # 3. ID3 tags in an MP3
    m = MP3(_write(root / "sub" / "tagged.mp3", format="MP3"))
    m.add_tags()
    m.tags.add(TPE1(encoding=3, text=["Mp3 Artist"]))
    m.tags.add(TCON(encoding=3, text=["Metal"]))
    m.tags.add(TIT2(encoding=3, text=["M"]))
    m.tags.add(USLT(encoding=3, lang="eng", desc="", text="mp3 lyrics"))
    m.save()
    # 2. csv only: 8-bit WAV, two genres
    _write(root / "u8.wav", subtype="PCM_U8")
    _write(root / "csv_latin1.wav")
    # bad files
    (root / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "empty.wav").write_bytes(b"")
    _write(root / "short.wav", seconds=0.5)
    (_write(root / "badjson.wav").with_suffix(".json")).write_text('{"artist": "x",}')
    (_write(root / "latin1.wav").with_suffix(".json")).write_bytes('{"lyrics": "caf\xe9"}'.encode("latin-1"))
    _sidecar(_write(root / "badwords.wav"), {"lyrics": "a", "words": [{"word": "a", "start": 2.0, "end": 1.0}]})
    _sidecar(_write(root / "strwords.wav"), {"words": [{"word": "a", "start": "0", "end": 1}]})
    _broken_id3_chunk(_write(root / "badtags.wav"))
    (root / "notes.txt").write_text("not audio")  # ignored: not an audio extension

    (root / "metadata.jsonl").write_text(
        json.dumps({"path": "sub/merged.ogg", "artist": "Jsonl Artist"})
        + "\nnot json\n"
        + json.dumps({"path": "missing.wav", "artist": "nobody"})
        + "\n"
    )
    csv_bytes = (
        b'path,artist,genre,lyrics,title\nu8.wav,Csv Artist,rock;pop,"csv\nlyrics",U\n'
        b"sidecar.wav,Loser,,,\ncsv_latin1.wav,Csv,x,caf\xe9,\n"
    )
    (root / "metadata.csv").write_bytes(csv_bytes)
    return root


def _broken_id3_chunk(wav: Path) -> None:
    """Append an "id3 " chunk holding a corrupt ID3 header: libsndfile skips it, mutagen cannot parse it."""
    data = bytearray(wav.read_bytes())
    data += b"id3 " + struct.pack("<I", 20) + b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\xff" * 10
    data[4:8] = struct.pack("<I", len(data) - 8)
    wav.write_bytes(data)


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "songs")


def _by_path(root: Path) -> dict:
    with open_index(root) as idx:
        return {s.path: s for s in idx.songs(status=None)}


def test_rows_sources_and_rejections(dataset):
    summary = build_index(dataset, progress=False)
    songs = _by_path(dataset)
    assert len(songs) == 14

    s = songs["sidecar.wav"]
    assert (s.status, s.artist, s.genres, s.title, s.lyrics) == (
        "ok",
        "Side Car",
        ["rock", "blues"],
        "S",
        "hello world",
    )
    assert s.words == [Word("hello", 0.1, 0.4), Word("world", 0.5, 1.0)]
    assert s.metadata_source["artist"] == "sidecar"
    assert (s.sample_rate, s.channels, s.frames, s.format) == (8000, 1, 12000, "WAV")
    assert s.content_hash == index_mod.file_sha256(dataset / "sidecar.wav")

    f = songs["stereo48k.flac"]
    assert (f.artist, f.genres, f.lyrics, f.sample_rate, f.channels) == (
        "Flac Artist",
        ["jazz"],
        "flac lyrics",
        48000,
        2,
    )
    assert f.words is None and set(f.metadata_source.values()) == {"tags"}

    o = songs["sub/merged.ogg"]
    assert (o.artist, o.genres, o.lyrics) == ("Jsonl Artist", ["pop"], "ogg lyrics")
    assert o.metadata_source == {"artist": "metadata.jsonl", "genres": "tags", "lyrics": "tags"}

    m = songs["sub/tagged.mp3"]
    assert (m.status, m.artist, m.genres, m.title, m.lyrics) == ("ok", "Mp3 Artist", ["Metal"], "M", "mp3 lyrics")

    u = songs["u8.wav"]
    assert (u.artist, u.genres, u.lyrics, u.title) == ("Csv Artist", ["rock", "pop"], "csv\nlyrics", "U")
    assert u.metadata_source["genres"] == "metadata.csv"

    reasons = {p: r.reason for p, r in songs.items() if r.status == "rejected"}
    assert set(reasons) == {
        "corrupt.wav",
        "empty.wav",
        "short.wav",
        "badjson.wav",
        "latin1.wav",
        "csv_latin1.wav",
        "badwords.wav",
        "strwords.wav",
        "badtags.wav",
    }
    assert reasons["corrupt.wav"].startswith("corrupt audio: ")
    assert reasons["empty.wav"].startswith("empty file: ")
    assert reasons["short.wav"].startswith("too short: 0.50 s")
    assert reasons["badjson.wav"].startswith("bad sidecar JSON: badjson.json: Expecting property name")
    assert reasons["latin1.wav"].startswith("non-UTF-8 text: latin1.json: byte 0xe9")
    assert reasons["csv_latin1.wav"] == "non-UTF-8 text: metadata.csv line 5: 'lyrics' is not valid UTF-8"
    assert reasons["badwords.wav"].startswith("malformed words: badwords.json: words[0] has start 2.0 > end 1.0")
    assert "must be numbers" in reasons["strwords.wav"]
    assert reasons["badtags.wav"] == "unreadable tags: badtags.wav: mutagen cannot parse them (mutagen.wave.error)"

    assert (summary.ok, summary.rejected, summary.indexed, summary.unchanged, summary.removed) == (5, 9, 14, 0, 0)
    assert summary.hours == pytest.approx(5 * 1.5 / 3600, rel=0.05)  # MP3 adds codec padding
    assert summary.artists == 5 and summary.genres == 5  # rock, blues, jazz, pop, Metal
    assert summary.with_lyrics == 5 and summary.with_words == 1
    assert summary.rejected_by_reason == {
        "corrupt audio": 1,
        "empty file": 1,
        "too short": 1,
        "bad sidecar JSON": 1,
        "non-UTF-8 text": 2,
        "malformed words": 2,
        "unreadable tags": 1,
    }
    assert any("line 2: invalid JSON" in w for w in summary.warnings)
    assert any("missing.wav" in w for w in summary.warnings)
    text = summary.format()
    assert "5 ok, 9 rejected" in text and "non-UTF-8 text: 2" in text

    with sqlite3.connect(dataset / DEFAULT_DB_NAME) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_incremental_rerun(dataset, monkeypatch):
    build_index(dataset, progress=False)
    calls = []
    real_hash = index_mod.file_sha256
    monkeypatch.setattr(index_mod, "file_sha256", lambda p: calls.append(p) or real_hash(p))

    summary = build_index(dataset, progress=False)
    assert (summary.indexed, summary.unchanged, summary.removed, calls) == (0, 14, 0, [])

    _write(dataset / "u8.wav", seconds=2.5, subtype="PCM_U8")  # changed audio
    summary = build_index(dataset, progress=False)
    assert (summary.indexed, summary.unchanged) == (1, 13)
    assert calls == [dataset / "u8.wav"]
    assert _by_path(dataset)["u8.wav"].duration_s == pytest.approx(2.5)

    calls.clear()
    (dataset / "badjson.json").write_text('{"artist": "fixed now"}')  # changed sidecar only
    summary = build_index(dataset, progress=False)
    assert calls == [dataset / "badjson.wav"] and summary.rejected == 8
    assert _by_path(dataset)["badjson.wav"].artist == "fixed now"

    (dataset / "sub" / "tagged.mp3").unlink()
    summary = build_index(dataset, progress=False)
    assert (summary.removed, summary.unchanged, summary.ok) == (1, 13, 5)
    assert "sub/tagged.mp3" not in _by_path(dataset)


_CHILD = """
import sys, time
from openjukebox.data import index
real = index.file_sha256
def slow(path):
    time.sleep(0.01)
    return real(path)
index.file_sha256 = slow
index.build_index(sys.argv[1], progress=False)
"""


def test_killed_run_leaves_valid_db(tmp_path):
    root = tmp_path / "many"
    n = 300
    for i in range(n):
        _write(root / f"{i:03d}.wav", seconds=1.1, sr=4000)
    db = root / DEFAULT_DB_NAME
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(root)])
    try:
        deadline = time.monotonic() + 30
        done = 0
        while done < 3 * index_mod.BATCH_SIZE and time.monotonic() < deadline:
            time.sleep(0.05)
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=5) as conn:
                        done = conn.execute("SELECT COUNT(*) FROM songs").fetchone()[0]
                except sqlite3.OperationalError:
                    pass  # tables not created yet
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        committed = conn.execute("SELECT COUNT(*) FROM songs").fetchone()[0]
    assert 0 < committed < n
    summary = build_index(root, progress=False)
    assert summary.ok == n and summary.unchanged == committed and summary.indexed == n - committed


def test_custom_db_path_and_cli(dataset, tmp_path, capsys):
    db = tmp_path / "elsewhere.sqlite"
    index_cli(argparse.Namespace(dir=dataset, db=db))
    out = capsys.readouterr().out
    assert "5 ok, 9 rejected" in out and "corrupt audio: 1" in out
    assert not (dataset / DEFAULT_DB_NAME).exists()
    with SongIndex(db) as idx:
        assert len(idx) == 14 and len(idx.songs()) == 5 and len(idx.songs("rejected")) == 9
        assert idx.root == dataset.resolve()


def test_open_index_errors(tmp_path):
    with pytest.raises(OpenJukeboxError, match="no song index here"):
        open_index(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OpenJukeboxError, match="not a song index database"):
        open_index(junk)
    with pytest.raises(OpenJukeboxError, match="no such folder"):
        build_index(tmp_path / "nope")


def test_other_schema_version_is_rebuilt(dataset):
    build_index(dataset, progress=False)
    with sqlite3.connect(dataset / DEFAULT_DB_NAME) as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(OpenJukeboxError, match="schema version 0"):
        open_index(dataset)
    summary = build_index(dataset, progress=False)
    assert (summary.indexed, summary.unchanged, summary.ok) == (14, 0, 5)
    with open_index(dataset) as idx:
        assert len(idx) == 14


def test_summary_lists_lyrics_characters_outside_the_vocabulary(tmp_path):
    root = tmp_path / "songs"
    root.mkdir()
    _sidecar(_write(root / "a.wav"), {"artist": "A", "genre": "pop", "lyrics": "sing ♪ along 😀"})
    _sidecar(_write(root / "b.wav"), {"artist": "B", "genre": "pop", "lyrics": "la la ♪"})
    summary = build_index(root, progress=False)
    assert summary.lyrics_dropped == {"♪": 2, "😀": 1}
    assert "'♪' (2 songs)" in summary.format()
