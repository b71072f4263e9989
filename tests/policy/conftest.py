"""Fixtures for the policy tests: ``lab`` is an editable copy of the lab topology in tmp_path.

It shadows the lab twin's session fixture of the same name, which these tests never need.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def lab(topology_copy: Any) -> Any:
    """An editable copy of inventories/lab (see ``TopologyCopy`` in tests/conftest.py)."""
    return topology_copy
