"""Renders deploy/k8s (the kustomization's resources, generators and image tags: a small subset of kustomize,
enough for this directory; no kubectl here) and checks the objects against sealcam.isolation.

`check_k8s(objects, config)` returns violations; [] means: a default-deny policy, each bus admits exactly
the services whose zone has it and each service's egress allows exactly its buses (each side on its own),
no egress beyond the buses for zones with no network, no internet for the camera zone, no pod reachable
but the buses, each pod holding only its own secrets, and the restricted securityContext everywhere.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from sealcam.isolation import ZONES, allowed_secrets, config_secrets

COMPONENT = "app.kubernetes.io/component"
BUS_PODS = {"plain": "bus-plain", "sealed": "bus-sealed"}
REDIS_PORT = 6379
PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
CLUSTER_SCOPED = {"Namespace"}


def render(kdir: Path) -> list[dict[str, Any]]:
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    objs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        objs += [d for d in yaml.safe_load_all((kdir / res).read_text()) if d]
    for gen in k.get("configMapGenerator", []):
        data = {Path(f).name: (kdir / f).read_text() for f in gen.get("files", [])}
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    tags = {i["name"]: i for i in k.get("images", [])}
    for o in objs:
        if o["kind"] not in CLUSTER_SCOPED and k.get("namespace"):
            o["metadata"]["namespace"] = k["namespace"]
        for c in _containers(o):
            name = c["image"].rsplit(":", 1)[0]
            if name in tags:
                c["image"] = f"{tags[name].get('newName', name)}:{tags[name].get('newTag', 'latest')}"
    return objs


def _pod(o: dict[str, Any]) -> dict[str, Any] | None:
    if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return o["spec"]["template"]
    return None


def _containers(o: dict[str, Any]) -> list[dict[str, Any]]:
    pod = _pod(o)
    return [] if pod is None else pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise ValueError(f"unsupported selector {selector} (only matchLabels)")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _policies(objs: list[dict[str, Any]], labels: dict[str, str], ptype: str) -> list[dict[str, Any]]:
    return [p for p in objs if p["kind"] == "NetworkPolicy" and ptype in p["spec"].get("policyTypes", [])
            and _selects(p["spec"]["podSelector"], labels)]


def _rules(objs: list[dict[str, Any]], labels: dict[str, str], ptype: str) -> list[dict[str, Any]] | None:
    """The rules that apply to a pod in one direction; None when no policy isolates it (all allowed)."""
    pols = _policies(objs, labels, ptype)
    if not pols:
        return None
    key = "egress" if ptype == "Egress" else "ingress"
    return [r for p in pols for r in p["spec"].get(key) or []]


def _port_ok(rule: dict[str, Any], port: int) -> bool:
    return not rule.get("ports") or any(p.get("port") in (port, "redis") for p in rule["ports"])


def _peer_pod(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    return "podSelector" in peer and "namespaceSelector" not in peer and "ipBlock" not in peer \
        and _selects(peer["podSelector"], labels)


def allows(objs: list[dict[str, Any]], src: dict[str, str], dst: dict[str, str], ptype: str) -> bool:
    """Whether the policies of one side allow src -> dst on the bus port (Egress: src's; Ingress: dst's)."""
    me, other = (src, dst) if ptype == "Egress" else (dst, src)
    rules = _rules(objs, me, ptype)
    if rules is None:
        return True
    key = "to" if ptype == "Egress" else "from"
    return any(_port_ok(r, REDIS_PORT) and (not r.get(key) or any(_peer_pod(p, other) for p in r[key]))
               for r in rules)


def _workloads(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["spec"]["template"]["metadata"]["labels"].get(COMPONENT, o["metadata"]["name"]): o
            for o in objs if _pod(o) is not None}


def _hardening(name: str, o: dict[str, Any]) -> list[str]:
    out = []
    spec = _pod(o)["spec"]
    psc = spec.get("securityContext") or {}
    if spec.get("automountServiceAccountToken") is not False:
        out.append(f"{name}: mounts a service account token")
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 0) == 0:
        out.append(f"{name}: may run as root")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        out.append(f"{name}: no RuntimeDefault seccomp profile")
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        out.append(f"{name}: shares a host namespace")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        out.append(f"{name}: mounts a host path")
    for c in _containers(o):
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False \
                or sc.get("privileged") or (sc.get("capabilities") or {}).get("drop") != ["ALL"] \
                or (sc.get("capabilities") or {}).get("add"):
            out.append(f"{name}: container {c['name']} lacks the restricted securityContext")
        r = c.get("resources") or {}
        if not all(k in r.get(side, {}) for side in ("requests", "limits") for k in ("cpu", "memory")):
            out.append(f"{name}: container {c['name']} lacks cpu/memory requests and limits")
        if c.get("ports") and name not in BUS_PODS.values():
            out.append(f"{name}: container {c['name']} exposes ports")
    return out


def _secret_files(o: dict[str, Any]) -> dict[str, str]:
    """Mounted secret file path -> Secret name, for every secret or projected-secret volume."""
    spec = _pod(o)["spec"]
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    out: dict[str, str] = {}
    for c in _containers(o):
        for m in c.get("volumeMounts", []):
            v = vols.get(m["name"], {})
            sources = [{"secret": {**v["secret"], "name": v["secret"]["secretName"]}}] if "secret" in v else \
                (v.get("projected") or {}).get("sources", [])
            for s in sources:
                sec = s.get("secret")
                if sec is None:
                    continue
                items = sec.get("items") or [{"key": "*", "path": "*"}]
                for it in items:
                    base = m["mountPath"] if not m.get("subPath") else str(Path(m["mountPath"]).parent)
                    out[f"{base.rstrip('/')}/{it['path']}"] = sec["name"]
    return out


def _egress_extra(objs: list[dict[str, Any]], labels: dict[str, str]) -> tuple[list[str], list[str]]:
    """(egress peers beyond the bus pods, those of them that reach beyond private address space)."""
    rules = _rules(objs, labels, "Egress")
    if rules is None:
        return ["everything (no egress policy)"], ["everything"]
    bus_labels = [{COMPONENT: b} for b in BUS_PODS.values()]
    extra, public = [], []
    for r in rules:
        peers = r.get("to") or []
        if not peers:
            extra.append("any destination")
            public.append("any destination")
        for p in peers:
            if any(_peer_pod(p, b) for b in bus_labels):
                continue
            if "ipBlock" in p:
                net = ipaddress.ip_network(p["ipBlock"]["cidr"])
                extra.append(str(net))
                if not any(net.subnet_of(priv) for priv in PRIVATE):
                    public.append(str(net))
            else:
                extra.append("pods" if "namespaceSelector" not in p else "another namespace")
                if "namespaceSelector" in p:
                    public.append("another namespace (DNS resolves anything)")
    return extra, public


def check_k8s(objs: list[dict[str, Any]], config: Any) -> list[str]:  # noqa: C901 - one rule per block
    out: list[str] = []
    pols = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if not any(p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in pols):
        out.append("no default-deny NetworkPolicy (all pods, ingress and egress)")
    loads = _workloads(objs)
    kinds = {str(p): k for p, k in config_secrets(config).items()}
    for name, o in sorted(loads.items()):
        out += _hardening(name, o)
        labels = o["spec"]["template"]["metadata"]["labels"]
        held = _secret_files(o)
        if name in BUS_PODS.values():
            bus = name.removeprefix("bus-")
            admitted = {s for s in ZONES if allows(objs, {COMPONENT: s}, labels, "Ingress")}
            for s in sorted(admitted ^ {s for s, z in ZONES.items() if bus in z.buses}):
                verb = "admits" if s in admitted else "does not admit"
                out.append(f"{name}: ingress {verb} {s}")
            if _rules(objs, labels, "Egress") != []:
                out.append(f"{name}: has egress")
            if set(held.values()) != {f"{name}-acl"}:
                out.append(f"{name}: holds {sorted(set(held.values()))}, not just its aclfile")
            continue
        if name not in ZONES:
            out.append(f"{name}: runs no known service")
            continue
        z = ZONES[name]
        for bus, pod in BUS_PODS.items():
            ok = allows(objs, labels, {COMPONENT: pod}, "Egress")
            if ok and bus not in z.buses:
                out.append(f"{name}: egress allows the {bus} bus")
            if bus in z.buses and not ok:
                out.append(f"{name}: egress does not allow the {bus} bus it needs")
        extra, public = _egress_extra(objs, labels)
        if z.network == "none" and extra:
            out.append(f"{name}: has egress beyond its buses: {', '.join(extra)}")
        elif z.network == "camera" and public:
            out.append(f"{name}: has egress beyond the camera LAN: {', '.join(public)}")
        if any(allows(objs, {COMPONENT: s}, labels, "Ingress") for s in [*ZONES, *BUS_PODS.values()]):
            out.append(f"{name}: accepts ingress")
        for path, secret in sorted(held.items()):
            kind = kinds.get(path)
            if kind is None:
                out.append(f"{name}: holds {path} (Secret {secret}), which the config does not name")
            elif kind not in allowed_secrets(name):
                out.append(f"{name}: holds {kind} ({path}), which {name} must not")
        if z.devices is False and any("hostPath" in v for v in _pod(o)["spec"].get("volumes", [])):
            out.append(f"{name}: is given host devices")
    for zone in sorted(set(ZONES) - set(loads)):
        out.append(f"{zone}: no workload runs it")
    return out
