"""The song index: one SQLite row per audio file of a dataset folder, with its header, hash and metadata.

Jukebox trains on a large set of songs with artist, genre and lyrics labels (Dhariwal et al. 2020, section 5.1);
this file owns the catalogue of such a folder. `build_index` scans the folder (recursively), reads each new or
changed file's header (`openjukebox.audio.audio_info`), hashes its bytes and merges its metadata
(`openjukebox.data.metadata`), and writes a row with status 'ok' or 'rejected' and a reason. Later stages read
it through `SongIndex`.

Re-running is incremental: a file whose (size, mtime_ns) and sidecar/manifest entry are unchanged is not read
again, deleted files lose their rows. The database runs in WAL mode and commits every `BATCH_SIZE` files, so a
kill at any point leaves a valid database and a re-run continues where it stopped. Bad files never stop a run.

Rejection reasons read "category: detail"; summaries count rejections by category.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
from tqdm import tqdm

from openjukebox.audio.io import SUPPORTED_EXTENSIONS, audio_info
from openjukebox.data.lyrics import VOCAB_V2, encode_lyrics
from openjukebox.data.metadata import Manifest, SongRejected, Word, load_manifest, metadata_key, song_metadata
from openjukebox.errors import OpenJukeboxError

SCHEMA_VERSION = 1
DEFAULT_DB_NAME = ".openjukebox-index.sqlite"
MIN_DURATION_S = 1.0  # shorter files are rejected: too short for a training crop
MAX_DURATION_S = 2 * 3600.0  # longer files are rejected: a whole album or a broken header, not a song
BATCH_SIZE = 16  # files per transaction: at most this much work is lost to a kill
_PROBE_FRAMES = 4096  # frames decoded at each end of a file to catch a header that lies about the data
_HASH_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS songs (
    path TEXT PRIMARY KEY,          -- relative to the dataset root, POSIX separators
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    metadata_key TEXT NOT NULL,     -- fingerprint of the sidecar and manifest entry
    content_hash TEXT,              -- sha256 of the file's bytes
    duration_s REAL,
    sample_rate INTEGER,
    channels INTEGER,
    frames INTEGER,
    format TEXT,
    artist TEXT,
    genres TEXT NOT NULL,           -- JSON list of strings
    title TEXT,
    lyrics TEXT,
    words TEXT,                     -- JSON list of {"word", "start", "end"} or NULL
    metadata_source TEXT NOT NULL,  -- JSON {field: source}
    status TEXT NOT NULL CHECK (status IN ('ok', 'rejected')),
    reason TEXT,                    -- "category: detail" when rejected
    indexed_at TEXT NOT NULL        -- UTC, ISO 8601
);
"""
_COLUMNS = (
    "path",
    "size",
    "mtime_ns",
    "metadata_key",
    "content_hash",
    "duration_s",
    "sample_rate",
    "channels",
    "frames",
    "format",
    "artist",
    "genres",
    "title",
    "lyrics",
    "words",
    "metadata_source",
    "status",
    "reason",
    "indexed_at",
)


# A folder containing a file of this name is left out of the index, with everything below it.
IGNORE_MARKER = ".openjukebox-ignore"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class IndexSummary:
    """The state of an index after a run: totals over the whole index, plus what this run did."""

    db_path: Path
    ok: int
    rejected: int
    indexed: int  # files read in this run (new or changed)
    unchanged: int  # files skipped in this run
    removed: int  # rows of deleted files dropped in this run
    hours: float  # of ok songs
    artists: int
    genres: int
    with_lyrics: int
    with_words: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # category -> count
    warnings: tuple[str, ...] = ()
    # lyric characters the lyrics vocabulary (v2) cannot represent -> number of songs using them
    lyrics_dropped: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        lines = [
            f"index: {self.db_path}",
            f"songs: {self.ok} ok, {self.rejected} rejected ({self.hours:.2f} hours of ok audio)",
            f"this run: {self.indexed} indexed, {self.unchanged} unchanged, {self.removed} removed",
            f"labels: {self.artists} artists, {self.genres} genres, {self.with_lyrics} songs with lyrics, "
            f"{self.with_words} with word timings",
        ]
        if self.rejected_by_reason:
            lines.append("rejected:")
            for category, n in sorted(self.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {category}: {n}")
        if self.lyrics_dropped:
            chars = ", ".join(
                f"{c!r} ({n} songs)" for c, n in sorted(self.lyrics_dropped.items(), key=lambda kv: -kv[1])
            )
            lines.append(f"lyrics characters outside the lyrics vocabulary (left out when training): {chars}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass(frozen=True)
class SongRecord:
    """One row of the `songs` table, decoded."""

    path: str  # relative to the dataset root
    size: int
    mtime_ns: int
    content_hash: str | None
    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    frames: int | None
    format: str | None
    artist: str | None
    genres: list[str]
    title: str | None
    lyrics: str | None
    words: list[Word] | None
    metadata_source: dict[str, str]
    status: str
    reason: str | None
    indexed_at: str


def _connect(db_path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(db_path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a kill loses at most the open transaction
    except sqlite3.DatabaseError as e:
        raise OpenJukeboxError(f"{db_path}: not a song index database ({e})") from None
    return conn


def _init_schema(conn: sqlite3.Connection, root: Path) -> None:
    """Create the tables; an index written with another schema version is a cache, so it is rebuilt."""
    with conn:
        conn.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and row[0] != str(SCHEMA_VERSION):
            conn.execute("DROP TABLE IF EXISTS songs")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)", (str(root.resolve()),))


def _scan(root: Path) -> dict[str, Path]:
    """Audio files under `root` by relative POSIX path; hidden files and folders (ours included) and folders
    holding an IGNORE_MARKER file are skipped."""
    found = {}
    for folder, dirs, files in os.walk(root):
        if IGNORE_MARKER in files:  # e.g. the vocal stems of `data synth`: audio, but not songs
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in SUPPORTED_EXTENSIONS:
                path = Path(folder) / name
                found[path.relative_to(root).as_posix()] = path
    return found


def _probe(path: Path, frames: int) -> None:
    """Decode a little at both ends so that a truncated or garbage body is caught, not just a bad header."""
    with sf.SoundFile(path) as f:
        f.read(min(frames, _PROBE_FRAMES), dtype="float32")
        if frames > _PROBE_FRAMES:
            f.seek(max(frames - _PROBE_FRAMES, 0))
            f.read(_PROBE_FRAMES, dtype="float32")


def _index_file(path: Path, rel: str, st: os.stat_result, key: str, manifest: Manifest) -> dict[str, Any]:
    """The row for one file; every problem becomes a rejected row, nothing raises."""
    row: dict[str, Any] = dict.fromkeys(_COLUMNS)
    row.update(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, metadata_key=key, genres="[]")
    row.update(metadata_source="{}", indexed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        if st.st_size == 0:
            raise SongRejected("empty file", "0 bytes")
        row["content_hash"] = file_sha256(path)
        try:
            info = audio_info(path)
            if info.frames > 0:
                _probe(path, info.frames)
        except (OpenJukeboxError, sf.SoundFileError, RuntimeError) as e:
            detail = str(e).removeprefix(f"{path}: ")
            raise SongRejected("corrupt audio", detail) from None
        row.update(duration_s=info.duration_s, sample_rate=info.sample_rate, channels=info.channels)
        row.update(frames=info.frames, format=info.format)
        if info.frames == 0:
            raise SongRejected("empty audio", "the file holds 0 samples")
        if info.duration_s < MIN_DURATION_S:
            raise SongRejected("too short", f"{info.duration_s:.2f} s (minimum {MIN_DURATION_S:g} s)")
        if info.duration_s > MAX_DURATION_S:
            raise SongRejected("too long", f"{info.duration_s / 3600:.2f} h (maximum {MAX_DURATION_S / 3600:g} h)")
        md = song_metadata(path, rel, manifest)
        words = None if md.words is None else json.dumps([vars(w) for w in md.words])
        row.update(artist=md.artist, genres=json.dumps(md.genres), title=md.title, lyrics=md.lyrics, words=words)
        row.update(metadata_source=json.dumps(md.sources, sort_keys=True), status="ok")
    except SongRejected as e:
        row.update(status="rejected", reason=str(e))
    except OSError as e:
        row.update(status="rejected", reason=f"unreadable file: {e.strerror or e}")
    return row


def build_index(
    root: str | os.PathLike, db_path: str | os.PathLike | None = None, *, progress: bool = True
) -> IndexSummary:
    """Index the audio files under `root` into `db_path` (default `root/.openjukebox-index.sqlite`).

    Returns:
        IndexSummary of the whole index after the run.
    """
    root = Path(root)
    if not root.is_dir():
        raise OpenJukeboxError(f"{root}: no such folder")
    db_path = Path(db_path) if db_path is not None else root / DEFAULT_DB_NAME
    conn = _connect(db_path)
    try:
        _init_schema(conn, root)
        manifest = load_manifest(root)
        files = _scan(root)
        known = {r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT path, size, mtime_ns, metadata_key FROM songs")}
        gone = sorted(set(known) - set(files))
        with conn:
            conn.executemany("DELETE FROM songs WHERE path = ?", [(p,) for p in gone])
        unknown = sorted(set(manifest.entries) - set(files))
        warnings = list(manifest.warnings)
        if unknown:
            warnings.append(f"{len(unknown)} manifest entries name no audio file in the folder (e.g. {unknown[0]})")

        indexed = unchanged = 0
        batch: list[dict[str, Any]] = []
        insert = f"INSERT OR REPLACE INTO songs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        for rel, path in tqdm(files.items(), desc="indexing", unit="file", disable=not progress, file=sys.stderr):
            try:
                st = path.stat()
            except OSError:
                continue  # deleted while we run; the next run drops its row
            key = metadata_key(path, rel, manifest)
            if known.get(rel) == (st.st_size, st.st_mtime_ns, key):
                unchanged += 1
                continue
            batch.append(_index_file(path, rel, st, key, manifest))
            indexed += 1
            if len(batch) >= BATCH_SIZE:
                with conn:
                    conn.executemany(insert, [[r[c] for c in _COLUMNS] for r in batch])
                batch = []
        with conn:
            conn.executemany(insert, [[r[c] for c in _COLUMNS] for r in batch])
        return _summarize(conn, db_path, indexed, unchanged, len(gone), tuple(warnings))
    finally:
        conn.close()


def _summarize(conn, db_path: Path, indexed: int, unchanged: int, removed: int, warnings) -> IndexSummary:
    ok = rejected = with_lyrics = with_words = 0
    seconds = 0.0
    artists: set[str] = set()
    genres: set[str] = set()
    reasons: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    query = "SELECT status, reason, duration_s, artist, genres, lyrics, words IS NOT NULL FROM songs"
    for status, reason, duration_s, artist, genre_json, lyrics, has_words in conn.execute(query):
        if status != "ok":
            rejected += 1
            reasons[(reason or "unknown").split(":", 1)[0]] += 1
            continue
        ok += 1
        seconds += duration_s
        if artist:
            artists.add(artist)
        genres.update(json.loads(genre_json))
        with_lyrics += bool(lyrics and lyrics.strip())
        with_words += bool(has_words)
        if lyrics:
            dropped.update(encode_lyrics(lyrics, VOCAB_V2).dropped)
    return IndexSummary(
        db_path=db_path,
        ok=ok,
        rejected=rejected,
        indexed=indexed,
        unchanged=unchanged,
        removed=removed,
        hours=seconds / 3600,
        artists=len(artists),
        genres=len(genres),
        with_lyrics=with_lyrics,
        with_words=with_words,
        rejected_by_reason=dict(reasons),
        warnings=warnings,
        lyrics_dropped=dict(dropped),
    )


class SongIndex:
    """Read access to an index built by `build_index`."""

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = Path(db_path)
        if not self.db_path.is_file():
            raise OpenJukeboxError(f"{self.db_path}: no song index here; run `openjukebox data index DIR` first")
        conn = _connect(self.db_path)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            conn.close()
            raise OpenJukeboxError(f"{self.db_path}: not a song index database ({e})") from None
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            conn.close()
            raise OpenJukeboxError(
                f"{self.db_path}: index schema version {meta.get('schema_version')}, expected {SCHEMA_VERSION}; "
                "re-run `openjukebox data index DIR`"
            )
        self._conn = conn
        self.root = Path(meta["root"])  # the dataset folder the paths are relative to

    def songs(self, status: str | None = "ok") -> list[SongRecord]:
        """Songs with this status ('ok', 'rejected', or None for all), sorted by path."""
        cols = ", ".join(c for c in _COLUMNS if c != "metadata_key")
        if status is None:
            rows = self._conn.execute(f"SELECT {cols} FROM songs ORDER BY path")
        else:
            rows = self._conn.execute(f"SELECT {cols} FROM songs WHERE status = ? ORDER BY path", (status,))
        return [_record(r) for r in rows]

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM songs").fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SongIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _record(row: tuple) -> SongRecord:
    d = dict(zip([c for c in _COLUMNS if c != "metadata_key"], row))
    d["genres"] = json.loads(d["genres"])
    d["words"] = None if d["words"] is None else [Word(**w) for w in json.loads(d["words"])]
    d["metadata_source"] = json.loads(d["metadata_source"])
    return SongRecord(**d)


def open_index(root_or_db: str | os.PathLike) -> SongIndex:
    """The index of a dataset folder (its default database) or at a database path."""
    p = Path(root_or_db)
    return SongIndex(p / DEFAULT_DB_NAME if p.is_dir() else p)


def index_cli(args) -> None:
    """`openjukebox data index DIR [--db PATH]`: args.dir (Path), args.db (Path | None)."""
    summary = build_index(args.dir, args.db, progress=sys.stderr.isatty())
    print(summary.format())
