"""Artist and genre vocabularies: the names a label-conditioned prior knows, and their ids.

The original Jukebox (Dhariwal et al. 2020, section 3.4 "Artist, genre, and timing conditioning") keeps
`name;id` tables (`data/ids/v2_artist_ids.txt`, ...) and matches names after `norm` (`data/artist_genre_processor.py`):
lowercase, every character other than ASCII a-z/0-9 becomes '_', runs of '_' collapse to one, and leading or
trailing '_' go ("The Beatles!" -> "the_beatles"). Id 0 is the "unknown" bucket ("unknown", "various" and ""
all map to it there); v2 genres are bags of words (`norm(genre).split("_")`, see `genre_words`).

We build the table from the names in a dataset instead, save it with the model, and match names with the same
`norm` applied after transliteration to ASCII (`unidecode`), so that "Björk" and "Bjork" are one artist (the
original's v2 table has "bj_rk"). Unlike the original, an unknown name is an error with suggestions, not a
silent 0; use `get(name, 0)` where falling back to the unknown bucket is wanted.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from unidecode import unidecode

from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import read_json_object, write_json_atomic

UNKNOWN = "unknown"
FORMAT = "openjukebox.vocabulary"
VERSION = 1
LIST_KNOWN = 10  # known names an unknown-name error lists when none is alike

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_name(name: str) -> str:
    """The key names are matched by: the original `norm` of the ASCII transliteration ("AC/DC" -> "ac_dc")."""
    return _NOT_ALNUM.sub("_", unidecode(name).lower()).strip("_")


def genre_words(genre: str) -> list[str]:
    """The original v2 bag of genre words ("Blues Rock" -> ["blues", "rock"]); [] for an empty genre."""
    key = normalize_name(genre)
    return key.split("_") if key else []


@dataclass(frozen=True)
class Vocabulary:
    """Names with ids: `names[i]` is the display name of id i; id 0 is the unknown bucket.

    counts[i] is how often id i's names appeared when the vocabulary was built (counts[0]: names that went to
    the unknown bucket, rare ones included).
    """

    names: tuple[str, ...]
    counts: tuple[int, ...]
    kind: str = "name"  # what the names are, for messages: "artist", "genre"
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.names or normalize_name(self.names[0]) != UNKNOWN:
            raise OpenJukeboxError(f"{self.kind} vocabulary: id 0 must be {UNKNOWN!r}")
        if len(self.counts) != len(self.names):
            raise OpenJukeboxError(f"{self.kind} vocabulary: {len(self.names)} names but {len(self.counts)} counts")
        ids: dict[str, int] = {"": 0, UNKNOWN: 0}
        for i, name in enumerate(self.names[1:], start=1):
            key = normalize_name(name)
            if key in ids:
                raise OpenJukeboxError(f"{self.kind} vocabulary: {name!r} (id {i}) duplicates id {ids[key]}")
            ids[key] = i
        object.__setattr__(self, "_ids", ids)

    @classmethod
    def build(cls, names: Iterable[str], min_count: int = 1, kind: str = "name") -> Vocabulary:
        """Ids 1, 2, ... for the names seen at least `min_count` times, most frequent first (ties by key).

        Spellings with the same `normalize_name` are one name, shown as its most frequent spelling.
        """
        spellings: dict[str, Counter[str]] = {}
        for name in names:
            spellings.setdefault(normalize_name(name), Counter())[name.strip()] += 1
        totals = {key: sum(c.values()) for key, c in spellings.items()}
        unknown_count = totals.pop("", 0) + totals.pop(UNKNOWN, 0)
        kept = sorted((key for key, n in totals.items() if n >= min_count), key=lambda k: (-totals[k], k))
        unknown_count += sum(n for key, n in totals.items() if n < min_count)
        display = [spellings[key].most_common(1)[0][0] for key in kept]
        return cls((UNKNOWN, *display), (unknown_count, *(totals[k] for k in kept)), kind)

    def __len__(self) -> int:
        """The number of ids, unknown bucket included (the `y_bins` entry of a label conditioner)."""
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._ids

    def id(self, name: str) -> int:
        """The id of `name` (0 for "unknown" or ""); an unknown name raises with the 3 closest known names."""
        key = normalize_name(name)
        if key in self._ids:
            return self._ids[key]
        close = difflib.get_close_matches(key, [normalize_name(n) for n in self.names[1:]], n=3)
        if close:
            hint = "closest known: " + ", ".join(repr(self.names[self._ids[k]]) for k in close)
        else:  # nothing alike: show what there is
            known = self.names[1:]
            shown = ", ".join(repr(n) for n in known[:LIST_KNOWN])
            hint = f"none alike; known: {shown}" + (
                f" and {len(known) - LIST_KNOWN} more" if len(known) > LIST_KNOWN else ""
            )
        raise OpenJukeboxError(f"unknown {self.kind} {name!r} ({hint})")

    def get(self, name: str, default: int | None = None) -> int | None:
        return self._ids.get(normalize_name(name), default)

    def name(self, id: int) -> str:
        return self.names[id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "names": list(self.names),
            "counts": list(self.counts),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocabulary:
        keys = {"format", "version", "kind", "names", "counts"}
        if set(d) != keys:
            raise OpenJukeboxError(f"vocabulary: expected keys {sorted(keys)}, got {sorted(d)}")
        if d["format"] != FORMAT or d["version"] != VERSION:
            raise OpenJukeboxError(f"vocabulary: unsupported format {d['format']!r} version {d['version']!r}")
        names, counts = d["names"], d["counts"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise OpenJukeboxError("vocabulary: 'names' must be a list of strings")
        if not (isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts)):
            raise OpenJukeboxError("vocabulary: 'counts' must be a list of non-negative integers")
        return cls(tuple(names), tuple(counts), str(d["kind"]))

    def save(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        try:
            return cls.from_dict(read_json_object(path))
        except OpenJukeboxError as e:
            if str(e).startswith(str(path)):
                raise
            raise OpenJukeboxError(f"{path}: {e}") from None
