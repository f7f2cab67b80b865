"""Fixtures shared by the real-container test files (each marked `real`).

`busybox`: the image `scripts/build-busybox-image` makes from Debian's busybox-static, built once
per test run. `node`: an in-process agent on the real runtime (`tests.real.Node`), closed after the
test with a check that nothing of it is left on the machine. A file may override either (and use
the shared one by naming it), e.g. to require the CNI plugins or kubectl first.

Every test: kubelite's logging as it was before it (`serve` run in-process configures the
`kubelite` logger and logging's last resort; the next test's captured stderr must not get its lines).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest

from tests.real import Node, build_busybox, require_real_runtime


@pytest.fixture(autouse=True)
def _logging_as_before() -> Iterator[None]:
    logger = logging.getLogger("kubelite")
    before = (list(logger.handlers), logger.level, logger.propagate, logging.lastResort)
    yield
    logger.handlers[:], logger.level, logger.propagate, logging.lastResort = before[0], before[1], before[2], before[3]


@pytest.fixture(scope="session")
def busybox(tmp_path_factory) -> Path:
    require_real_runtime()
    return build_busybox(tmp_path_factory.mktemp("image") / "busybox.tar")


@pytest.fixture
def node(tmp_path: Path, busybox: Path) -> Iterator[Node]:
    n = Node(tmp_path / "manifests", tmp_path / "state", tmp_path / "run", busybox).start()
    try:
        yield n
    finally:
        left = n.close()
        assert left == [], f"left behind: {left}"
