"""Label conditioner: parity with the original (jukebox-infer carries its code and key layout) and range binning.

The original gets random weights, its state dict goes through our key map, and both see the same random label
vectors (padded -1 genre slots, windows that run past the end of the song).
"""

from __future__ import annotations

import pytest
import torch

from openjukebox.errors import OpenJukeboxError
from openjukebox.prior import LabelConditioner, convert_label_state_dict, range_bins

reference = pytest.importorskip("jukebox_infer.prior.conditioners")

SR = 44100
WIDTH = 32
N_TIME = 256

CASES = {
    # name: (y_bins, max_bow_genre_size, t_bins, min_duration, max_duration, include_time_signal, sample_length)
    "5b": ((120, 4111), 5, 128, 60.0, 600.0, True, 1_048_576),
    "1b": ((604, 7898), 1, 64, 17.84, 600.0, True, 1_048_576),
    "upsampler": ((120, 4111), 5, 128, 60.0, 600.0, False, 262_144),
}


@pytest.fixture(autouse=True)
def _cpu_long_tensor(monkeypatch):
    # The original asserts isinstance(y, torch.cuda.LongTensor); let CPU long tensors pass.
    monkeypatch.setattr(torch.cuda, "LongTensor", torch.LongTensor, raising=False)


def _build_pair(name: str):
    y_bins, bow, t_bins, min_d, max_d, time_signal, _ = CASES[name]
    torch.manual_seed(0)
    original = reference.LabelConditioner(
        y_bins=y_bins,
        t_bins=t_bins,
        sr=SR,
        min_duration=min_d,
        max_duration=max_d,
        n_time=N_TIME,
        out_width=WIDTH,
        init_scale=1.0,
        max_bow_genre_size=bow,
        include_time_signal=time_signal,
    ).eval()
    with torch.no_grad():
        for p in original.parameters():
            p.normal_()
    ours = LabelConditioner(
        y_bins=y_bins,
        out_width=WIDTH,
        max_bow_genre_size=bow,
        t_bins=t_bins,
        sr=SR,
        min_duration=min_d,
        max_duration=max_d,
        n_time=N_TIME,
        include_time_signal=time_signal,
    ).eval()
    prior_state = {f"y_emb.{k}": v for k, v in original.state_dict().items()}
    prior_state["prior.x_emb.weight"] = torch.zeros(3, 3)  # other prior keys are left out
    ours.load_state_dict(convert_label_state_dict(prior_state), strict=True)
    return original, ours


def _random_y(name: str, n: int, generator: torch.Generator) -> torch.Tensor:
    y_bins, bow, _, min_d, max_d, _, sample_length = CASES[name]
    lo, hi = int(min_d * SR), int(max_d * SR) - sample_length  # the absolute window end stays <= max
    total = torch.randint(lo, hi, (n,), generator=generator)
    total[0], total[1] = lo, hi - 1
    offset = (torch.rand(n, generator=generator) * total).long().clamp(max=total - 1)
    offset[0] = 0
    offset[1:4] = total[1:4] - torch.tensor([1000, 100_000, sample_length // 3])  # near the end: window runs past it
    offset[4] = (total[4] - sample_length).clamp(min=0)  # window ends exactly at the end of the song
    length = torch.full((n,), sample_length)
    artist = torch.randint(0, y_bins[1], (n,), generator=generator)
    artist[0], artist[1] = 0, y_bins[1] - 1
    genre = torch.randint(0, y_bins[0], (n, bow), generator=generator)
    n_genres = torch.randint(0, bow + 1, (n,), generator=generator)
    n_genres[0] = 0  # no genre at all
    genre[torch.arange(bow).view(1, bow) >= n_genres.view(n, 1)] = -1
    return torch.cat([total[:, None], offset[:, None], length[:, None], artist[:, None], genre], dim=1)


@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_original(name):
    original, ours = _build_pair(name)
    y = _random_y(name, 16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        start_ref, pos_ref = original(y)
        start, pos = ours(y)
        # lyric tokens after the genre slots are ignored
        start_lyrics, pos_lyrics = ours(torch.cat([y, torch.randint(0, 79, (16, 20))], dim=1))
    torch.testing.assert_close(start, start_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(start_lyrics, start_ref, atol=1e-6, rtol=0)
    assert start.shape == (16, 1, WIDTH)
    if CASES[name][5]:
        assert pos.shape == (16, N_TIME, WIDTH)
        torch.testing.assert_close(pos, pos_ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(pos_lyrics, pos_ref, atol=1e-6, rtol=0)
    else:
        assert pos is None and pos_ref is None and pos_lyrics is None


@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("n_time", [1, 7, N_TIME])
def test_range_bins_match_original_range_embedding(n_time, clamp):
    lo, hi, bins = (0.0, 1.0, 64) if clamp else (0.0, 600.0 * SR, 128)
    emb = reference.RangeEmbedding(n_time, bins, (lo, hi), WIDTH, 1.0, clamp=clamp)
    with torch.no_grad():
        emb.emb.weight.copy_(torch.arange(bins, dtype=torch.float32).view(bins, 1).expand(bins, WIDTH))
    g = torch.Generator().manual_seed(2)
    start = torch.rand(32, 1, generator=g) * (hi - lo) + lo
    start[0], start[1] = lo, hi - (hi - lo) * 1e-3
    end = (start + torch.rand(32, 1, generator=g) * (hi - lo) * (1.5 if clamp else 1.0)).clamp(
        max=hi * (2 if clamp else 1)
    )
    end[0] = hi
    expected = emb(start, end)[..., 0].long()
    assert torch.equal(range_bins(start, end, n_time, bins, lo, hi, clamp_end=clamp), expected)


def test_range_bins_edges():
    # offset 0: the first position is the first bin
    assert range_bins(torch.tensor([[0.0]]), torch.tensor([[8.0]]), 4, 4, 0.0, 8.0).tolist() == [[0, 1, 2, 3]]
    # a window ending exactly at the end of the range never reaches bin `bins`
    b = range_bins(torch.tensor([[0.0]]), torch.tensor([[1.0]]), 1000, 64, 0.0, 1.0)
    assert b.max().item() == 63 and b.min().item() == 0
    # n_time == 1 bins the start only; the last value below the top falls in the last bin
    assert range_bins(torch.tensor([[60.0], [599.999]]), None, 1, 128, 60.0, 600.0).tolist() == [[0], [127]]
    # the start must lie in [lo, hi)
    with pytest.raises(ValueError):
        range_bins(torch.tensor([[600.0]]), None, 1, 128, 60.0, 600.0)
    with pytest.raises(ValueError):
        range_bins(torch.tensor([[59.0]]), None, 1, 128, 60.0, 600.0)
    # an end above the top is clamped when asked (relative position past the end of the song), refused otherwise
    start, past_end = torch.tensor([[0.9]]), torch.tensor([[1.7]])
    clamped = range_bins(start, past_end, 16, 64, 0.0, 1.0, clamp_end=True)
    assert torch.equal(clamped, range_bins(start, torch.tensor([[1.0]]), 16, 64, 0.0, 1.0))
    assert clamped.max().item() == 63
    with pytest.raises(ValueError):
        range_bins(start, past_end, 16, 64, 0.0, 1.0)
    with pytest.raises(ValueError):
        range_bins(torch.tensor([[0.0]]), None, 4, 64, 0.0, 1.0)


def test_window_on_last_sample_stays_in_last_bin():
    # The original fails here (float32 rounds a relative position onto 1.0, bin t_bins); we use the last bin.
    original, ours = _build_pair("5b")
    y = _random_y("5b", 8, torch.Generator().manual_seed(4))
    y[1, 0] = 25_411_423  # > 2**24 samples: total_length is not exact in float32
    y[1, 1] = y[1, 0] - 1
    with pytest.raises(IndexError):
        original(y[1:2])
    start, end = y[1:2, 1:2].float(), (y[1:2, 1:2] + y[1:2, 2:3]).float()
    total = y[1:2, 0:1].float()
    bins = range_bins(start / total, end / total, N_TIME, 128, 0.0, 1.0, clamp_end=True)
    assert bins.min().item() == 127 and bins.max().item() == 127
    with torch.no_grad():
        _, pos = ours(y)
    assert pos.shape == (8, N_TIME, WIDTH) and torch.isfinite(pos).all()
    relative = ours.relative_position_embedding.weight
    absolute = ours.absolute_position_embedding.weight
    total_emb = ours.total_length_embedding.weight
    total_bin = range_bins(total, None, 1, 128, 60.0 * SR, 600.0 * SR)
    abs_bins = range_bins(start, end, N_TIME, 128, 0.0, 600.0 * SR)
    expected = total_emb[total_bin] + absolute[abs_bins] + relative[127]
    torch.testing.assert_close(pos[1:2], expected, atol=1e-6, rtol=0)


def test_key_map():
    state = {
        "y_emb.bow_genre_emb.emb.weight": torch.zeros(1),
        "module.y_emb.artist_emb.emb.weight": torch.ones(1),
        "prior.x_emb.weight": torch.zeros(1),
    }
    assert set(convert_label_state_dict(state)) == {"genre_embedding.weight", "artist_embedding.weight"}
    with pytest.raises(OpenJukeboxError):
        convert_label_state_dict({"y_emb.something.weight": torch.zeros(1)})


def test_rejects_bad_labels():
    _, ours = _build_pair("1b")
    y = _random_y("1b", 8, torch.Generator().manual_seed(3))
    with pytest.raises(ValueError):
        ours(y[:, :4])
    bad = y.clone()
    bad[0, 3] = 7898  # artist out of range
    with pytest.raises(ValueError):
        ours(bad)
