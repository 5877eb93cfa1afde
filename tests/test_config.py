"""Config models and loader: the example loads, every kind of error is located, secrets stay hidden."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import textwrap
from pathlib import Path

import pytest

from sealcam.config import ConfigError, SecretError, SecretRef, default_config, load_config
from sealcam.config.sections import SERVICES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "config.example.yml"

MINIMAL = """\
cameras:
  - id: cam1
    inputs:
      - url: synthetic://demo?size=640x360&fps=10
        roles: [record, detect]
recipients: [./owner.recipient]
storage:
  - type: local
    path: ./remote
hub:
  signing_key_file: ./hub.key
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sealcam.yml"
    p.write_text(textwrap.dedent(text))
    return p


def problems(tmp_path: Path, text: str) -> list[str]:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    return [str(x) for x in exc.value.problems]


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert [c.id for c in cfg.cameras] == ["front-door", "garage"]
    assert [b.type for b in cfg.storage] == ["local", "s3"]
    front = cfg.camera("front-door")
    assert front.record_input.url.endswith("/101") and front.detect_input.url.endswith("/102")
    assert cfg.camera("garage").detect_input is cfg.camera("garage").record_input
    # cameras without recipients inherit the top-level list; relative paths are relative to the file
    assert front.recipients == [str(EXAMPLE.parent / "keys" / "owner.recipient")]
    assert len(cfg.camera("garage").recipients) == 2
    assert cfg.storage[1].object_lock.mode == "compliance"
    assert cfg.hub.signing_key_file.path == Path("/run/secrets/hub_signing_key")  # compose secrets (docker-compose.yml)
    assert cfg.storage[1].secret_access_key_file.ref == "/run/secrets/s3_secret_access_key"


def test_minimal_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.recording.segment_seconds == 60 and cfg.recording.fragment_seconds == 1.0
    assert cfg.storage[0].name == "local-0" and cfg.storage[0].path == tmp_path / "remote"
    assert cfg.buses.plain_url is None and cfg.buses.sealed_url is None


def test_default_config(tmp_path: Path) -> None:
    cfg = default_config(tmp_path)
    assert [c.id for c in cfg.cameras] == ["synthetic"]
    assert cfg.cameras[0].record_input.url.startswith("synthetic://")
    assert cfg.storage[0].type == "local" and cfg.storage[0].path == tmp_path.resolve() / "remote"
    assert cfg.buses.plain_url is None and cfg.buses.sealed_url is None
    assert cfg.cameras[0].recipients


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # unknown key
        ("    path: ./remote\n", "    path: ./remote\n    colour: red\n",
         "sealcam.yml:10:5: storage[0].colour: unknown key"),
        # bad type
        ("      - url: synthetic://demo?size=640x360&fps=10\n        roles: [record, detect]\n",
         "      - url: synthetic://demo?size=640x360&fps=10\n        roles: [record, 3]\n",
         "sealcam.yml:5:25: cameras[0].inputs[0].roles[1]: Input should be 'record' or 'detect'"),
        # out of range
        ("hub:", "recording:\n  segment_seconds: 5\nhub:",
         "sealcam.yml:11:3: recording.segment_seconds: Input should be greater than or equal to 10"),
        # missing record role
        ("roles: [record, detect]", "roles: [detect]",
         "sealcam.yml:3:5: cameras[0].inputs: exactly one input must have role 'record' (found 0)"),
        # literal secret
        ("  signing_key_file: ./hub.key\n", "  signing_key_file: ./hub.key\n  passphrase: hunter2\n",
         "sealcam.yml:12:3: hub.passphrase: literal secret"),
        # a secret pasted into a *_file key
        ("./hub.key", "hunter2", "sealcam.yml:11:3: hub.signing_key_file: expected a file path"),
        # discriminated union: the tag is not in the path
        ("    path: ./remote\n", "    path: ./remote\n  - type: s3\n    bucket: B\n",
         "sealcam.yml:11:5: storage[1].bucket: String should match pattern"),
        # password in an RTSP URL
        ("url: synthetic://demo?size=640x360&fps=10", "url: rtsp://admin:hunter2@10.0.0.2/s",
         "sealcam.yml:4:9: cameras[0].inputs[0].url: camera URL contains a password"),
        ("id: cam1", "id: Cam 1", "sealcam.yml:2:5: cameras[0].id: String should match pattern"),
    ],
)
def test_errors_are_located(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert old in MINIMAL
    found = problems(tmp_path, MINIMAL.replace(old, new))
    assert any(p.split(str(tmp_path) + "/", 1)[-1].startswith(where) for p in found), found
    assert all(p.startswith(str(tmp_path / "sealcam.yml") + ":") for p in found)
    assert not any("hunter2" in p for p in found), "an error message repeated a secret"


def test_several_errors_reported_in_file_order(tmp_path: Path) -> None:
    text = MINIMAL.replace("id: cam1", "id: BAD").replace("    path: ./remote\n", "    path: ./remote\n    x: 1\n")
    found = problems(tmp_path, text)
    assert len(found) == 2 and ":2:5: cameras[0].id" in found[0] and ":10:5: storage[0].x" in found[1]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("cameras: [\n  {id: a\n", ":3:1: YAML syntax error"),
        ("cameras:\n\t- id: a\n", ":2:1: YAML syntax error"),
        ("- just\n- a list\n", ":1:1: the config must be a YAML mapping"),
        ("", ":1:1: the config must be a YAML mapping"),
    ],
)
def test_yaml_errors_have_lines(tmp_path: Path, text: str, where: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1 and where in found[0], found


def test_duplicate_keys_and_cameras(tmp_path: Path) -> None:
    text = MINIMAL.replace("hub:\n", "hub:\n  signing_key_file: ./other.key\n")
    assert any(":12:3: hub.signing_key_file: duplicate key" in p for p in problems(tmp_path, text))
    two = MINIMAL.replace("recipients:", "  - id: cam1\n    inputs: [{url: v4l2:///dev/video0, roles: [record]}]\n"
                          "recipients:")
    assert any("cameras: camera ids must be unique: cam1" in p for p in problems(tmp_path, two))


def test_recipients_required_somewhere(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL.replace("recipients: [./owner.recipient]\n", ""))
    assert any("cam1 have no recipients" in p for p in found)


def test_sftp_needs_exactly_one_credential(tmp_path: Path) -> None:
    text = MINIMAL.replace("  - type: local\n    path: ./remote\n",
                           "  - type: sftp\n    host: nas.lan\n    user: cam\n    known_hosts_file: ./kh\n")
    assert any(":8:5: storage[0]: give exactly one of password_file and key_file" in p
               for p in problems(tmp_path, text))
    ok = text.replace("    user: cam\n", "    user: cam\n    key_file: env:SFTP_KEY\n")
    assert load_config(write(tmp_path, ok)).storage[0].key_file.ref == "env:SFTP_KEY"


def test_secret_ref_reveal_and_hiding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ftp.pw").write_text("s3cr3t-VALUE\n")
    monkeypatch.setenv("SC_TEST_TOKEN", "tok-VALUE")
    text = MINIMAL.replace("  - type: local\n    path: ./remote\n",
                           "  - type: ftp\n    host: ftp.lan\n    user: cam\n    password_file: ./ftp.pw\n")
    text += "alerts:\n  ntfy_url_file: env:SC_TEST_TOKEN\n"
    cfg = load_config(write(tmp_path, text))
    ftp_pw, ntfy = cfg.storage[0].password_file, cfg.alerts.ntfy_url_file
    assert ftp_pw.reveal() == "s3cr3t-VALUE" and ntfy.reveal() == "tok-VALUE"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("sealcam.test").info("config %s %r %s", cfg, cfg, cfg.model_dump())
        logging.getLogger("sealcam.test").info("refs %s %r", ftp_pw, ntfy)
    shown = caplog.text + repr(cfg) + str(cfg) + cfg.model_dump_json() + repr(ftp_pw) + str(ntfy)
    assert "VALUE" not in shown
    assert "ftp.pw" in repr(ftp_pw) and "SC_TEST_TOKEN" in repr(ntfy)
    with pytest.raises(SecretError, match="NOPE_UNSET"):
        SecretRef.env("NOPE_UNSET").reveal()
    with pytest.raises(SecretError, match="cannot read"):
        SecretRef.file(tmp_path / "missing").reveal()


def test_section_for_limits_what_each_service_sees() -> None:
    cfg = load_config(EXAMPLE)
    up = cfg.section_for("uploader")
    assert set(up) == {"storage", "retention", "data_dir", "sealed_bus", "sealed_auth"}
    flat = repr(up)
    assert "hub" not in flat and "recipient" not in flat and "plain" not in flat and "rtsp" not in flat
    crypto = cfg.section_for("crypto")
    assert {"hub", "recipients", "recording", "plain_bus", "sealed_bus"} <= set(crypto)
    assert "storage" not in crypto and "secret_access_key" not in repr(crypto)
    rec = cfg.section_for("recorder")
    assert set(rec) == {"cameras", "recording", "plain_bus", "plain_auth"} and "sealed" not in repr(rec)
    assert "password_file" not in repr(cfg.section_for("motion"))
    assert all(isinstance(cfg.section_for(s), dict) for s in SERVICES)
    with pytest.raises(ValueError, match="unknown service"):
        cfg.section_for("viewer")


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sealcam.cli import config_cmd

    def run(path: Path) -> int:
        ap = argparse.ArgumentParser()
        config_cmd.add_parser(ap.add_subparsers())
        args = ap.parse_args(["config", "check", str(path)])
        return args.func(args)

    (tmp_path / "hub.key").write_text("TOP-SECRET-KEY\n")
    assert run(write(tmp_path, MINIMAL)) == 0
    out = capsys.readouterr().out
    assert "cam1" in out and "local-0 (local)" in out
    assert f"hub.signing_key_file: {tmp_path / 'hub.key'} (exists)" in out and "TOP-SECRET" not in out
    assert "owner.recipient (MISSING)" in out
    assert run(write(tmp_path, MINIMAL.replace("id: cam1", "id: X"))) == 2
    err = capsys.readouterr().err
    assert "sealcam.yml:2:5: cameras[0].id:" in err and "1 problem;" in err


def test_config_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("gen_config_ref", ROOT / "scripts" / "gen_config_ref.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "ref" / "config.md").read_text(encoding="utf-8") == mod.render(), (
        "docs/ref/config.md is stale: run scripts/gen_config_ref.py")
