"""The library of generated songs: one SQLite file listing every sampling run and how far it got.

$OPENJUKEBOX_HOME/songs.sqlite (default ~/.openjukebox/songs.sqlite), table `runs`: the run folder (absolute
path, the key), model, mode, artist, genre, lyrics, seconds, seed, number of samples, when it was created and
last updated, and the finished levels (e.g. "2,1"). `openjukebox songs` prints it. The run folders stay the
source of truth; the library only indexes them, so a deleted folder is shown as missing, not an error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from openjukebox.checkpoints.paths import models_home

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    folder TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    artist TEXT NOT NULL,
    genre TEXT NOT NULL,
    lyrics TEXT NOT NULL,
    seconds REAL NOT NULL,
    seed INTEGER NOT NULL,
    n_samples INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    levels_done TEXT NOT NULL DEFAULT ''
)
"""


def library_path() -> Path:
    return models_home().parent / "songs.sqlite"


@contextlib.contextmanager
def _connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    path = path or library_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute(SCHEMA)
        with conn:  # one transaction: committed on success, rolled back on error
            yield conn
    finally:
        conn.close()


def record_run(folder: str | os.PathLike, spec, sample_rate: int, path: Path | None = None) -> None:
    """Add (or refresh) a run when it starts."""
    now = time.time()
    with _connect(path) as conn:
        conn.execute(
            "INSERT INTO runs (folder, model, mode, artist, genre, lyrics, seconds, seed, n_samples, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(folder) DO UPDATE SET updated = excluded.updated",
            (
                str(Path(folder).resolve()),
                spec.model,
                spec.mode,
                spec.artist,
                spec.genre,
                spec.lyrics,
                spec.length / sample_rate,
                spec.seed,
                spec.n_samples,
                now,
                now,
            ),
        )


def record_level(folder: str | os.PathLike, level: int, path: Path | None = None) -> None:
    """Note that `level` of a run is finished (its audio is written)."""
    key = str(Path(folder).resolve())
    with _connect(path) as conn:
        row = conn.execute("SELECT levels_done FROM runs WHERE folder = ?", (key,)).fetchone()
        if row is None:
            return
        done = {int(x) for x in row[0].split(",") if x}
        done.add(level)
        conn.execute(
            "UPDATE runs SET levels_done = ?, updated = ? WHERE folder = ?",
            (",".join(str(x) for x in sorted(done, reverse=True)), time.time(), key),
        )


def list_runs(path: Path | None = None) -> list[dict]:
    """Every run, newest first, with `exists` telling whether its folder is still there."""
    if not (path or library_path()).is_file():
        return []
    with _connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY created DESC")]
    for row in rows:
        row["exists"] = Path(row["folder"]).is_dir()
    return rows


def songs_cli(args) -> None:
    rows = list_runs()
    if not rows:
        print(f"no songs yet ({library_path()})")
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        state = "missing" if not r["exists"] else f"levels {r['levels_done'] or '-'}"
        print(
            f"{when}  {r['model']:<10} {r['mode']:<9} {r['seconds']:6.1f} s x{r['n_samples']}  seed {r['seed']:<6}"
            f" {r['artist']} / {r['genre']}  [{state}]  {r['folder']}"
        )
