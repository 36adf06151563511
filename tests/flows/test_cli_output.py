"""What a person sees on stderr of a real `explorec pipeline` run written to a log (not a terminal).

Progress lines (timestamped, with a share and an ETA) for the encoder and the training epochs; each
Lightning line once; no deprecation notices of other packages, no CloudPickle caution, no MLflow
"Downloading artifacts" bars; the summary on stdout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import TINY_SYNTHETIC

TIMESTAMPED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| progress \| ")


def test_a_logged_pipeline_run_shows_progress_lines_and_each_library_line_once(
    isolated_home: Path, open_gates: list[str]
) -> None:
    overrides = [
        *[
            item
            for item in TINY_SYNTHETIC
            if not item.startswith(("encoder=", "trainer.enable_progress_bar"))
        ],
        "encoder=minilm",
        "model.embedding_dim=16",
        "trainer.max_epochs=2",
        "pipeline.simulate=false",
        *open_gates,
    ]
    env = {**os.environ, "EXPLOREC_PROGRESS_INTERVAL_S": "0", "EXPLOREC_HOME": str(isolated_home)}
    env.pop("EXPLOREC_PROGRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "explorec.cli", "pipeline", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    err = done.stderr.splitlines()
    progress = [line for line in err if " | progress | " in line]
    assert all(TIMESTAMPED.match(line) for line in progress)
    text = "\n".join(progress)
    assert "encoding item text: started, 40 texts" in text and "encoding item text: done" in text
    assert "training: started" in text and "training: done" in text
    assert re.search(r"training: \d+/\d+ batches, \d+%, elapsed \d+:\d\d, ETA \d+:\d\d - epoch 1/2", text)
    for lightning_line in ("Seed set to 42", "`Trainer.fit` stopped: `max_epochs=2` reached."):
        assert sum(lightning_line in line for line in err) == 1, lightning_line
    assert not [line for line in err if "Downloading artifacts" in line or "CloudPickle" in line]
    assert not [line for line in err if re.search(r"(Deprecation|Future)Warning|is deprecated", line)]
    assert "\r" not in done.stderr  # no carriage-return bars in a log
    assert "Epoch 1/2" not in done.stdout  # no Lightning bar frames among the summary either
    assert done.stdout.startswith("explorec pipeline: MLflow run ")
    assert "policy linucb at exploration rate 1, set in the config" in done.stdout
