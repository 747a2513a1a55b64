"""Integration tests start real party and coordinator processes; they need every core module on main."""

from __future__ import annotations

import pytest

REQUIRED = (
    "cleanroom.schema",
    "cleanroom.encoding",
    "cleanroom.marginals",
    "cleanroom.noise",
    "cleanroom.accounting",
    "cleanroom.ledger",
    "cleanroom.plan",
    "cleanroom.secagg.party",
    "cleanroom.secagg.server",
    "cleanroom.synth",
    "cleanroom.sample_data",
)


@pytest.fixture(autouse=True)
def _core_modules() -> None:
    import importlib

    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError:
            pytest.skip(f"{name} has not landed yet")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `docker` run last, so that .ci/run's background image build has the suite's time."""
    items.sort(key=lambda item: item.get_closest_marker("docker") is not None)
