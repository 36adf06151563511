"""Where each data set lives on disk, how it is found, and how the GroupLens archives are downloaded.

Lookup order: `data.data_dir`, then `$EXPLOREC_DATA_DIR`, then `data.cache_dir`; then, if
`data.allow_download`, the GroupLens archive is downloaded into the cache, checked against its published md5,
extracted into a temporary folder and renamed into place. TMDB and Coat cannot be downloaded automatically.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from explorec.config import DataConfig
from explorec.errors import ChecksumError, DataNotFoundError, DataValidationError

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
DATA_DIR_ENV = "EXPLOREC_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 30.0
_MD5_PATTERN = re.compile(r"\b([0-9a-fA-F]{32})\b")


@dataclass(frozen=True)
class DatasetLayout:
    """The folder a data set is expected in, the files it must hold, and where it can be obtained.

    `archive` is the GroupLens zip (None when it cannot be downloaded); its top folder is renamed to
    `folder/archive_target` ("" = the data set's folder itself).
    """

    title: str
    folder: str
    required: tuple[str, ...]
    archive: str | None = None
    archive_md5: str | None = None
    archive_target: str = ""
    manual: str = ""


def movielens_layout(title: str, folder: str, required: tuple[str, ...], md5: str) -> DatasetLayout:
    """The layout of a GroupLens MovieLens archive: `<folder>.zip`, unpacked into `<folder>/`."""
    archive = f"{folder}.zip"
    return DatasetLayout(title=title, folder=folder, required=required, archive=archive, archive_md5=md5)


def missing_files(folder: Path, layout: DatasetLayout) -> list[str]:
    """Return the required files of `layout` that `folder` lacks."""
    return [name for name in layout.required if not (folder / name).is_file()]


def check_regular_files(folder: Path, layout: DatasetLayout) -> None:
    """Raise when a required name of `layout` exists in `folder` but is not a file (a folder, say).

    Such a copy is broken rather than absent: saying so beats searching on and reporting the file missing.
    """
    for name in layout.required:
        path = folder / name
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise DataValidationError(file=str(path), row=None, column=None, problem=f"is {kind}, not a file")


def candidate_roots(cfg: DataConfig) -> list[tuple[str, Path | None]]:
    """Return the folders searched, in order, labelled by the setting that names them."""
    env_value = os.environ.get(DATA_DIR_ENV) or None
    return [
        ("data.data_dir", Path(cfg.data_dir).expanduser() if cfg.data_dir else None),
        (DATA_DIR_ENV, Path(env_value).expanduser() if env_value else None),
        ("data.cache_dir", Path(cfg.cache_dir).expanduser()),
    ]


def locate_dataset(
    layout: DatasetLayout, cfg: DataConfig, *, base_url: str = GROUPLENS_BASE_URL, progress: bool = True
) -> Path:
    """Return the folder holding the data set of `layout`, downloading it into the cache when allowed."""
    roots = candidate_roots(cfg)
    for _, root in roots:
        if root is not None:
            check_regular_files(root / layout.folder, layout)
            if not missing_files(root / layout.folder, layout):
                return root / layout.folder
    cache_root = roots[-1][1]
    assert cache_root is not None
    reason = "data.allow_download is false"
    if cfg.allow_download and layout.archive is not None:
        try:
            if not archive_present(cache_root, layout):
                download_dataset(layout, cache_root, base_url=base_url, progress=progress)
        except (urllib.error.URLError, OSError, zipfile.BadZipFile) as error:
            reason = f"downloading {archive_url(layout, base_url)} failed ({_short_reason(error)})"
        else:
            lacking = missing_files(cache_root / layout.folder, layout)
            if not lacking:
                return cache_root / layout.folder
            folder = cache_root / layout.folder
            reason = f"{layout.archive} is in {folder}, but {', '.join(lacking)} is missing"
    elif layout.archive is None:
        reason = "it cannot be downloaded automatically"
    raise DataNotFoundError(not_found_message(layout, roots, reason=reason, base_url=base_url))


def archive_present(root: Path, layout: DatasetLayout) -> bool:
    """Return whether the files that the GroupLens archive provides are already under `root`."""
    from_archive = [name for name in layout.required if name.startswith(layout.archive_target)]
    return all((root / layout.folder / name).is_file() for name in from_archive)


def _short_reason(error: Exception) -> str:
    """Return the most telling part of a download error."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return str(error)


def archive_url(layout: DatasetLayout, base_url: str = GROUPLENS_BASE_URL) -> str:
    """Return the download URL of a data set's archive."""
    return base_url.rstrip("/") + "/" + (layout.archive or "")


def not_found_message(
    layout: DatasetLayout, roots: list[tuple[str, Path | None]], *, reason: str, base_url: str
) -> str:
    """Build the one message that says what is missing where and how to provide it."""
    searched = []
    for label, root in roots:
        if root is None:
            searched.append(f"{label} (not set)")
        else:
            lacking = missing_files(root / layout.folder, layout)
            searched.append(f"{label}={root} (lacks {', '.join(lacking)})")
    files = ", ".join(layout.required)
    how = []
    if layout.archive is not None:
        target = f"DIR/{layout.folder}/{layout.archive_target}".rstrip("/")
        how.append(f"download {archive_url(layout, base_url)} and extract it so that it becomes {target}/")
    if layout.manual:
        how.append(layout.manual)
    return (
        f"{layout.title} was not found: explorec expects a folder '{layout.folder}/' holding {files}, and "
        f"searched {'; '.join(searched)}; {reason}. To fix: {'; '.join(how)}; place everything under "
        f"DIR/{layout.folder}/ and set {DATA_DIR_ENV}=DIR (or data.data_dir=DIR)."
    )


def download_dataset(
    layout: DatasetLayout,
    root: Path,
    *,
    base_url: str = GROUPLENS_BASE_URL,
    expected_md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Download, verify and extract the GroupLens archive of `layout` into `root`; return its folder.

    The md5 is the published one (or `expected_md5`); without one, the `.md5` file GroupLens publishes next to
    the archive is fetched. Extraction happens in a temporary folder that is renamed into place.
    """
    if layout.archive is None:
        raise DataNotFoundError(layout.manual)
    url = archive_url(layout, base_url)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        archive = Path(scratch) / layout.archive
        actual_md5 = fetch_file(url, archive, progress=progress)
        wanted = expected_md5 or layout.archive_md5 or published_md5(url)
        if actual_md5 != wanted.lower():
            raise ChecksumError(f"{url} has md5 {actual_md5}, expected {wanted}; the download was discarded")
        extracted = extract_single_folder(archive, Path(scratch) / "extracted")
        target = (
            root / layout.folder / layout.archive_target if layout.archive_target else root / layout.folder
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        extracted.rename(target)
    return root / layout.folder


def fetch_file(url: str, destination: Path, *, progress: bool = True) -> str:
    """Stream `url` into `destination` with a tqdm progress bar; return the md5 of the bytes."""
    from tqdm.auto import tqdm

    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            destination.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar,
        ):
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    return digest.hexdigest()


def published_md5(url: str) -> str:
    """Return the md5 from the `<url>.md5` file GroupLens publishes next to each archive."""
    with urllib.request.urlopen(url + ".md5", timeout=DOWNLOAD_TIMEOUT_S) as response:
        text = response.read().decode("ascii", errors="replace")
    match = _MD5_PATTERN.search(text)
    if match is None:
        raise ChecksumError(f"{url}.md5 does not contain an md5 checksum")
    return match.group(1).lower()


def extract_single_folder(archive: Path, destination: Path) -> Path:
    """Extract a zip whose members share one top folder (refusing paths outside it); return that folder."""
    with zipfile.ZipFile(archive) as bundle:
        names = [name for name in bundle.namelist() if not name.startswith("__MACOSX/")]
        tops = {name.split("/", 1)[0] for name in names}
        unsafe = [name for name in names if name.startswith("/") or ".." in Path(name).parts]
        if len(tops) != 1 or unsafe or not all("/" in name for name in names):
            raise zipfile.BadZipFile(f"{archive.name} does not hold exactly one top folder of safe paths")
        bundle.extractall(destination, members=names)
    return destination / tops.pop()
