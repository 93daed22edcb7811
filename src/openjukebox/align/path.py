"""From a song's attention matrix to character and word timings (Jukebox paper §5.3; issue 7).

1. `monotonic_path`: one character per frame, never going backwards, maximising the summed log attention
   (dynamic programming; a Viterbi path through a left-to-right chain where any number of characters may be
   skipped between two frames, optionally at a cost per skipped character). Long songs keep memory small by
   storing every `segment`-th row of scores and recomputing one segment at a time while tracing back.
2. `char_spans`: each character the path stays on gets the frames of its run, trimmed to where its attention is
   at least half its peak in the run (so an intro the path spends on the first character does not become part
   of it); characters the path skips get zero-length times spread evenly between their neighbours'.
3. `split_words` / `split_lines`: words are maximal runs of non-whitespace characters of the text (punctuation
   stays with its word), lines the text between newlines, as the lyrics are written.
4. `line_issues`: the coverage check. A line is "skipped" when the path spends much less time on it than its
   length asks for (under `skip_fraction` of the song's median frames per character) or no frame attends to it
   noticeably; "repeated" when, more than `gap_seconds` after the path has left it, the attention returns to it
   (more mass on it than on the path's line, and at least `repeat_mass`) for `repeat_seconds` or more.
5. `decode_alignment` puts it together into an `Alignment`.

Confidence of a character: the mean, over its frames, of the attention mass within `radius` characters of it
(clipped to 1); a word's is the mean of its characters'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from openjukebox.align.types import Alignment, CharTiming, LineIssue, WordTiming


def monotonic_path(
    matrix: np.ndarray, jump_penalty: float = 0.0, floor: float = 1e-4, segment: int = 512
) -> np.ndarray:
    """The non-decreasing character index per frame that maximises sum_t log(max(matrix[t, c_t], floor)) minus
    `jump_penalty` per character skipped between consecutive frames.

    Args:
        matrix: (frames, chars) attention, frames >= 1, chars >= 1.
        floor: attention below it counts as it (frames no window covered are all floor: no preference).
        segment: rows of scores kept at once while tracing back (memory ~ (frames / segment + segment) * chars).
    Returns:
        (frames,) int64 character indices, non-decreasing.
    """
    a = np.asarray(matrix)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"need a (frames >= 1, chars >= 1) matrix, got shape {a.shape}")
    frames, chars = a.shape
    ramp = jump_penalty * np.arange(chars, dtype=np.float64)

    def score(t: int) -> np.ndarray:  # (N,) float64, one row at a time (a whole song's would not fit)
        return np.log(np.maximum(a[t].astype(np.float64), floor))

    def step(prev: np.ndarray, t: int) -> np.ndarray:
        # best over c' <= c of prev[c'] - penalty * (c - c')
        return score(t) + np.maximum.accumulate(prev + ramp) - ramp

    starts = list(range(0, frames, segment))
    checkpoints: dict[int, np.ndarray] = {}
    row = score(0)
    for t in range(frames):
        if t:
            row = step(row, t)
        if t % segment == 0:
            checkpoints[t] = row
    path = np.empty(frames, dtype=np.int64)
    for s in reversed(starts):
        e = min(s + segment, frames)
        rows = [checkpoints[s]]
        for t in range(s + 1, e):
            rows.append(step(rows[-1], t))
        for u in range(e - 1, s - 1, -1):
            if u == frames - 1:
                path[u] = chars - 1 - int(np.argmax(rows[-1][::-1]))  # last maximum: the furthest best end
                continue
            c = int(path[u + 1])
            scores = rows[u - s][: c + 1] + ramp[: c + 1]
            path[u] = c - int(np.argmax(scores[::-1]))  # ties: stay on the character rather than move back
    return path


@dataclass(frozen=True)
class WordSpan:
    word: str
    first_char: int
    last_char: int
    line: int


def split_lines(text: str) -> list[str]:
    return text.split("\n")


def char_lines(text: str) -> np.ndarray:
    """(len(text),) line index of every character; a newline belongs to the line it ends."""
    breaks = np.array([c == "\n" for c in text], dtype=np.int64)
    return np.cumsum(breaks) - breaks


def split_words(text: str) -> list[WordSpan]:
    """Maximal runs of non-whitespace characters, with their character spans and line index."""
    lines = char_lines(text)
    return [WordSpan(m.group(), m.start(), m.end() - 1, int(lines[m.start()])) for m in re.finditer(r"\S+", text)]


def char_spans(matrix: np.ndarray, path: np.ndarray, n_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) frame of every character as floats (module docstring, step 2); end >= start."""
    a = np.asarray(matrix)
    frames = len(path)
    start = np.full(n_chars, np.nan)
    end = np.full(n_chars, np.nan)
    visited, first = np.unique(path, return_index=True)
    last = np.searchsorted(path, visited, side="right")  # the path is sorted
    for c, lo, hi in zip(visited.tolist(), first.tolist(), last.tolist()):
        run = a[lo:hi, c]
        peak = run.max()
        if peak > 0:
            active = np.nonzero(run >= 0.5 * peak)[0]
            lo, hi = lo + int(active[0]), lo + int(active[-1]) + 1
        start[c], end[c] = lo, hi
    known = np.nonzero(~np.isnan(start))[0]
    c = 0
    while c < n_chars:  # fill runs of skipped characters between their neighbours
        if not np.isnan(start[c]):
            c += 1
            continue
        k = c
        while k < n_chars and np.isnan(start[k]):
            k += 1
        before = end[c - 1] if c > 0 else (start[known[0]] if len(known) else 0.0)
        after = start[k] if k < n_chars else float(frames)
        after = max(after, before)
        for i, j in enumerate(range(c, k)):
            start[j] = end[j] = before + (after - before) * (i + 1) / (k - c + 1)
        c = k
    return start, end


def char_confidence(matrix: np.ndarray, start: np.ndarray, end: np.ndarray, radius: int = 2) -> np.ndarray:
    """(chars,) mean attention mass within `radius` characters over each character's frames, in [0, 1]."""
    a = np.asarray(matrix)
    frames, n = a.shape
    out = np.zeros(n)
    for c in range(n):
        lo_c, hi_c = max(0, c - radius), min(n, c + radius + 1)
        lo = int(np.clip(np.floor(start[c]), 0, frames - 1))
        hi = int(np.clip(np.ceil(end[c]), lo + 1, frames))
        mass = a[lo:hi, lo_c:hi_c].astype(np.float64).sum(axis=1)  # (frames of c,)
        out[c] = float(np.clip(mass, 0.0, 1.0).mean())
    return out


def line_issues(
    matrix: np.ndarray,
    path: np.ndarray,
    text: str,
    frame_seconds: float,
    skip_fraction: float = 0.2,
    min_mass: float = 0.05,
    gap_seconds: float = 1.0,
    repeat_seconds: float = 0.5,
    repeat_mass: float = 0.3,
) -> list[LineIssue]:
    """Lines the alignment skipped or sang twice (module docstring, step 4)."""
    a = np.asarray(matrix)
    lines = split_lines(text)
    line_of = char_lines(text)
    n_lines = len(lines)
    counts = np.bincount(line_of, minlength=n_lines)
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nonempty = np.nonzero(counts)[0]  # only a last line after a final newline has no character
    mass = np.zeros((a.shape[0], n_lines))  # (T, lines) attention on each line
    mass[:, nonempty] = np.add.reduceat(a, firsts[nonempty], axis=1)
    path_line = line_of[path]  # (T,)
    frames_on = np.bincount(path_line, minlength=n_lines)
    sizes = np.array([len(line.strip()) for line in lines])
    sung = np.nonzero(sizes > 0)[0]
    rates = frames_on[sung] / sizes[sung]
    rate = float(np.median(rates)) if len(rates) else 0.0
    issues: list[LineIssue] = []
    t_index = np.arange(a.shape[0])
    for i in sung.tolist():
        text_i = lines[i]
        peak = float(mass[:, i].max(initial=0.0))
        if frames_on[i] == 0 or frames_on[i] < skip_fraction * rate * sizes[i] or peak < min_mass:
            expected = rate * sizes[i] * frame_seconds
            detail = f"{frames_on[i] * frame_seconds:.2f} s on the path (expected about {expected:.2f} s)"
            if peak < min_mass:
                detail += f", peak attention {peak:.3f}"
            issues.append(LineIssue(i, text_i, "skipped", detail))
            continue
        left = int(np.nonzero(path_line == i)[0][-1])
        later = (t_index > left + gap_seconds / frame_seconds) & (path_line != i)
        back = later & (mass[:, i] >= repeat_mass) & (mass[:, i] > mass[t_index, path_line])
        seconds = int(back.sum()) * frame_seconds
        if seconds >= repeat_seconds:
            when = int(np.nonzero(back)[0][0]) * frame_seconds
            issues.append(LineIssue(i, text_i, "repeated", f"attention returns for {seconds:.2f} s from {when:.2f} s"))
    return issues


def decode_alignment(
    matrix: np.ndarray,
    text: str,
    frame_seconds: float,
    *,
    duration: float | None = None,
    jump_penalty: float = 0.0,
    radius: int = 2,
    source: str = "",
    layer: int | None = None,
    head: int | None = None,
) -> Alignment:
    """Character and word timings, confidences and line issues of a (frames, len(text)) attention matrix."""
    a = np.asarray(matrix, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != len(text):
        raise ValueError(f"matrix {a.shape} does not have one column per character of a text of {len(text)}")
    path = monotonic_path(a, jump_penalty=jump_penalty)
    start, end = char_spans(a, path, len(text))
    conf = char_confidence(a, start, end, radius=radius)
    chars = [
        CharTiming(i, ch, float(start[i] * frame_seconds), float(np.clip(conf[i], 0.0, 1.0)))
        for i, ch in enumerate(text)
    ]
    words = [
        WordTiming(
            w.word,
            float(start[w.first_char] * frame_seconds),
            float(max(end[w.last_char], start[w.first_char]) * frame_seconds),
            float(np.clip(conf[w.first_char : w.last_char + 1].mean(), 0.0, 1.0)),
            w.line,
            w.first_char,
            w.last_char,
        )
        for w in split_words(text)
    ]
    return Alignment(
        text=text,
        lines=split_lines(text),
        frame_seconds=frame_seconds,
        duration=float(a.shape[0] * frame_seconds if duration is None else duration),
        chars=chars,
        words=words,
        issues=line_issues(a, path, text, frame_seconds),
        matrix=a,
        path=path,
        source=source,
        layer=layer,
        head=head,
    )
