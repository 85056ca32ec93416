"""Markers follow the folder: tests/unit → unit, and so on (select with -m)."""
import pathlib

import pytest

LEVELS = ("unit", "integration", "e2e", "cluster")


def pytest_collection_modifyitems(items):
    for item in items:
        parts = pathlib.Path(str(item.fspath)).parts
        for level in LEVELS:
            if level in parts:
                item.add_marker(getattr(pytest.mark, level))
