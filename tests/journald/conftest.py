from __future__ import annotations

import pytest

from .helpers import Journal


@pytest.fixture
def journal(tmp_path):
    return Journal(tmp_path / "remote.journal")
