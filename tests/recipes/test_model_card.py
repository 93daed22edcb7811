"""scripts/model_card.py's own parts on constructed data: the mel filters, the logistic-regression classifier,
the Markdown it renders from measured numbers, and how it fills the card between its markers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_card.py"


@pytest.fixture(scope="module")
def card(import_script):
    return import_script(SCRIPT, "model_card")


def test_mel_filters_cover_the_spectrum_in_order(card):
    f = card.mel_filters(44100, 2048, 64)
    assert f.shape == (64, 1025) and (f >= 0).all() and f.max() <= 1.0
    peaks = f.argmax(1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > peaks[0]
    assert (f.sum(0)[5:-5] > 0).all()  # every frequency but the very edges is seen by some band


def test_features_tell_a_low_tone_from_a_high_one(card):
    sr = 44100
    t = np.arange(sr) / sr
    low, high = (np.sin(2 * np.pi * hz * t).astype(np.float32) for hz in (110, 3520))
    a, b = card.logmel_features(low, sr), card.logmel_features(high, sr)
    assert a.shape == (2 * card.N_MELS,)
    assert a[: card.N_MELS].argmax() < b[: card.N_MELS].argmax()


def test_logistic_regression_learns_separable_classes(card):
    rng = np.random.default_rng(0)
    centres = {"rock": [3, 0, 0], "jazz": [0, 3, 0], "folk": [0, 0, 3]}
    x = np.concatenate([rng.normal(c, 0.5, size=(30, 3)) for c in centres.values()])
    y = [name for name in centres for _ in range(30)]
    clf = card.LogisticRegression().fit(x, y)
    assert clf.classes == ["folk", "jazz", "rock"]
    test = np.array(list(centres.values()), dtype=np.float64)
    assert clf.predict(test) == list(centres)
    assert np.mean([p == t for p, t in zip(clf.predict(x), y)]) > 0.95


def test_judge_scores_genre_and_artist_apart(card):
    rng = np.random.default_rng(1)
    labels = [("ann", "rock"), ("bob", "jazz"), ("cat", "rock")]
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [3.0, 3.0]])
    x = np.concatenate([rng.normal(c, 0.3, size=(20, 2)) for c in centres])
    judge = card.Judge(x, [lab for lab in labels for _ in range(20)])
    got = judge.predict(centres)
    assert got == labels
    # against the wanted (ann, rock): both right; both wrong; the right genre from another artist
    want = [("ann", "rock"), ("ann", "rock"), ("ann", "rock")]
    assert judge.accuracy(centres, want) == card.Judge.score(got, want) == {"genre": round(2 / 3, 3), "artist": 0.333}


def measured() -> dict:
    level = {"hop_length": 8, "spectral_convergence_db": -5.5, "codes_used": 200, "entropy_bits": 7.1}
    return {
        "machine": "test",
        "date": "2026-11-25",
        "model": {"vqvae": {"parameters": 400_000, "bytes": 1_700_000}},
        "corpus": {"synth": {"songs": 3, "hours": 0.1, "artists": 2, "genres": ["folk", "rock"]}},
        "training": {"vqvae": {"steps": 10, "hours": 0.01, "final_loss": 1.5, "loss_tag": "train/loss"}},
        "vqvae": {"seconds": 12.0, "crops": 2, "l_bins": 256, "levels": [{"level": 0, **level}]},
        "priors": {
            2: {
                "loss": 3.0,
                "music_loss": 3.5,
                "lyric_loss": 2.0,
                "conditioning": {"own": 4.0, "other_artist_genre": 4.2, "other_lyrics": 4.02},
            },
            1: {"loss": 4.0, "music_loss": 4.0},
        },
        "alignment": {
            "songs": 2,
            "words": 20,
            "aligner": {"median_error": 0.21, "mean_error": 0.4, "within": 0.6},
            "linear": {"median_error": 1.5, "mean_error": 1.7, "within": 0.1},
        },
        "faithfulness": {
            "generated": 4,
            "seconds": 8.0,
            "song_seconds": 30.0,
            "samples_per_artist": 2,
            "classifier_training_clips": 12,
            "heldout_clips": 8,
            "upsampled_heldout_clips": 2,
            "heldout": {
                "as_is": {"genre": 1.0, "artist": 0.5},
                "through_vqvae": {"genre": 0.9, "artist": 0.25},
                "upsampled": {"genre": 0.5, "artist": 0.0},
                "top_level": {"genre": 0.95, "artist": 0.7},
            },
            "chance": {"genre": 0.5, "artist": 0.5},
            "by_guidance": {
                "1": {
                    "song": {"genre": 0.75, "artist": 0.5},
                    "top_level": {"genre": 0.4, "artist": 0.1},
                    "song_genre_by_genre": {"folk": 1.0, "rock": 0.5},
                    "rows": [{"predicted_genre": g} for g in ("rock", "folk", "rock", "rock")],
                },
                "3": {
                    "song": {"genre": 0.8, "artist": 0.625},
                    "top_level": {"genre": 0.6, "artist": 0.2},
                    "song_genre_by_genre": {"folk": 1.0, "rock": 0.6},
                    "rows": [{"predicted_genre": g} for g in ("folk", "folk", "rock", "rock")],
                },
            },
        },
    }


def test_training_hours_leave_out_pauses(card):
    # logged every 2 s for 100 s, paused for an hour, resumed for 50 s more; order of the logs does not matter
    walls = [2.0 * i for i in range(51)] + [3700.0 + 2.0 * i for i in range(26)]
    assert card.active_hours(walls[::-1]) == pytest.approx(150 / 3600)
    assert card.active_hours(walls, pause_s=1e9) == pytest.approx(3750 / 3600)  # no pause: first to last
    assert card.active_hours([5.0]) == 0.0


def test_markdown_shows_every_measured_number(card):
    text = card.markdown(measured())
    needles = [
        "| vqvae | 0.40 M | 1.6 MiB |",
        "| synth/ | 3 | 0.1 | 2 | folk, rock |",
        "| 0 | 8 | -5.50 | 200/256 | 7.10 |",
        "| 2 | 3.000 | 3.500 | 2.000 |",
        "| 1 | 4.000 | 4.000 | - |",
        "| another window's artist and genre | 4.200 | +5.0% |",
        "| another window's lyrics | 4.020 | +0.5% |",
        "| aligner | 0.21 | 0.40 | 60% |",
        "| | held-out real songs | through the VQ-VAE (level 0) | their top-level codes through the upsamplers | "
        "generated, no guidance | generated, guidance 3 | chance |",
        "| genre recognised | 100% | 90% | 50% | 75% | 80% | 50% |",
        "| artist recognised | 50% | 25% | 0% | 50% | 62% | 50% |",
        "| | held-out real songs | generated, no guidance | generated, guidance 3 | chance |",
        "| genre recognised | 95% | 40% | 60% | 50% |",
        "| artist recognised | 70% | 10% | 20% | 50% |",
        "Songs per genre, no guidance: folk 100%, rock 50%",
        "Songs per genre, guidance 3: folk 100%, rock 60%",
        "Genres the song classifier heard, no guidance (songs of 4): rock 3, folk 1",
        "Genres the song classifier heard, guidance 3 (songs of 4): folk 2, rock 2",
        "measured on 8 clips of the held-out songs, and on 2 of those clips regenerated by the upsamplers",
    ]
    for needle in needles:
        assert needle in text, needle


def test_markdown_shows_the_upsamplers_ceiling_per_guidance_scale(card):
    m = measured()
    del m["faithfulness"]["heldout"]["upsampled"]  # measured once per scale since the upsamplers are guided too
    m["faithfulness"]["by_guidance"]["1"]["upsampled_heldout"] = {"genre": 0.375, "artist": 0.125}
    m["faithfulness"]["by_guidance"]["3"]["upsampled_heldout"] = {"genre": 0.875, "artist": 0.5}
    text = card.markdown(m)
    assert (
        "| | held-out real songs | through the VQ-VAE (level 0) | upsampled from their top-level codes, no guidance | "
        "upsampled from their top-level codes, guidance 3 | generated, no guidance | generated, guidance 3 | chance |"
    ) in text
    assert "|---|---:|---:|---:|---:|---:|---:|---:|" in text
    assert "| genre recognised | 100% | 90% | 38% | 88% | 75% | 80% | 50% |" in text
    assert "| artist recognised | 50% | 25% | 12% | 50% | 50% | 62% | 50% |" in text


def test_card_is_rendered_again_from_saved_numbers(card, tmp_path, capsys):
    numbers = tmp_path / "model_card.json"
    numbers.write_text(json.dumps(measured()))
    path = tmp_path / "CARD.md"
    path.write_text(f"prose\n{card.BEGIN}\nold\n{card.END}\n")
    assert card.main(["--render", str(numbers), "--card", str(path)]) == 0
    assert path.read_text() == f"prose\n{card.BEGIN}\n{card.markdown(json.loads(numbers.read_text()))}\n{card.END}\n"
    numbers.write_text("{}")
    with pytest.raises(SystemExit, match=r"not a model_card\.py run's numbers"):
        card.main(["--render", str(numbers)])
    with pytest.raises(SystemExit, match="--work and --model are needed"):
        card.main(["--model", str(tmp_path)])


def test_card_is_filled_between_its_markers_only(card, tmp_path):
    path = tmp_path / "CARD.md"
    path.write_text(f"# Card\nprose\n{card.BEGIN}\nold numbers\n{card.END}\nmore prose\n")
    card.write_card(path, "new numbers")
    assert path.read_text() == f"# Card\nprose\n{card.BEGIN}\nnew numbers\n{card.END}\nmore prose\n"
    path.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        card.write_card(path, "x")


def test_generated_lyrics_are_like_the_corpus_songs(card):
    from openjukebox.data.lyrics import VOCAB_V2

    lyrics = card.generated_lyrics(30.0, seed=4)
    assert len(lyrics.splitlines()) == 5 and lyrics == card.generated_lyrics(30.0, seed=4)
    assert lyrics != card.generated_lyrics(30.0, seed=5)
    assert len(card.generated_lyrics(2.0, seed=4).splitlines()) == 1
    assert all(ch in VOCAB_V2.chars or ch == "\n" for ch in lyrics)
