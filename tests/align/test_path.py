"""Monotonic path, timings and the coverage check on constructed attention matrices with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from openjukebox.align.path import (
    char_lines,
    char_spans,
    decode_alignment,
    line_issues,
    monotonic_path,
    split_words,
)


def steps_matrix(runs: list[tuple[int, int]], n_chars: int, peak: float = 0.9) -> np.ndarray:
    """Rows attend `peak` to one character for `frames` frames per (char, frames) run, the rest spread evenly."""
    rows = []
    for char, frames in runs:
        row = np.full(n_chars, (1 - peak) / (n_chars - 1), dtype=np.float32)
        row[char] = peak
        rows += [row] * frames
    return np.stack(rows)


def brute_force_path(matrix: np.ndarray, floor: float = 1e-4, penalty: float = 0.0) -> float:
    """Best score over every non-decreasing path (tiny matrices only)."""
    logs = np.log(np.maximum(matrix.astype(np.float64), floor))
    frames, chars = matrix.shape
    best = -np.inf
    for path in itertools.combinations_with_replacement(range(chars), frames):
        s = sum(logs[t, c] for t, c in enumerate(path)) - penalty * sum(
            max(0, path[t] - path[t - 1]) for t in range(1, frames)
        )
        best = max(best, s)
    return best


def path_score(matrix, path, floor=1e-4, penalty=0.0) -> float:
    logs = np.log(np.maximum(matrix.astype(np.float64), floor))
    return float(logs[np.arange(len(path)), path].sum() - penalty * np.diff(path).sum())


def test_diagonal():
    a = steps_matrix([(c, 10) for c in range(10)], 10)
    path = monotonic_path(a)
    np.testing.assert_array_equal(path, np.arange(100) // 10)


def test_steps_with_noise_and_a_spike():
    rng = np.random.default_rng(0)
    runs = [(0, 7), (1, 3), (2, 12), (4, 9), (5, 5), (7, 20), (8, 4)]  # chars 3 and 6 are skipped
    a = steps_matrix(runs, 9, peak=0.6) + rng.uniform(0, 0.15, (60, 9)).astype(np.float32)
    a[15, 8] = 1.0  # one noisy frame far ahead: following it would cost every frame after it
    path = monotonic_path(a)
    expected = np.concatenate([[c] * f for c, f in runs])
    np.testing.assert_array_equal(path, expected)
    assert np.all(np.diff(path) >= 0)


@pytest.mark.parametrize("penalty", [0.0, 0.7])
def test_optimal_against_brute_force(penalty):
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.uniform(0, 1, (6, 4)).astype(np.float32)
        path = monotonic_path(a, jump_penalty=penalty, segment=2)  # several segments of the trace-back
        assert np.all(np.diff(path) >= 0)
        assert path_score(a, path, penalty=penalty) == pytest.approx(brute_force_path(a, penalty=penalty))


def test_segments_do_not_change_the_path():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 1, (300, 40)).astype(np.float32)
    np.testing.assert_array_equal(monotonic_path(a, segment=7), monotonic_path(a, segment=1000))


def test_jump_penalty_prefers_small_steps():
    # Frame 1 likes char 3 slightly more than char 1, which a cost per skipped character outweighs.
    a = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.4, 0.05, 0.45]], dtype=np.float32)
    assert monotonic_path(a).tolist() == [0, 3]
    assert monotonic_path(a, jump_penalty=0.5).tolist() == [0, 1]


def test_words_and_lines():
    text = "Hi there,\n\nyou two\n"
    words = split_words(text)
    assert [(w.word, w.first_char, w.last_char, w.line) for w in words] == [
        ("Hi", 0, 1, 0),
        ("there,", 3, 8, 0),
        ("you", 11, 13, 2),
        ("two", 15, 17, 2),
    ]
    assert char_lines(text).tolist() == [0] * 10 + [1] + [2] * 8


def test_char_spans_trim_and_interpolate():
    # char 0 for 10 frames but attended strongly only in its last 4; char 1 skipped; char 2 for 6 frames.
    a = np.zeros((16, 3), dtype=np.float32)
    a[:6, 0] = 0.2
    a[6:10, 0] = 0.9
    a[10:, 2] = 0.8
    path = monotonic_path(a)
    assert path.tolist() == [0] * 10 + [2] * 6
    start, end = char_spans(a, path, 3)
    assert (start[0], end[0]) == (6, 10)
    assert start[1] == end[1] == 10  # between its neighbours (here they touch)
    assert (start[2], end[2]) == (10, 16)


def test_decode_word_times_and_confidence():
    text = "ab cd"
    frame_seconds = 0.5
    a = steps_matrix([(0, 2), (1, 2), (2, 2), (3, 2), (4, 2)], 5, peak=0.8)
    al = decode_alignment(a, text, frame_seconds, source="forced", layer=3, head=1)
    assert [(w.word, w.start, w.end) for w in al.words] == [("ab", 0.0, 2.0), ("cd", 3.0, 5.0)]
    assert [c.time for c in al.chars] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert al.path.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # mass within 2 characters: the peak plus 2-4 of the 0.05 shares
    assert all(0.85 <= c.confidence <= 1.0 for c in al.chars)
    assert al.duration == 5.0 and al.lines == ["ab cd"] and al.issues == []
    assert (al.source, al.layer, al.head) == ("forced", 3, 1)
    noisy = decode_alignment(np.full((10, 5), 0.2, dtype=np.float32), text, frame_seconds)
    assert all(w.confidence < al.words[0].confidence for w in noisy.words)


def line_text_and_spans():
    text = "aaaa\nbbbb\ncccc"
    spans = [(0, 5), (5, 10), (10, 14)]  # chars of each line, newline included
    return text, spans


def line_matrix(schedule: list[tuple[int, int]], text: str, spans) -> np.ndarray:
    """Attention walking through the characters of the scheduled lines, `frames` per line."""
    rows = []
    for line, frames in schedule:
        lo, hi = spans[line]
        sung = [c for c in range(lo, hi) if text[c] != "\n"]
        for f in range(frames):
            row = np.full(len(text), 0.01, dtype=np.float32)
            row[sung[f * len(sung) // frames]] = 0.9
            rows.append(row)
    return np.stack(rows)


def test_no_issues_when_every_line_is_sung_once():
    text, spans = line_text_and_spans()
    a = line_matrix([(0, 40), (1, 40), (2, 40)], text, spans)
    path = monotonic_path(a)
    assert line_issues(a, path, text, 0.05) == []


def test_skipped_line():
    text, spans = line_text_and_spans()
    a = line_matrix([(0, 40), (2, 40)], text, spans)
    path = monotonic_path(a)
    issues = line_issues(a, path, text, 0.05)
    assert [(i.line, i.kind, i.text) for i in issues] == [(1, "skipped", "bbbb")]


def test_repeated_line():
    text, spans = line_text_and_spans()
    # line 1 is sung, then line 2, then line 1 again (2 s = 40 frames at 0.05 s), then line 2 once more
    a = line_matrix([(0, 40), (1, 40), (2, 40), (1, 40), (2, 20)], text, spans)
    path = monotonic_path(a)
    assert np.all(np.diff(path) >= 0)
    issues = line_issues(a, path, text, 0.05)
    assert [(i.line, i.kind) for i in issues] == [(1, "repeated")]
    assert "returns for 2.00 s" in issues[0].detail
