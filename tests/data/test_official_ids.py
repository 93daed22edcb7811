"""The released models' artist/genre id tables: sizes (y_bins) and lookups identical to the original code."""

import pytest
from jukebox_infer.data.artist_genre_processor import ArtistGenreProcessor

from openjukebox.data.official_ids import IdTable, load_official_ids
from openjukebox.errors import OpenJukeboxError


@pytest.mark.parametrize(("version", "y_bins"), [("v2", (120, 4111)), ("v3", (604, 7898))])
def test_tables_match_the_original(version, y_bins):
    artists, genres = load_official_ids(version)
    # the released models' y_bins (jukebox.md's hparam table) leave room for every id (v2 artists use ids < 4109)
    assert genres.n_ids <= y_bins[0] and artists.n_ids <= y_bins[1]
    assert genres.n_ids > 0.95 * y_bins[0] and artists.n_ids > 0.95 * y_bins[1]
    original = ArtistGenreProcessor(v3=version == "v3")
    for artist in ["The Beatles", "Ella Fitzgerald", "Frank Sinatra", "Nirvana", "unknown"]:
        assert artists.get(artist) == [original.get_artist_id(artist)]
    for genre in ["Jazz", "Rock", "Blues Rock", "Pop", "Soul"]:
        assert genres.get(genre) == original.get_genre_ids(genre)


def test_unknown_name_suggests_close_ones():
    artists, _ = load_official_ids("v2")
    with pytest.raises(OpenJukeboxError, match="closest: 'the_beatles'"):
        artists.lookup("The Beatless")
    assert artists.lookup("The Beatles") == artists.get("the beatles")


def test_bad_files(tmp_path):
    bad = tmp_path / "ids.txt"
    bad.write_text("no separator here\n")
    with pytest.raises(OpenJukeboxError, match="expected 'name;id'"):
        IdTable.load(bad, "artist", "v2")
    with pytest.raises(OpenJukeboxError, match="no such id table"):
        IdTable.load(tmp_path / "missing.txt", "artist", "v2")
    with pytest.raises(OpenJukeboxError, match="choose v2 or v3"):
        load_official_ids("v4")
    with pytest.raises(OpenJukeboxError, match="no such id table"):
        load_official_ids("v2", tmp_path)
