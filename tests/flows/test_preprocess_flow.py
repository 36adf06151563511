"""The preprocess flow and the `explorec preprocess` command, end to end on a tiny MovieLens folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from explorec.cli import main
from flows.preprocess import preprocess_flow


async def _artifact_markdown(key: str) -> str:
    """Return the latest Prefect artifact with this key."""
    async with get_client() as client:
        artifact = await client.read_latest_artifacts()
    matching = [item for item in artifact if item.key == key]
    assert matching, f"no artifact {key!r}"
    return str(matching[0].data)


def test_preprocess_flow_writes_tables_then_hits_the_cache(tiny_ml100k: Path, isolated_home: Path) -> None:
    overrides = [f"data.data_dir={tiny_ml100k}", "split=leave_last_out"]
    first = preprocess_flow(overrides=overrides)
    assert first["cache_hit"] is False
    assert first["counts"]["users"] == 12
    assert first["counts"]["test"] == 12
    assert first["counts"]["valid"] == 12
    output = Path(first["output_dir"])
    assert output.parent == isolated_home / "mlruns" / "processed"
    assert {path.name for path in output.iterdir()} == {
        "train.parquet", "valid.parquet", "test.parquet", "items.parquet", "users.parquet", "manifest.json",
    }  # fmt: skip
    manifest = json.loads((output / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {"u.data", "u.item", "u.genre"}
    second = preprocess_flow(overrides=overrides)
    assert second["cache_hit"] is True
    assert second["fingerprint"] == first["fingerprint"]
    markdown = asyncio.run(_artifact_markdown("preprocess-summary"))
    assert "cache hit: **True**" in markdown


def test_changing_an_input_file_changes_the_fingerprint(tiny_ml100k: Path) -> None:
    folder = tiny_ml100k / "ml-100k"
    overrides = [f"data.data_dir={folder.parent}"]
    first = preprocess_flow(overrides=overrides)
    with (folder / "u.data").open("a") as handle:
        handle.write("1\t3\t5\t890000000\n")
    second = preprocess_flow(overrides=overrides)
    assert second["cache_hit"] is False
    assert second["fingerprint"] != first["fingerprint"]


def test_cli_prints_json_on_the_last_line(tiny_ml100k: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preprocess", f"data.data_dir={tiny_ml100k}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["counts"]["items"] == 15
    assert summary["dataset"] == "ml100k"
    assert summary["cache_hit"] is False


def test_cli_answers_an_up_to_date_run_without_a_flow_unless_forced(
    tiny_ml100k: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["preprocess", f"data.data_dir={tiny_ml100k}", "--json"]
    assert main(arguments) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(arguments) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["cache_hit"] is True
    assert second["orchestrated"] is False
    assert second["output_dir"] == first["output_dir"]
    assert main([*arguments, "--force-flow"]) == 0
    forced = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert forced["cache_hit"] is True
    assert "orchestrated" not in forced


def test_cli_reports_invalid_data_in_one_line_and_writes_nothing(
    tiny_ml100k: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_ml100k / "ml-100k"
    lines = (folder / "u.data").read_text().splitlines()
    user, item, _, stamp = lines[4].split("\t")
    lines[4] = f"{user}\t{item}\tnan\t{stamp}"
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    code = main(["preprocess", f"data.data_dir={folder.parent}"])
    error = capsys.readouterr().err
    assert code == 4
    assert "u.data" in error
    assert "row 5" in error
    assert "'rating'" in error
    assert "Traceback" not in error
    processed = isolated_home / "mlruns" / "processed"
    assert not processed.exists() or not any(processed.iterdir())


def test_cli_rejects_an_unknown_override_before_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preprocess", "data.colour=red"]) == 2
    assert "data.colour" in capsys.readouterr().err
