"""Integration tests boot real QEMU guests; every one is marked `integration`."""

from pathlib import Path

import pytest

from harness import proc
from tests.integration.kernel_tree import PlantedTree, make_planted_tree


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def no_qemu_left_behind() -> object:
    """After every test, no QEMU (or other child) memharness started may still be running."""
    yield
    assert proc.live_children() == [], "memharness left child processes running"


@pytest.fixture(scope="session")
def planted_tree(tmp_path_factory: pytest.TempPathFactory) -> PlantedTree:
    """A git tree of Debian's 6.1 source with harmless commits around a planted regression
    (shared by the planted-regression and bisect tests: made once, ~1 minute)."""
    return make_planted_tree(tmp_path_factory.mktemp("planted"))
