"""A minimal Standard MIDI File writer (format 0) and the procedural arrangement of one song.

Times are in beats (floats); the writer quantises them to `TICKS` per beat. Channel 9 (0-based) is drums.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

from openjukebox.data.synth.styles import Artist, Genre, lyric_line, syllables

TICKS = 480
DRUMS, BASS, CHORDS, LEAD = 9, 0, 1, 2
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
BEATS_PER_BAR = 4
PHRASE_BARS = 2
SUNG_BEATS = 6  # of a phrase's 8 beats; the lead instrument answers in the last two


@dataclass(frozen=True)
class Note:
    channel: int
    pitch: int
    start: float  # beats
    length: float  # beats
    velocity: int


@dataclass
class Arrangement:
    bpm: int
    tonic: int  # pitch class
    minor: bool
    bars: int
    notes: list[Note] = field(default_factory=list)
    programs: dict[int, int] = field(default_factory=dict)  # channel -> GM program
    lines: list[str] = field(default_factory=list)
    sung: list[tuple[str, int, float, float]] = field(default_factory=list)  # word, MIDI pitch, start, beats

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.bpm


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, arrangement: Arrangement) -> None:
    """Write `arrangement` as a format-0 SMF: tempo, program changes, then every note."""
    events: list[tuple[int, int, bytes]] = [
        (0, 0, b"\xff\x51\x03" + (60_000_000 // arrangement.bpm).to_bytes(3, "big"))
    ]
    for channel, program in sorted(arrangement.programs.items()):
        events.append((0, 1, bytes([0xC0 | channel, program])))
    for n in arrangement.notes:
        on = round(n.start * TICKS)
        off = max(on + 1, round((n.start + n.length) * TICKS))
        events.append((on, 3, bytes([0x90 | n.channel, n.pitch, n.velocity])))
        events.append((off, 2, bytes([0x80 | n.channel, n.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1], e[2]))  # note-offs before note-ons at the same tick
    track, now = bytearray(), 0
    for tick, _, data in events:
        track += _vlq(tick - now) + data
        now = tick
    track += _vlq(TICKS) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS)
    path.write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def _chord(scale: tuple[int, ...], degree: int, root: int, sevenths: bool) -> list[int]:
    """Pitches of the triad (or seventh chord) on `degree` of the scale, from MIDI note `root` of the tonic."""
    out = []
    for step in (0, 2, 4, 6) if sevenths else (0, 2, 4):
        d = degree + step
        out.append(root + scale[d % 7] + 12 * (d // 7))
    return out


def _in_range(pitch_class_set: set[int], low: int, high: int) -> list[int]:
    return [p for p in range(low, high + 1) if p % 12 in pitch_class_set]


def arrange(
    genre: Genre, artist: Artist, rng: random.Random, target_seconds: float, tail: float, max_seconds: float
) -> Arrangement:
    """A song of about `target_seconds` and at most `max_seconds` (counting `tail` seconds after the last bar):
    an intro, sung two-bar phrases with the lead's answers, and an outro bar."""
    bpm = rng.randint(*genre.tempo)
    tonic = rng.randrange(12)
    scale = MINOR if genre.minor else MAJOR
    bar_s = BEATS_PER_BAR * 60.0 / bpm
    intro_bars = 2
    fixed = (intro_bars + 1) * bar_s + tail
    phrases = min(
        round((target_seconds - fixed) / (PHRASE_BARS * bar_s)), int((max_seconds - fixed) / (PHRASE_BARS * bar_s))
    )
    phrases = max(1, phrases)
    bars = intro_bars + phrases * PHRASE_BARS + 1
    arr = Arrangement(bpm, tonic, genre.minor, bars)
    arr.programs = {BASS: genre.bass_program, CHORDS: genre.chord_program, LEAD: artist.lead_program}
    progression = rng.choice(genre.progressions)
    degrees = [progression[b % len(progression)] for b in range(bars - 1)] + [0]

    def swing(beat: float) -> float:  # swung eighths land on the triplet
        return beat + (1 / 6 if genre.swing and beat % 1 == 0.5 else 0.0)

    add = arr.notes.append

    for bar, degree in enumerate(degrees):
        t0 = bar * BEATS_PER_BAR
        last = bar == bars - 1
        # drums
        for beat, drum, vel in genre.drums if not last else ((0.0, 49, 100), (0.0, 36, 110)):
            add(Note(DRUMS, drum, t0 + swing(beat), 0.25, max(1, min(127, vel + rng.randint(-8, 8)))))
        # chords
        chord = _chord(scale, degree, 48 + tonic, genre.name == "jazz")
        if last or genre.chord_style == "block":
            for p in chord:
                add(Note(CHORDS, p, t0, BEATS_PER_BAR, 70))
        elif genre.chord_style == "strum":
            for beat in (0, 1, 2, 2.5, 3):
                for k, p in enumerate(chord):
                    add(Note(CHORDS, p, t0 + swing(beat) + 0.02 * k, 0.45, 68))
        elif genre.chord_style == "arpeggio":
            tones = [*chord, chord[0] + 12, chord[1] + 12, chord[2], chord[1]]
            for k, p in enumerate(tones):
                add(Note(CHORDS, p, t0 + k / 2, 0.9, 64))
        else:  # offbeat stabs
            for beat in (0.5, 1.5, 2.5, 3.5):
                for p in chord:
                    add(Note(CHORDS, p, t0 + swing(beat), 0.35, 66))
        # bass
        root = 36 + (chord[0] - 48) % 12
        fifth = root + 7
        if last:
            add(Note(BASS, root, t0, BEATS_PER_BAR, 90))
        elif genre.bass_style == "root":
            add(Note(BASS, root, t0, 1.9, 90))
            add(Note(BASS, root, t0 + 2, 1.9, 85))
        elif genre.bass_style == "root_fifth":
            for beat, p in ((0, root), (1.5, root), (2, fifth), (3, root)):
                add(Note(BASS, p, t0 + beat, 0.9, 90))
        elif genre.bass_style == "octaves":
            for k in range(8):
                add(Note(BASS, root + 12 * (k % 2), t0 + k / 2, 0.45, 92))
        else:  # walking
            walk = [root, root + (4 if not genre.minor else 3), fifth, fifth + rng.choice((1, 2, -1))]
            for k, p in enumerate(walk):
                add(Note(BASS, p, t0 + k, 0.95, 88))

    # vocal melody and lyrics, then the lead's intro and answers
    low, high = artist.low, artist.high
    scale_pcs = {(tonic + s) % 12 for s in scale}
    scale_notes = _in_range(scale_pcs, low, high)
    idx = len(scale_notes) // 2
    lead_shift = 12 * round((72 - (low + high) / 2) / 12)
    for ph in range(phrases):
        line = lyric_line(rng)
        arr.lines.append(line)
        words = [w.strip(",") for w in line.split()]
        lengths = [2.0 if syllables(w) > 1 else 1.0 for w in words]
        while sum(lengths) > SUNG_BEATS:
            lengths[lengths.index(max(lengths))] -= 0.5
        while sum(lengths) + 1 <= SUNG_BEATS and rng.random() < 0.6:
            lengths[rng.randrange(len(lengths))] += 1
        t = (intro_bars + ph * PHRASE_BARS) * BEATS_PER_BAR
        for word, beats in zip(words, lengths):
            bar = int(t // BEATS_PER_BAR)
            chord_pcs = {p % 12 for p in _chord(scale, degrees[bar], 48 + tonic, False)}
            pull = (idx < len(scale_notes) // 4) - (idx > 3 * len(scale_notes) // 4)  # back towards the middle
            idx = min(max(idx + rng.choice((-2, -1, -1, 0, 1, 1, 2)) + pull, 0), len(scale_notes) - 1)
            if t % 2 == 0 and scale_notes[idx] % 12 not in chord_pcs:  # strong beats land on chord tones
                near = [i for i, p in enumerate(scale_notes) if p % 12 in chord_pcs]
                idx = min(near, key=lambda i: abs(i - idx))
            arr.sung.append((word, scale_notes[idx], t, beats))
            t += beats
        # the lead answers with chord tones in the last two beats of the phrase
        t_ans = (intro_bars + ph * PHRASE_BARS) * BEATS_PER_BAR + SUNG_BEATS
        chord = _chord(scale, degrees[int(t_ans // BEATS_PER_BAR)], 60 + tonic, False)
        for k in range(rng.choice((2, 3, 4))):
            add(Note(LEAD, rng.choice(chord), t_ans + k / 2, 0.45, 85))
    # intro: the lead plays the first phrase's melody
    for _, pitch, start, beats in arr.sung:
        if start >= (intro_bars + PHRASE_BARS) * BEATS_PER_BAR:
            break
        add(Note(LEAD, pitch + lead_shift, start - intro_bars * BEATS_PER_BAR, beats * 0.9, 88))
    return arr
