"""The synthetic corpus's genres (musical style) and artists (voice and timbre), and its lyric generator.

A genre fixes a tempo range, a drum pattern, the General MIDI programs of bass and chords, how the chords are
played, and the chord progressions it draws from. An artist belongs to one genre and fixes an eSpeak NG voice, a
singing range (MIDI notes), a speaking speed and the GM program of its lead instrument.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Drum notes (GM percussion map, channel 10).
KICK, SNARE, CLAP, HAT, OPEN_HAT, RIDE, TAMB, SHAKER, RIM = 36, 38, 39, 42, 46, 51, 54, 70, 37


@dataclass(frozen=True)
class Genre:
    name: str
    tempo: tuple[int, int]  # bpm range, inclusive
    minor: bool
    drums: tuple[tuple[float, int, int], ...]  # one bar of (beat, GM drum note, velocity)
    bass_program: int
    bass_style: str  # "root", "root_fifth", "walking", "octaves"
    chord_program: int
    chord_style: str  # "block", "strum", "arpeggio", "offbeat"
    progressions: tuple[tuple[int, ...], ...]  # scale degrees (0-based) of one chord per bar
    swing: bool = False


def _hits(note: int, beats, vel: int) -> tuple[tuple[float, int, int], ...]:
    return tuple((float(b), note, vel) for b in beats)


_EIGHTHS = [i / 2 for i in range(8)]
GENRES: tuple[Genre, ...] = (
    Genre(
        "rock", (108, 140), False,
        _hits(KICK, [0, 2, 2.5], 110) + _hits(SNARE, [1, 3], 105) + _hits(HAT, _EIGHTHS, 75),
        34, "octaves", 30, "strum", ((0, 4, 5, 3), (0, 3, 4, 4), (5, 3, 0, 4)),
    ),
    Genre(
        "pop", (92, 120), False,
        _hits(KICK, [0, 1.5, 2], 105) + _hits(CLAP, [1, 3], 95) + _hits(HAT, _EIGHTHS, 65),
        38, "root_fifth", 0, "block", ((0, 5, 3, 4), (0, 4, 5, 3), (3, 4, 0, 0)),
    ),
    Genre(
        "jazz", (96, 132), False,
        _hits(RIDE, [0, 1, 1.5, 2, 3, 3.5], 70) + _hits(HAT, [1, 3], 60) + _hits(KICK, [0], 50),
        32, "walking", 4, "offbeat", ((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)), swing=True,
    ),
    Genre(
        "folk", (84, 112), False,
        _hits(KICK, [0, 2], 80) + _hits(TAMB, [1, 3], 70) + _hits(SHAKER, _EIGHTHS, 45),
        32, "root", 25, "arpeggio", ((0, 3, 0, 4), (0, 0, 3, 4), (5, 3, 0, 4)),
    ),
    Genre(
        "blues", (72, 100), False,
        _hits(KICK, [0, 2], 95) + _hits(SNARE, [1, 3], 90) + _hits(RIDE, _EIGHTHS, 60),
        33, "walking", 16, "strum", ((0, 3, 0, 0), (3, 3, 0, 0), (4, 3, 0, 4)), swing=True,
    ),
    Genre(
        "electronic", (118, 130), True,
        _hits(KICK, [0, 1, 2, 3], 115) + _hits(CLAP, [1, 3], 90) + _hits(OPEN_HAT, [0.5, 1.5, 2.5, 3.5], 70),
        38, "octaves", 90, "block", ((0, 5, 2, 6), (0, 3, 5, 4), (5, 3, 0, 6)),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Artist:
    name: str
    genre: str
    voice: str  # espeak-ng -v
    low: int  # singing range, MIDI notes
    high: int
    speed: int  # espeak-ng -s (words per minute)
    lead_program: int


_M, _F = (45, 62), (57, 74)  # male / female singing ranges (A2-D4, A3-D5)
_ARTIST_ROWS = (
    # genre, name, voice, range, speed, lead program
    ("rock", "iron lanterns", "en+m3", _M, 190, 29),
    ("rock", "the velvet static", "en-us+f2", _F, 185, 30),
    ("rock", "stone harbor", "en-gb-x-rp+m7", (43, 60), 180, 27),
    ("rock", "ruby and the wires", "en+f4", (59, 76), 195, 81),
    ("pop", "nova bright", "en-us+f3", _F, 180, 80),
    ("pop", "the paper hearts", "en+m1", _M, 185, 11),
    ("pop", "coral avenue", "en-us+f5", (60, 77), 175, 98),
    ("pop", "lucas vale", "en-gb-x-rp+m2", (47, 64), 180, 8),
    ("jazz", "ella stone", "en-us+f1", (55, 72), 165, 65),
    ("jazz", "the blue quarter", "en+m4", (43, 60), 160, 56),
    ("jazz", "miles of rain", "en-gb-x-rp+m5", _M, 170, 66),
    ("jazz", "nina harbor", "en+f2", _F, 165, 73),
    ("folk", "the willow band", "en-gb-scotland+m6", _M, 170, 73),
    ("folk", "hazel and pine", "en-gb-scotland+f3", _F, 165, 105),
    ("folk", "old river road", "en+m2", (43, 60), 160, 22),
    ("folk", "june meadow", "en-us+f4", (58, 75), 170, 24),
    ("blues", "muddy crow", "en-us+m7", (41, 58), 160, 26),
    ("blues", "delta mae", "en+f5", (55, 72), 160, 22),
    ("blues", "the midnight train", "en-gb-x-rp+m3", _M, 165, 17),
    ("blues", "big sam cooper", "en+m6", (43, 60), 155, 65),
    ("electronic", "neon circuit", "en+f1", _F, 195, 81),
    ("electronic", "the pulse engine", "en-us+m5", _M, 200, 87),
    ("electronic", "laser bloom", "en-gb-x-rp+f2", (60, 77), 190, 84),
    ("electronic", "static youth", "en-us+m4", (47, 64), 195, 38),
)
ARTISTS: tuple[Artist, ...] = tuple(
    Artist(name, genre, voice, rng[0], rng[1], speed, lead) for genre, name, voice, rng, speed, lead in _ARTIST_ROWS
)
GENRE_BY_NAME = {g.name: g for g in GENRES}

# Lyrics: templates over a small lowercase vocabulary.
# fmt: off
_WORDS = {
    "adj": ["bright", "cold", "golden", "quiet", "wild", "broken", "silver", "lonely", "gentle", "endless", "open",
            "hidden", "burning", "blue"],
    "noun": ["heart", "night", "river", "fire", "road", "rain", "light", "city", "morning", "ocean", "window", "dream",
             "shadow", "summer", "train", "sky", "mountain", "garden", "voice", "star"],
    "verb": ["hold", "chase", "follow", "carry", "call", "find", "lose", "remember", "wait for", "dance with",
             "sing to", "run from", "need", "see"],
    "place": ["in the dark", "by the sea", "under the moon", "on the highway", "through the storm",
              "across the town"],
    "time": ["tonight", "forever", "again", "today", "tomorrow", "all night long", "once more"],
    "pronoun": ["i", "we", "you", "they"],
}
# fmt: on
_TEMPLATES = (
    "{pronoun} {verb} the {adj} {noun}",
    "{pronoun} {verb} the {noun} {place}",
    "{adj} {noun} {place}",
    "oh my {adj} {noun}",
    "{pronoun} will {verb} you {time}",
    "the {noun} is {adj} {time}",
    "{pronoun} {verb} your {noun},",
    "{adj} {noun}, {adj} {noun}",
    "take me to the {adj} {noun}",
    "{pronoun} can feel the {noun} {time}",
)


def lyric_line(rng: random.Random) -> str:
    """One line of lyrics: lowercase words with an occasional comma."""
    template = rng.choice(_TEMPLATES)
    out = template
    while "{" in out:
        start = out.index("{")
        key = out[start + 1 : out.index("}", start)]
        out = out[:start] + rng.choice(_WORDS[key]) + out[out.index("}", start) + 1 :]
    return out


def song_title(rng: random.Random) -> str:
    return f"{rng.choice(_WORDS['adj'])} {rng.choice(_WORDS['noun'])}"


def syllables(word: str) -> int:
    """A rough syllable count: groups of vowels, a silent final 'e' dropped."""
    groups, prev = 0, False
    for ch in word:
        vowel = ch in "aeiouy"
        groups += vowel and not prev
        prev = vowel
    if word.endswith("e") and groups > 1 and not word.endswith(("le", "ee")):
        groups -= 1
    return max(groups, 1)
