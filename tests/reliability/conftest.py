"""The reliability suite: faults injected for real (racing processes, kill -9, bad requests, config, data).

Every test here is marked `reliability`; the ones that start whole commands are also `slow` (CI runs both).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/reliability/ as part of the reliability suite."""
    for item in items:
        if "tests/reliability/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
