"""Files written for an aligned song: `align.json`, an enhanced `lyrics.lrc`, `alignment.png` and `karaoke.html`.

Why four files: `align.json` is the data (versioned, with a JSON schema, read back by `read_alignment`); the LRC is
what music players and karaoke apps already read (one `[mm:ss.xx]` line per lyric line, word times as `<mm:ss.xx>`
inside it, the "A2 extension" of enhanced LRC); the PNG shows at a glance whether the lyric attention followed the
song (the attention matrix with the monotonic path on it, paper section 4.5 / Figure 4); the karaoke page plays the
audio and highlights the current word, with nothing but one self-contained file (audio embedded as a data URI, no
external resources, a Content-Security-Policy that forbids network access).

Lyrics and titles are user input: every text reaches the HTML through `html.escape`, and the timing data through a
JSON script block whose `<`, `>` and `&` are escaped, so no lyric can become markup or script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from openjukebox.align.types import Alignment, CharTiming, LineIssue, WordTiming
from openjukebox.errors import OpenJukeboxError
from openjukebox.fileio import atomic_path, read_json_object, write_bytes_atomic, write_json_atomic

FORMAT = "openjukebox-alignment"
VERSION = 1
FILE_NAMES = {"json": "align.json", "lrc": "lyrics.lrc", "png": "alignment.png", "html": "karaoke.html"}

_NUM = {"type": "number"}
_TIME = {"type": "number", "minimum": 0}
_CONF = {"type": "number", "minimum": 0, "maximum": 1}
_INDEX = {"type": "integer", "minimum": 0}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties, "additionalProperties": False}


# JSON Schema (draft 2020-12) of align.json, version 1.
ALIGNMENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "openjukebox lyrics alignment",
    **_obj(
        {
            "format": {"const": FORMAT},
            "version": {"const": VERSION},
            "title": {"type": "string"},
            "audio": {"type": ["string", "null"]},  # file name of the aligned audio
            "source": {"type": "string"},  # "sampled" or "forced"
            "layer": {"type": ["integer", "null"]},
            "head": {"type": ["integer", "null"]},
            "frame_seconds": {"type": "number", "exclusiveMinimum": 0},
            "duration": _TIME,
            "text": {"type": "string"},
            "lines": {
                "type": "array",
                "items": _obj(
                    {
                        "text": {"type": "string"},
                        "start": {"type": ["number", "null"]},
                        "end": {"type": ["number", "null"]},
                    }
                ),
            },
            "words": {
                "type": "array",
                "items": _obj(
                    {
                        "word": {"type": "string"},
                        "start": _TIME,
                        "end": _TIME,
                        "confidence": _CONF,
                        "line": _INDEX,
                        "first_char": _INDEX,
                        "last_char": _INDEX,
                    }
                ),
            },
            "characters": {
                "type": "array",
                "items": _obj({"index": _INDEX, "char": {"type": "string"}, "time": _TIME, "confidence": _CONF}),
            },
            "issues": {
                "type": "array",
                "items": _obj(
                    {
                        "line": _INDEX,
                        "text": {"type": "string"},
                        "kind": {"enum": ["skipped", "repeated"]},
                        "detail": {"type": "string"},
                    }
                ),
            },
        }
    ),
}


def write_alignment(
    folder: str | os.PathLike, alignment: Alignment, audio_path: str | os.PathLike | None = None, title: str = ""
) -> dict[str, Path]:
    """Write all outputs of `alignment` into `folder`; returns {"json", "lrc", "html", and "png" when the alignment
    has an attention matrix} -> path. `audio_path` is embedded into the karaoke page; `title` defaults to its stem."""
    folder = Path(folder)
    audio = Path(audio_path) if audio_path is not None else None
    if audio is not None and not audio.is_file():
        raise OpenJukeboxError(f"{audio}: audio file not found")
    title = title or (audio.stem if audio is not None else "")
    paths = {key: folder / name for key, name in FILE_NAMES.items()}
    write_json_atomic(paths["json"], alignment_to_json(alignment, title, audio.name if audio else None))
    write_bytes_atomic(paths["lrc"], format_lrc(alignment, title).encode())
    if alignment.matrix is not None and alignment.matrix.size > 0:
        with atomic_path(paths["png"]) as tmp:
            render_matrix(alignment, title).save(tmp, format="PNG")
    else:
        del paths["png"]
    write_bytes_atomic(paths["html"], render_karaoke(alignment, audio, title).encode())
    return paths


# ---------------------------------------------------------------------------------------------------- align.json


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise ValueError(f"alignment has a non-finite {what}: {x}")
    return round(float(x), 4)


def _line_spans(alignment: Alignment) -> list[tuple[float | None, float | None]]:
    spans: list[tuple[float | None, float | None]] = [(None, None)] * len(alignment.lines)
    for w in alignment.words:
        start, end = spans[w.line]
        spans[w.line] = (w.start if start is None else min(start, w.start), w.end if end is None else max(end, w.end))
    return spans


def alignment_to_json(alignment: Alignment, title: str = "", audio_name: str | None = None) -> dict[str, Any]:
    """The align.json object (see `ALIGNMENT_SCHEMA`); times in seconds, rounded to 0.1 ms."""
    lines = [
        {
            "text": text,
            "start": None if start is None else _finite(start, "line start"),
            "end": None if end is None else _finite(end, "line end"),
        }
        for text, (start, end) in zip(alignment.lines, _line_spans(alignment))
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": title,
        "audio": audio_name,
        "source": alignment.source,
        "layer": alignment.layer,
        "head": alignment.head,
        "frame_seconds": float(alignment.frame_seconds),
        "duration": _finite(alignment.duration, "duration"),
        "text": alignment.text,
        "lines": lines,
        "words": [
            {
                "word": w.word,
                "start": _finite(w.start, "word start"),
                "end": _finite(w.end, "word end"),
                "confidence": _finite(w.confidence, "confidence"),
                "line": w.line,
                "first_char": w.first_char,
                "last_char": w.last_char,
            }
            for w in alignment.words
        ],
        "characters": [
            {
                "index": c.index,
                "char": c.char,
                "time": _finite(c.time, "time"),
                "confidence": _finite(c.confidence, "character confidence"),
            }
            for c in alignment.chars
        ],
        "issues": [{"line": i.line, "text": i.text, "kind": i.kind, "detail": i.detail} for i in alignment.issues],
    }


def read_alignment(path: str | os.PathLike) -> Alignment:
    """Read an align.json back (without the attention matrix and path, which it does not store)."""
    obj = read_json_object(path)
    if obj.get("format") != FORMAT:
        raise OpenJukeboxError(f"{path}: not an alignment file (format {obj.get('format')!r}, expected {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise OpenJukeboxError(f"{path}: unsupported alignment version {obj.get('version')!r} (expected {VERSION})")
    try:
        return Alignment(
            text=str(obj["text"]),
            lines=[str(line["text"]) for line in obj["lines"]],
            frame_seconds=float(obj["frame_seconds"]),
            duration=float(obj["duration"]),
            chars=[
                CharTiming(int(c["index"]), str(c["char"]), float(c["time"]), float(c["confidence"]))
                for c in obj["characters"]
            ],
            words=[
                WordTiming(
                    str(w["word"]),
                    float(w["start"]),
                    float(w["end"]),
                    float(w["confidence"]),
                    int(w["line"]),
                    int(w["first_char"]),
                    int(w["last_char"]),
                )
                for w in obj["words"]
            ],
            issues=[
                LineIssue(int(i["line"]), str(i["text"]), str(i["kind"]), str(i.get("detail", "")))
                for i in obj["issues"]
            ],
            source=str(obj.get("source", "")),
            layer=obj.get("layer"),
            head=obj.get("head"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise OpenJukeboxError(f"{path}: malformed alignment ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------------- lyrics.lrc


def lrc_time(seconds: float) -> str:
    """mm:ss.xx (centiseconds; minutes may exceed 59)."""
    cs = max(0, round(seconds * 100))
    return f"{cs // 6000:02d}:{cs % 6000 // 100:02d}.{cs % 100:02d}"


def _lrc_tag_text(text: str) -> str:
    return " ".join(text.replace("[", "(").replace("]", ")").split())  # a tag value must not close its tag


def line_pieces(alignment: Alignment) -> list[list[tuple[str, int | None]]]:
    """Per lyric line, its text as pieces (text, word index or None for spaces and punctuation between words),
    taken from `alignment.text` so that punctuation survives. A line without words is one plain piece; a line's
    leading punctuation is a piece before its first word."""
    by_line: list[list[int]] = [[] for _ in alignment.lines]
    for k, w in enumerate(alignment.words):
        by_line[w.line].append(k)
    text, words = alignment.text, alignment.words
    pieces: list[list[tuple[str, int | None]]] = []
    for line, ks in enumerate(by_line):
        if not ks:
            pieces.append([(alignment.lines[line], None)] if alignment.lines[line] else [])
            continue
        out: list[tuple[str, int | None]] = []
        before = text[words[ks[0] - 1].last_char + 1 if ks[0] > 0 else 0 : words[ks[0]].first_char]
        if ks[0] == 0 or "\n" in before:  # leading punctuation of the line (an opening quote)
            head = before.split("\n")[-1].strip()
            if head:
                out.append((head, None))
        for j, k in enumerate(ks):
            if j > 0:
                gap = text[words[ks[j - 1]].last_char + 1 : words[k].first_char].replace("\n", " ")
                out.append((gap or " ", None))
            out.append((words[k].word, k))
        nxt = ks[-1] + 1
        tail_end = words[nxt].first_char if nxt < len(words) else len(text)
        tail = text[words[ks[-1]].last_char + 1 : tail_end].split("\n")[0].rstrip()
        if tail:
            out.append((tail, None))
        pieces.append(out)
    return pieces


def format_lrc(alignment: Alignment, title: str = "") -> str:
    """Enhanced LRC: `[mm:ss.xx]<mm:ss.xx>word <mm:ss.xx>word<mm:ss.xx>`, the last stamp being the end of the line's
    last word. A line without words gets the time of the previous line's end."""
    out = []
    if title:
        out.append(f"[ti:{_lrc_tag_text(title)}]")
    out.append(f"[length:{lrc_time(alignment.duration).split('.')[0]}]")
    out.append("[re:openjukebox]")
    last = 0.0
    for pieces in line_pieces(alignment):
        ks = [k for _, k in pieces if k is not None]
        start = alignment.words[ks[0]].start if ks else last
        body = [f"<{lrc_time(start)}>"] if ks else []  # the first stamp comes before any leading punctuation
        for piece, k in pieces:
            stamped = k is not None and k != ks[0]
            body.append(f"<{lrc_time(alignment.words[k].start)}>{piece}" if stamped else piece)
        if ks:
            last = alignment.words[ks[-1]].end
            body.append(f"<{lrc_time(last)}>")
        out.append(f"[{lrc_time(start)}]" + "".join(body).replace("\n", " "))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------- alignment.png

PATH_COLOR = (255, 48, 48)
_BACKGROUND = (20, 20, 24)
_BOUNDARY = (110, 110, 120)
_LABEL = (225, 225, 225)
_ISSUE_COLORS = {"skipped": (255, 170, 40), "repeated": (230, 90, 230)}
# viridis-like anchors: dark blue (no attention) -> yellow (all attention); contains no red, so the path stands out
_CMAP_ANCHORS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float64)


@dataclass(frozen=True)
class MatrixLayout:
    """Geometry of alignment.png: time on x (frame 0 left), characters on y (character 0 at the top), so the path
    runs from top left to bottom right and word labels on the left read in lyric order."""

    frames: int
    chars: int
    plot_width: int
    plot_height: int
    left: int = 150  # word labels
    top: int = 26  # title
    right: int = 12
    bottom: int = 30  # time axis

    @classmethod
    def for_matrix(cls, frames: int, chars: int) -> MatrixLayout:
        return cls(frames, chars, _plot_extent(frames, 480, 1600), _plot_extent(chars, 240, 1000))

    @property
    def size(self) -> tuple[int, int]:
        return self.left + self.plot_width + self.right, self.top + self.plot_height + self.bottom

    def x(self, frame: float) -> int:
        """Pixel column of the centre of `frame`."""
        return self.left + int((frame + 0.5) * self.plot_width / self.frames)

    def y(self, char: float) -> int:
        """Pixel row of the centre of character `char`."""
        return self.top + int((char + 0.5) * self.plot_height / self.chars)

    def y_edge(self, char: int) -> int:
        """Pixel row of the top edge of character `char` (a word boundary)."""
        return self.top + int(char * self.plot_height / self.chars)


def _plot_extent(n: int, lo: int, hi: int) -> int:
    """Pixels for n cells: an integer upscale to at least `lo` (capped at `hi`), or `hi` pooled bins above it."""
    if n >= hi:
        return hi
    return n * max(1, min(math.ceil(lo / n), hi // n))


def _resample(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Nearest-cell upscale, or max-pool downscale (a one-frame attention peak must not vanish), along `axis`."""
    n_in = a.shape[axis]
    edges = np.arange(n_out) * n_in // n_out
    if n_out >= n_in:
        return np.take(a, edges, axis=axis)
    return np.maximum.reduceat(a, edges, axis=axis)


def _colormap(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] -> (..., 3) uint8."""
    pos = values * (len(_CMAP_ANCHORS) - 1)
    grid = np.arange(len(_CMAP_ANCHORS))
    rgb = [np.interp(pos, grid, _CMAP_ANCHORS[:, c]) for c in range(3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def _time_step(duration: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300):
        if duration / step <= 12:
            return step
    return 600


def render_matrix(alignment: Alignment, title: str = "") -> Image.Image:
    """The attention matrix (frames x characters) as an RGB image with the monotonic path in `PATH_COLOR`, word
    boundaries as grey lines with word labels (coloured for skipped/repeated lines) and a time axis in seconds."""
    if alignment.matrix is None:
        raise ValueError("alignment has no attention matrix")
    matrix = np.asarray(alignment.matrix, dtype=np.float32)  # (frames, chars)
    frames, chars = matrix.shape
    if frames == 0 or chars == 0:
        raise ValueError(f"empty attention matrix {matrix.shape}")
    assert chars == len(alignment.text), f"matrix has {chars} characters, text {len(alignment.text)}"
    layout = MatrixLayout.for_matrix(frames, chars)
    grid = _resample(_resample(matrix, layout.plot_width, 0), layout.plot_height, 1).T  # (plot_h, plot_w)
    peak = float(grid.max()) if grid.size else 0.0
    values = np.sqrt(np.clip(grid / peak, 0, 1)) if peak > 0 else np.zeros_like(grid)  # sqrt: faint attention shows
    image = Image.new("RGB", layout.size, _BACKGROUND)
    image.paste(Image.fromarray(_colormap(values), "RGB"), (layout.left, layout.top))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    right = layout.left + layout.plot_width - 1
    draw.text((layout.left, 6), title or "lyrics alignment", fill=_LABEL, font=font)

    issue_of = {i.line: i.kind for i in alignment.issues}
    last_label = -100
    for w in alignment.words:
        y = layout.y_edge(w.first_char)
        draw.line([(layout.left - 4, y), (right, y)], fill=_BOUNDARY)
        mid = (y + layout.y_edge(w.last_char + 1)) // 2
        if mid - last_label >= 11:  # skip labels that would overlap the previous one
            color = _ISSUE_COLORS.get(issue_of.get(w.line, ""), _LABEL)
            draw.text((layout.left - 6, mid), w.word[:22], fill=color, font=font, anchor="rm")
            last_label = mid

    bottom = layout.top + layout.plot_height
    step = _time_step(frames * alignment.frame_seconds)
    for i in range(int(frames * alignment.frame_seconds / step) + 1):
        x = layout.x(i * step / alignment.frame_seconds - 0.5)
        draw.line([(x, bottom), (x, bottom + 4)], fill=_LABEL)
        draw.text((x, bottom + 6), f"{i * step:g}s", fill=_LABEL, font=font, anchor="mt")

    if alignment.path is not None:
        path = np.asarray(alignment.path)  # (frames,) character per frame
        points = [(layout.x(t), layout.y(int(c))) for t, c in enumerate(path)]
    else:  # no path stored: the characters' times
        points = [(layout.x(c.time / alignment.frame_seconds), layout.y(c.index)) for c in alignment.chars]
    if len(points) > 1:
        draw.line(points, fill=PATH_COLOR, width=2)
    for p in points[:1]:
        draw.point(p, fill=PATH_COLOR)
    return image


# ---------------------------------------------------------------------------------------------------- karaoke.html

_AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
                ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".webm": "audio/webm"}  # fmt: skip


_STYLE = """
body{margin:0;background:#15151a;color:#bbb;font:20px/1.5 system-ui,sans-serif}
header{position:sticky;top:0;background:#15151aee;padding:12px 24px;border-bottom:1px solid #333}
h1{font-size:22px;margin:0 0 8px;color:#eee}audio{width:100%}#picker{margin-top:6px;font-size:14px}
main{padding:24px;max-width:900px;margin:auto}.line{margin:0 0 10px;padding:2px 8px;border-radius:6px}
.line.active{background:#25252e;color:#eee}.w{cursor:pointer;border-radius:4px;padding:0 1px}.w:hover{color:#fff}
.w.sung{color:#8fd18f}.w.current{background:#ffd54a;color:#111}
.line.skipped{opacity:.6}.line.skipped .w{text-decoration:line-through dotted}
.line.repeated{border-left:4px solid #e65ae6}
.issue{font-size:13px;margin-left:10px;padding:1px 6px;border-radius:8px;background:#553;color:#fc6}
"""

_SCRIPT = """
(() => {
  const data = JSON.parse(document.getElementById("alignment-data").textContent);
  const starts = data.words.map(w => w[0]), ends = data.words.map(w => w[1]), lineOf = data.words.map(w => w[2]);
  const audio = document.getElementById("audio");
  const spans = Array.from(document.querySelectorAll(".w"));
  const lines = Array.from(document.querySelectorAll(".line"));
  let current = -1, sung = 0, activeLine = -1;
  // index of the last word that starts at or before t (-1 before the first)
  function lastStarted(t) {
    let lo = 0, hi = starts.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (starts[mid] <= t + 1e-3) lo = mid + 1; else hi = mid; }
    return lo - 1;
  }
  function render(t) {
    const k = lastStarted(t);
    const now = k >= 0 && t < ends[k] ? k : -1;
    const newSung = now >= 0 ? now : k + 1;  // words before the current one (or all started ones) are sung
    for (let i = Math.min(sung, newSung); i < Math.max(sung, newSung); i++) {
      spans[i].classList.toggle("sung", i < newSung);
    }
    sung = newSung;
    if (now !== current) {
      if (current >= 0) spans[current].classList.remove("current");
      if (now >= 0) spans[now].classList.add("current");
      current = now;
    }
    const line = k >= 0 ? lineOf[k] : -1;
    if (line !== activeLine) {
      if (activeLine >= 0) lines[activeLine].classList.remove("active");
      if (line >= 0) { lines[line].classList.add("active"); lines[line].scrollIntoView({block: "center"}); }
      activeLine = line;
    }
  }
  function tick() { render(audio.currentTime); if (!audio.paused && !audio.ended) requestAnimationFrame(tick); }
  audio.addEventListener("play", () => requestAnimationFrame(tick));
  for (const ev of ["timeupdate", "seeked", "seeking"]) audio.addEventListener(ev, () => render(audio.currentTime));
  document.getElementById("lyrics").addEventListener("click", e => {
    const span = e.target.closest(".w");
    if (!span) return;
    const t = starts[Number(span.dataset.i)];
    if (audio.currentSrc) audio.currentTime = t;
    render(t);
  });
  const picker = document.getElementById("picker");
  if (picker) picker.addEventListener("change", () => {
    if (picker.files.length) { audio.src = URL.createObjectURL(picker.files[0]); audio.load(); }
  });
  window.karaoke = {render, lastStarted};
})();
"""
# Only our own script may run (allowed by its hash, so even markup that slipped into the page could not execute), and
# nothing may be fetched from the network.
_CSP = (
    "default-src 'none'; script-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    + "'; style-src 'unsafe-inline'; media-src data: blob:; img-src data:"
)


def _json_for_script(obj: Any) -> str:
    """JSON that cannot end its <script> block or open a comment."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_karaoke(alignment: Alignment, audio: Path | None = None, title: str = "") -> str:
    """A self-contained karaoke page: lyrics line by line, the current word highlighted as the audio plays (on
    `timeupdate` and every animation frame while playing), a click on a word seeks to it, skipped/repeated lines
    marked. With `audio`, the file is embedded as a base64 data URI; without, the page offers a file picker."""
    esc = html.escape
    title = title or "Lyrics"
    if audio is not None:
        mime = _AUDIO_TYPES.get(audio.suffix.lower(), "application/octet-stream")
        try:
            payload = base64.b64encode(audio.read_bytes()).decode("ascii")
        except OSError as e:
            raise OpenJukeboxError(f"{audio}: cannot read audio ({e.strerror})") from None
        player = f'<audio id="audio" controls preload="auto" src="data:{mime};base64,{payload}"></audio>'
    else:
        player = (
            '<audio id="audio" controls preload="auto"></audio>'
            '<div><label>Audio file: <input id="picker" type="file" accept="audio/*"></label></div>'
        )
    issue_of = {i.line: i for i in alignment.issues}
    rows = []
    for line, pieces in enumerate(line_pieces(alignment)):
        body = "".join(
            esc(piece) if k is None else f'<span class="w" data-i="{k}">{esc(piece)}</span>' for piece, k in pieces
        )
        classes, badge = "line", ""
        if line in issue_of:
            issue = issue_of[line]
            classes += f" {esc(issue.kind)}"
            label = "sung twice" if issue.kind == "repeated" else issue.kind
            badge = f'<span class="issue" title="{esc(issue.detail)}">{esc(label)}</span>'
        rows.append(f'<p class="{classes}" data-line="{line}">{body or "&nbsp;"}{badge}</p>')
    words = [[round(w.start, 4), round(w.end, 4), w.line] for w in alignment.words]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>{esc(title)}</h1>{player}</header>
<main id="lyrics">
{chr(10).join(rows)}
</main>
<script type="application/json" id="alignment-data">{_json_for_script({"words": words})}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""
