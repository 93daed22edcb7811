"""Alignment output files: align.json against its schema and back, the enhanced LRC parsed by an independent parser,
the PNG's size and path pixels, and the karaoke page's self-containment and escaping (its behaviour in a browser is
tests/align/test_karaoke_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openjukebox.align.outputs import (
    ALIGNMENT_SCHEMA,
    PATH_COLOR,
    MatrixLayout,
    alignment_to_json,
    format_lrc,
    lrc_time,
    read_alignment,
    render_karaoke,
    write_alignment,
)
from openjukebox.align.types import Alignment, CharTiming, LineIssue, WordTiming
from openjukebox.errors import OpenJukeboxError

LINES = ["hello bright world", "sing it, again", "<script>window.pwned = 1</script> & more"]
TIMES = [(0.5, 0.9), (1.0, 1.4), (1.5, 2.2), (2.5, 2.8), (2.9, 3.1), (3.3, 4.0)]
TIMES += [(4.2, 4.6), (4.6, 4.8), (4.9, 5.3), (5.4, 5.5), (5.6, 6.1)]


def make_alignment(lines=LINES, times=TIMES, frame_seconds=0.04, duration=6.5, issues=(), with_matrix=True):
    """Words are the whitespace-separated spans of each line, sung at `times`; characters spread evenly inside their
    word; the path follows the characters' times; the attention is a peak on the path with a little spread."""
    text = "\n".join(lines)
    spans, offset = [], 0
    for line, line_text in enumerate(lines):
        spans += [(offset + m.start(), offset + m.end() - 1, line) for m in re.finditer(r"\S+", line_text)]
        offset += len(line_text) + 1
    assert len(spans) == len(times)
    words, char_time = [], [None] * len(text)
    for (a, b, line), (start, end) in zip(spans, times):
        words.append(WordTiming(text[a : b + 1], start, end, 0.9, line, a, b))
        for i in range(a, b + 1):
            char_time[i] = start + (end - start) * (i - a) / (b - a + 1)
    last = 0.0
    for i, t in enumerate(char_time):  # spaces and newlines: the time of the character before
        char_time[i] = last = t if t is not None else last
    chars = [CharTiming(i, c, char_time[i], 0.8) for i, c in enumerate(text)]
    matrix = path = None
    if with_matrix:
        frames = math.ceil(duration / frame_seconds)
        times_np = np.array(char_time)
        path = np.array([max(0, np.searchsorted(times_np, t * frame_seconds, "right") - 1) for t in range(frames)])
        matrix = np.zeros((frames, len(text)), np.float32)
        matrix[np.arange(frames), path] = 0.7
        matrix[np.arange(frames), np.minimum(path + 1, len(text) - 1)] += 0.15
    return Alignment(
        text, list(lines), frame_seconds, duration, chars, words, list(issues), matrix, path, "forced", 63, 0
    )


ISSUES = [LineIssue(1, LINES[1], "repeated", "sung again at 5.0 s")]


@pytest.fixture
def alignment():
    return make_alignment(issues=ISSUES)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, 0.1 * np.sin(np.linspace(0, 2000, 8000 * 7)).astype(np.float32), 8000)
    return path


def test_write_alignment_writes_every_file_atomically(tmp_path, alignment, wav):
    folder = tmp_path / "out" / "nested"
    paths = write_alignment(folder, alignment, audio_path=wav, title="My song")
    assert paths == {
        "json": folder / "align.json",
        "lrc": folder / "lyrics.lrc",
        "png": folder / "alignment.png",
        "html": folder / "karaoke.html",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths.values())  # no temporary left
    no_matrix = make_alignment(with_matrix=False)
    paths = write_alignment(tmp_path / "plain", no_matrix)
    assert set(paths) == {"json", "lrc", "html"} and not (tmp_path / "plain" / "alignment.png").exists()


def test_missing_audio_is_a_clear_error(tmp_path, alignment):
    with pytest.raises(OpenJukeboxError, match=r"nope\.wav: audio file not found"):
        write_alignment(tmp_path, alignment, audio_path=tmp_path / "nope.wav")


def test_json_is_valid_against_the_schema(tmp_path, alignment):
    jsonschema.Draft202012Validator.check_schema(ALIGNMENT_SCHEMA)
    obj = json.loads(write_alignment(tmp_path, alignment, title="t")["json"].read_text())
    jsonschema.validate(obj, ALIGNMENT_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert obj["format"] == "openjukebox-alignment" and obj["version"] == 1
    assert [w["word"] for w in obj["words"][:3]] == ["hello", "bright", "world"]
    assert obj["words"][2] == {
        "word": "world",
        "start": 1.5,
        "end": 2.2,
        "confidence": 0.9,
        "line": 0,
        "first_char": 13,
        "last_char": 17,
    }
    assert [(line["start"], line["end"]) for line in obj["lines"]] == [(0.5, 2.2), (2.5, 4.0), (4.2, 6.1)]
    assert len(obj["characters"]) == len(alignment.text)
    assert obj["issues"] == [{"line": 1, "text": LINES[1], "kind": "repeated", "detail": "sung again at 5.0 s"}]
    assert (obj["layer"], obj["head"], obj["source"]) == (63, 0, "forced")
    # the schema does reject what is wrong
    for broken in (
        {**obj, "version": 2},
        {**obj, "words": [{**obj["words"][0], "confidence": 1.5}]},
        {**obj, "issues": [{**obj["issues"][0], "kind": "late"}]},
        {k: v for k, v in obj.items() if k != "characters"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, ALIGNMENT_SCHEMA, cls=jsonschema.Draft202012Validator)


def test_read_alignment_round_trips(tmp_path, alignment):
    back = read_alignment(write_alignment(tmp_path, alignment)["json"])
    assert back.text == alignment.text and back.lines == alignment.lines
    assert back.words == alignment.words and back.issues == alignment.issues
    assert [(c.index, c.char) for c in back.chars] == [(c.index, c.char) for c in alignment.chars]
    np.testing.assert_allclose([c.time for c in back.chars], [c.time for c in alignment.chars], atol=1e-4)
    assert (back.frame_seconds, back.duration, back.source, back.layer, back.head) == (0.04, 6.5, "forced", 63, 0)
    assert back.matrix is None and back.path is None


def test_read_alignment_rejects_other_files(tmp_path, alignment):
    obj = alignment_to_json(alignment)
    cases = {
        "other.json": ({**obj, "format": "something-else"}, "not an alignment file"),
        "newer.json": ({**obj, "version": 2}, "unsupported alignment version 2"),
        "broken.json": ({k: v for k, v in obj.items() if k != "words"}, "malformed alignment"),
        "list.json": ([1, 2], "expected a JSON object"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(OpenJukeboxError, match=f"{name}: {message}"):
            read_alignment(tmp_path / name)
    with pytest.raises(OpenJukeboxError, match="missing"):
        read_alignment(tmp_path / "absent.json")


def test_non_finite_times_are_refused():
    bad = make_alignment(times=[(float("nan"), 0.9), *TIMES[1:]])
    with pytest.raises(ValueError, match="non-finite"):
        alignment_to_json(bad)


def _parse_enhanced_lrc(text: str):
    """A small enhanced-LRC reader, independent of the writer: tags, and per lyric line its time and
    [(word time, text)] with the closing stamp as a last entry with empty text."""
    stamp = r"(\d+):(\d{2})\.(\d{2})"
    tags, lines = {}, []
    for raw in text.splitlines():
        if m := re.fullmatch(r"\[([a-z]+):([^\]]*)\]", raw):
            tags[m[1]] = m[2]
            continue
        m = re.fullmatch(rf"\[{stamp}\](.*)", raw)
        assert m, f"not an LRC line: {raw!r}"
        line_time = int(m[1]) * 60 + int(m[2]) + int(m[3]) / 100
        parts = re.split(rf"<{stamp}>", m[4])  # [before, mm, ss, cc, text, mm, ss, cc, text, ...]
        assert parts[0] == "", f"text before the first word stamp: {raw!r}"
        words = [
            (int(parts[i]) * 60 + int(parts[i + 1]) + int(parts[i + 2]) / 100, parts[i + 3])
            for i in range(1, len(parts), 4)
        ]
        lines.append((line_time, words))
    return tags, lines


def test_lrc_round_trips_word_times(tmp_path, alignment):
    lrc = write_alignment(tmp_path, alignment, title="My [odd] song")["lrc"].read_text()
    tags, lines = _parse_enhanced_lrc(lrc)
    assert tags == {"ti": "My (odd) song", "length": "00:06", "re": "openjukebox"}
    assert len(lines) == len(LINES)
    k = 0
    for (line_time, stamps), line_text in zip(lines, LINES):
        *word_stamps, (end_time, closing) = stamps
        assert closing == ""
        assert "".join(piece for _, piece in word_stamps) == line_text  # words with the text between them
        assert abs(line_time - alignment.words[k].start) <= 0.01
        for t, piece in word_stamps:
            word = alignment.words[k]
            assert piece.strip() == word.word and abs(t - word.start) <= 0.01, (piece, t, word)
            k += 1
        assert abs(end_time - alignment.words[k - 1].end) <= 0.01
    assert k == len(alignment.words)


def test_lrc_times_past_a_minute_and_lines_without_words():
    assert lrc_time(75.126) == "01:15.13" and lrc_time(3725.999) == "62:06.00" and lrc_time(-0.01) == "00:00.00"
    times = [(61.234, 61.9), (62.0, 62.5), (70.016, 71.0)]
    al = make_alignment(["one two", "", "three"], times, duration=72.0, with_matrix=False)
    tags, lines = _parse_enhanced_lrc(format_lrc(al))
    assert "ti" not in tags and tags["length"] == "01:12"
    assert [line_time for line_time, _ in lines] == pytest.approx(
        [61.23, 62.5, 70.02]
    )  # the empty line keeps the previous end
    assert lines[1][1] == [] and [t for t, _ in lines[2][1]] == pytest.approx([70.02, 71.0])


def test_punctuation_outside_words_is_kept():
    text = '"hi," she said.\n(yes)'
    spans = [(1, 2, 0), (6, 8, 0), (10, 13, 0), (17, 19, 1)]  # hi, she, said, yes: words without punctuation
    words = [WordTiming(text[a : b + 1], 1.0 + k, 1.5 + k, 0.5, line, a, b) for k, (a, b, line) in enumerate(spans)]
    chars = [CharTiming(i, c, 1.0, 0.5) for i, c in enumerate(text)]
    al = Alignment(text, ['"hi," she said.', "(yes)"], 0.05, 5.0, chars, words)
    lrc = format_lrc(al).splitlines()[-2:]
    assert lrc == [
        '[00:01.00]<00:01.00>"hi," <00:02.00>she <00:03.00>said.<00:03.50>',
        "[00:04.00]<00:04.00>(yes)<00:04.50>",
    ]
    _, lines = _parse_enhanced_lrc("\n".join(lrc))
    assert ["".join(piece for _, piece in stamps) for _, stamps in lines] == al.lines
    page = render_karaoke(al)
    assert '&quot;<span class="w" data-i="0">hi</span>,&quot; <span class="w" data-i="1">she</span>' in page
    assert '(<span class="w" data-i="3">yes</span>)' in page


def test_png_shows_the_path(tmp_path, alignment):
    png = write_alignment(tmp_path, alignment)["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(png)
    frames, chars = alignment.matrix.shape
    layout = MatrixLayout.for_matrix(frames, chars)
    assert image.format == "PNG" and image.mode == "RGB" and image.size == layout.size
    assert layout.plot_width == frames * 3 and layout.plot_height == chars * 4  # small matrices are scaled up
    pixels = image.load()
    for t, c in enumerate(alignment.path):
        assert pixels[layout.x(t), layout.y(c)] == PATH_COLOR, (t, c)
    # far from the path (late characters at the start, early characters at the end): attention colours, no path
    assert pixels[layout.x(0), layout.y(chars - 1)] == (68, 1, 84)  # zero attention
    assert pixels[layout.x(frames - 1), layout.y(0)] == (68, 1, 84)
    assert PATH_COLOR not in [pixels[x, layout.y(chars - 1)] for x in range(layout.left, layout.x(frames // 2))]


def test_png_of_a_long_song_is_pooled(tmp_path):
    times = [(i * 2.0, i * 2.0 + 1.5) for i in range(60)]
    al = make_alignment([" ".join(f"w{i}" for i in range(j, j + 6)) for j in range(0, 60, 6)], times, duration=121)
    frames, chars = al.matrix.shape
    assert frames > 1600 and chars < 240
    image = Image.open(write_alignment(tmp_path, al)["png"])
    layout = MatrixLayout.for_matrix(frames, chars)
    assert image.size == layout.size and layout.plot_width == 1600
    pixels = image.load()
    for t in range(0, frames, 37):
        assert pixels[layout.x(t), layout.y(al.path[t])] == PATH_COLOR, t


def test_karaoke_page_is_self_contained_and_escaped(tmp_path, alignment, wav):
    page = write_alignment(tmp_path, alignment, audio_path=wav, title="A <b>bold</b> title")["html"].read_text()
    m = re.search(r'<audio id="audio" controls preload="auto" src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"', page)
    assert m and base64.b64decode(m[1]) == wav.read_bytes()
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "http://" not in page and "https://" not in page
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)[1]
    assert "default-src 'none'" in csp and "unsafe" not in csp.replace("style-src 'unsafe-inline'", "")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)  # the one executable script: allowed by its hash
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "<script>window.pwned" not in page and "&lt;script&gt;window.pwned" in page
    assert "<b>bold</b>" not in page and "A &lt;b&gt;bold&lt;/b&gt; title" in page
    assert page.count('class="w"') == len(alignment.words)
    assert '<p class="line repeated" data-line="1">' in page and "sung twice" in page
    data = re.search(r'<script type="application/json" id="alignment-data">(.*?)</script>', page, re.S)[1]
    assert json.loads(data)["words"][0] == [0.5, 0.9, 0]


def test_karaoke_page_without_audio_offers_a_file_picker(alignment):
    page = render_karaoke(alignment)
    assert '<audio id="audio" controls preload="auto"></audio>' in page and 'id="picker" type="file"' in page
    assert "<title>Lyrics</title>" in page
