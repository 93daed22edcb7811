"""bench/align.py's scoring on constructed songs with known answers: the linear baseline's word onsets, pairing
of predicted and true words, per-song and overall onset errors, the table and the sidecar reader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from openjukebox.errors import OpenJukeboxError

BENCH = Path(__file__).resolve().parents[2] / "bench" / "align.py"


@pytest.fixture(scope="module")
def bench(import_script):
    return import_script(BENCH, "bench_align")


def test_linear_onsets_spread_characters_evenly(bench):
    # 8 characters over 8 s: character k starts at k s; words start at characters 0, 3 and 6
    onsets = bench.linear_onsets("ab cd\nef", 8.0)
    assert onsets.words == ["ab", "cd", "ef"]
    assert onsets.starts == pytest.approx([0.0, 3.0, 6.0])
    assert bench.linear_onsets("", 5.0).words == []


def test_evaluate_song_known_errors(bench):
    truth = bench.Onsets(["ab", "cd", "ef"], [0.5, 3.0, 7.0])
    aligned = bench.Onsets(["ab", "cd", "ef"], [0.4, 3.5, 7.1])
    result = bench.evaluate_song(truth, "ab cd\nef", 8.0, aligned, tolerance=0.3)
    a, lin = result["aligner"], result["linear"]
    # aligner errors 0.1, 0.5, 0.1
    assert a["errors"] == pytest.approx([0.1, 0.5, 0.1])
    assert a["median_error"] == pytest.approx(0.1)
    assert a["mean_error"] == pytest.approx(0.7 / 3)
    assert a["within"] == pytest.approx(2 / 3)
    assert (a["words"], a["paired"]) == (3, 3)
    # linear onsets 0, 3, 6: errors 0.5, 0, 1
    assert lin["median_error"] == pytest.approx(0.5)
    assert lin["mean_error"] == pytest.approx(0.5)
    assert lin["within"] == pytest.approx(1 / 3)


def test_unpaired_words_count_as_misses(bench):
    truth = bench.Onsets(["Hello,", "dark", "night"], [1.0, 2.0, 3.0])
    # the prediction lost "dark" and has an extra word; case and punctuation do not matter for pairing
    predicted = bench.Onsets(["hello", "xyz", "Night!"], [1.1, 1.5, 3.05])
    assert bench.pair_words(truth.words, predicted.words) == [(0, 0), (2, 2)]
    s = bench.onset_scores(truth, predicted, tolerance=0.3)
    assert (s["words"], s["paired"]) == (3, 2)
    assert s["median_error"] == pytest.approx(0.075)
    assert s["within"] == pytest.approx(2 / 3)  # the missed word is not within tolerance
    empty = bench.onset_scores(truth, bench.Onsets([], []))
    assert empty["paired"] == 0 and empty["within"] == 0.0 and math.isnan(empty["median_error"])


def test_overall_pools_words_of_all_songs(bench):
    t = bench.Onsets(["a", "b"], [0.0, 1.0])
    song1 = bench.evaluate_song(t, "a b", 2.0, bench.Onsets(["a", "b"], [0.0, 1.0]))  # errors 0, 0
    t2 = bench.Onsets(["c", "d", "e"], [0.0, 1.0, 2.0])
    song2 = bench.evaluate_song(t2, "c d e", 3.0, bench.Onsets(["c", "d", "e"], [1.0, 2.0, 3.0]))  # 1, 1, 1
    overall = bench.summarize([song1, song2], "aligner", tolerance=0.3)
    assert overall["words"] == 5 and overall["paired"] == 5
    assert overall["median_error"] == pytest.approx(1.0)  # of [0, 0, 1, 1, 1], not the mean of song medians
    assert overall["mean_error"] == pytest.approx(0.6)
    assert overall["within"] == pytest.approx(0.4)
    rows = [dict(song1, song="s1.flac", seconds=2.0), dict(song2, song="s2.flac", seconds=3.0)]
    table = bench.markdown(rows, {m: bench.summarize(rows, m) for m in ("aligner", "linear")}, 0.3)
    lines = table.splitlines()
    assert len(lines) == 5 and lines[2].startswith("| s1.flac | 2.0 | 2 | 0.00 | 0.00 | 100% |")
    assert lines[-1].startswith("| **all** | 5.0 | 5 | 1.00 | 0.60 | 40% |")


def test_read_truth_and_song_files(bench, tmp_path):
    meta = {"artist": "a", "genre": ["folk"], "lyrics": "hi there", "words": [{"word": "hi", "start": 1.5, "end": 2}]}
    (tmp_path / "song_0000.json").write_text(json.dumps(meta))
    (tmp_path / "song_0000.flac").write_bytes(b"")
    (tmp_path / "song_0001.flac").write_bytes(b"")  # no sidecar: not a song to evaluate
    got_meta, truth = bench.read_truth(tmp_path / "song_0000.json")
    assert got_meta["artist"] == "a" and truth.words == ["hi"] and truth.starts == [1.5]
    assert [a.name for a, _ in bench.song_files(tmp_path)] == ["song_0000.flac"]
    (tmp_path / "bad.json").write_text('{"words": [{"word": "x"}]}')
    with pytest.raises(OpenJukeboxError, match=r"bad\.json"):
        bench.read_truth(tmp_path / "bad.json")
    with pytest.raises(OpenJukeboxError, match="no such folder"):
        bench.song_files(tmp_path / "missing")
