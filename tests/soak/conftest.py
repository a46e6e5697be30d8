"""The ``soak`` marker (registered here until setup.cfg lists it)."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: churns connections for a while and checks for leaks (tests/soak)")
