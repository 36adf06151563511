"""The data-source registry and the built-in sources: each a reader that turns its files into a validated
`RawDataset` with the documented columns, and the download layout that says where those files come from.

The registry is the one list of source names: the config check, preprocessing, the download lookup and the
served forms all read it. `register_source` adds a source (an extension, a test's toy source).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from explorec.config import DataConfig, ExplorecConfig
from explorec.config.choices import Registry
from explorec.data.download import GROUPLENS_BASE_URL, DatasetLayout, locate_dataset, movielens_layout
from explorec.data.files import FILES, file_paths, files_source_inputs, read_files_source
from explorec.data.raw import INTERACTION_COLUMNS, ITEM_COLUMNS, RawDataset
from explorec.data.synthetic import generate_synthetic
from explorec.data.validation import (
    Problem,
    TextTable,
    check_required_columns,
    control_character_problem,
    csv_record_lines,
    empty_problem,
    first_true,
    integer_id_problem,
    parse_timestamp,
    raise_first,
    read_csv_with_header,
    read_delimited_lines,
    scan_text_file,
    timestamp_slack,
    unique_id_problem,
    unknown_id_problem,
    validate_interactions,
)
from explorec.errors import ConfigError, DataValidationError

ONE_TO_FIVE = (1.0, 5.0)
HALF_TO_FIVE = (0.5, 5.0)
ML100K_GENRE_COUNT = 19
ML100K_ITEM_FIELDS = ("item_id", "title", "release_date", "video_release_date", "imdb_url")
MOVIELENS_RATING_NAMES = {
    "user_id": "userId",
    "item_id": "movieId",
    "rating": "rating",
    "timestamp": "timestamp",
}
DAT_RATING_NAMES = {"user_id": "user_id", "item_id": "item_id", "rating": "rating", "timestamp": "timestamp"}
TMDB_REQUIRED = ("id", "overview", "tagline", "release_date")
NO_GENRES = "(no genres listed)"
_TITLE_YEAR = r"\(([0-9]{4})\)\s*$"


@dataclass(frozen=True)
class DataSource:
    """One data source: its name and either a folder reader with its download layout, or a generator.

    `read` turns the located folder (see `layout`) into a RawDataset; `generate` builds one from the
    config alone: from nothing (the synthetic source) or from files the config names, which `inputs`
    lists for the fingerprint (`data=files`).
    """

    name: str
    layout: DatasetLayout | None = None
    read: Callable[[Path], RawDataset] | None = None
    generate: Callable[[DataConfig], RawDataset] | None = None
    inputs: Callable[[DataConfig], tuple[Path, ...]] | None = None

    def __post_init__(self) -> None:
        """Require a reader with its layout, or a generator (with the inputs it reads, if any), not both."""
        file_backed = self.read is not None and self.layout is not None and self.generate is None
        generated = self.generate is not None and self.read is None and self.layout is None
        if not (file_backed or generated) or (self.inputs is not None and not generated):
            raise ValueError(f"data source {self.name!r} needs either read and layout, or generate")


def register_source(source: DataSource) -> DataSource:
    """Add a data source to the registry; its name must be new."""
    return SOURCES.register(source.name, source)


def unregister_source(name: str) -> None:
    """Remove a data source from the registry (for extensions and tests that registered one)."""
    SOURCES.unregister(name)


def source_names() -> tuple[str, ...]:
    """Return the registered data-source names, built-ins first, in registration order."""
    return SOURCES.names()


def data_source(name: str) -> DataSource:
    """Return the registered data source `name`."""
    return SOURCES.get(name)


def layout_of(name: str) -> DatasetLayout:
    """Return the download layout of the file-backed data source `name`."""
    layout = data_source(name).layout
    if layout is None:
        raise ValueError(f"data source {name!r} is generated and has no files to locate")
    return layout


def validate_data_choices(cfg: ExplorecConfig) -> None:
    """Fail with a ConfigError when `data.name` or `split.name` names no registered source or split."""
    from explorec.data.splits import split_names

    if cfg.data.name not in SOURCES:
        raise ConfigError(f"data.name={cfg.data.name!r} is not one of {', '.join(source_names())}")
    if cfg.split.name not in split_names():
        raise ConfigError(f"split.name={cfg.split.name!r} is not one of {', '.join(split_names())}")
    if cfg.data.name == FILES:
        file_paths(cfg.data)  # data.interactions is required
    if cfg.split.name == "coat_random" and cfg.data.name != "coat":
        raise ConfigError(
            "split.name='coat_random' needs data=coat (it uses Coat's random-exposure test set)"
        )


def read_source(cfg: DataConfig, *, base_url: str = GROUPLENS_BASE_URL) -> RawDataset:
    """Locate (or download), read and validate the data source `cfg.name`, or generate it.

    Timestamps later than now + `cfg.timestamp_slack_s` are validation errors.
    """
    source = data_source(cfg.name)
    if source.generate is not None:
        return source.generate(cfg)
    assert source.read is not None and source.layout is not None
    folder = locate_dataset(source.layout, cfg, base_url=base_url)
    with timestamp_slack(cfg.timestamp_slack_s):
        return source.read(folder)


def year_from_title(titles: pd.Series) -> pd.Series:
    """Return the year of a '(1995)' title suffix as nullable Int32 (NA where there is none)."""
    return pd.to_numeric(titles.str.extract(_TITLE_YEAR, expand=False), errors="coerce").astype("Int32")


def items_frame(item_ids: pd.Series, titles: pd.Series, years: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """Assemble the item table with the documented columns and dtypes; overview and tags start empty."""
    frame = pd.DataFrame(
        {
            "item_id": np.asarray(item_ids, dtype=object),
            "title": np.asarray(titles, dtype=object),
            "year": pd.array(np.asarray(years, dtype=object), dtype="Int32"),
            "genres": np.asarray(genres, dtype=object),
            "overview": "",
            "tags": "",
        }
    )
    frame = frame.astype({name: "str" for name in ITEM_COLUMNS if name != "year"})
    return frame[list(ITEM_COLUMNS)]


# --- MovieLens 100K -------------------------------------------------------------------------------------


def read_ml100k(folder: Path) -> RawDataset:
    """Read MovieLens 100K: u.data (tab-separated), u.item (pipe-separated, latin-1), u.genre."""
    genre_names = read_ml100k_genres(folder / "u.genre")
    items = read_ml100k_items(folder / "u.item", genre_names)
    ratings = read_delimited_lines(
        folder / "u.data",
        separator="\t",
        columns=("user_id", "item_id", "rating", "timestamp"),
        encoding="utf-8",
    )
    interactions = validate_interactions(
        ratings,
        rating_range=ONE_TO_FIVE,
        known_items=items["item_id"],
        item_file=str(folder / "u.item"),
        names=DAT_RATING_NAMES,
    )
    files = tuple(folder / name for name in ("u.data", "u.item", "u.genre"))
    return RawDataset("ml100k", interactions, items, files, ONE_TO_FIVE)


def read_ml100k_genres(path: Path) -> list[str]:
    """Return the genre names of u.genre ordered by their index (name|index per line, blank lines ignored)."""
    table = read_delimited_lines(
        path, separator="|", columns=("genre", "index"), encoding="latin-1", blank_ok=True
    )
    raise_first(
        table.file,
        [
            empty_problem(table, ["genre"]),
            integer_id_problem(table, "index"),
            unique_id_problem(table, "index"),
        ],
    )
    order = table.frame["index"].astype(int).tolist()
    if sorted(order) != list(range(len(order))):
        raise DataValidationError(file=table.file, row=None, column="index", problem="indices are not 0..n-1")
    return [str(name) for _, name in sorted(zip(order, table.frame["genre"], strict=True))]


def read_ml100k_items(path: Path, genre_names: list[str]) -> pd.DataFrame:
    """Read u.item (latin-1): id, title, release date, genres from the 0/1 flags."""
    flag_columns = tuple(genre_names)
    table = read_delimited_lines(
        path, separator="|", columns=ML100K_ITEM_FIELDS + flag_columns, encoding="latin-1"
    )
    frame = table.frame
    flags_ok = frame[list(flag_columns)].isin(["0", "1"]).to_numpy()
    bad_flag = first_true(~flags_ok.all(axis=1))
    flag_problem = None
    if bad_flag is not None:
        column = flag_columns[int(np.argmin(flags_ok[bad_flag]))]
        flag_problem = Problem(int(table.lines[bad_flag]), column, "genre flag is not 0 or 1")
    dates = pd.to_datetime(frame["release_date"], format="%d-%b-%Y", errors="coerce")
    bad_date = first_true(dates.isna().to_numpy() & frame["release_date"].ne("").to_numpy())
    date_problem = None
    if bad_date is not None:
        value = frame["release_date"].iloc[bad_date]
        date_problem = Problem(
            int(table.lines[bad_date]), "release_date", f"{value!r} is not a DD-Mon-YYYY date"
        )
    raise_first(
        table.file,
        [
            empty_problem(table, ["item_id", "title"]),
            integer_id_problem(table, "item_id"),
            unique_id_problem(table, "item_id"),
            control_character_problem(table, "title"),
            flag_problem,
            date_problem,
        ],
    )
    flags = frame[list(flag_columns)].to_numpy() == "1"
    genres = ["|".join(name for name, on in zip(flag_columns, row, strict=True) if on) for row in flags]
    years = pd.Series(dates.dt.year, dtype="Int32").fillna(year_from_title(frame["title"]))
    return items_frame(frame["item_id"], frame["title"], years, pd.Series(genres))


# --- MovieLens 1M (`::` line format, latin-1) ----------------------------------------------------------


def read_ml1m(folder: Path) -> RawDataset:
    """Read MovieLens 1M: ratings.dat and movies.dat ('::'-separated, latin-1)."""
    movies = read_delimited_lines(
        folder / "movies.dat", separator="::", columns=("item_id", "title", "genres"), encoding="latin-1"
    )
    raise_first(
        movies.file,
        [
            empty_problem(movies, ["item_id", "title"]),
            integer_id_problem(movies, "item_id"),
            unique_id_problem(movies, "item_id"),
            control_character_problem(movies, "title"),
        ],
    )
    frame = movies.frame
    items = items_frame(frame["item_id"], frame["title"], year_from_title(frame["title"]), frame["genres"])
    ratings = read_delimited_lines(
        folder / "ratings.dat", separator="::", columns=INTERACTION_COLUMNS, encoding="latin-1"
    )
    interactions = validate_interactions(
        ratings,
        rating_range=ONE_TO_FIVE,
        known_items=items["item_id"],
        item_file=movies.file,
        names=DAT_RATING_NAMES,
    )
    files = (folder / "ratings.dat", folder / "movies.dat")
    return RawDataset("ml1m", interactions, items, files, ONE_TO_FIVE)


# --- MovieLens CSV releases (latest-small, 20M, 25M) ---------------------------------------------------


def read_movielens_movies(path: Path) -> tuple[TextTable, pd.DataFrame]:
    """Read a MovieLens movies.csv (movieId,title,genres; UTF-8) into the item columns."""
    table = read_csv_with_header(path, columns=("movieId", "title", "genres"))
    raise_first(
        table.file,
        [
            empty_problem(table, ["movieId", "title"]),
            integer_id_problem(table, "movieId"),
            unique_id_problem(table, "movieId"),
        ],
    )
    frame = table.frame
    genres = frame["genres"].where(frame["genres"] != NO_GENRES, "")
    items = items_frame(frame["movieId"], frame["title"], year_from_title(frame["title"]), genres)
    return table, items


def read_movielens_tags(path: Path, known_items: pd.Series, item_file: str) -> pd.Series:
    """Read a MovieLens tags.csv and return, per movieId, its tags joined as "t1|t2"."""
    table = read_csv_with_header(path, columns=("userId", "movieId", "tag", "timestamp"))
    _, timestamp_problem = parse_timestamp(table)
    raise_first(
        table.file,
        [
            empty_problem(table, ["userId", "movieId", "timestamp"]),
            integer_id_problem(table, "userId"),
            integer_id_problem(table, "movieId"),
            unknown_id_problem(table, "movieId", known_items, item_file),
            timestamp_problem,
        ],
    )
    return join_tags(table.frame["movieId"], table.frame["tag"])


def join_tags(item_ids: pd.Series, tags: pd.Series) -> pd.Series:
    """Join each item's distinct non-empty tags as 't1|t2', most frequent first (ties alphabetical)."""
    clean = tags.str.replace("|", " ", regex=False).str.strip()
    frame = pd.DataFrame({"item_id": item_ids.to_numpy(), "tag": clean.to_numpy()})
    frame = frame[frame["tag"] != ""]
    if frame.empty:
        return pd.Series(dtype="str")
    counts = frame.groupby(["item_id", "tag"], sort=False).size().rename("count").reset_index()
    counts = counts.sort_values(["item_id", "count", "tag"], ascending=[True, False, True])
    return counts.groupby("item_id", sort=False)["tag"].agg("|".join)


def read_movielens_ratings(
    path: Path, known_items: pd.Series, item_file: str, rating_range: tuple[float, float]
) -> pd.DataFrame:
    """Read and validate a MovieLens ratings.csv (userId,movieId,rating,timestamp)."""
    table = read_csv_with_header(path, columns=("userId", "movieId", "rating", "timestamp"))
    return validate_interactions(
        table,
        rating_range=rating_range,
        known_items=known_items,
        item_file=item_file,
        names=MOVIELENS_RATING_NAMES,
    )


def read_movielens_csv(folder: Path, *, name: str) -> RawDataset:
    """Read MovieLens 20M / 25M: ratings.csv, movies.csv, tags.csv (no overview text)."""
    movies_path, tags_path, ratings_path = (folder / f for f in ("movies.csv", "tags.csv", "ratings.csv"))
    _, items = read_movielens_movies(movies_path)
    tags = read_movielens_tags(tags_path, items["item_id"], str(movies_path))
    items["tags"] = items["item_id"].map(tags).fillna("").astype("str")
    interactions = read_movielens_ratings(ratings_path, items["item_id"], str(movies_path), HALF_TO_FIVE)
    return RawDataset(name, interactions, items, (ratings_path, movies_path, tags_path), HALF_TO_FIVE)


# --- MovieLens latest-small joined with TMDB 5000 ------------------------------------------------------


def read_ml_latest_small_tmdb(folder: Path) -> RawDataset:
    """Read ml-latest-small and join TMDB 5000 overviews (+ taglines) via links.csv tmdbId = tmdb id."""
    small = folder / "ml-latest-small"
    movies_path = small / "movies.csv"
    tmdb_path = folder / "tmdb-5000" / "tmdb_5000_movies.csv"
    _, items = read_movielens_movies(movies_path)
    tags = read_movielens_tags(small / "tags.csv", items["item_id"], str(movies_path))
    items["tags"] = items["item_id"].map(tags).fillna("").astype("str")
    links = read_links(small / "links.csv", items["item_id"], str(movies_path))
    tmdb = read_tmdb_overviews(tmdb_path)
    joined = links.merge(tmdb, left_on="tmdbId", right_on="id", how="left").set_index("movieId")
    overview = items["item_id"].map(joined["text"]).fillna("").astype("str")
    tmdb_year = items["item_id"].map(joined["year"]).astype("Int32")
    items["overview"] = overview
    items["year"] = items["year"].fillna(tmdb_year)
    interactions = read_movielens_ratings(
        small / "ratings.csv", items["item_id"], str(movies_path), HALF_TO_FIVE
    )
    with_overview = set(items.loc[items["overview"] != "", "item_id"])
    notes = {
        "items_with_overview": len(with_overview),
        "ratings_on_items_with_overview": int(interactions["item_id"].isin(with_overview).sum()),
    }
    files = (small / "ratings.csv", movies_path, small / "links.csv", small / "tags.csv", tmdb_path)
    return RawDataset("ml_latest_small_tmdb", interactions, items, files, HALF_TO_FIVE, notes=notes)


def read_links(path: Path, known_items: pd.Series, item_file: str) -> pd.DataFrame:
    """Read links.csv and return movieId → tmdbId for the rows that have a tmdbId."""
    table = read_csv_with_header(path, columns=("movieId", "imdbId", "tmdbId"))
    has_tmdb = table.frame["tmdbId"].str.strip() != ""
    linked = TextTable(
        table.path, table.frame[has_tmdb].reset_index(drop=True), table.lines[has_tmdb.to_numpy()]
    )
    raise_first(
        table.file,
        [
            empty_problem(table, ["movieId"]),
            integer_id_problem(table, "movieId"),
            unique_id_problem(table, "movieId"),
            unknown_id_problem(table, "movieId", known_items, item_file),
            integer_id_problem(linked, "tmdbId"),
        ],
    )
    return linked.frame[["movieId", "tmdbId"]]


def read_tmdb_overviews(path: Path) -> pd.DataFrame:
    """Read tmdb_5000_movies.csv (quoted, multi-line fields) into id, text (overview + tagline) and year."""
    scan_text_file(path, encoding="utf-8", separator=",")
    frame = pd.read_csv(path, dtype="str", keep_default_na=False, encoding="utf-8")
    check_required_columns(str(path), list(frame.columns), TMDB_REQUIRED)
    table = TextTable(path, frame, csv_record_lines(path, encoding="utf-8", n_records=len(frame)))
    raise_first(table.file, [integer_id_problem(table, "id"), unique_id_problem(table, "id")])
    overview = frame["overview"].str.strip()
    tagline = frame["tagline"].str.strip()
    text = overview.where(tagline.eq("") | overview.eq(""), overview + " " + tagline)
    year = pd.to_numeric(frame["release_date"].str.slice(0, 4), errors="coerce").astype("Int32")
    return pd.DataFrame({"id": frame["id"], "text": text, "year": year})


# --- Coat (dense matrices, no timestamps) --------------------------------------------------------------


def read_coat(folder: Path) -> RawDataset:
    """Read Coat: train.ascii (self-selected) → interactions, test.ascii (uniformly random) → fixed_test.

    Users are matrix rows and items matrix columns, both numbered from 1 as the lines of the files are.
    Coat has no timestamps: every `timestamp` is 0, so chronological splits are meaningless on it.
    Item text: title "coat <id>", genres the active one-hot feature names of item_features.ascii.
    """
    features = folder / "user_item_features"
    train = read_rating_matrix(folder / "train.ascii")
    test = read_rating_matrix(folder / "test.ascii")
    if train.shape != test.shape:
        raise DataValidationError(
            file=str(folder / "test.ascii"),
            row=None,
            column=None,
            problem=f"shape {test.shape} differs from train.ascii {train.shape}",
        )
    items = read_coat_items(
        features / "item_features.ascii", features / "item_features_map.txt", train.shape[1]
    )
    overlap = int(((train > 0) & (test > 0)).sum())
    files = (
        folder / "train.ascii",
        folder / "test.ascii",
        features / "item_features.ascii",
        features / "item_features_map.txt",
    )
    return RawDataset(
        "coat",
        matrix_to_interactions(train),
        items,
        files,
        ONE_TO_FIVE,
        fixed_test=matrix_to_interactions(test),
        notes={"train_test_overlap": overlap},
    )


def read_integer_matrix(path: Path, *, allowed: range, column_names: list[str] | None = None) -> np.ndarray:
    """Read a whitespace-separated integer matrix (CRLF allowed), checking each value lies in `allowed`.

    Errors name columns "item <j>" (1-based) unless `column_names` (which also fixes the width) is given.
    """
    scan_text_file(path, encoding="ascii")
    text = path.read_text(encoding="ascii")
    rows = [line.split() for line in text.replace("\r\n", "\n").split("\n")]
    while rows and not rows[-1]:
        rows.pop()
    width = len(column_names) if column_names is not None else (len(rows[0]) if rows else 0)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise DataValidationError(
                file=str(path),
                row=index + 1,
                column=None,
                problem=f"expected {width} values, found {len(row)}",
            )
    tokens = np.array(rows, dtype=str).reshape(len(rows), width)
    valid = np.isin(tokens, [str(value) for value in allowed])
    if not valid.all():
        row, col = map(int, np.argwhere(~valid)[0])
        raise DataValidationError(
            file=str(path),
            row=row + 1,
            column=column_names[col] if column_names is not None else f"item {col + 1}",
            problem=f"{tokens[row, col]!r} is not an integer in {allowed.start}..{allowed.stop - 1}",
        )
    return tokens.astype(np.int64)


def read_rating_matrix(path: Path) -> np.ndarray:
    """Read a Coat rating matrix: users × items, 0 = unobserved, 1–5 a rating."""
    return read_integer_matrix(path, allowed=range(0, 6))


def matrix_to_interactions(matrix: np.ndarray) -> pd.DataFrame:
    """Turn a dense rating matrix into interaction rows (1-based ids, timestamp 0)."""
    users, items = np.nonzero(matrix)
    frame = pd.DataFrame(
        {
            "user_id": (users + 1).astype(str),
            "item_id": (items + 1).astype(str),
            "rating": matrix[users, items].astype(np.float64),
            "timestamp": np.zeros(len(users), dtype=np.int64),
        }
    )
    return frame.astype({"user_id": "str", "item_id": "str"})


def read_coat_items(matrix_path: Path, map_path: Path, n_items: int) -> pd.DataFrame:
    """Build Coat's item table from the one-hot item features and their names."""
    names = [line.strip() for line in map_path.read_text(encoding="ascii").splitlines() if line.strip()]
    onehot = read_integer_matrix(matrix_path, allowed=range(0, 2), column_names=names)
    if len(onehot) != n_items:
        raise DataValidationError(
            file=str(matrix_path),
            row=None,
            column=None,
            problem=f"{len(onehot)} items, the ratings have {n_items}",
        )
    genres = ["|".join(name for name, on in zip(names, row, strict=True) if on) for row in onehot]
    ids = pd.Series([str(j + 1) for j in range(n_items)])
    titles = pd.Series([f"coat {j + 1}" for j in range(n_items)])
    years = pd.Series([pd.NA] * n_items, dtype="Int32")
    return items_frame(ids, titles, years, pd.Series(genres))


# --- The built-in sources ------------------------------------------------------------------------------


def generate_synthetic_source(cfg: DataConfig) -> RawDataset:
    """Generate the seeded synthetic data set of `cfg.synthetic`."""
    return generate_synthetic(cfg.synthetic)


ML100K_LAYOUT = movielens_layout(
    "MovieLens 100K", "ml-100k", ("u.data", "u.item", "u.genre"), "0e33842e24a9c977be4e0107933c0723"
)
ML_LATEST_SMALL_TMDB_LAYOUT = DatasetLayout(
    title="MovieLens latest-small + TMDB 5000",
    folder="ml-latest-small-tmdb",
    required=(
        "ml-latest-small/ratings.csv",
        "ml-latest-small/movies.csv",
        "ml-latest-small/links.csv",
        "ml-latest-small/tags.csv",
        "tmdb-5000/tmdb_5000_movies.csv",
    ),
    archive="ml-latest-small.zip",
    archive_target="ml-latest-small",
    manual=(
        "tmdb_5000_movies.csv cannot be downloaded automatically: get it from Kaggle's "
        "'TMDB 5000 Movie Dataset' (https://www.kaggle.com/datasets/tmdb/tmdb-movie-metadata) "
        "and put it at DIR/ml-latest-small-tmdb/tmdb-5000/tmdb_5000_movies.csv"
    ),
)
COAT_LAYOUT = DatasetLayout(
    title="Coat (Schnabel et al. 2016)",
    folder="coat",
    required=(
        "train.ascii",
        "test.ascii",
        "user_item_features/item_features.ascii",
        "user_item_features/item_features_map.txt",
    ),
    manual=(
        "Coat cannot be downloaded automatically: get coat.zip from "
        "https://www.cs.cornell.edu/~schnabts/mnar/"
    ),
)
ML1M_LAYOUT = movielens_layout(
    "MovieLens 1M", "ml-1m", ("ratings.dat", "movies.dat"), "c4d9eecfca2ab87c1945afe126590906"
)
ML20M_LAYOUT = movielens_layout(
    "MovieLens 20M", "ml-20m", ("ratings.csv", "movies.csv", "tags.csv"), "cd245b17a1ae2cc31bb14903e1204af3"
)
ML25M_LAYOUT = movielens_layout(
    "MovieLens 25M", "ml-25m", ("ratings.csv", "movies.csv", "tags.csv"), "6b51fb2759a8657d3bfcbfc42b592ada"
)


def read_ml20m(folder: Path) -> RawDataset:
    """Read MovieLens 20M (the CSV release)."""
    return read_movielens_csv(folder, name="ml20m")


def read_ml25m(folder: Path) -> RawDataset:
    """Read MovieLens 25M (the CSV release)."""
    return read_movielens_csv(folder, name="ml25m")


BUILT_IN_SOURCES = (
    DataSource("ml100k", ML100K_LAYOUT, read_ml100k),
    DataSource("ml_latest_small_tmdb", ML_LATEST_SMALL_TMDB_LAYOUT, read_ml_latest_small_tmdb),
    DataSource("coat", COAT_LAYOUT, read_coat),
    DataSource("ml1m", ML1M_LAYOUT, read_ml1m),
    DataSource("ml20m", ML20M_LAYOUT, read_ml20m),
    DataSource("ml25m", ML25M_LAYOUT, read_ml25m),
    DataSource("synthetic", generate=generate_synthetic_source),
    DataSource(FILES, generate=read_files_source, inputs=files_source_inputs),
)
SOURCES: Registry[DataSource] = Registry("data source", ((src.name, src) for src in BUILT_IN_SOURCES))
"""Every data source by name: the one list of data-source names."""
