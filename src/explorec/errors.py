"""Typed errors that the command line turns into one clear message and a non-zero exit code."""

from __future__ import annotations


class ExplorecError(Exception):
    """Base class of every error explorec reports to a person without a traceback."""

    exit_code: int = 1


class ConfigError(ExplorecError):
    """A configuration could not be composed: an unknown key, a wrong type or a missing group option."""

    exit_code = 2


class DataNotFoundError(ExplorecError):
    """A data set is neither under EXPLOREC_DATA_DIR, nor in the cache, nor downloadable."""

    exit_code = 3


class DataValidationError(ExplorecError):
    """A data file breaks a validation rule; names the file, the 1-based row as in the file and the column."""

    exit_code = 4

    def __init__(self, *, file: str, row: int | None, column: str | None, problem: str) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.problem = problem
        where = f"{file}"
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


class CatalogueTooLargeError(ConfigError):
    """A model whose memory grows with the square of the catalogue was given more items than allowed."""


class EncoderNotInstalledError(ConfigError):
    """The configured text encoder's packages are not installed (e.g. `encoder=mpnet` without its extra)."""


class ChecksumError(ExplorecError):
    """A downloaded archive does not have the published checksum."""

    exit_code = 5


class ExternalError(ExplorecError):
    """A library explorec relies on (MLflow, SQLAlchemy, Lightning/torch, Optuna, the file system) failed on a
    path a person can reach; the message is one line saying what failed and what to do
    (`explorec.pipeline.failures.describe_failure`)."""

    exit_code = 6


class StoreError(ExplorecError):
    """A tracking or study store cannot be opened: corrupt, emptied, or locked by another process too long."""

    exit_code = 7


class RegistryError(ExplorecError):
    """A registry action cannot be done as asked: unknown run or version, no challenger, missing artifact."""

    exit_code = 8
