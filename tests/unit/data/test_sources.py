"""Every reader on tiny hand-built files in the real formats; lookup order; offline errors; downloads."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from explorec.config import DataConfig
from explorec.data.download import DATA_DIR_ENV, download_dataset, locate_dataset
from explorec.data.raw import INTERACTION_COLUMNS, ITEM_COLUMNS, RawDataset
from explorec.data.sources import layout_of, read_source
from explorec.errors import ChecksumError, DataNotFoundError

OFFLINE_URL = "http://127.0.0.1:9/"
GENRES = ("unknown", "Action", "Comedy", "Drama")


def write_ml100k(folder: Path) -> Path:
    """Write a tiny ML-100K folder: a latin-1 title, a film without a date, a trailing blank in u.genre."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{name}|{index}\n" for index, name in enumerate(GENRES)) + "\n")
    items = [
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0",
        "2|Misérables, Les (1995)|01-Jan-1996||http://x|0|1|0|1",
        "3|unknown||||1|0|0|0",
        "4|Old Film (1931)|||http://x|0|0|0|1",
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    ratings = ["1\t1\t5\t881250949", "1\t2\t3\t881250950", "2\t1\t4\t881250951", "3\t4\t1\t881250952"]
    (folder / "u.data").write_text("\n".join(ratings) + "\n")
    return folder


def write_ml_latest_small_tmdb(folder: Path) -> Path:
    """Write a tiny ml-latest-small-tmdb folder: 4 movies, 2 with TMDB overviews (one over two lines)."""
    small, tmdb = folder / "ml-latest-small", folder / "tmdb-5000"
    small.mkdir(parents=True)
    tmdb.mkdir(parents=True)
    (small / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation\n"
        '2,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Babylon 5,(no genres listed)\n"
        "4,Amélie (2001),Comedy|Romance\n",
        encoding="utf-8",
    )
    (small / "links.csv").write_text(
        "movieId,imdbId,tmdbId\n1,0114709,862\n2,0112346,9087\n3,0105946,\n4,0211915,194\n"
    )
    (small / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,4,0.5,964982704\n2,2,5.0,964982705\n2,3,3.5,964982706\n"
    )
    (small / "tags.csv").write_text(
        'userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,funny,2\n3,1,pixar,3\n1,4,"Paris, France",4\n'
    )
    (tmdb / "tmdb_5000_movies.csv").write_text(
        "budget,id,overview,tagline,title,release_date\n"
        '30000000,862,"Led by Woody, Andy\'s toys live happily.\nUntil Buzz arrives.",'
        "The adventure takes off!,Toy Story,1995-10-30\n"
        "10,194,A shy waitress decides to change the lives of those around her.,,Amélie,2001-04-25\n"
        "5,999,Not in MovieLens.,,Other,2000-01-01\n",
        encoding="utf-8",
    )
    return folder


def write_coat(folder: Path) -> Path:
    """Write a tiny Coat folder (3 users x 4 items, CRLF, map file without a final newline)."""
    features = folder / "user_item_features"
    features.mkdir(parents=True)
    (folder / "train.ascii").write_bytes(b"5 0 1 0 \r\n0 2 0 3 \r\n4 0 0 1 \r\n")
    (folder / "test.ascii").write_bytes(b"0 1 0 0 \r\n3 0 0 0 \r\n4 0 2 0 \r\n")
    (features / "item_features.ascii").write_bytes(b"1 0 1 0\r\n0 1 0 1\r\n1 0 0 1\r\n0 1 1 0\r\n")
    (features / "item_features_map.txt").write_bytes(
        b"gender:men\r\ngender:women\r\ncolor:black\r\ncolor:red"
    )
    return folder


def write_ml1m(folder: Path) -> Path:
    """Write a tiny ML-1M folder ('::' separated, latin-1)."""
    folder.mkdir(parents=True)
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Cité des enfants perdus, La (1995)::Sci-Fi\n"
    )
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n2::2::4::978301968\n")
    return folder


def write_ml20m(folder: Path) -> Path:
    """Write a tiny ML-20M/25M folder (ratings.csv, movies.csv, tags.csv)."""
    folder.mkdir(parents=True)
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Animation\n2,Heat (1995),Action\n"
    )
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,3.5,1112486027\n2,2,4.0,1112484676\n"
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n18,2,Al Pacino,1240597180\n")
    return folder


def assert_documented_dtypes(dataset: RawDataset) -> None:
    """Assert the interaction and item columns and dtypes documented in explorec.data.raw."""
    assert tuple(dataset.interactions.columns) == INTERACTION_COLUMNS
    assert tuple(dataset.items.columns) == ITEM_COLUMNS
    for column in ("user_id", "item_id"):
        assert pd.api.types.is_string_dtype(dataset.interactions[column]), column
    assert dataset.interactions["rating"].dtype == "float64"
    assert dataset.interactions["timestamp"].dtype == "int64"
    assert dataset.items["year"].dtype == "Int32"
    for column in ("item_id", "title", "genres", "overview", "tags"):
        assert pd.api.types.is_string_dtype(dataset.items[column]), column
        assert not dataset.items[column].isna().any(), column


def config_for(name: str, data_dir: Path, **overrides: object) -> DataConfig:
    """Return a DataConfig reading `name` from `data_dir` without any download."""
    return DataConfig(name=name, data_dir=str(data_dir), allow_download=False, **overrides)  # type: ignore[arg-type]


def test_ml100k_reader(tmp_path: Path) -> None:
    """u.data/u.item/u.genre become typed interactions and items; latin-1 titles decode; years parse."""
    write_ml100k(tmp_path / "ml-100k")
    dataset = read_source(config_for("ml100k", tmp_path))
    assert_documented_dtypes(dataset)
    assert dataset.name == "ml100k"
    assert dataset.rating_range == (1.0, 5.0)
    assert dataset.interactions["user_id"].tolist() == ["1", "1", "2", "3"]
    assert dataset.interactions["rating"].tolist() == [5.0, 3.0, 4.0, 1.0]
    items = dataset.items.set_index("item_id")
    assert items.loc["2", "title"] == "Misérables, Les (1995)"
    assert items.loc["2", "year"] == 1996
    assert items.loc["1", "genres"] == "Comedy"
    assert items.loc["2", "genres"] == "Action|Drama"
    assert items.loc["3", "genres"] == "unknown"
    assert pd.isna(items.loc["3", "year"])
    assert items.loc["4", "year"] == 1931
    assert (dataset.items["overview"] == "").all() and (dataset.items["tags"] == "").all()
    assert [path.name for path in dataset.files] == ["u.data", "u.item", "u.genre"]
    assert dataset.fixed_test is None


def test_ml_latest_small_tmdb_reader(tmp_path: Path) -> None:
    """Ratings, TMDB overview + tagline joined via links.csv, tags joined, '(no genres listed)' dropped."""
    write_ml_latest_small_tmdb(tmp_path / "ml-latest-small-tmdb")
    dataset = read_source(config_for("ml_latest_small_tmdb", tmp_path))
    assert_documented_dtypes(dataset)
    assert dataset.rating_range == (0.5, 5.0)
    assert len(dataset.interactions) == 4
    items = dataset.items.set_index("item_id")
    assert (
        items.loc["1", "overview"]
        == "Led by Woody, Andy's toys live happily.\nUntil Buzz arrives. The adventure takes off!"
    )
    assert items.loc["4", "overview"].startswith("A shy waitress")
    assert items.loc["2", "overview"] == ""
    assert items.loc["2", "title"] == "American President, The (1995)"
    assert items.loc["4", "title"] == "Amélie (2001)"
    assert items.loc["1", "tags"] == "pixar|funny"
    assert items.loc["4", "tags"] == "Paris, France"
    assert items.loc["3", "genres"] == ""
    assert pd.isna(items.loc["3", "year"])
    assert items.loc["2", "year"] == 1995
    assert dataset.notes == {"items_with_overview": 2, "ratings_on_items_with_overview": 2}


def test_coat_reader(tmp_path: Path) -> None:
    """Coat's train matrix becomes interactions, its test matrix fixed_test; timestamps are 0."""
    write_coat(tmp_path / "coat")
    dataset = read_source(config_for("coat", tmp_path))
    assert_documented_dtypes(dataset)
    train = dataset.interactions
    assert list(zip(train["user_id"], train["item_id"], train["rating"], strict=True)) == [
        ("1", "1", 5.0),
        ("1", "3", 1.0),
        ("2", "2", 2.0),
        ("2", "4", 3.0),
        ("3", "1", 4.0),
        ("3", "4", 1.0),
    ]
    assert (train["timestamp"] == 0).all()
    assert dataset.fixed_test is not None
    assert len(dataset.fixed_test) == 4
    assert dataset.fixed_test["rating"].tolist() == [1.0, 3.0, 4.0, 2.0]
    assert dataset.notes == {"train_test_overlap": 1}
    items = dataset.items.set_index("item_id")
    assert items.loc["2", "title"] == "coat 2"
    assert items.loc["2", "genres"] == "gender:women|color:red"
    assert len(dataset.items) == 4


def test_ml1m_reader(tmp_path: Path) -> None:
    """'::'-separated latin-1 files; titles with ':' or accents survive."""
    write_ml1m(tmp_path / "ml-1m")
    dataset = read_source(config_for("ml1m", tmp_path))
    assert_documented_dtypes(dataset)
    assert dataset.interactions["timestamp"].tolist() == [978300760, 978302109, 978301968]
    items = dataset.items.set_index("item_id")
    assert items.loc["2", "title"] == "Cité des enfants perdus, La (1995)"
    assert items.loc["1", "genres"] == "Animation|Children's|Comedy"
    assert items.loc["1", "year"] == 1995


@pytest.mark.parametrize(("name", "folder"), [("ml20m", "ml-20m"), ("ml25m", "ml-25m")])
def test_movielens_csv_readers(tmp_path: Path, name: str, folder: str) -> None:
    """ML-20M/25M: ratings.csv with half stars, tags from tags.csv, no overview."""
    write_ml20m(tmp_path / folder)
    dataset = read_source(config_for(name, tmp_path))
    assert_documented_dtypes(dataset)
    assert dataset.name == name
    assert dataset.interactions["rating"].tolist() == [3.5, 4.0]
    assert dataset.items.set_index("item_id").loc["2", "tags"] == "Al Pacino"
    assert (dataset.items["overview"] == "").all()


def test_read_source_generates_synthetic_without_files() -> None:
    """data.name=synthetic needs no folder at all."""
    cfg = DataConfig(name="synthetic", allow_download=False)
    cfg.synthetic.n_users, cfg.synthetic.n_items, cfg.synthetic.n_interactions = 20, 30, 100
    dataset = read_source(cfg)
    assert dataset.name == "synthetic"
    assert len(dataset.interactions) == 100


# --- lookup order ------------------------------------------------------------------------------------


@pytest.fixture
def three_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Three complete ml-100k copies: one for data_dir, one for the env variable, one in the cache."""
    roots = {label: tmp_path / label for label in ("data_dir", "env", "cache")}
    for root in roots.values():
        write_ml100k(root / "ml-100k")
    monkeypatch.setenv(DATA_DIR_ENV, str(roots["env"]))
    return roots


def test_data_dir_beats_env_and_cache(three_roots: dict[str, Path]) -> None:
    """data.data_dir is searched first."""
    cfg = DataConfig(data_dir=str(three_roots["data_dir"]), cache_dir=str(three_roots["cache"]))
    assert (
        locate_dataset(layout_of("ml100k"), cfg, base_url=OFFLINE_URL) == three_roots["data_dir"] / "ml-100k"
    )


def test_env_beats_cache(three_roots: dict[str, Path]) -> None:
    """Without data.data_dir, EXPLOREC_DATA_DIR wins over the cache."""
    cfg = DataConfig(data_dir=None, cache_dir=str(three_roots["cache"]))
    assert locate_dataset(layout_of("ml100k"), cfg, base_url=OFFLINE_URL) == three_roots["env"] / "ml-100k"


def test_cache_is_used_last(three_roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """With neither data_dir nor the env variable, the cache folder is used."""
    monkeypatch.delenv(DATA_DIR_ENV)
    cfg = DataConfig(data_dir=None, cache_dir=str(three_roots["cache"]))
    assert locate_dataset(layout_of("ml100k"), cfg, base_url=OFFLINE_URL) == three_roots["cache"] / "ml-100k"


def test_incomplete_folder_is_skipped(three_roots: dict[str, Path]) -> None:
    """A data_dir copy lacking u.item is passed over for the next complete one."""
    (three_roots["data_dir"] / "ml-100k" / "u.item").unlink()
    cfg = DataConfig(data_dir=str(three_roots["data_dir"]), cache_dir=str(three_roots["cache"]))
    assert locate_dataset(layout_of("ml100k"), cfg, base_url=OFFLINE_URL) == three_roots["env"] / "ml-100k"


def test_cache_dir_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.cache_dir may start with ~."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    write_ml100k(tmp_path / "cachedir" / "ml-100k")
    cfg = DataConfig(data_dir=None, cache_dir="~/cachedir")
    assert locate_dataset(layout_of("ml100k"), cfg, base_url=OFFLINE_URL) == tmp_path / "cachedir" / "ml-100k"


# --- offline / not found -----------------------------------------------------------------------------


def test_offline_error_says_what_to_download_and_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreachable download + nothing local: one message naming folder, files, URL and EXPLOREC_DATA_DIR."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    cache = tmp_path / "cache"
    cfg = DataConfig(name="ml100k", data_dir=str(tmp_path / "nowhere"), cache_dir=str(cache))
    with pytest.raises(DataNotFoundError) as error:
        read_source(cfg, base_url=OFFLINE_URL)
    message = str(error.value)
    assert "\n" not in message
    for expected in ("'ml-100k/'", "u.data", "u.item", f"{OFFLINE_URL}ml-100k.zip", "EXPLOREC_DATA_DIR=DIR"):
        assert expected in message
    assert str(tmp_path / "nowhere") in message and str(cache) in message
    assert "failed" in message
    assert not (cache / "ml-100k").exists()
    assert not [path for path in cache.iterdir() if path.name.startswith(".download-")]


def test_download_disabled_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """allow_download=false names the setting instead of trying the network."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    cfg = DataConfig(name="ml1m", cache_dir=str(tmp_path), allow_download=False)
    with pytest.raises(DataNotFoundError, match=r"allow_download is false.*ml-1m\.zip"):
        locate_dataset(layout_of("ml1m"), cfg, base_url=OFFLINE_URL)


def test_coat_cannot_be_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Coat's error says where to get it by hand."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    cfg = DataConfig(name="coat", cache_dir=str(tmp_path))
    with pytest.raises(DataNotFoundError, match=r"cs\.cornell\.edu/~schnabts/mnar.*EXPLOREC_DATA_DIR"):
        locate_dataset(layout_of("coat"), cfg, base_url=OFFLINE_URL)


# --- downloads from a local server / file URL ------------------------------------------------------


def build_zip(path: Path, top: str, files: dict[str, bytes]) -> str:
    """Write a zip holding `files` under one top folder and return its md5."""
    with zipfile.ZipFile(path, "w") as bundle:
        for name, content in files.items():
            bundle.writestr(f"{top}/{name}", content)
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def ml100k_zip(served: Path) -> str:
    """Write a tiny ml-100k.zip into `served` and return its md5."""
    source = write_ml100k(served / "src" / "ml-100k")
    files = {name: (source / name).read_bytes() for name in ("u.data", "u.item", "u.genre")}
    return build_zip(served / "ml-100k.zip", "ml-100k", files)


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a folder over HTTP on 127.0.0.1; yield (base URL, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served
    finally:
        server.shutdown()
        server.server_close()


def test_download_over_http_with_matching_md5(local_server: tuple[str, Path], tmp_path: Path) -> None:
    """A served archive with the expected md5 is extracted and renamed into the cache."""
    base_url, served = local_server
    md5 = ml100k_zip(served)
    folder = download_dataset(
        layout_of("ml100k"), tmp_path / "cache", base_url=base_url, expected_md5=md5, progress=False
    )
    assert folder == tmp_path / "cache" / "ml-100k"
    assert (folder / "u.data").read_bytes() == (served / "src" / "ml-100k" / "u.data").read_bytes()


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path) -> None:
    """The tiny archive does not have ML-100K's published md5: ChecksumError and no folder."""
    served = tmp_path / "served"
    served.mkdir()
    ml100k_zip(served)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="0e33842e24a9c977be4e0107933c0723"):
        download_dataset(layout_of("ml100k"), cache, base_url=served.as_uri() + "/", progress=False)
    assert not (cache / "ml-100k").exists()
    assert list(cache.iterdir()) == []


def test_published_md5_file_is_checked(tmp_path: Path) -> None:
    """ml-latest-small has no fixed md5: the .md5 file next to the archive is used, for better and worse."""
    served = tmp_path / "served"
    served.mkdir()
    md5 = build_zip(served / "ml-latest-small.zip", "ml-latest-small", {"ratings.csv": b"userId\n"})
    (served / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {md5}\n")
    folder = download_dataset(
        layout_of("ml_latest_small_tmdb"), tmp_path / "ok", base_url=served.as_uri(), progress=False
    )
    assert (folder / "ml-latest-small" / "ratings.csv").read_bytes() == b"userId\n"
    (served / "ml-latest-small.zip.md5").write_text("0" * 32 + "  ml-latest-small.zip\n")
    with pytest.raises(ChecksumError):
        download_dataset(
            layout_of("ml_latest_small_tmdb"), tmp_path / "bad", base_url=served.as_uri(), progress=False
        )


def test_locate_downloads_into_cache_then_reads(
    local_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing local, locate_dataset downloads into the cache (md5 patched to the tiny archive's)."""
    from explorec.data import sources

    base_url, served = local_server
    md5 = ml100k_zip(served)
    source = sources.data_source("ml100k")
    patched = dataclasses.replace(source, layout=dataclasses.replace(layout_of("ml100k"), archive_md5=md5))
    monkeypatch.setitem(sources.SOURCES._entries, "ml100k", patched)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    cfg = DataConfig(name="ml100k", cache_dir=str(tmp_path / "cache"))
    dataset = read_source(cfg, base_url=base_url)
    assert len(dataset.interactions) == 4
    assert (tmp_path / "cache" / "ml-100k" / "u.item").is_file()


def test_tmdb_part_is_asked_for_after_downloading_movielens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ml-latest-small downloads, but TMDB cannot: the error points at Kaggle and the expected path."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    small = write_ml_latest_small_tmdb(tmp_path / "src") / "ml-latest-small"
    files = {path.name: path.read_bytes() for path in small.iterdir()}
    md5 = build_zip(served / "ml-latest-small.zip", "ml-latest-small", files)
    (served / "ml-latest-small.zip.md5").write_text(md5)
    cfg = DataConfig(name="ml_latest_small_tmdb", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(
        DataNotFoundError,
        match=r"(?i)is missing.*kaggle.*DIR/ml-latest-small-tmdb/tmdb-5000/tmdb_5000_movies\.csv",
    ):
        locate_dataset(layout_of("ml_latest_small_tmdb"), cfg, base_url=served.as_uri(), progress=False)
    assert (tmp_path / "cache" / "ml-latest-small-tmdb" / "ml-latest-small" / "ratings.csv").is_file()
    (served / "ml-latest-small.zip").unlink()
    with pytest.raises(DataNotFoundError, match="is missing"):
        locate_dataset(layout_of("ml_latest_small_tmdb"), cfg, base_url=served.as_uri(), progress=False)
