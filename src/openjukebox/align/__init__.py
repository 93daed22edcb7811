"""Lyrics alignment (issue 7): word and character times from a lyric prior's attention.

attention.py records one window's music-over-lyrics attention; stitch.py places windows in the song's matrix;
path.py decodes a monotonic path into character/word times, confidences and line issues; aligner.py runs it over
a song (`align_codes`) and picks the head for our own models (`choose_alignment_head`, `with_alignment`);
outputs.py writes the files; cli.py is `openjukebox align`. Importing this package does not import torch (the
CLI builds its help text from it); the aligner's names are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from openjukebox.align.types import Alignment, CharTiming, LineIssue, WordTiming

_ALIGNER = ("AlignmentExample", "align_codes", "choose_alignment_head", "with_alignment")

__all__ = ["Alignment", "CharTiming", "LineIssue", "WordTiming", *_ALIGNER]


def __getattr__(name: str) -> Any:
    if name in _ALIGNER:
        from openjukebox.align import aligner

        return getattr(aligner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
