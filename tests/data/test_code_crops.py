"""Tests for openjukebox.data.code_crops: labelled windows of cached codes, aligned across levels."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from openjukebox.data.audio_folder import draw_crop
from openjukebox.data.code_cache import encode_songs, open_code_cache
from openjukebox.data.code_crops import CodeCrops, split_value
from openjukebox.data.index import build_index, open_index
from openjukebox.data.official_ids import load_official_ids
from openjukebox.data.songs import OfficialIds, SongCrops, VocabularyIds, build_vocabularies
from openjukebox.errors import OpenJukeboxError

SR = 44100
HOPS = (8, 32, 128)
N_TOKENS = 8
WORDS = [  # more characters than N_TOKENS, so that a lyric window can move
    {"word": "one", "start": 0.1, "end": 0.3},
    {"word": "two", "start": 0.35, "end": 0.6},
    {"word": "three", "start": 0.65, "end": 0.9},
    {"word": "four", "start": 0.95, "end": 1.1},
]
SONGS = [  # (seconds, sidecar)
    (1.0, {"artist": "Alpha", "genre": "Blues Rock", "lyrics": "hello world " * 4}),
    (1.2, {"artist": "Bravo", "genre": "jazz", "lyrics": "x", "words": WORDS}),
    (1.4, {"artist": "Alpha", "genre": "pop"}),
    (1.6, {"artist": "Charlie", "genre": "rock", "lyrics": "la la la"}),
]


def make_dataset(root: Path, vqvae_dir: Path) -> Path:
    """An indexed, encoded folder of labelled tones with a little noise (so that codes vary)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (seconds, meta) in enumerate(SONGS):
        t = np.arange(round(seconds * SR)) / SR
        x = 0.4 * np.sin(2 * np.pi * 110 * (i + 2) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        x = x + 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"song{i}.wav", x.astype(np.float32), SR)
        (root / f"song{i}.json").write_text(json.dumps(meta))
    build_index(root, progress=False)
    summary = encode_songs(root, vqvae_dir, device="cpu", progress=False)
    assert summary.encoded == len(SONGS) and not summary.failed
    return root


def randomize_codes(root: Path, vqvae_dir: Path, seed: int = 0) -> None:
    """Replace every cached song's codes by random ones of the same shapes: the untrained tiny VQ-VAE gives
    nearly constant codes, with which a misaligned window would still compare equal."""
    cache = open_code_cache(root, vqvae_dir)
    rng = np.random.default_rng(seed)
    with open_index(root) as idx:
        for r in idx.songs():
            codes = cache.get(r.content_hash)
            codes.zs = {level: rng.integers(0, codes.l_bins, z.shape) for level, z in codes.zs.items()}
            cache.put(r.content_hash, codes)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_vqvae_dir) -> Path:
    root = make_dataset(tmp_path_factory.mktemp("code_crops") / "songs", tiny_vqvae_dir)
    randomize_codes(root, tiny_vqvae_dir)
    return root


@pytest.fixture(scope="module")
def index(dataset):
    with open_index(dataset) as idx:
        yield idx


@pytest.fixture(scope="module")
def cache(dataset, tiny_vqvae_dir):
    return open_code_cache(dataset, tiny_vqvae_dir)


def _ids(index) -> VocabularyIds:
    return VocabularyIds(*build_vocabularies(index))


def _full_codes(cache, index, path: str) -> dict[int, np.ndarray]:
    record = next(r for r in index.songs() if r.path == path)
    return {level: z[0] for level, z in cache.get(record.content_hash).zs.items()}


@pytest.mark.parametrize("level", [0, 1])
def test_upsampler_windows_are_aligned_with_the_level_above(index, cache, level):
    n_ctx = 64
    crops = CodeCrops(index, cache, level, n_ctx, _ids(index), max_genres=1)
    assert crops.cond_downsample == 4 and crops.hop_length == HOPS[level] and len(crops) == len(SONGS)
    batch = crops.batch(seed=0, index=3, batch_size=16)
    assert batch["codes"].shape == (16, n_ctx) and batch["codes"].dtype == torch.int64
    assert batch["upper"].shape == (16, n_ctx // 4) and batch["upper"].dtype == torch.int64
    assert batch["y"].shape == (16, 4 + 1)
    for i in range(16):
        song, start = crops.songs[int(batch["song"][i])], int(batch["start"][i])
        full = _full_codes(cache, index, song.path)
        assert start % 4 == 0 and (start + n_ctx) * HOPS[level] <= song.length
        np.testing.assert_array_equal(batch["codes"][i].numpy(), full[level][start : start + n_ctx])
        # the same stretch of audio one level up: code start/4 of level L+1 begins at the same sample
        up = start // 4
        assert up * HOPS[level + 1] == start * HOPS[level]
        np.testing.assert_array_equal(batch["upper"][i].numpy(), full[level + 1][up : up + n_ctx // 4])
        assert batch["y"][i, :3].tolist() == [song.length, start * HOPS[level], n_ctx * HOPS[level]]
    assert len(set(batch["song"].tolist())) > 1 and len(set(batch["start"].tolist())) > 1


def test_labels_match_song_crops_for_the_same_crop(index, cache):
    n_ctx = 128  # 16384 samples at the top level
    artists, genres = build_vocabularies(index)
    crops = CodeCrops(index, cache, 2, n_ctx, VocabularyIds(artists, genres), n_tokens=N_TOKENS, max_genres=5)
    audio = SongCrops(index, SR, n_ctx * 128, artists, genres, n_tokens=N_TOKENS, max_genres=5)
    assert [s.path for s in crops.songs] == [s.path.name for s in audio.songs]
    assert "upper" not in crops.batch(0, 0, 2)
    for song in range(len(SONGS)):
        last = crops.songs[song].length // 128 - n_ctx
        for start in (0, 37, last):
            got = crops.example_at(song, start)
            ex = audio.example_at(song, start * 128)
            expected = [ex.total_length, ex.offset, n_ctx * 128, ex.artist, *ex.genre.tolist(), *ex.lyrics.tolist()]
            assert got["y"].tolist() == expected
    # the word-timed song and a linear one really have lyrics in their windows
    assert crops.example_at(1, 0)["y"][-N_TOKENS:].any() and crops.example_at(0, 0)["y"][-N_TOKENS:].any()
    with pytest.raises(ValueError, match="aligned window start"):
        crops.example_at(0, crops.songs[0].length // 128)


def test_batches_are_a_pure_function_of_seed_and_index(index, cache):
    crops = CodeCrops(index, cache, 1, 64, _ids(index), max_genres=1)
    a, b, c = crops.batch(1, 5, 6), crops.batch(1, 5, 6), crops.batch(1, 6, 6)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["codes"], c["codes"])
    clone = pickle.loads(pickle.dumps(crops))  # what a DataLoader worker gets
    assert all(torch.equal(a[k], clone.batch(1, 5, 6)[k]) for k in a)


def test_short_songs_are_skipped_and_reported(index, cache):
    n_ctx = 448  # 57344 samples = 1.30 s: the 1.0 s and 1.2 s songs are too short
    crops = CodeCrops(index, cache, 2, n_ctx, None)
    assert [s.path for s in crops.songs] == ["song2.wav", "song3.wav"]
    assert [p for p, _ in crops.rejected] == ["song0.wav", "song1.wav"] and "too short" in crops.rejected[0][1]
    assert "y" not in crops.batch(0, 0, 2)  # no labels
    crops = CodeCrops(index, cache, 2, 64, None, min_length=SR * 3 // 2)  # a timing range, as for top priors
    assert [s.path for s in crops.songs] == ["song3.wav"]
    with pytest.raises(OpenJukeboxError, match="none of 4 songs has a usable length"):
        CodeCrops(index, cache, 2, 1024, None)


def test_validation_split_is_deterministic_and_disjoint(index, cache):
    kw = dict(max_genres=1, val_fraction=0.25)
    train = CodeCrops(index, cache, 2, 64, _ids(index), split="train", **kw)
    val = CodeCrops(index, cache, 2, 64, _ids(index), split="val", **kw)
    train_paths, val_paths = {s.path for s in train.songs}, {s.path for s in val.songs}
    assert val_paths and train_paths and not train_paths & val_paths
    assert train_paths | val_paths == {f"song{i}.wav" for i in range(len(SONGS))}
    by_path = {r.path: r.content_hash for r in index.songs()}
    held = sorted(val_paths, key=lambda p: split_value(by_path[p]))
    # the held-out songs are the ones whose hash value is below the fraction (or the lowest one)
    assert all(split_value(by_path[p]) < 0.25 for p in held) or held == [
        min(by_path, key=lambda p: split_value(by_path[p]))
    ]
    again = CodeCrops(index, cache, 2, 64, _ids(index), split="val", **kw)
    assert {s.path for s in again.songs} == val_paths
    both = CodeCrops(index, cache, 2, 64, _ids(index), **kw)  # one read of the cache, two sides
    assert {s.path for s in both.subset("val").songs} == val_paths
    assert {s.path for s in both.subset("train").songs} == train_paths and len(both) == len(SONGS)
    sub = both.subset("train")
    assert all(torch.equal(v, train.batch(0, 1, 4)[k]) for k, v in sub.batch(0, 1, 4).items())
    assert len(CodeCrops(index, cache, 2, 64, None, split="all", val_fraction=0.25)) == len(SONGS)


def test_missing_codes_is_a_clear_error(tmp_path, tiny_vqvae_dir):
    root = make_dataset(tmp_path / "songs", tiny_vqvae_dir)
    cache = open_code_cache(root, tiny_vqvae_dir)
    with open_index(root) as idx:
        records = idx.songs()
        cache.path(records[1].content_hash).unlink()
        with pytest.raises(OpenJukeboxError, match=r"1 of 4 indexed songs have no cached codes \(song1.wav\).*"
                           r"openjukebox data encode"):  # fmt: skip
            CodeCrops(idx, cache, 2, 64, None)


def test_official_ids_label_windows_like_the_original(index, cache, caplog):
    # the released upsamplers' v2 ids: genres are bags of words, unknown artists are id 0 with a warning
    with caplog.at_level(logging.WARNING, logger="openjukebox.data.code_crops"):
        crops = CodeCrops(index, cache, 1, 64, OfficialIds(*load_official_ids("v2")), max_genres=5)
    genres = {s.path: s.labels.genre.tolist() for s in crops.songs}
    assert genres["song0.wav"] == [2, 8, -1, -1, -1]  # "Blues Rock" -> blues, rock
    assert genres["song1.wav"][0] == 9 and genres["song2.wav"][0] == 14 and genres["song3.wav"][0] == 8
    assert all(s.labels.artist == 0 for s in crops.songs)
    assert "3 names are not in the label ids and use id 0 (unknown): artist 'Alpha'" in caplog.text


def test_lyric_jitter_moves_only_word_timed_windows_and_is_reproducible(index, cache):
    ids = _ids(index)
    plain = CodeCrops(index, cache, 2, 128, ids, n_tokens=N_TOKENS, max_genres=1)
    jittered = CodeCrops(index, cache, 2, 128, ids, n_tokens=N_TOKENS, max_genres=1, lyric_jitter=3)
    a, b = plain.batch(0, 4, 16), jittered.batch(0, 4, 16)
    assert torch.equal(a["song"], b["song"]) and torch.equal(a["start"], b["start"])  # same windows drawn
    assert torch.equal(a["codes"], b["codes"]) and torch.equal(a["y"][:, :-N_TOKENS], b["y"][:, :-N_TOKENS])
    assert all(torch.equal(b[k], jittered.batch(0, 4, 16)[k]) for k in b)
    moved = (a["y"][:, -N_TOKENS:] != b["y"][:, -N_TOKENS:]).any(dim=1)
    timed = a["song"] == 1  # the song with word timings; the others use the linear rule, never moved
    assert moved[timed].any() and not moved[~timed].any()
    for i in torch.nonzero(moved).flatten().tolist():  # each moved window is a shifted true window
        song, start = int(b["song"][i]), int(b["start"][i])
        options = [plain.example_at(song, start, s)["y"][-N_TOKENS:].tolist() for s in range(-3, 4)]
        assert b["y"][i, -N_TOKENS:].tolist() in options
    with pytest.raises(OpenJukeboxError, match="jitter"):
        CodeCrops(index, cache, 2, 128, ids, n_tokens=N_TOKENS, lyric_jitter=-1)


def test_sung_keys_come_with_the_same_windows_and_only_from_word_timed_songs(index, cache):
    ids = _ids(index)
    kw = dict(n_tokens=N_TOKENS, max_genres=1, lyric_jitter=3)
    plain = CodeCrops(index, cache, 2, 128, ids, **kw)
    sung = CodeCrops(index, cache, 2, 128, ids, **kw, sung_keys=True)
    a, b = plain.batch(0, 4, 16), sung.batch(0, 4, 16)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same stream of windows, lyric shifts and labels
    assert b["sung"].shape == (16, 128) and b["sung"].dtype == torch.int64
    timed = b["song"] == 1  # the song with word timings; the others have no targets
    assert (b["sung"][~timed] == -1).all() and (b["sung"][timed] >= 1).any()
    assert (b["sung"] < N_TOKENS).all()
    for i in torch.nonzero(timed).flatten().tolist():  # the keys of each window's own (shifted) lyric window
        song, start = int(b["song"][i]), int(b["start"][i])
        labels = sung.songs[song].labels
        shift = next(s for s in range(-3, 4) if sung.example_at(song, start, s)["y"].tolist() == b["y"][i].tolist())
        window = (start * 128, 128 * 128, N_TOKENS, sung.lyrics_vocab)
        lyrics, expected = labels.lyrics_and_sung_keys(*window, 128, shift)
        assert b["sung"][i].tolist() == expected.tolist()
        assert lyrics.tolist() == labels.lyrics(*window, shift).tolist()  # the window of the label vector
    untimed = sung.songs[int(b["song"][~timed][0])].labels
    lyrics, keys = untimed.lyrics_and_sung_keys(0, 128 * 128, N_TOKENS, sung.lyrics_vocab, 128)
    assert lyrics.tolist() == untimed.lyrics(0, 128 * 128, N_TOKENS, sung.lyrics_vocab).tolist() and (keys == -1).all()
    with pytest.raises(OpenJukeboxError, match="need a prior with lyrics"):
        CodeCrops(index, cache, 2, 128, ids, sung_keys=True)


def test_label_dropout_makes_some_windows_unlabelled_and_is_reproducible(index, cache):
    ids = _ids(index)
    plain = CodeCrops(index, cache, 2, 128, ids, n_tokens=N_TOKENS, max_genres=2, lyric_jitter=3)
    dropping = CodeCrops(index, cache, 2, 128, ids, n_tokens=N_TOKENS, max_genres=2, lyric_jitter=3, label_dropout=0.5)
    a, b = plain.batch(0, 4, 64), dropping.batch(0, 4, 64)
    for key in ("song", "start", "codes"):
        assert torch.equal(a[key], b[key])  # the same windows (and lyric jitter): dropout is drawn last
    assert all(torch.equal(b[k], dropping.batch(0, 4, 64)[k]) for k in b)
    changed = (a["y"] != b["y"]).any(dim=1)
    dropped = (b["y"][:, 3] == 0) & (b["y"][:, 4] == 0) & (b["y"][:, 5] == -1)
    assert 10 <= int(dropped.sum()) <= 54  # about half of 64
    assert not changed[~dropped].any()  # the others keep their labels
    assert torch.equal(a["y"][:, :3], b["y"][:, :3]) and torch.equal(a["y"][:, 6:], b["y"][:, 6:])  # timing, lyrics
    assert not (a["y"][:, 3] == 0).any()  # every song of the fixture has a known artist: the dropped ones changed
    val = CodeCrops(index, cache, 2, 128, ids, n_tokens=N_TOKENS, max_genres=2, val_fraction=0.5, label_dropout=0.5)
    assert val.subset("val").label_dropout == 0.0 and val.subset("train").label_dropout == 0.5
    with pytest.raises(OpenJukeboxError, match="label dropout must be in"):
        CodeCrops(index, cache, 2, 128, ids, label_dropout=1.0)
    with pytest.raises(OpenJukeboxError, match="label dropout needs"):
        CodeCrops(index, cache, 2, 128, None, label_dropout=0.1)


@pytest.mark.parametrize("balance", ["genre", "artist"])
def test_balance_gives_every_group_the_same_share_of_windows(index, cache, balance):
    ids = _ids(index)
    plain = CodeCrops(index, cache, 2, 128, ids, max_genres=2)
    crops = CodeCrops(index, cache, 2, 128, ids, max_genres=2, balance=balance, val_fraction=0.5)
    rng = np.random.default_rng(0)
    draws = [crops.draw(rng) for _ in range(40_000)]
    songs = np.bincount([song for song, _ in draws], minlength=len(crops)) / len(draws)
    # Alpha sings songs 0 and 2 (1.0 s and 1.4 s); each of the other artists and every genre has one song
    by_path = {s.path: i for i, s in enumerate(crops.songs)}
    if balance == "artist":
        a0, a2 = (plain._units[by_path[f"song{i}.wav"]] for i in (0, 2))
        expected = {"song0.wav": a0 / (a0 + a2) / 3, "song1.wav": 1 / 3, "song2.wav": a2 / (a0 + a2) / 3}
        expected["song3.wav"] = 1 / 3
    else:
        expected = {f"song{i}.wav": 1 / 4 for i in range(4)}
    for path, p in expected.items():
        assert songs[by_path[path]] == pytest.approx(p, abs=0.01)
    for song, start in draws[:500]:  # starts stay whole windows inside the song
        assert 0 <= start <= crops.lengths[song] // crops.hop_length - crops.n_ctx
    assert all(torch.equal(v, crops.batch(3, 1, 8)[k]) for k, v in crops.batch(3, 1, 8).items())
    assert crops.subset("val").balance == "length" and crops.subset("train").balance == balance
    # the default keeps the original stream: a song by its length
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [plain.draw(rng1) for _ in range(50)] == [draw_crop_windows(plain, rng2) for _ in range(50)]
    with pytest.raises(OpenJukeboxError, match="balance must be one of length, genre, artist"):
        CodeCrops(index, cache, 2, 128, ids, balance="songs")


def draw_crop_windows(crops: CodeCrops, rng: np.random.Generator) -> tuple[int, int]:
    """A window drawn as the original draws one: a song by its length, then a uniform start."""
    song, unit = draw_crop(rng, np.cumsum(crops._units), crops._units, crops.n_ctx // crops.cond_downsample)
    return song, unit * crops.cond_downsample
