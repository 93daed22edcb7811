"""Song metadata (artist, genres, title, lyrics, word timings) from the three places a dataset can keep it.

The labels Jukebox conditions on (Dhariwal et al. 2020, section 5.2: artist, genre and lyrics, with word timings
used for lyric alignment in section 5.3) come from, in priority order:

1. a sidecar `SONG.json` next to `SONG.ext`: keys `artist`, `genre` (str or list), `lyrics`, `title`,
   `words` (list of {"word", "start", "end"} in seconds);
2. a manifest at the dataset root: `metadata.jsonl` (one object per line with a `path` relative to the root)
   or `metadata.csv` (columns path, artist, genre (';'-separated), lyrics, title); jsonl wins over csv;
3. the file's own tags, read with mutagen (Vorbis comments, ID3 `TPE1`/`TCON`/`TIT2`/`USLT`).

Fields merge per key: the highest source that has a field gives it, and `SongMetadata.sources` records which.
Anything wrong with a song's metadata raises `SongRejected`, whose category groups rejections in summaries.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mutagen
from mutagen.id3 import ID3

FIELDS = ("artist", "genres", "title", "lyrics", "words")
JSONL_MANIFEST = "metadata.jsonl"
CSV_MANIFEST = "metadata.csv"
_CSV_COLUMNS = ("path", "artist", "genre", "lyrics", "title")


class SongRejected(Exception):
    """A song that cannot enter the dataset; `category` groups it in summaries, `detail` says why."""

    def __init__(self, category: str, detail: str):
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail


@dataclass(frozen=True)
class Word:
    """One sung word and its time span in seconds from the start of the song."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class SongMetadata:
    artist: str | None = None
    genres: list[str] = field(default_factory=list)
    title: str | None = None
    lyrics: str | None = None
    words: list[Word] | None = None
    sources: dict[str, str] = field(default_factory=dict)  # field -> "sidecar" | "metadata.jsonl" | ... | "tags"


@dataclass
class Manifest:
    """The root manifest's raw entries by relative POSIX path, and problems that concern no single song."""

    entries: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # path -> (where, raw fields)
    warnings: list[str] = field(default_factory=list)


def sidecar_path(audio_path: Path) -> Path:
    return audio_path.with_suffix(".json")


def _non_utf8(where: str, e: UnicodeDecodeError) -> SongRejected:
    return SongRejected("non-UTF-8 text", f"{where}: byte 0x{e.object[e.start]:02x} at offset {e.start} is not UTF-8")


def _check_utf8(value: str, where: str, key: str) -> None:
    """Strings decoded with surrogateescape (or JSON `\\udcxx` escapes) hold lone surrogates: refuse them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SongRejected("non-UTF-8 text", f"{where}: '{key}' is not valid UTF-8") from None


def _string(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SongRejected("bad metadata", f"{where}: '{key}' must be a string, got {type(value).__name__}")
    _check_utf8(value, where, key)
    return value


def _genres(raw: dict[str, Any], where: str) -> list[str] | None:
    value = raw.get("genre")
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(g, str) for g in items):
        raise SongRejected("bad metadata", f"{where}: 'genre' must be a string or a list of strings")
    for g in items:
        _check_utf8(g, where, "genre")
    return [g.strip() for g in items if g.strip()]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _words(raw: dict[str, Any], where: str) -> list[Word] | None:
    value = raw.get("words")
    if value is None:
        return None
    if not isinstance(value, list):
        raise SongRejected("malformed words", f"{where}: 'words' must be a list, got {type(value).__name__}")
    words = []
    for i, w in enumerate(value):
        if not isinstance(w, dict) or not isinstance(w.get("word"), str):
            raise SongRejected("malformed words", f"{where}: words[{i}] must be an object with a string 'word'")
        _check_utf8(w["word"], where, f"words[{i}].word")
        start, end = w.get("start"), w.get("end")
        if not (_number(start) and _number(end)):
            raise SongRejected(
                "malformed words", f"{where}: words[{i}] start/end must be numbers, got {start!r}, {end!r}"
            )
        if start < 0 or start > end:
            raise SongRejected("malformed words", f"{where}: words[{i}] has start {start} > end {end} or start < 0")
        words.append(Word(w["word"], float(start), float(end)))
    return words


def _normalize(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validated fields present in `raw` (a sidecar, manifest entry or tag dict), with our field names."""
    out = {
        "artist": _string(raw, "artist", where),
        "genres": _genres(raw, where),
        "title": _string(raw, "title", where),
        "lyrics": _string(raw, "lyrics", where),
        "words": _words(raw, where),
    }
    return {k: v for k, v in out.items() if v is not None}


def read_sidecar(audio_path: Path) -> dict[str, Any] | None:
    """The raw object in the song's sidecar JSON, or None if there is none."""
    path = sidecar_path(audio_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SongRejected("bad sidecar JSON", f"{path.name}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _non_utf8(path.name, e) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SongRejected("bad sidecar JSON", f"{path.name}: {e}") from None
    if not isinstance(obj, dict):
        raise SongRejected("bad sidecar JSON", f"{path.name}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_text(path: Path) -> str:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad lyric rejects one song, not all
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def load_manifest(root: Path) -> Manifest:
    """Read `metadata.jsonl` and/or `metadata.csv` at `root`; a broken line becomes a warning, never an error."""
    manifest = Manifest()
    csv_path, jsonl_path = root / CSV_MANIFEST, root / JSONL_MANIFEST
    if csv_path.is_file():
        rows = []  # (first line of the record, record): lyrics cells may span lines
        try:
            reader = csv.DictReader(io.StringIO(_read_text(csv_path), newline=""))
            line = 2
            for row in reader:
                rows.append((line, row))
                line = reader.line_num + 1
        except (OSError, csv.Error) as e:
            manifest.warnings.append(f"{CSV_MANIFEST}: unreadable ({e}); ignored")
            rows = []
        for n, row in rows:
            rel = (row.get("path") or "").strip()
            if not rel:
                manifest.warnings.append(f"{CSV_MANIFEST} line {n}: no 'path'; ignored")
                continue
            raw = {k: row[k] for k in _CSV_COLUMNS[1:] if row.get(k)}  # an empty cell leaves the field to tags
            if "genre" in raw:
                raw["genre"] = raw["genre"].split(";")
            manifest.entries[_posix(rel)] = (f"{CSV_MANIFEST} line {n}", raw)
    if jsonl_path.is_file():
        try:
            lines = _read_text(jsonl_path).splitlines()
        except OSError as e:
            manifest.warnings.append(f"{JSONL_MANIFEST}: unreadable ({e}); ignored")
            lines = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                manifest.warnings.append(f"{JSONL_MANIFEST} line {n}: invalid JSON ({e}); ignored")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
                manifest.warnings.append(f"{JSONL_MANIFEST} line {n}: not an object with a string 'path'; ignored")
                continue
            raw = {k: v for k, v in obj.items() if k != "path"}
            manifest.entries[_posix(obj["path"])] = (f"{JSONL_MANIFEST} line {n}", raw)
    return manifest


def _posix(rel: str) -> str:
    return Path(rel.replace("\\", "/")).as_posix()


def _tag_text(values: Any) -> str | None:
    texts = [str(v) for v in (values or []) if str(v).strip()]
    return ", ".join(texts) if texts else None


def read_tags(audio_path: Path) -> dict[str, Any]:
    """Raw fields from the file's own tags (empty if it has none), in sidecar key names."""
    try:
        f = mutagen.File(audio_path)
    except Exception as e:  # mutagen raises many types (MutagenError, struct.error, ...) on damaged tags
        detail = str(e) or f"mutagen cannot parse them ({type(e).__module__}.{type(e).__name__})"
        raise SongRejected("unreadable tags", f"{audio_path.name}: {detail}") from None
    tags = getattr(f, "tags", None)
    if tags is None:
        return {}
    raw: dict[str, Any] = {}
    if isinstance(tags, ID3):
        raw["artist"] = _tag_text(tags["TPE1"].text) if "TPE1" in tags else None
        raw["title"] = _tag_text(tags["TIT2"].text) if "TIT2" in tags else None
        raw["genre"] = list(tags["TCON"].genres) if "TCON" in tags else None
        lyrics = [frame.text for frame in tags.getall("USLT") if frame.text.strip()]
        raw["lyrics"] = lyrics[0] if lyrics else None
    else:  # Vorbis comments (FLAC, Ogg): case-insensitive keys, each a list of values

        def get(key: str) -> list[str]:
            try:
                return list(tags[key])
            except (KeyError, ValueError, TypeError):
                return []

        raw["artist"] = _tag_text(get("artist"))
        raw["title"] = _tag_text(get("title"))
        raw["genre"] = get("genre") or None
        raw["lyrics"] = _tag_text(get("lyrics")) or _tag_text(get("unsyncedlyrics"))
    return {k: v for k, v in raw.items() if v is not None}


def metadata_key(audio_path: Path, rel: str, manifest: Manifest) -> str:
    """A fingerprint of the song's sidecar (size, mtime) and manifest entry: when it changes, re-index the song.

    Tags live in the audio file, whose own (size, mtime) is checked separately.
    """
    try:
        st = os.stat(sidecar_path(audio_path))
        sidecar = [st.st_size, st.st_mtime_ns]
    except OSError:
        sidecar = None
    entry = manifest.entries.get(rel)
    blob = json.dumps([sidecar, entry], sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def song_metadata(audio_path: Path, rel: str, manifest: Manifest) -> SongMetadata:
    """The merged metadata of one song; raises SongRejected if any source it needs is broken."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(fields: dict[str, Any], source: str) -> None:
        for k, v in fields.items():
            if k not in merged:
                merged[k], sources[k] = v, source

    sidecar = read_sidecar(audio_path)
    if sidecar is not None:
        take(_normalize(sidecar, sidecar_path(audio_path).name), "sidecar")
    if rel in manifest.entries:
        where, raw = manifest.entries[rel]
        take(_normalize(raw, where), where.split()[0])
    if any(k not in merged for k in FIELDS if k != "words"):  # words never come from tags
        take(_normalize(read_tags(audio_path), f"{audio_path.name} tags"), "tags")
    return SongMetadata(
        artist=merged.get("artist"),
        genres=merged.get("genres", []),
        title=merged.get("title"),
        lyrics=merged.get("lyrics"),
        words=merged.get("words"),
        sources=sources,
    )
