"""deploy/k8s: schema-valid (kubernetes-validate --strict), and the isolation graph of sealcam/isolation.py
kept by the NetworkPolicies, the mounted Secrets and the securityContexts (tests/deploy_k8s_check.py)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_k8s_check import check_k8s, render

from sealcam.config import load_config

ROOT = Path(__file__).resolve().parents[1]
KDIR = ROOT / "deploy" / "k8s"
#: The Kubernetes version the manifests are checked against (k3s stable at the time of writing).
K8S_VERSION = "1.33.0"


@pytest.fixture(scope="module")
def objs() -> list[dict[str, Any]]:
    return render(KDIR)


@pytest.fixture(scope="module")
def config() -> Any:
    return load_config(KDIR / "config.yml")


def test_manifests_are_schema_valid_strict(objs: list[dict[str, Any]], tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    files = []
    for i, o in enumerate(objs):
        f = tmp_path / f"{i:02d}-{o['kind']}-{o['metadata']['name']}.yaml"
        f.write_text(yaml.safe_dump(o))
        files.append(str(f))
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", K8S_VERSION,
                           *files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = sorted(o["kind"] for o in objs)
    assert kinds.count("NetworkPolicy") == 8 and kinds.count("StatefulSet") == 2 and kinds.count("Deployment") == 5


def test_strict_validation_bites(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    bad = yaml.safe_load_all((KDIR / "crypto.yaml").read_text())
    dep = next(d for d in bad if d and d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True  # typo
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(dep))
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", K8S_VERSION,
                           str(f)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "readOnlyRootFilesytem" in proc.stdout + proc.stderr


def test_k8s_config_is_the_example_with_tcp_buses(config: Any) -> None:
    example = load_config(ROOT / "deploy" / "config.example.yml")
    a = config.model_dump(mode="json", exclude={"buses"})
    b = example.model_dump(mode="json", exclude={"buses"})
    # recipient paths are relative to each file: same names under each file's keys/ folder
    for d in (a, b):
        d["recipients"] = [Path(r).name for r in d["recipients"]]
        for cam in d["cameras"]:
            cam["recipients"] = [Path(r).name for r in cam["recipients"] or []]
    assert a == b, "deploy/k8s/config.yml drifted from deploy/config.example.yml (only buses may differ)"
    assert config.buses.plain_url.startswith("redis://") and config.buses.acl_dir == example.buses.acl_dir


def test_bus_cluster_ips_match_the_config(objs: list[dict[str, Any]], config: Any) -> None:
    ips = {o["metadata"]["name"]: o["spec"]["clusterIP"] for o in objs if o["kind"] == "Service"}
    assert config.buses.plain_url == f"redis://{ips['bus-plain']}:6379/0"
    assert config.buses.sealed_url == f"redis://{ips['bus-sealed']}:6379/0"


def test_k8s_keeps_the_isolation_graph(objs: list[dict[str, Any]], config: Any) -> None:
    assert check_k8s(objs, config) == []


def _policy(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name)


def _workload(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == name)


def _mutate(objs: list[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    m = copy.deepcopy(objs)
    app = {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "uploader"}}}
    if how == "crypto_internet":
        _policy(m, "crypto-egress")["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})
    elif how == "motion_dns":
        _policy(m, "motion-egress")["spec"]["egress"].append(copy.deepcopy(
            _policy(m, "uploader-egress")["spec"]["egress"][1]))
    elif how == "plain_bus_admits_uploader":
        _policy(m, "bus-plain-ingress")["spec"]["ingress"][0]["from"].append(app)
    elif how == "uploader_egress_to_plain":
        _policy(m, "uploader-egress")["spec"]["egress"][0]["to"].append(
            {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "bus-plain"}}})
    elif how == "no_default_deny":
        m = [o for o in m if o["metadata"]["name"] != "default-deny"]
    elif how == "recorder_internet":
        _policy(m, "recorder-egress")["spec"]["egress"][1]["to"][0]["ipBlock"]["cidr"] = "0.0.0.0/0"
    elif how == "uploader_hub_key":
        vol = next(v for v in _workload(m, "uploader")["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
        vol["projected"]["sources"].append({"secret": {"name": "hub", "items": [{"key": "hub_signing_key",
                                                                                  "path": "hub_signing_key"}]}})
    elif how == "crypto_token_and_root":
        spec = _workload(m, "crypto")["spec"]["template"]["spec"]
        spec["automountServiceAccountToken"] = True
        spec["securityContext"]["runAsNonRoot"] = False
    return m


@pytest.mark.parametrize(("how", "expected"), [
    ("crypto_internet", ["crypto: has egress beyond its buses: 0.0.0.0/0"]),
    ("motion_dns", ["motion: has egress beyond its buses: another namespace"]),
    ("plain_bus_admits_uploader", ["bus-plain: ingress admits uploader"]),
    ("uploader_egress_to_plain", ["uploader: egress allows the plain bus"]),
    ("no_default_deny", ["no default-deny NetworkPolicy (all pods, ingress and egress)", "bus-plain: has egress",
                         "bus-sealed: has egress", *(f"{s}: accepts ingress" for s in
                                                     ("crypto", "motion", "recorder", "uploader", "watchdog"))]),
    ("recorder_internet", ["recorder: has egress beyond the camera LAN: 0.0.0.0/0"]),
    ("uploader_hub_key", ["uploader: holds hub_signing_key (/run/secrets/hub_signing_key), which uploader must not"]),
    ("crypto_token_and_root", ["crypto: mounts a service account token", "crypto: may run as root"]),
])
def test_k8s_checker_reports_each_violation(objs: list[dict[str, Any]], config: Any, how: str,
                                            expected: list[str]) -> None:
    assert check_k8s(_mutate(objs, how), config) == expected
