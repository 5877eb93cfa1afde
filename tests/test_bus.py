"""The embedded bus and the URL client, against a real server on a Unix socket."""

from __future__ import annotations

import stat

import pytest

from sealcam.bus.client import BusUrlError, connect
from sealcam.bus.names import object_name


def test_plain_bus_is_socket_only_and_not_persistent(plain_bus, plain_redis) -> None:  # noqa: ANN001
    plain_redis.xadd("plain:frag:cam1", {"a": b"1"})
    assert plain_redis.xlen("plain:frag:cam1") == 1
    cfg = plain_redis.config_get("*")
    assert cfg["port"] == "0" and cfg["appendonly"] == "no" and cfg["save"] == ""
    assert stat.S_IMODE(plain_bus.socket.stat().st_mode) == 0o700


def test_sealed_bus_persists_across_restart(sealed_bus, sealed_redis) -> None:  # noqa: ANN001
    sealed_redis.xadd("sealed:rec:" + "ab" * 16, {"x": b"y"})
    sealed_bus.stop()
    sealed_bus.start()
    assert connect(sealed_bus.url).xlen("sealed:rec:" + "ab" * 16) == 1


def test_bad_urls_are_refused() -> None:
    with pytest.raises(BusUrlError, match="password"):
        connect("redis://u:secret@localhost:6379/0")
    with pytest.raises(BusUrlError, match="scheme"):
        connect("http://localhost")


def test_object_names_reveal_only_handle_seq_and_hour() -> None:
    name = object_name("ab" * 16, 42, 1_767_225_600_000_000)  # 2026-01-01T00:00:00Z
    assert name == "ab" * 16 + "/000000000042-2026010100.seal"
    with pytest.raises(ValueError):
        object_name("front-door", 1, 0)
