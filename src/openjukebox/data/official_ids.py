"""The artist and genre id tables of the released Jukebox priors (v2: 5b, 5b_lyrics; v3: 1b_lyrics).

The original keeps them as text files of `name;id` lines (`data/ids/{v2,v3}_{artist,genre}_ids.txt`);
several names may share an id (id 0: "unknown", "various", ""). We do not ship these files: they are read
from a folder the user gives (`OPENJUKEBOX_IDS` or an argument), or from an installed copy of the original
code layout (the test-only `jukebox_infer` package carries them).

Matching follows the original (`ArtistGenreProcessor`): v2 artists by `norm` (lowercase, non-alphanumerics
to '_'), v2 genres as a bag of `norm` words ("Blues Rock" -> ids of "blues" and "rock"); v3 by lowercase name
only, one genre. Unlike the original, which silently uses id 0, an unknown name is an error that lists the
closest known names; `get` gives the original's fallback where that is wanted.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from openjukebox.errors import OpenJukeboxError

VERSIONS = ("v2", "v3")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def _norm(name: str) -> str:
    """The original `norm`: lowercase, every character but ASCII a-z/0-9 to '_', runs collapsed, ends stripped."""
    return _NOT_ALNUM.sub("_", name.lower()).strip("_")


@dataclass(frozen=True)
class IdTable:
    """One `name;id` table: `ids` maps the stored (lowercased) names to ids."""

    kind: str  # "artist" | "genre"
    version: str  # "v2" | "v3"
    ids: dict[str, int]
    path: Path

    @property
    def n_ids(self) -> int:
        """Embedding rows the table needs: largest id + 1 (a model's `y_bins` may be larger: v2 artists 4109 < 4111)."""
        return max(self.ids.values()) + 1

    @classmethod
    def load(cls, path: str | os.PathLike, kind: str, version: str) -> IdTable:
        path = Path(path)
        if not path.is_file():
            raise OpenJukeboxError(f"{path}: no such id table")
        ids: dict[str, int] = {}
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.strip().rpartition(";")
            if not sep or not value.isdigit():
                raise OpenJukeboxError(f"{path}:{lineno}: expected 'name;id', got {line.strip()!r}")
            ids[name.lower()] = int(value)
        if not ids:
            raise OpenJukeboxError(f"{path}: empty id table")
        return cls(kind, version, ids, path)

    def _keys(self, name: str) -> list[str]:
        if self.version == "v3":
            return [name.lower()]
        key = _norm(name)
        return key.split("_") if self.kind == "genre" else [key]

    def lookup(self, name: str) -> list[int]:
        """Ids of `name` (a v2 genre gives one id per word); unknown names raise with suggestions."""
        out = []
        for key in self._keys(name):
            if key not in self.ids:
                close = difflib.get_close_matches(key, list(self.ids), n=3)
                hint = ", ".join(repr(c) for c in close) if close else "none"
                raise OpenJukeboxError(
                    f"unknown {self.kind} {name!r} in the {self.version} table ({key!r} is not in {self.path.name}; "
                    f"closest: {hint})"
                )
            out.append(self.ids[key])
        return out

    def get(self, name: str, default: int = 0) -> list[int]:
        """Like the original: unknown names (or words) map to `default`."""
        return [self.ids.get(key, default) for key in self._keys(name)]


def find_ids_folder(folder: str | os.PathLike | None = None) -> Path:
    """The folder holding the official tables: `folder`, else $OPENJUKEBOX_IDS, else an installed jukebox_infer."""
    if folder is None:
        folder = os.environ.get("OPENJUKEBOX_IDS")
    if folder is None:
        spec = importlib.util.find_spec("jukebox_infer")
        if spec and spec.submodule_search_locations:
            candidate = Path(next(iter(spec.submodule_search_locations))) / "data" / "ids"
            if candidate.is_dir():
                return candidate
        raise OpenJukeboxError(
            "the official artist/genre id tables were not found: set OPENJUKEBOX_IDS to the folder holding "
            "v2_artist_ids.txt etc. (data/ids/ in the original Jukebox code)"
        )
    return Path(folder)


def load_official_ids(version: str, folder: str | os.PathLike | None = None) -> tuple[IdTable, IdTable]:
    """(artists, genres) of the released models' label set `version` ("v2" or "v3")."""
    if version not in VERSIONS:
        raise OpenJukeboxError(f"unknown id table version {version!r}; choose v2 or v3")
    root = find_ids_folder(folder)
    return (
        IdTable.load(root / f"{version}_artist_ids.txt", "artist", version),
        IdTable.load(root / f"{version}_genre_ids.txt", "genre", version),
    )
