"""The generic source `data=files`: your own interactions file (CSV or Parquet), an optional items file and
an optional users file, their columns named in `data.columns` (docs/design.md §2).

Files are read with pyarrow in record batches of the mapped columns only, so reading costs time linear in
the rows and memory for those columns alone. Every value is checked before anything is written; the first
problem raises a DataValidationError naming the file, the row as a person finds it (a CSV's header is line
1; a Parquet file's rows are numbered from 1) and the column.

The rules:
- interactions: user and item ids are any non-empty text (a number is read as its text); a timestamp is unix
  seconds or an ISO 8601 date / time (no zone: UTC), never negative; the optional rating or weight is a finite
  number (without one every interaction counts 1.0); a repeated (user, item, timestamp) is an error, as in
  every source.
- items file: ids non-empty and unique. With an items file, an interaction whose item it does not list is an
  error rather than dropped, so a mistyped id cannot silently shrink the data; listed items nobody
  interacted with stay out of the catalogue, as in every source.
- users file: ids non-empty and unique; an interaction whose user it does not list is an error.
- item text: preprocessing builds `title (year) | categories | text columns` as it does for MovieLens
  (`build_item_text`); an item without a title (no items file, or an empty title) is titled "item <id>".
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from explorec.config import DataConfig, FileColumnsConfig, resolve
from explorec.data.raw import ITEM_COLUMNS, RawDataset
from explorec.data.validation import (
    CONTROL_CHARACTERS,
    csv_record_lines,
    has_duplicate_rows,
    scan_text_file,
)
from explorec.errors import ConfigError, DataNotFoundError, DataValidationError

FILES = "files"
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_BLOCK_BYTES = 1 << 24  # bytes of CSV text per record batch
PARQUET_BATCH_ROWS = 1 << 18
UNIX_SECONDS = r"^\s*-?[0-9]{1,18}\s*$"
ENCODING = "utf-8"


@dataclass(frozen=True)
class TableFile:
    """One of your files: its path, the setting naming it, its CSV delimiter (None: Parquet), its columns."""

    path: Path
    setting: str
    delimiter: str | None
    header: tuple[str, ...]

    @property
    def file(self) -> str:
        """The file name used in error messages."""
        return str(self.path)

    def line_of(self, index: int) -> int:
        """Return the line (CSV, header = 1) or 1-based row (Parquet) of the 0-based record `index`."""
        if self.delimiter is None:
            return index + 1
        return int(csv_record_lines(self.path, encoding=ENCODING, n_records=index + 1)[index])

    def fail(self, index: int | None, column: str | None, problem: str) -> DataValidationError:
        """Return the validation error of record `index` (None: the whole file) in `column`."""
        row = None if index is None else self.line_of(index)
        return DataValidationError(file=self.file, row=row, column=column, problem=problem)


def file_paths(cfg: DataConfig) -> dict[str, Path]:
    """Return the configured files by setting (interactions, then items and users where set), resolved."""
    if cfg.interactions is None:
        raise ConfigError("data=files needs data.interactions=<a CSV or Parquet file of interactions>")
    named = {"interactions": cfg.interactions, "items": cfg.items, "users": cfg.users}
    return {setting: resolve(value) for setting, value in named.items() if value is not None}


def files_source_inputs(cfg: DataConfig) -> tuple[Path, ...]:
    """Return every file `data=files` reads (the fingerprint's inputs); a missing one is an error."""
    paths = file_paths(cfg)
    for setting, path in paths.items():
        if not path.is_file():
            raise DataNotFoundError(f"{path}: no such file (data.{setting})")
    return tuple(paths.values())


def open_table(path: Path, setting: str) -> TableFile:
    """Check that `path` is a readable CSV, TSV or Parquet file and read its column names."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such file (data.{setting})")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as error:
            raise DataValidationError(
                file=str(path), row=None, column=None, problem=f"not a readable Parquet file: {error}"
            ) from None
        return TableFile(path, setting, None, tuple(names))
    if suffix not in CSV_DELIMITERS:
        raise DataValidationError(
            file=str(path),
            row=None,
            column=None,
            problem=f"unknown format {suffix!r}: use .csv, .tsv or .parquet",
        )
    delimiter = CSV_DELIMITERS[suffix]
    scan_text_file(path, encoding=ENCODING)
    with path.open(encoding=ENCODING, newline="") as handle:
        header = next(csv.reader(handle, delimiter=delimiter), [])
    names = [name.removeprefix("\ufeff").strip() if i == 0 else name.strip() for i, name in enumerate(header)]
    if not any(names):
        raise DataValidationError(file=str(path), row=1, column=None, problem="no header line")
    return TableFile(path, setting, delimiter, tuple(names))


def require_columns(table: TableFile, wanted: dict[str, str]) -> None:
    """Fail when the file lacks a mapped column; `wanted` maps each column to the setting that named it."""
    for name, setting in wanted.items():
        if name not in table.header:
            raise DataValidationError(
                file=table.file,
                row=1 if table.delimiter is not None else None,
                column=name,
                problem=f"column missing (set by {setting}); the file has {list(table.header)}",
            )


def read_batches(table: TableFile, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Yield the file's `columns` in record batches (CSV values as text, Parquet values as stored)."""
    if table.delimiter is None:
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(table.path).iter_batches(
            batch_size=PARQUET_BATCH_ROWS, columns=list(dict.fromkeys(columns))
        )
        return
    yield from _csv_batches(table, list(dict.fromkeys(columns)))


def _csv_batches(table: TableFile, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Yield a CSV's `columns` as text, turning a ragged line into a validation error naming it."""
    from pyarrow import csv as arrow_csv

    ragged: list[tuple[int, int, int]] = []

    def on_invalid(row: arrow_csv.InvalidRow) -> str:
        ragged.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    try:
        reader = arrow_csv.open_csv(
            table.path,
            read_options=arrow_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=arrow_csv.ParseOptions(
                delimiter=table.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=arrow_csv.ConvertOptions(
                include_columns=columns,
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        yield from reader
    except pa.ArrowInvalid as error:
        if ragged:
            line, expected, found = ragged[0]
            raise DataValidationError(
                file=table.file,
                row=line if line > 0 else None,
                column=None,
                problem=f"expected {expected} fields, found {found}",
            ) from None
        raise DataValidationError(
            file=table.file, row=None, column=None, problem=f"unreadable CSV: {error}"
        ) from None


def _first(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Return the position of the first true value of a boolean array (nulls count as false), or None."""
    position = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if position < 0 else int(position)


@dataclass(frozen=True)
class Finding:
    """The first problem of one check inside a batch: its 0-based index in the batch, column and text."""

    index: int
    column: str
    problem: str


def parse_ids(values: pa.Array, column: str) -> tuple[pa.Array, Finding | None]:
    """Return ids as whitespace-trimmed text, and the first one that is missing or empty."""
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    bad = _first(pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_length(text), 0)))
    return text, None if bad is None else Finding(bad, column, "empty id")


def parse_seconds(values: pa.Array, column: str) -> tuple[np.ndarray, Finding | None]:
    """Return unix seconds from integers, dates / times, or text (unix seconds or ISO 8601, no zone = UTC)."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        zone = kind.tz if pa.types.is_timestamp(kind) else None
        seconds = pc.cast(pc.cast(values, pa.timestamp("s", tz=zone), safe=False), pa.int64())
        filled = seconds.fill_null(0).to_numpy(zero_copy_only=False)
        return filled, _seconds_problem(filled, values, column)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        seconds = np.where(whole, numbers, 0).astype(np.int64)
        bad = _first(pa.array(~whole))
        if bad is not None:
            return seconds, Finding(bad, column, f"{values[bad].as_py()!r} is not a unix timestamp")
        return seconds, _seconds_problem(seconds, values, column)
    text = pc.cast(values, pa.string()).to_pandas()
    integer = text.str.fullmatch(UNIX_SECONDS).fillna(False).to_numpy(dtype=bool)
    seconds = np.zeros(len(text), dtype=np.int64)
    seconds[integer] = text[integer].astype("int64").to_numpy()
    stamps = pd.to_datetime(text[~integer], format="ISO8601", utc=True, errors="coerce")
    parsed = stamps.notna().to_numpy()
    seconds[~integer] = np.where(
        parsed, stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[s]").astype(np.int64), 0
    )
    readable = integer.copy()
    readable[~integer] = parsed
    bad = _first(pa.array(~readable))
    if bad is not None:
        problem = f"{text.iloc[bad]!r} is neither unix seconds nor an ISO 8601 date / time"
        return seconds, Finding(bad, column, problem)
    return seconds, _seconds_problem(seconds, values, column)


def _seconds_problem(seconds: np.ndarray, values: pa.Array, column: str) -> Finding | None:
    """Return the first missing or negative (before 1970) timestamp."""
    bad = _first(pc.or_kleene(pc.is_null(values), pa.array(seconds < 0)))
    if bad is None:
        return None
    shown = values[bad].as_py()
    return Finding(bad, column, "missing timestamp" if shown is None else f"{shown!r} is before 1970")


def parse_ratings(values: pa.Array, column: str) -> tuple[np.ndarray, Finding | None]:
    """Return ratings (or weights) as float64, and the first one that is missing, unparsable or not finite."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        numbers = pd.to_numeric(pc.cast(values, pa.string()).to_pandas(), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = _first(pa.array(~np.isfinite(numbers)))
    if bad is None:
        return numbers, None
    return numbers, Finding(bad, column, f"{values[bad].as_py()!r} is not a number")


def unknown_problem(ids: pa.Array, known: pa.Array | None, column: str, listed_in: str) -> Finding | None:
    """Return the first id that the items (or users) file does not list."""
    if known is None:
        return None
    bad = _first(pc.invert(pc.is_in(ids, value_set=known)))
    return (
        None if bad is None else Finding(bad, column, f"id {ids[bad].as_py()!r} is not listed in {listed_in}")
    )


@dataclass(frozen=True)
class Interactions:
    """The interactions read from a file: ids as text, unix seconds, ratings (1.0 without a rating column)."""

    users: pa.ChunkedArray
    items: pa.ChunkedArray
    timestamps: np.ndarray
    ratings: np.ndarray

    def frame(self) -> pd.DataFrame:
        """Return them with the documented interaction columns and dtypes."""
        return pd.DataFrame(
            {
                "user_id": self.users.to_pandas().astype("str"),
                "item_id": self.items.to_pandas().astype("str"),
                "rating": self.ratings,
                "timestamp": self.timestamps,
            }
        )


def read_interactions(
    table: TableFile,
    columns: FileColumnsConfig,
    *,
    known_items: tuple[pa.Array, str] | None = None,
    known_users: tuple[pa.Array, str] | None = None,
) -> Interactions:
    """Read and check the interactions file batch by batch; `known_*` are (ids, the file that lists them)."""
    wanted = {columns.user: "data.columns.user", columns.item: "data.columns.item"}
    wanted[columns.timestamp] = "data.columns.timestamp"
    if columns.rating is not None:
        wanted[columns.rating] = "data.columns.rating"
    require_columns(table, wanted)
    users, items, stamps, ratings = [], [], [], []
    offset = 0
    for batch in read_batches(table, list(wanted)):
        user_ids, user_problem = parse_ids(batch.column(columns.user), columns.user)
        item_ids, item_problem = parse_ids(batch.column(columns.item), columns.item)
        seconds, time_problem = parse_seconds(batch.column(columns.timestamp), columns.timestamp)
        findings = [user_problem, item_problem, time_problem]
        if columns.rating is not None:
            values, rating_problem = parse_ratings(batch.column(columns.rating), columns.rating)
            findings.append(rating_problem)
        else:
            values = np.ones(batch.num_rows, dtype=np.float64)
        if known_items is not None:
            findings.append(unknown_problem(item_ids, known_items[0], columns.item, known_items[1]))
        if known_users is not None:
            findings.append(unknown_problem(user_ids, known_users[0], columns.user, known_users[1]))
        found = [finding for finding in findings if finding is not None]
        if found:
            first = min(found, key=lambda finding: finding.index)
            raise table.fail(offset + first.index, first.column, first.problem)
        users.append(user_ids)
        items.append(item_ids)
        stamps.append(seconds)
        ratings.append(values)
        offset += batch.num_rows
    if offset == 0:
        raise table.fail(None, None, "no interactions: the file has no rows")
    read = Interactions(
        pa.chunked_array(users, pa.string()),
        pa.chunked_array(items, pa.string()),
        np.concatenate(stamps).astype(np.int64),
        np.concatenate(ratings).astype(np.float64),
    )
    check_duplicates(table, read, columns)
    return read


def check_duplicates(table: TableFile, read: Interactions, columns: FileColumnsConfig) -> None:
    """Fail on the first row that repeats an earlier row's (user, item, timestamp)."""
    user_codes = pc.dictionary_encode(read.users).combine_chunks().indices.to_numpy()
    item_codes = pc.dictionary_encode(read.items).combine_chunks().indices.to_numpy()
    if not has_duplicate_rows(user_codes, item_codes, read.timestamps):
        return
    keys = pd.DataFrame({"user": user_codes, "item": item_codes, "timestamp": read.timestamps})
    repeated = int(np.argmax(keys.duplicated(keep="first").to_numpy()))
    original = int(np.argmax((keys == keys.iloc[repeated]).all(axis=1).to_numpy()))
    names = f"{columns.user}, {columns.item}, {columns.timestamp}"
    raise table.fail(repeated, columns.user, f"duplicate ({names}) of line {table.line_of(original)}")


def read_text_columns(table: TableFile, columns: Sequence[str]) -> pd.DataFrame:
    """Read whole columns of a (catalogue-sized) file as text, missing values as ''."""
    parts = [
        pa.Table.from_batches([batch]).select(list(dict.fromkeys(columns)))
        for batch in read_batches(table, columns)
    ]
    frame = pa.concat_tables(parts).to_pandas() if parts else pd.DataFrame(columns=list(columns))
    return pd.DataFrame(
        {name: frame[name].astype("str").where(frame[name].notna(), "") for name in frame.columns}
    )


def unique_ids(table: TableFile, ids: pd.Series, column: str) -> None:
    """Fail on the first row whose id is empty or repeats an earlier row's id."""
    empty = ids.eq("").to_numpy()
    repeated = ids.duplicated(keep="first").to_numpy() & ~empty
    bad = empty | repeated
    if not bad.any():
        return
    index = int(np.argmax(bad))
    if empty[index]:
        raise table.fail(index, column, "empty id")
    earlier = table.line_of(int(np.argmax(ids.eq(ids.iloc[index]).to_numpy())))
    raise table.fail(index, column, f"id {ids.iloc[index]!r} appears twice (first on line {earlier})")


def read_items(table: TableFile, columns: FileColumnsConfig) -> pd.DataFrame:
    """Read the items file into the documented item columns (title, year, genres, overview)."""
    key = columns.items_item or columns.item
    wanted = {key: "data.columns.items_item" if columns.items_item else "data.columns.item"}
    for setting, names in (("title", [columns.title]), ("year", [columns.year])):
        wanted.update({name: f"data.columns.{setting}" for name in names if name is not None})
    wanted.update(dict.fromkeys(columns.text, "data.columns.text"))
    wanted.update(dict.fromkeys(columns.categories, "data.columns.categories"))
    require_columns(table, wanted)
    frame = read_text_columns(table, list(wanted))
    ids = frame[key].str.strip()
    unique_ids(table, ids, key)
    titles = frame[columns.title] if columns.title is not None else pd.Series("", index=frame.index)
    control = titles.str.contains(CONTROL_CHARACTERS.pattern, regex=True).to_numpy(dtype=bool)
    if control.any():
        raise table.fail(int(np.argmax(control)), columns.title, "control character in the title")
    titles = titles.where(titles.str.strip() != "", "item " + ids)
    return _items_frame(ids, titles, _years(table, frame, columns.year), frame, columns)


def _years(table: TableFile, frame: pd.DataFrame, column: str | None) -> pd.Series:
    """Return the year column as nullable Int32 (empty: NA); a value that is not a whole number fails."""
    if column is None:
        return pd.Series(pd.NA, index=frame.index, dtype="Int32")
    text = frame[column].str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    bad = (text != "") & ~(numbers.notna() & (numbers == numbers.round()))
    if bad.any():
        index = int(np.argmax(bad.to_numpy()))
        raise table.fail(index, column, f"{text.iloc[index]!r} is not a year")
    return numbers.astype("Int32")


def _joined_categories(frame: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """Join the categorical columns (values "A|B") as "A|B|C"; repeats and empty values dropped."""
    if not names:
        return pd.Series("", index=frame.index)
    joined = frame[list(names)].agg("|".join, axis=1)
    return joined.map(lambda value: "|".join(dict.fromkeys(p.strip() for p in value.split("|") if p.strip())))


def _items_frame(
    ids: pd.Series, titles: pd.Series, years: pd.Series, frame: pd.DataFrame, columns: FileColumnsConfig
) -> pd.DataFrame:
    """Assemble the item table: text columns joined by a space as the overview, categories as genres."""
    if columns.text:
        overview = frame[list(columns.text)].agg(" ".join, axis=1).str.split().str.join(" ")
    else:
        overview = pd.Series("", index=frame.index)
    items = pd.DataFrame(
        {
            "item_id": ids.to_numpy(dtype=object),
            "title": titles.to_numpy(dtype=object),
            "year": years.to_numpy(),
            "genres": _joined_categories(frame, columns.categories).to_numpy(dtype=object),
            "overview": overview.to_numpy(dtype=object),
            "tags": "",
        }
    )
    items["year"] = items["year"].astype("Int32")
    return items.astype({name: "str" for name in ITEM_COLUMNS if name != "year"})[list(ITEM_COLUMNS)]


def untitled_items(item_ids: pa.ChunkedArray) -> pd.DataFrame:
    """Return the item table of items known only by id: titled "item <id>", no other text."""
    ids = pd.Series(pc.unique(item_ids).to_pandas(), dtype="str")
    frame = pd.DataFrame(index=ids.index)
    return _items_frame(
        ids, "item " + ids, pd.Series(pd.NA, index=ids.index, dtype="Int32"), frame, FileColumnsConfig()
    )


def read_users(table: TableFile, columns: FileColumnsConfig) -> pa.Array:
    """Read and check the users file's id column; return the listed ids."""
    key = columns.users_user or columns.user
    require_columns(table, {key: "data.columns.users_user" if columns.users_user else "data.columns.user"})
    ids = read_text_columns(table, [key])[key].str.strip()
    unique_ids(table, ids, key)
    return pa.array(ids.to_numpy(dtype=object), pa.string())


def read_files_source(cfg: DataConfig) -> RawDataset:
    """Read, check and assemble `data=files`: interactions, then the optional items and users files."""
    paths = file_paths(cfg)
    columns = cfg.columns
    tables = {setting: open_table(path, setting) for setting, path in paths.items()}
    items = read_items(tables["items"], columns) if "items" in tables else None
    known_items = None
    if items is not None:
        known_items = (pa.array(items["item_id"].to_numpy(dtype=object), pa.string()), tables["items"].file)
    known_users = (read_users(tables["users"], columns), tables["users"].file) if "users" in tables else None
    read = read_interactions(
        tables["interactions"], columns, known_items=known_items, known_users=known_users
    )
    interactions = read.frame()
    if items is None:
        items = untitled_items(read.items)
    rating_range = (float(read.ratings.min()), float(read.ratings.max()))
    notes = {"items_listed": len(items), "interactions_read": len(interactions)}
    if known_users is not None:
        notes["users_listed"] = len(known_users[0])
    return RawDataset(FILES, interactions, items, tuple(paths.values()), rating_range, notes=notes)


def inputs_root(files: Sequence[Path]) -> Path | None:
    """Return the deepest folder holding every input file (names in the manifest are relative to it)."""
    if not files:
        return None
    return Path(os.path.commonpath([str(path.parent) for path in files]))
