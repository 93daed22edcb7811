"""What lyrics alignment produces, shared by the aligner (attention -> timings) and the writers (JSON, LRC, PNG,
karaoke page).

Times are in seconds from the start of the audio. A song's lyrics are the cleaned text the prior reads
(`SongLyrics.text`, one character per lyric token); words and lines are spans of that text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CharTiming:
    index: int  # position in `Alignment.text`
    char: str
    time: float  # seconds: when the music attends to this character
    confidence: float  # in [0, 1]: attention mass on the path around this character


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # in [0, 1]: mean of its characters'
    line: int  # index into `Alignment.lines`
    first_char: int  # span [first_char, last_char] in `Alignment.text`
    last_char: int


@dataclass(frozen=True)
class LineIssue:
    """A lyric line the alignment did not follow: `kind` is "skipped" (no music attends to it) or "repeated"
    (the path comes back to it after moving on)."""

    line: int
    text: str
    kind: str
    detail: str = ""


@dataclass
class Alignment:
    """Lyrics aligned to one song.

    matrix: (frames, len(text)) float32 attention of the music (one row per top-level code, `frame_seconds`
        apart) over the characters, stitched over windows (0 where no window covered it). One window's row sums
        to at most 1; where windows overlap, the original's stitching rule (stitch.py) can fill one row from
        several windows, so a row may sum to more.
    path: (frames,) int64 character index the monotonic path assigns to each frame.
    """

    text: str
    lines: list[str]
    frame_seconds: float
    duration: float
    chars: list[CharTiming]
    words: list[WordTiming]
    issues: list[LineIssue] = field(default_factory=list)
    matrix: np.ndarray | None = None
    path: np.ndarray | None = None
    source: str = ""  # "sampled" (attention while generating) or "forced" (teacher-forced existing audio)
    layer: int | None = None
    head: int | None = None
