"""Every validation rule raises DataValidationError naming the right file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorec.data.sources import read_coat, read_ml100k, read_ml_latest_small_tmdb, read_movielens_csv
from explorec.data.validation import read_csv_with_header, read_delimited_lines
from explorec.errors import DataValidationError

GENRES = ("unknown", "Action", "Comedy")
ML100K_RATINGS = ["1\t1\t5\t881250949", "1\t2\t3\t881250950", "2\t1\t4\t881250951", "2\t3\t1\t881250952"]
MOVIES_CSV = [
    "movieId,title,genres",
    "1,Toy Story (1995),Animation",
    "2,Heat (1995),Action",
    "3,Up (2009),Comedy",
]
RATINGS_CSV = [
    "userId,movieId,rating,timestamp",
    "1,1,4.0,964982703",
    "1,2,3.5,964982704",
    "2,1,0.5,964982705",
    "2,3,5.0,964982706",
]
TAGS_CSV = ["userId,movieId,tag,timestamp", "1,1,funny,1445714994"]


def write_ml100k(folder: Path, *, ratings: list[str] | None = None, items: list[str] | None = None) -> Path:
    """Write a tiny ml-100k folder; the item lines default to three valid films."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{name}|{index}\n" for index, name in enumerate(GENRES)) + "\n")
    default_items = [
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1",
        "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|0",
        "3|Four Rooms (1995)|01-Jan-1995||http://x|0|0|1",
    ]
    (folder / "u.item").write_bytes(("\n".join(items or default_items) + "\n").encode("latin-1"))
    (folder / "u.data").write_text("\n".join(ratings or ML100K_RATINGS) + "\n")
    return folder


def write_movielens_csv(
    folder: Path,
    *,
    ratings: list[str] | None = None,
    movies: list[str] | None = None,
    tags: list[str] | None = None,
) -> Path:
    """Write a tiny ml-20m-style folder (ratings.csv, movies.csv, tags.csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text("\n".join(ratings or RATINGS_CSV) + "\n")
    (folder / "movies.csv").write_text("\n".join(movies or MOVIES_CSV) + "\n")
    (folder / "tags.csv").write_text("\n".join(tags or TAGS_CSV) + "\n")
    return folder


def assert_problem(
    error: pytest.ExceptionInfo[DataValidationError], file: str, row: int | None, column: str | None
):
    """Assert that a validation error names the expected file name, row and column."""
    assert Path(error.value.file).name == file
    assert error.value.row == row
    assert error.value.column == column
    assert f"row {row}" in str(error.value) if row is not None else True


def test_valid_tiny_files_pass(tmp_path: Path) -> None:
    """The unmodified fixtures are valid, so every failure below comes from the one broken value."""
    assert len(read_ml100k(write_ml100k(tmp_path / "a")).interactions) == 4
    assert len(read_movielens_csv(write_movielens_csv(tmp_path / "b"), name="ml20m").interactions) == 4


def test_csv_missing_column_is_reported_on_the_header_line(tmp_path: Path) -> None:
    """A header without `timestamp` fails on line 1, column 'timestamp'."""
    ratings = ["userId,movieId,rating", "1,1,4.0"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 1, "timestamp")
    assert "missing" in error.value.problem


def test_csv_extra_column_is_reported_on_the_header_line(tmp_path: Path) -> None:
    """An unexpected column fails on line 1 naming that column."""
    ratings = ["userId,movieId,rating,timestamp,source", "1,1,4.0,964982703,web"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 1, "source")


def test_line_format_with_a_missing_field_names_the_missing_column(tmp_path: Path) -> None:
    """A u.data line with three fields fails on that line, column 'timestamp'."""
    ratings = [*ML100K_RATINGS[:2], "2\t1\t4", ML100K_RATINGS[3]]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 3, "timestamp")
    assert "found 3" in error.value.problem


def test_line_format_with_an_extra_field_fails_on_its_line(tmp_path: Path) -> None:
    """A u.data line with five fields fails on that line."""
    ratings = [ML100K_RATINGS[0], ML100K_RATINGS[1] + "\t9"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 2, None)
    assert "found 5" in error.value.problem


def test_blank_line_in_line_format_is_a_wrong_field_count(tmp_path: Path) -> None:
    """An empty line inside u.data is reported on its own line number."""
    ratings = [ML100K_RATINGS[0], "", ML100K_RATINGS[1]]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 2, "user_id")


def test_non_numeric_user_id_in_csv(tmp_path: Path) -> None:
    """A non-integer user id is reported with the CSV line number (header = line 1)."""
    ratings = [*RATINGS_CSV[:3], "abc,1,4.0,964982710"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 4, "userId")


def test_non_numeric_rating_in_line_format(tmp_path: Path) -> None:
    """A rating that is not a number is reported on its u.data line."""
    ratings = [*ML100K_RATINGS[:3], "2\t3\tfive\t881250952"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 4, "rating")
    assert "not a number" in error.value.problem


@pytest.mark.parametrize(("value", "problem"), [("", "empty"), ("nan", "not a number")])
def test_empty_or_nan_rating(tmp_path: Path, value: str, problem: str) -> None:
    """An empty or NaN rating is reported on its line."""
    ratings = [*RATINGS_CSV[:2], f"1,2,{value},964982704"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 3, "rating")
    assert problem in error.value.problem


def test_rating_outside_range_in_ml100k(tmp_path: Path) -> None:
    """ML-100K ratings lie in [1, 5]: a 6 fails."""
    ratings = [ML100K_RATINGS[0], "1\t2\t6\t881250950"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 2, "rating")
    assert "outside [1, 5]" in error.value.problem


def test_rating_below_half_star_in_movielens_csv(tmp_path: Path) -> None:
    """MovieLens CSV ratings lie in [0.5, 5]: a 0.0 fails."""
    ratings = [*RATINGS_CSV[:4], "2,3,0.0,964982706"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 5, "rating")


@pytest.mark.parametrize("value", ["yesterday", "-5", "12.5"])
def test_unparseable_or_negative_timestamp(tmp_path: Path, value: str) -> None:
    """A timestamp that is not a non-negative integer of seconds fails on its line."""
    ratings = [ML100K_RATINGS[0], f"1\t2\t3\t{value}"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 2, "timestamp")


def test_duplicate_user_item_timestamp_points_at_the_repeat(tmp_path: Path) -> None:
    """The second copy of a (user, item, timestamp) row is reported and the first is named."""
    ratings = [*ML100K_RATINGS, "1\t2\t4\t881250950"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 5, "user_id")
    assert "line 2" in error.value.problem


def test_same_user_item_at_different_times_is_allowed(tmp_path: Path) -> None:
    """Only identical (user, item, timestamp) triples are duplicates."""
    ratings = [*ML100K_RATINGS, "1\t2\t4\t881250999"]
    assert len(read_ml100k(write_ml100k(tmp_path, ratings=ratings)).interactions) == 5


def test_unknown_item_id_in_ratings(tmp_path: Path) -> None:
    """A rated item missing from u.item is reported on its u.data line."""
    ratings = [*ML100K_RATINGS[:2], "2\t99\t4\t881250951"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 3, "item_id")
    assert "'99'" in error.value.problem


def test_first_problem_by_line_is_reported(tmp_path: Path) -> None:
    """With a bad rating on line 4 and a bad user on line 3, line 3 is reported."""
    ratings = [ML100K_RATINGS[0], ML100K_RATINGS[1], "x\t1\t4\t881250951", "2\t3\t9\t881250952"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ratings))
    assert_problem(error, "u.data", 3, "user_id")


def test_invalid_utf8_in_csv_names_line_and_column(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in movies.csv are reported on their line, in the title column."""
    folder = write_movielens_csv(tmp_path)
    (folder / "movies.csv").write_bytes(
        b"movieId,title,genres\n1,Toy Story (1995),Animation\n2,Mis\xe9rables (1995),Drama\n"
    )
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(folder, name="ml20m")
    assert_problem(error, "movies.csv", 3, "title")
    assert "utf-8" in error.value.problem


def test_control_character_in_latin1_title(tmp_path: Path) -> None:
    """Latin-1 decodes every byte, so a C1 control character in a u.item title is rejected."""
    items = [
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1",
        "2|Gold\x85Eye (1995)|01-Jan-1995||http://x|0|1|0",
    ]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ML100K_RATINGS[:1], items=items))
    assert_problem(error, "u.item", 2, "title")
    assert "U+0085" in error.value.problem


def test_bad_release_date_in_u_item(tmp_path: Path) -> None:
    """A release date that is not DD-Mon-YYYY is reported in column 'release_date'."""
    items = ["1|Toy Story (1995)|1995/01/01||http://x|0|0|1"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ML100K_RATINGS[:1], items=items))
    assert_problem(error, "u.item", 1, "release_date")


def test_genre_flag_that_is_not_binary(tmp_path: Path) -> None:
    """A genre flag other than 0/1 names the genre column."""
    items = ["1|Toy Story (1995)|01-Jan-1995||http://x|0|2|1"]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ML100K_RATINGS[:1], items=items))
    assert_problem(error, "u.item", 1, "Action")


def test_duplicate_item_id_in_movies_csv(tmp_path: Path) -> None:
    """An item id listed twice in movies.csv is reported at its second line."""
    movies = [*MOVIES_CSV, "2,Heat again (1995),Action"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, movies=movies), name="ml20m")
    assert_problem(error, "movies.csv", 5, "movieId")


def test_unknown_movie_in_tags_csv(tmp_path: Path) -> None:
    """A tag on a movie missing from movies.csv is reported in tags.csv."""
    tags = [*TAGS_CSV, "1,42,scary,1445714995"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, tags=tags), name="ml20m")
    assert_problem(error, "tags.csv", 3, "movieId")


def test_blank_line_in_csv_is_reported_on_its_line(tmp_path: Path) -> None:
    """An empty line between CSV rows is an empty value on that line."""
    ratings = [*RATINGS_CSV[:2], "", *RATINGS_CSV[2:]]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 3, "userId")
    assert "empty" in error.value.problem


def test_csv_row_with_an_extra_field(tmp_path: Path) -> None:
    """A CSV row with more fields than the header fails on its line."""
    ratings = [*RATINGS_CSV[:3], "2,1,0.5,964982705,extra"]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 4, None)
    assert "expected 4 fields" in error.value.problem


def test_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    """A quoted field spanning two lines shifts the line numbers of later rows as an editor shows them."""
    path = tmp_path / "movies.csv"
    path.write_text(
        'movieId,title,genres\n1,"Two\nLines (1999)",Drama\n2,Heat (1995),Action\nx,Bad (2000),Drama\n'
    )
    table = read_csv_with_header(path, columns=("movieId", "title", "genres"))
    assert table.lines.tolist() == [2, 4, 5]
    assert table.frame["title"].iloc[0] == "Two\nLines (1999)"


def test_crlf_and_trailing_blank_lines(tmp_path: Path) -> None:
    """CRLF line ends are stripped; trailing blank lines are skipped only when allowed."""
    path = tmp_path / "u.genre"
    path.write_bytes(b"unknown|0\r\nAction|1\r\n\r\n")
    table = read_delimited_lines(
        path, separator="|", columns=("genre", "index"), encoding="latin-1", blank_ok=True
    )
    assert table.frame["index"].tolist() == ["0", "1"]
    assert table.lines.tolist() == [1, 2]
    with pytest.raises(DataValidationError) as error:
        read_delimited_lines(path, separator="|", columns=("genre", "index"), encoding="latin-1")
    assert error.value.row == 3


def test_coat_matrix_value_out_of_range(tmp_path: Path) -> None:
    """A Coat rating of 7 is reported on its matrix line and item column."""
    folder = tmp_path / "coat"
    (folder / "user_item_features").mkdir(parents=True)
    (folder / "train.ascii").write_bytes(b"0 1 5\r\n2 0 7\r\n")
    (folder / "test.ascii").write_bytes(b"1 0 0\r\n0 3 0\r\n")
    (folder / "user_item_features" / "item_features.ascii").write_bytes(b"1 0\r\n0 1\r\n1 0\r\n")
    (folder / "user_item_features" / "item_features_map.txt").write_bytes(b"color:red\r\ncolor:blue")
    with pytest.raises(DataValidationError) as error:
        read_coat(folder)
    assert_problem(error, "train.ascii", 2, "item 3")


def test_tmdb_without_overview_column(tmp_path: Path) -> None:
    """The TMDB file must have an `overview` column (line 1)."""
    folder = tmp_path / "ml-latest-small-tmdb"
    small = folder / "ml-latest-small"
    write_movielens_csv(small)
    (small / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n2,0113277,949\n3,1049413,\n")
    (folder / "tmdb-5000").mkdir()
    (folder / "tmdb-5000" / "tmdb_5000_movies.csv").write_text("id,title,tagline,release_date\n862,Toy,,\n")
    with pytest.raises(DataValidationError) as error:
        read_ml_latest_small_tmdb(folder)
    assert_problem(error, "tmdb_5000_movies.csv", 1, "overview")


def test_lone_carriage_return_in_title_is_a_control_character(tmp_path: Path) -> None:
    """A bare CR inside a u.item title does not split the line; it is reported as U+000D on its line."""
    items = [
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1",
        "2|Gold\rEye (1995)|01-Jan-1995||http://x|0|1|0",
    ]
    with pytest.raises(DataValidationError) as error:
        read_ml100k(write_ml100k(tmp_path, ratings=ML100K_RATINGS[:1], items=items))
    assert_problem(error, "u.item", 2, "title")
    assert "U+000D" in error.value.problem


@pytest.mark.parametrize(
    ("line", "column"), [("0x2,1,4.0,964982710", "userId"), ("2,1, 4.0,964982710", "rating")]
)
def test_values_that_only_lenient_parsers_accept_are_rejected(tmp_path: Path, line: str, column: str) -> None:
    """A hexadecimal id or a padded rating is not a clean value: reported on its line."""
    ratings = [*RATINGS_CSV[:2], line]
    with pytest.raises(DataValidationError) as error:
        read_movielens_csv(write_movielens_csv(tmp_path, ratings=ratings), name="ml20m")
    assert_problem(error, "ratings.csv", 3, column)


def test_first_uncastable_finds_the_row_by_bisection(tmp_path: Path) -> None:
    """The last-resort locator names the first value pyarrow cannot cast."""
    from explorec.data.validation import first_uncastable

    path = tmp_path / "ratings.csv"
    path.write_text("\n".join([*RATINGS_CSV, "3,1,4.0,9649827x"]) + "\n")
    table = read_csv_with_header(path, columns=("userId", "movieId", "rating", "timestamp"))
    names = {"user_id": "userId", "item_id": "movieId", "rating": "rating", "timestamp": "timestamp"}
    problem = first_uncastable(table, names)
    assert problem is not None
    assert (problem.row, problem.column) == (6, "timestamp")
