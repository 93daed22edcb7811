"""The karaoke page in headless Chromium (Debian's `chromium`, driven by Playwright with the system executable):
seeking the audio highlights exactly the word sung at that time, a click on a word seeks to it, lyrics containing
markup are shown and never run, the page makes no network request, and a screenshot is taken."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from openjukebox.align.outputs import write_alignment
from openjukebox.align.types import Alignment, CharTiming, LineIssue, WordTiming

_CHROMIUM = shutil.which("chromium")
_MISSING = [] if _CHROMIUM else ["chromium (`sudo make browser-deps`)"]
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    _MISSING.append("playwright (`pip install -e '.[dev]'`)")
if _MISSING:
    _reason = "karaoke browser test needs: " + "; ".join(_MISSING)
    if os.environ.get("CI") == "true":
        pytest.fail(_reason, pytrace=False)  # CI must never go green by skipping
    pytest.skip(_reason, allow_module_level=True)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LINES = ["first line of the song", "skipped words here", "<script>window.pwned = 1</script> sung twice"]
# (start, end) of every word; a gap between 1.4 and 2.0 s
TIMES = [(0.2, 0.5), (0.5, 0.8), (0.8, 1.0), (1.0, 1.2), (1.2, 1.4), (2.0, 2.3), (2.3, 2.6), (2.6, 2.9)]
TIMES += [(3.0, 3.4), (3.4, 3.6), (3.6, 3.8), (3.8, 4.2), (4.2, 4.6)]
DURATION = 5.0


def _alignment() -> Alignment:
    text = "\n".join(LINES)
    spans, offset = [], 0
    for line, line_text in enumerate(LINES):
        spans += [(offset + m.start(), offset + m.end() - 1, line) for m in re.finditer(r"\S+", line_text)]
        offset += len(line_text) + 1
    words = [WordTiming(text[a : b + 1], s, e, 0.9, line, a, b) for (a, b, line), (s, e) in zip(spans, TIMES)]
    time_of = {i: w.start for w in words for i in range(w.first_char, w.last_char + 1)}
    chars, last = [], 0.0
    for i, c in enumerate(text):
        last = time_of.get(i, last)
        chars.append(CharTiming(i, c, last, 0.8))
    issues = [LineIssue(1, LINES[1], "skipped", "no attention"), LineIssue(2, LINES[2], "repeated", "at 4.6 s")]
    return Alignment(text, LINES, 0.05, DURATION, chars, words, issues, source="forced")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """karaoke.html with the audio embedded, and one without audio (file picker), plus the wav."""
    folder = tmp_path_factory.mktemp("karaoke")
    wav = folder / "tone.wav"
    t = np.arange(int(DURATION * 8000)) / 8000
    sf.write(wav, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    alignment = _alignment()
    embedded = write_alignment(folder / "embedded", alignment, audio_path=wav, title="Tone <b>song</b>")["html"]
    picker = write_alignment(folder / "picker", alignment)["html"]
    return embedded, picker, wav


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 700})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)  # e.g. CSP violations
    yield page
    context.close()


def _open(page, html_path):
    page.goto(html_path.as_uri())
    page.wait_for_function("() => document.getElementById('audio').readyState >= 1")  # metadata: seeking works
    assert page.evaluate("document.getElementById('audio').duration") == pytest.approx(DURATION, abs=0.01)


def _seek(page, seconds: float) -> None:
    page.evaluate("t => { const a = document.getElementById('audio'); a.pause(); a.currentTime = t; }", seconds)
    page.wait_for_function(
        "t => { const a = document.getElementById('audio'); return !a.seeking && Math.abs(a.currentTime - t) < 1e-3; }",
        arg=seconds,
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # let events run


def _highlight(page) -> dict:
    return page.evaluate(
        """() => ({
        current: Array.from(document.querySelectorAll('.w.current')).map(s => Number(s.dataset.i)),
        sung: Array.from(document.querySelectorAll('.w.sung')).map(s => Number(s.dataset.i)),
        lines: Array.from(document.querySelectorAll('.line.active')).map(l => Number(l.dataset.line)),
        text: Array.from(document.querySelectorAll('.w.current')).map(s => s.textContent),
    })"""
    )


def _check_word_at_times(page, words):
    for k in (0, 3, 6, 9, 12):
        start, end = TIMES[k]
        _seek(page, (start + end) / 2)
        state = _highlight(page)
        assert state["current"] == [k] and state["text"] == [words[k]], (k, state)
        assert state["sung"] == list(range(k)), (k, state)
        assert state["lines"] == [2 if k >= 8 else 1 if k >= 5 else 0], (k, state)


def test_seeking_highlights_the_word_sung_then(page, pages):
    embedded, _, _ = pages
    _open(page, embedded)
    words = [w.word for w in _alignment().words]
    assert _highlight(page)["current"] == []  # before playing: nothing
    _check_word_at_times(page, words)
    _seek(page, 1.7)  # between words: none current, the line's words sung
    assert _highlight(page)["current"] == [] and _highlight(page)["sung"] == list(range(5))
    _seek(page, 0.1)  # back before the first word: everything cleared
    assert _highlight(page) == {"current": [], "sung": [], "lines": [], "text": []}
    assert page.errors == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in page.requests), page.requests


def test_highlight_follows_playback(page, pages):
    """While playing, every word lights up in turn (rAF updates: `timeupdate` alone comes every ~250 ms and would
    skip words of 0.2 s)."""
    _open(page, pages[0])
    page.evaluate(
        """async () => {
        window.seen = [];
        new MutationObserver(() => {
            const c = document.querySelector('.w.current');
            if (c && window.seen.at(-1) !== Number(c.dataset.i)) window.seen.push(Number(c.dataset.i));
        }).observe(document.getElementById('lyrics'), {subtree: true, attributes: true});
        const a = document.getElementById('audio');
        a.muted = true;  // muted playback needs no user gesture
        a.currentTime = 0.3;
        await a.play();
    }"""
    )
    page.wait_for_function("() => document.getElementById('audio').currentTime > 2.4")
    page.evaluate("document.getElementById('audio').pause()")
    seen = page.evaluate("window.seen")
    assert seen[:7] == [0, 1, 2, 3, 4, 5, 6], seen  # words 0..4, the gap (no word), then line 2 from 2.0 s
    assert page.errors == []


def test_clicking_a_word_seeks_to_it(page, pages):
    _open(page, pages[0])
    for k in (7, 2):
        page.click(f'.w[data-i="{k}"]')
        page.wait_for_function(
            "t => Math.abs(document.getElementById('audio').currentTime - t) < 1e-3", arg=TIMES[k][0]
        )
        assert _highlight(page)["current"] == [k]


def test_markup_in_lyrics_is_shown_not_run(page, pages, tmp_path):
    _open(page, pages[0])
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("typeof window.karaoke.render") == "function"  # our own script does run under the CSP
    assert page.inner_text('.line[data-line="2"]').startswith("<script>window.pwned = 1</script> sung twice")
    assert page.inner_text("h1") == "Tone <b>song</b>" and page.locator("h1 b").count() == 0
    assert page.locator("main script").count() == 0
    assert "skipped" in page.inner_text(".line.skipped .issue") and "sung twice" in page.inner_text(".line.repeated")
    _seek(page, 3.2)
    shot = tmp_path / "karaoke.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(shot)
    assert image.format == "PNG" and image.size == (900, 700)
    assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # not a blank page


def test_page_without_audio_plays_a_picked_file(page, pages):
    _, picker, wav = pages
    page.goto(picker.as_uri())
    assert page.evaluate("document.getElementById('audio').currentSrc") == ""
    page.set_input_files("#picker", str(wav))
    page.wait_for_function("() => document.getElementById('audio').readyState >= 1")
    assert page.evaluate("document.getElementById('audio').currentSrc").startswith("blob:")
    _check_word_at_times(page, [w.word for w in _alignment().words])
    assert page.errors == []
