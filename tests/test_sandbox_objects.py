"""`sealcam up --sandbox` with object detection: a YOLOv8n exported offline to ONNX (random weights, from the yaml
bundled with ultralytics; nothing downloaded) configured as `objects.model` with the onnx backend. motion starts
inside bubblewrap with no network, loads the model (its file bound read-only, nothing else of its folder), and
the run seals motion events that the owner recovers with `sealcam decrypt --events`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sealcam.config import load_config
from sealcam.up.firstrun import first_run
from sealcam.up.sandbox import needs_for

pytestmark = pytest.mark.slow
SEALCAM = [sys.executable, "-m", "sealcam.cli.main"]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yolov8n.yaml (random weights, COCO names) exported to ONNX at 320x320, in a temp folder."""
    pytest.importorskip("ultralytics", reason="the detect extra (bash scripts/setup.sh --test installs it)")
    pytest.importorskip("onnxruntime", reason="the detect-onnx extra (bash scripts/setup.sh --test installs it)")
    folder = tmp_path_factory.mktemp("sandbox-yolo")
    # in a child process: ultralytics' settings stay in a temp folder and its import leaves this one untouched
    code = ("import sys, yaml, torch\n"
            "from pathlib import Path\n"
            "from sealcam.motion.objects_ultralytics import import_ultralytics_offline\n"
            "u = import_ultralytics_offline()\n"
            "torch.manual_seed(0)\n"
            "m = u.YOLO('yolov8n.yaml')\n"
            "m.model.names = yaml.safe_load((Path(u.__file__).parent / 'cfg/datasets/coco.yaml').read_text())"
            "['names']\n"
            "pt = Path(sys.argv[1]) / 'rand.pt'\n"
            "m.save(str(pt))\n"
            "print(u.YOLO(str(pt)).export(format='onnx', imgsz=320, simplify=False))\n")
    env = dict(os.environ, YOLO_CONFIG_DIR=str(folder / "config"))
    res = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    onnx = Path(res.stdout.strip().splitlines()[-1])
    assert onnx.is_file() and onnx.suffix == ".onnx", res.stdout
    return onnx


def test_up_sandboxed_motion_loads_an_onnx_model_and_seals_events(tmp_path: Path, onnx_model: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap not installed (apt install bubblewrap; scripts/setup.sh does)")
    monkeypatch.setenv("SEALCAM_WATCHDOG_PORT", "0")  # never collide with another `sealcam up`
    data = tmp_path / "data"
    cfg_path = first_run(data)  # keys and the default config (one synthetic camera), nothing started
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["cameras"][0]["inputs"][0]["url"] = "synthetic://demo?size=640x360&fps=10"  # a box crosses it for 10 s
    cfg["recording"] = {"segment_seconds": 10}
    cfg["motion"] = {"end_seconds": 1.5, "tamper": {"enabled": False}}
    cfg["objects"] = {"enabled": True, "model": str(onnx_model), "backend": "onnx"}
    cfg_path.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    up = subprocess.run([*SEALCAM, "up", "--sandbox", "--config", str(cfg_path), "--data-dir", str(data),
                         "--for", "18s"], capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - t0
    logs = "".join(f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-2500:]}"
                   for p in sorted((data / "logs").glob("*.log")))
    assert up.returncode == 0, up.stderr[-4000:] + logs
    print(f"sandboxed up with objects: {elapsed:.1f} s")
    assert "motion: sandboxed (bwrap, network none, buses plain.sock" in up.stderr, up.stderr[-3000:]
    motion_log = (data / "logs" / "motion.log").read_text(errors="replace")
    assert f"motion: loaded {onnx_model} on ONNX Runtime" in motion_log, motion_log[-3000:]
    assert "Traceback" not in motion_log, motion_log[-3000:]
    eff = data / "run" / "config.yml"  # what the supervisor gave motion's sandbox: the model file, not its folder
    ro = needs_for(load_config(eff), "motion", eff).ro
    assert onnx_model in ro and onnx_model.parent not in ro, ro

    keys = data / "keys"
    ver = subprocess.run([*SEALCAM, "verify", "--json", "--signer", str(keys / "hub.key"), str(data / "remote")],
                         capture_output=True, text=True, timeout=120)
    assert ver.returncode == 0 and json.loads(ver.stdout)["ok"], ver.stdout[-3000:] + ver.stderr
    dec = subprocess.run([*SEALCAM, "decrypt", "--identity", str(keys / "owner.identity"), "--signer",
                          str(keys / "hub.key"), "--events", "-", "-o", str(tmp_path / "all.mp4"),
                          str(data / "remote")], capture_output=True, text=True, timeout=120)
    assert dec.returncode == 0, dec.stderr[-3000:]
    events = [json.loads(line) for line in dec.stdout.splitlines() if line.startswith("{")]
    motion = [e for e in events if e.get("t") == "motion" and e["kind"] in ("motion", "object")]
    assert any(e["phase"] == "start" for e in motion) and any(e["phase"] == "end" for e in motion), events
