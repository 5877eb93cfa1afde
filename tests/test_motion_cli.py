"""`sealcam motion scan`: events of a generated clip, JSON output, config settings, clear errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("cv2")
from sealcam.cli.main import run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location("make_motion_clips", ROOT / "scripts" / "make_motion_clips.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("clips")
    mod.make(out, (320, 180), 10, only=["car_fast", "covered"])
    return out


def test_scan_prints_events(clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["motion", "scan", str(clips / "car_fast.mp4")]) == 0
    out = capsys.readouterr().out
    assert "2 event(s)" in out and out.count("  motion  motion (") == 2


def test_scan_json_and_config(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"""
cameras:
  - id: front
    inputs: [{{url: "synthetic://a", roles: [record]}}]
    motion: {{tamper: {{enabled: false}}}}
recipients: [{tmp_path / 'owner.recipient'}]
storage: [{{type: local, path: {tmp_path}}}]
hub: {{signing_key_file: {tmp_path / 'hub.key'}}}
motion: {{detect_fps: 4}}
""")
    assert run(["motion", "scan", str(clips / "covered.mp4"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["label"]) for e in doc["events"]][:1] == [("tamper", "covered")]
    assert 4.5 <= doc["events"][0]["start"] <= 5.5
    assert run(["motion", "scan", str(clips / "covered.mp4"), "--json", "--config", str(cfg)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(e["kind"] != "tamper" for e in doc["events"]) and doc["frames"] == pytest.approx(72, abs=2)


def test_scan_errors(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["motion", "scan", str(tmp_path / "none.mp4")]) == 4
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"junk")
    assert run(["motion", "scan", str(junk)]) == 4
    assert "junk.mp4" in capsys.readouterr().err
    assert run(["motion", "scan", str(clips / "car_fast.mp4"), "--camera", "x"]) == 2
    assert "--camera needs --config" in capsys.readouterr().err
