"""Shared fixtures: private, real Redis-protocol buses on Unix sockets in a temp dir (never a shared server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sealcam.bus.client import connect
from sealcam.bus.embedded import EmbeddedBus


@pytest.fixture
def plain_bus(tmp_path: Path) -> Iterator[EmbeddedBus]:
    """A fresh plain bus (no persistence) per test; `.url` is `unix://...`."""
    with EmbeddedBus(tmp_path / "buses", "plain") as bus:
        yield bus


@pytest.fixture
def sealed_bus(tmp_path: Path) -> Iterator[EmbeddedBus]:
    """A fresh sealed bus (AOF on) per test."""
    with EmbeddedBus(tmp_path / "buses", "sealed", persist=True) as bus:
        yield bus


@pytest.fixture
def plain_redis(plain_bus: EmbeddedBus):  # noqa: ANN201 - redis.Redis
    return connect(plain_bus.url)


@pytest.fixture
def sealed_redis(sealed_bus: EmbeddedBus):  # noqa: ANN201 - redis.Redis
    return connect(sealed_bus.url)
