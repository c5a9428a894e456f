"""The tailer's tests run on real files in a temporary folder, each with its own state dir."""
from __future__ import annotations

import pytest

from .helpers import Harness


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    harness.close()
