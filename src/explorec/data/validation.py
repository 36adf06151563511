"""Reading raw data files as text and checking them before anything is written.

Every check is vectorised over a table of strings that remembers, for each row, its 1-based line number in the
file as a text editor shows it (the header of a CSV is line 1). A check returns the first offending row as a
`Problem`; `raise_first` raises the lowest-row problem of a file as a `DataValidationError`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from explorec.config import DataConfig
from explorec.errors import DataValidationError

SCAN_CHUNK_BYTES = 1 << 24
SECONDS_PER_YEAR = 31_556_952  # the mean Gregorian year, to name the year of a far-future timestamp
_TIMESTAMP_SLACK_S: ContextVar[float] = ContextVar("timestamp_slack_s", default=DataConfig.timestamp_slack_s)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NUMBER_PATTERN = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass(frozen=True)
class Problem:
    """One broken rule: the 1-based line in the file, the column name and what is wrong."""

    row: int | None
    column: str | None
    problem: str


@dataclass(frozen=True)
class TextTable:
    """The rows of one data file as strings, with the 1-based line number each row starts on."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray

    @property
    def file(self) -> str:
        """The file name used in error messages."""
        return str(self.path)


def raise_first(file: str, problems: Iterable[Problem | None]) -> None:
    """Raise the problem with the lowest row (a file-level problem without a row first), if any."""
    found = [problem for problem in problems if problem is not None]
    if not found:
        return
    first = min(found, key=lambda problem: -1 if problem.row is None else problem.row)
    raise DataValidationError(file=file, row=first.row, column=first.column, problem=first.problem)


def first_true(mask: np.ndarray | pd.Series) -> int | None:
    """Return the position of the first True in a boolean mask, or None."""
    values = np.asarray(mask, dtype=bool)
    if not values.any():
        return None
    return int(np.argmax(values))


def _decode_problem(chunk: bytes, error: UnicodeDecodeError, encoding: str) -> tuple[int, str]:
    """Return the 0-based line offset inside `chunk` of a decoding error and its description."""
    line_offset = chunk.count(b"\n", 0, error.start)
    bad = chunk[error.start : error.end].hex(" ")
    return line_offset, f"bytes {bad} do not decode as {encoding}"


def _column_at(line_bytes: bytes, separator: str | None, columns: Sequence[str]) -> str | None:
    """Return the name of the column a byte offset falls in, counting separators before it."""
    if separator is None or not columns:
        return None
    index = line_bytes.count(separator.encode())
    return columns[index] if index < len(columns) else None


@contextmanager
def timestamp_slack(seconds: float) -> Iterator[None]:
    """Within this block a timestamp later than now + `seconds` is an error (`data.timestamp_slack_s`)."""
    token = _TIMESTAMP_SLACK_S.set(seconds)
    try:
        yield
    finally:
        _TIMESTAMP_SLACK_S.reset(token)


def latest_allowed_timestamp() -> int:
    """Return the latest unix timestamp a data file may hold: now plus the configured slack."""
    return int(time.time() + _TIMESTAMP_SLACK_S.get())


def unreadable_file_error(path: Path, error: OSError) -> DataValidationError:
    """Return the validation error for a data file that cannot be opened (a folder, no permission)."""
    if path.is_dir():
        return DataValidationError(file=str(path), row=None, column=None, problem="is a folder, not a file")
    reason = error.strerror or type(error).__name__
    return DataValidationError(file=str(path), row=None, column=None, problem=f"cannot be read ({reason})")


def scan_text_file(
    path: Path, *, encoding: str, separator: str | None = None, columns: Sequence[str] = ()
) -> int:
    """Check that `path` decodes in `encoding` and return its number of lines; reads it in chunks."""
    try:
        return _scan_text_file(path, encoding=encoding, separator=separator, columns=columns)
    except OSError as error:
        raise unreadable_file_error(path, error) from error


def _scan_text_file(path: Path, *, encoding: str, separator: str | None, columns: Sequence[str]) -> int:
    """Check that `path` decodes in `encoding` and return its number of lines (OSErrors propagate)."""
    lines_before = 0
    last_byte = b"\n"
    with path.open("rb") as handle:
        remainder = b""
        while True:
            block = handle.read(SCAN_CHUNK_BYTES)
            data = remainder + block
            if not data:
                break
            cut = data.rfind(b"\n") + 1 if block else len(data)
            chunk, remainder = data[:cut], data[cut:]
            try:
                chunk.decode(encoding)
            except UnicodeDecodeError as error:
                line_offset, problem = _decode_problem(chunk, error, encoding)
                line_start = chunk.rfind(b"\n", 0, error.start) + 1
                column = _column_at(chunk[line_start : error.start], separator, columns)
                raise DataValidationError(
                    file=str(path), row=lines_before + line_offset + 1, column=column, problem=problem
                ) from None
            lines_before += chunk.count(b"\n")
            if chunk:
                last_byte = chunk[-1:]
            if not block:
                break
    return lines_before + (0 if last_byte == b"\n" else 1)


UNIT_SEPARATOR = b"\x1f"


def line_field_counts(data: bytes, separator: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return, per line of `data`, the number of `separator`-separated fields and whether it is blank."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    if len(raw) and raw[-1] != ord("\n"):
        ends = np.append(ends, len(raw))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    separators = np.flatnonzero(raw == separator[0])
    counts = np.searchsorted(separators, ends) - np.searchsorted(separators, starts) + 1
    lengths = ends - starts
    carriage = np.zeros(len(ends), dtype=bool)
    has_text = lengths > 0
    carriage[has_text] = raw[ends[has_text] - 1] == ord("\r")
    blank = (lengths == 0) | ((lengths == 1) & carriage)
    return counts, blank


def read_delimited_lines(
    path: Path, *, separator: str, columns: Sequence[str], encoding: str, blank_ok: bool = False
) -> TextTable:
    """Read a header-less line format (u.data, ratings.dat, u.item) into strings, checking field counts.

    Blank lines are errors unless `blank_ok`, in which case they are skipped. Fields are never quoted.
    """
    scan_text_file(path, encoding=encoding, separator=separator, columns=columns)
    data = path.read_bytes()
    if len(separator) > 1:
        data = data.replace(separator.encode(encoding), UNIT_SEPARATOR)
    counts, blank = line_field_counts(
        data, separator.encode(encoding) if len(separator) == 1 else UNIT_SEPARATOR
    )
    line_numbers = np.arange(1, len(counts) + 1, dtype=np.int64)
    if blank_ok:
        counts, line_numbers = counts[~blank], line_numbers[~blank]
    else:
        counts = np.where(blank, 0, counts)
    bad = first_true(counts != len(columns))
    if bad is not None:
        found = int(counts[bad])
        raise DataValidationError(
            file=str(path),
            row=int(line_numbers[bad]),
            column=columns[found] if found < len(columns) else None,
            problem=f"expected {len(columns)} fields separated by {separator!r}, found {found}",
        )
    frame = _arrow_read_unquoted(data, separator=separator, columns=columns, encoding=encoding)
    if frame is None or len(frame) != len(line_numbers):
        frame = _python_split_lines(data, separator=separator, columns=columns, encoding=encoding)
        frame = frame[~blank].reset_index(drop=True) if blank_ok else frame
    return TextTable(path=path, frame=frame, lines=line_numbers)


def _arrow_read_unquoted(
    data: bytes, *, separator: str, columns: Sequence[str], encoding: str
) -> pd.DataFrame | None:
    """Parse header-less, unquoted delimited bytes into strings with pyarrow; None if pyarrow disagrees."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    if not data.strip():
        return pd.DataFrame({name: pd.Series([], dtype="str") for name in columns})
    delimiter = separator if len(separator) == 1 else UNIT_SEPARATOR.decode()
    try:
        table = arrow_csv.read_csv(
            pa.BufferReader(data),
            read_options=arrow_csv.ReadOptions(
                column_names=list(columns), encoding=_arrow_encoding(encoding)
            ),
            parse_options=arrow_csv.ParseOptions(
                delimiter=delimiter, quote_char=False, ignore_empty_lines=True
            ),
            convert_options=arrow_csv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid:
        return None
    return _arrow_to_strings(table)


def _python_split_lines(
    data: bytes, *, separator: str, columns: Sequence[str], encoding: str
) -> pd.DataFrame:
    """Split each LF-ended line of `data` into fields in Python; lines of another width give empty fields."""
    delimiter = separator if len(separator) == 1 else UNIT_SEPARATOR.decode()
    lines = data.decode(encoding).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = [line.removesuffix("\r").split(delimiter) for line in lines]
    rows = [row if len(row) == len(columns) else [""] * len(columns) for row in rows]
    return pd.DataFrame(rows, columns=list(columns), dtype="str")


def _arrow_encoding(encoding: str) -> str:
    """Return pyarrow's name for a Python codec name."""
    normal = encoding.lower().replace("-", "").replace("_", "")
    return {"utf8": "utf8", "latin1": "latin1", "iso88591": "latin1", "ascii": "utf8"}.get(normal, encoding)


def _arrow_to_strings(table: object) -> pd.DataFrame:
    """Turn a pyarrow table of string columns into a pandas frame of `str` columns."""
    frame = table.to_pandas()  # type: ignore[attr-defined]
    return frame.astype(dict.fromkeys(frame.columns, "str"))


def read_csv_with_header(path: Path, *, columns: Sequence[str], encoding: str = "utf-8") -> TextTable:
    """Read a CSV with a header line into strings; the header must name exactly `columns`, in any order."""
    n_lines = scan_text_file(path, encoding=encoding, separator=",", columns=columns)
    frame = _arrow_read_csv(path, columns=columns, encoding=encoding)
    if frame is None:
        frame = _pandas_read_csv(path, encoding=encoding)
    check_header(str(path), list(frame.columns), columns)
    frame = frame[list(columns)]
    if len(frame) + 1 == n_lines:
        line_numbers = np.arange(2, len(frame) + 2, dtype=np.int64)
    else:
        line_numbers = csv_record_lines(path, encoding=encoding, n_records=len(frame))
    return TextTable(path=path, frame=frame.reset_index(drop=True), lines=line_numbers)


def _arrow_read_csv(path: Path, *, columns: Sequence[str], encoding: str) -> pd.DataFrame | None:
    """Read a well-formed CSV fast with pyarrow; None when it is not well-formed (blank or ragged lines)."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    try:
        table = arrow_csv.read_csv(
            path,
            read_options=arrow_csv.ReadOptions(encoding=_arrow_encoding(encoding)),
            parse_options=arrow_csv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
            convert_options=arrow_csv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if any(field.type != pa.string() for field in table.schema):
        table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
    return _arrow_to_strings(table)


def _pandas_read_csv(path: Path, *, encoding: str) -> pd.DataFrame:
    """Read a CSV with pandas' C parser, turning its errors into validation errors that name the line."""
    try:
        return pd.read_csv(
            path, dtype="str", keep_default_na=False, skip_blank_lines=False, encoding=encoding
        )
    except pd.errors.EmptyDataError:
        raise DataValidationError(file=str(path), row=1, column=None, problem="the file is empty") from None
    except pd.errors.ParserError as error:
        raise _parser_error(path, error) from None


def _parser_error(path: Path, error: Exception) -> DataValidationError:
    """Turn pandas' 'Expected N fields in line L, saw M' into a validation error naming the line."""
    match = _PANDAS_LINE.search(str(error))
    if match is None:
        return DataValidationError(file=str(path), row=None, column=None, problem=f"unreadable CSV: {error}")
    expected, line, seen = (int(value) for value in match.groups())
    return DataValidationError(
        file=str(path), row=line, column=None, problem=f"expected {expected} fields, found {seen}"
    )


def csv_record_lines(path: Path, *, encoding: str, n_records: int) -> np.ndarray:
    """Return the starting line of every record of a CSV whose quoted fields span several lines."""
    import csv

    starts = np.empty(n_records, dtype=np.int64)
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        previous_end = reader.line_num
        for index, _ in enumerate(reader):
            if index < n_records:
                starts[index] = previous_end + 1
            previous_end = reader.line_num
    return starts


def check_header(file: str, found: Sequence[str], expected: Sequence[str]) -> None:
    """Raise on a missing or an unexpected column in a CSV header (line 1)."""
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if missing:
        raise DataValidationError(
            file=file, row=1, column=missing[0], problem=f"required column missing; header has {list(found)}"
        )
    if extra:
        raise DataValidationError(
            file=file, row=1, column=str(extra[0]), problem=f"unexpected column; expected {list(expected)}"
        )


def check_required_columns(file: str, found: Sequence[str], required: Sequence[str]) -> None:
    """Raise when a CSV header (line 1) lacks one of `required`; other columns are allowed."""
    missing = [name for name in required if name not in found]
    if missing:
        raise DataValidationError(file=file, row=1, column=missing[0], problem="required column missing")


def empty_problem(table: TextTable, columns: Sequence[str]) -> Problem | None:
    """Return the first empty (or blank) value among `columns`."""
    best: Problem | None = None
    for column in columns:
        bad = first_true(table.frame[column].str.strip().eq("").to_numpy())
        if bad is not None and (best is None or table.lines[bad] < best.row):
            best = Problem(int(table.lines[bad]), column, "empty value")
    return best


def integer_id_problem(table: TextTable, column: str) -> Problem | None:
    """Return the first value of an id column that is not a non-negative integer."""
    values = table.frame[column]
    bad = first_true(~values.str.fullmatch(r"[0-9]+").fillna(False).to_numpy(dtype=bool))
    if bad is None:
        return None
    return Problem(int(table.lines[bad]), column, f"{values.iloc[bad]!r} is not a non-negative integer id")


def parse_number(table: TextTable, column: str) -> tuple[np.ndarray, Problem | None]:
    """Parse a column as float64; return the values and the first unparseable or non-finite value."""
    text = table.frame[column]
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    well_formed = text.str.fullmatch(NUMBER_PATTERN).fillna(False).to_numpy(dtype=bool)
    bad = first_true(~np.isfinite(values) | ~well_formed)
    if bad is None:
        return values, None
    return values, Problem(int(table.lines[bad]), column, f"{text.iloc[bad]!r} is not a number")


def rating_problem(
    table: TextTable, ratings: np.ndarray, rating_range: tuple[float, float], column: str = "rating"
) -> Problem | None:
    """Return the first rating outside the source's closed range."""
    low, high = rating_range
    bad = first_true((ratings < low) | (ratings > high))
    if bad is None:
        return None
    return Problem(int(table.lines[bad]), column, f"rating {ratings[bad]:g} is outside [{low:g}, {high:g}]")


def parse_timestamp(table: TextTable, column: str = "timestamp") -> tuple[np.ndarray, Problem | None]:
    """Parse unix-second timestamps as int64; return them and the first unparseable or negative one."""
    text = table.frame[column]
    ok = text.str.fullmatch(r"-?[0-9]{1,18}").fillna(False).to_numpy(dtype=bool)
    bad = first_true(~ok)
    if bad is not None:
        problem = Problem(int(table.lines[bad]), column, f"{text.iloc[bad]!r} is not a unix timestamp")
        return np.zeros(len(text), dtype=np.int64), problem
    values = text.astype("int64").to_numpy()
    negative = first_true(values < 0)
    if negative is not None:
        problem = Problem(int(table.lines[negative]), column, f"negative timestamp {values[negative]}")
        return values, problem
    future = first_true(values > latest_allowed_timestamp())
    if future is not None:
        problem = Problem(int(table.lines[future]), column, future_timestamp_problem(int(values[future])))
        return values, problem
    return values, None


def future_timestamp_problem(value: int) -> str:
    """Describe a timestamp later than now + data.timestamp_slack_s, with the year it falls in."""
    year = 1970 + value // SECONDS_PER_YEAR
    return (
        f"timestamp {value} (year {year}) is in the future: later than now + "
        f"data.timestamp_slack_s={_TIMESTAMP_SLACK_S.get():g} s"
    )


def duplicate_problem(
    table: TextTable, keys: dict[str, np.ndarray | pd.Series], column: str | None = None
) -> Problem | None:
    """Return the first row that repeats an earlier row's key columns (user, item, timestamp)."""
    frame = pd.DataFrame({name: np.asarray(values) for name, values in keys.items()})
    repeated = frame.duplicated(keep="first").to_numpy()
    bad = first_true(repeated)
    if bad is None:
        return None
    same = (frame == frame.iloc[bad]).all(axis=1).to_numpy()
    original = int(table.lines[first_true(same)])
    names = ", ".join(keys)
    return Problem(
        int(table.lines[bad]), column or next(iter(keys)), f"duplicate ({names}) of line {original}"
    )


def unknown_id_problem(
    table: TextTable, column: str, known: pd.Series | np.ndarray, known_file: str
) -> Problem | None:
    """Return the first id in `column` that the item (or other reference) file does not list."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table.frame[column]
    known_array = pa.array(pd.Series(known, dtype="str").array)
    listed = pc.is_in(pa.array(values.array), value_set=known_array).to_numpy(zero_copy_only=False)
    bad = first_true(~listed.astype(bool))
    if bad is None:
        return None
    return Problem(int(table.lines[bad]), column, f"id {values.iloc[bad]!r} is not listed in {known_file}")


def unique_id_problem(table: TextTable, column: str) -> Problem | None:
    """Return the first id that an earlier row of the same file already used."""
    values = table.frame[column]
    bad = first_true(values.duplicated(keep="first").to_numpy())
    if bad is None:
        return None
    return Problem(int(table.lines[bad]), column, f"id {values.iloc[bad]!r} appears twice")


def control_character_problem(table: TextTable, column: str) -> Problem | None:
    """Return the first value holding a C0/C1 control character (U+0000–U+001F, U+007F–U+009F)."""
    values = table.frame[column]
    bad = first_true(values.str.contains(CONTROL_CHARACTERS.pattern, regex=True).fillna(False).to_numpy())
    if bad is None:
        return None
    char = CONTROL_CHARACTERS.search(values.iloc[bad])
    code = f"U+{ord(char.group()):04X}" if char else "a control character"
    return Problem(int(table.lines[bad]), column, f"control character {code} in text")


def validate_interactions(
    table: TextTable,
    *,
    rating_range: tuple[float, float],
    known_items: pd.Series | None,
    item_file: str,
    names: dict[str, str],
) -> pd.DataFrame:
    """Check a ratings table and return it typed as the documented interaction columns.

    `names` maps user_id/item_id/rating/timestamp to the file's own column names. A vectorised fast path
    accepts clean data; only when it finds a problem are the slower per-rule checks run to name the first
    offending row.
    """
    user, item, rating, timestamp = (names[key] for key in ("user_id", "item_id", "rating", "timestamp"))
    if table.frame.empty:
        empty = table.path.is_file() and table.path.stat().st_size == 0
        problem = "holds no ratings: the file is empty" if empty else "holds no ratings"
        raise DataValidationError(file=table.file, row=None, column=None, problem=problem)
    parsed = _parse_clean_interactions(table, names, rating_range, known_items)
    if parsed is None:
        problems: list[Problem | None] = [empty_problem(table, [user, item, rating, timestamp])]
        problems += [integer_id_problem(table, user), integer_id_problem(table, item)]
        ratings, rating_parse = parse_number(table, rating)
        problems.append(rating_parse)
        if rating_parse is None:
            problems.append(rating_problem(table, ratings, rating_range, rating))
        problems.append(parse_timestamp(table, timestamp)[1])
        if known_items is not None:
            problems.append(unknown_id_problem(table, item, known_items, item_file))
        problems.append(
            duplicate_problem(table, {name: table.frame[name] for name in (user, item, timestamp)})
        )
        raise_first(table.file, problems)
        raise_first(table.file, [first_uncastable(table, names)])
        raise DataValidationError(file=table.file, row=None, column=None, problem="unreadable ratings")
    ratings, timestamps = parsed
    return pd.DataFrame(
        {
            "user_id": table.frame[user].array,
            "item_id": table.frame[item].array,
            "rating": ratings,
            "timestamp": timestamps,
        }
    ).astype({"user_id": "str", "item_id": "str"})


def _parse_clean_interactions(
    table: TextTable,
    names: dict[str, str],
    rating_range: tuple[float, float],
    known_items: pd.Series | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (ratings, timestamps) when every rule holds, else None; strict pyarrow casts, no row lookups."""
    import pyarrow as pa
    import pyarrow.compute as pc

    frame = table.frame
    columns = {key: pa.chunked_array(pa.array(frame[name].array)) for key, name in names.items()}
    for key in ("user_id", "item_id", "timestamp"):
        if not pc.all(pc.ascii_is_decimal(columns[key])).as_py() and len(frame):
            return None
    try:
        users = pc.cast(columns["user_id"], pa.int64()).to_numpy()
        items = pc.cast(columns["item_id"], pa.int64()).to_numpy()
        ratings = pc.cast(columns["rating"], pa.float64()).to_numpy()
        timestamps = pc.cast(columns["timestamp"], pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    low, high = rating_range
    if len(users) and (min(users.min(), items.min(), timestamps.min()) < 0):
        return None
    if len(timestamps) and timestamps.max() > latest_allowed_timestamp():
        return None
    if not (np.isfinite(ratings).all() and ((ratings >= low) & (ratings <= high)).all()):
        return None
    if known_items is not None:
        known = pa.array(pd.Series(known_items, dtype="str").array)
        if not pc.all(pc.is_in(columns["item_id"], value_set=known)).as_py() and len(users):
            return None
    if has_duplicate_rows(users, items, timestamps):
        return None
    return ratings.astype(np.float64), timestamps.astype(np.int64)


def first_uncastable(table: TextTable, names: dict[str, str]) -> Problem | None:
    """Return the first value pyarrow cannot cast to its column's type, found by bisection."""
    import pyarrow as pa
    import pyarrow.compute as pc

    targets = {"user_id": pa.int64(), "item_id": pa.int64(), "rating": pa.float64(), "timestamp": pa.int64()}
    found: Problem | None = None
    for key, name in names.items():
        values = pa.array(table.frame[name].array)
        low, high = 0, len(values)
        while high - low > 1:
            middle = (low + high) // 2
            try:
                pc.cast(values.slice(low, middle - low), targets[key])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                high = middle
            else:
                low = middle
        try:
            pc.cast(values.slice(low, 1), targets[key])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            row = int(table.lines[low])
            if found is None or row < (found.row or 0):
                found = Problem(row, name, f"{values[low].as_py()!r} cannot be read as {targets[key]}")
    return found


def has_duplicate_rows(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> bool:
    """Return whether any (user, item, timestamp) triple of non-negative integers occurs twice."""
    if len(users) < 2:
        return False
    pair = users.astype(np.int64) * (int(items.max()) + 1) + items.astype(np.int64)
    repeated = pd.Series(pair).duplicated(keep=False).to_numpy()
    if not repeated.any():
        return False
    triples = pd.DataFrame({"pair": pair[repeated], "timestamp": timestamps[repeated]})
    return bool(triples.duplicated().any())
