"""Static checks of services/*/Dockerfile*: the rules each image keeps, and what each one installs.

What an image installs is read from its one `pip install "...[extras]"` line, the extras resolved from
pyproject.toml (self-references like "sealcam[motion]" included), then closed over the dependency metadata of
the distributions installed in this venv (importlib.metadata): a transitive dependency counts too. A
distribution not installed here ends the walk (its own dependencies are unknown, e.g. torch under
ultralytics when the detect extra is not installed); its name still counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
IMAGES = {
    "recorder": ROOT / "services/recorder/Dockerfile",
    "motion": ROOT / "services/motion/Dockerfile",
    "motion.onnx": ROOT / "services/motion/Dockerfile.onnx",
    "crypto": ROOT / "services/crypto/Dockerfile",
    "uploader": ROOT / "services/uploader/Dockerfile",
    "watchdog": ROOT / "services/watchdog/Dockerfile",
}
ALLOWED_EXTRAS = {
    "recorder": set(), "crypto": set(), "watchdog": set(), "uploader": {"uploader"},
    "motion": {"motion", "detect"}, "motion.onnx": {"motion", "detect-onnx"},
}
STORAGE = {"boto3", "botocore", "s3transfer", "paramiko", "rq", "pyftpdlib"}
WEB = {"flask", "werkzeug", "requests", "httpx", "aiohttp"}
ML = {"ultralytics", "torch", "torchvision", "onnxruntime", "opencv-python", "opencv-python-headless", "numpy"}
FORBIDDEN = {
    "recorder": STORAGE | WEB | ML,
    "crypto": STORAGE | WEB | ML,
    "watchdog": STORAGE | WEB | ML,
    "uploader": WEB | ML,
    "motion": STORAGE | {"flask", "werkzeug"},  # ultralytics itself pulls requests (harmless with no network)
    "motion.onnx": STORAGE | WEB | {"ultralytics", "torch", "torchvision"},
}
#: Platforms the images are built for (linux/amd64, linux/arm64).
PLATFORMS = ({"platform_machine": "x86_64"}, {"platform_machine": "aarch64"})
_PIP = re.compile(r'pip install\b[^\n]*?"\.(?:\[([a-z0-9,-]*)\])?"')
_SECRETISH = re.compile(r"(PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL|_KEY\b|API_KEY)", re.I)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        buf += " " + line.rstrip("\\").strip() if buf else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def image_extras(path: Path, text: str | None = None) -> set[str]:
    text = path.read_text() if text is None else text
    found = [m.group(1) for m in _PIP.finditer(text)]
    if len(found) != 1:
        raise AssertionError(f"{path}: expected exactly one pip install of the project (\".[extras]\"), found "
                             f"{len(found)}")
    return {e for e in (found[0] or "").split(",") if e}


def dockerfile_problems(path: Path, text: str | None = None) -> list[str]:
    text = path.read_text() if text is None else text
    ins = _instructions(text)
    svc = path.parent.name
    out: list[str] = []
    args = dict(re.match(r"(\w+)=?(.*)", a).groups() for w, a in ins if w == "ARG")
    froms = [a.split()[0] for w, a in ins if w == "FROM"]
    for f in froms:
        base = args.get(f.strip("${}"), f) if f.startswith("$") else f
        if not re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base):
            out.append(f"base {base!r} is not python:3.11.N-slim-bookworm (exact tag, optional digest)")
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [a for w, a in final if w == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root") or not users[-1].split(":")[0].isdigit():
        out.append(f"final stage does not run as a numeric non-root USER ({users})")
    if not any(w == "HEALTHCHECK" and a != "NONE" for w, a in final):
        out.append("no HEALTHCHECK")
    for w, a in ins:
        if w in ("ENV", "ARG") and _SECRETISH.search(a):
            out.append(f"{w} {a!r} looks like it carries a secret")
        if w in ("COPY", "ADD"):
            srcs = [s for s in a.split() if not s.startswith("--")][:-1]
            for s in srcs:
                ok = s in ("pyproject.toml", "README.md", "sealcam", "services/__init__.py", f"services/{svc}",
                           "deploy/images/healthcheck.py", "/opt/sealcam")
                if not ok:
                    out.append(f"{w} of {s!r}: an image copies only the core library and its own service")
        if w == "ADD":
            out.append("ADD (use COPY)")
    if not any(w == "RUN" and a == "rm -rf sealcam/viewer sealcam/storage" for w, a in ins):
        out.append("the image keeps the owner-side sealcam/viewer and sealcam/storage")
    if "SEALCAM_SERVICE=" + svc not in text:
        out.append(f"SEALCAM_SERVICE is not {svc}")
    if f'"services.{svc}"' not in text:
        out.append(f"entry point is not python -m services.{svc}")
    return out


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements_for(extras: set[str]) -> list[Requirement]:
    """Base dependencies plus the extras, self-references expanded; unknown extras are an error."""
    proj = _pyproject()
    name = canonicalize_name(proj["name"])
    optional = proj.get("optional-dependencies", {})
    out: list[Requirement] = [Requirement(r) for r in proj["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise AssertionError(f"pyproject.toml has no extra {extra!r}")
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == name:
                todo += sorted(r.extras)
            else:
                out.append(r)
    return out


def _applies(marker: Marker | None, extra: str = "") -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**p, "sys_platform": "linux", "python_version": "3.11", "extra": extra})
               for p in PLATFORMS)


def closure(reqs: list[Requirement]) -> tuple[set[str], set[str]]:
    """(every distribution name the requirements pull in on the image platforms, those not installed here)."""
    names: set[str] = set()
    missing: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(reqs)
    while todo:
        req = todo.pop()
        if not _applies(req.marker):
            continue
        n = canonicalize_name(req.name)
        if (n, frozenset(req.extras)) in seen:
            continue
        seen.add((n, frozenset(req.extras)))
        names.add(n)
        try:
            dist = metadata.distribution(n)
        except metadata.PackageNotFoundError:
            missing.add(n)
            continue
        for sub in dist.requires or []:
            sr = Requirement(sub)
            if sr.marker is None or any(_applies(sr.marker, e) for e in ("", *req.extras)):
                sr.marker = None
                todo.append(sr)
    return names, missing


#: Import names of distributions whose import name differs (for modules not installed here).
IMPORT_NAMES = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "onnxruntime": "onnxruntime",
                "ultralytics": "ultralytics", "torch": "torch", "numpy": "numpy"}


def import_needs(service: str, image_dists: set[str]) -> tuple[set[str], dict[str, str], set[str]]:
    """Import every module of services.<service> (and its __main__) in a fresh interpreter in which the
    installed distributions that are not in `image_dists` cannot be imported (as in the image: optional imports
    fall back, required ones fail). Returns (third-party distributions loaded, {module: error} for modules
    that failed because the image lacks something, distributions of modules not installed here at all)."""
    code = f"""
import importlib, importlib.abc, json, pkgutil, sys
from importlib import metadata
from packaging.utils import canonicalize_name
baseline = set(sys.modules)  # interpreter start-up (.pth hooks), not the service
allowed = set(json.loads(sys.argv[1]))
dists = metadata.packages_distributions()
blocked = {{top for top, ds in dists.items() if not {{canonicalize_name(d) for d in ds}} & allowed}}
blocked -= set(sys.stdlib_module_names) | {{'sealcam', 'services'}}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the image)", name=name)
        return None
sys.meta_path.insert(0, Block())
import services.{service} as pkg
failed, missing = {{}}, set()
for m in [*(i.name for i in pkgutil.walk_packages(pkg.__path__, 'services.{service}.')), 'services.{service}.__main__']:
    try:
        importlib.import_module(m)
    except ModuleNotFoundError as exc:
        top = (exc.name or '').split('.')[0]
        if top in blocked:
            failed[m] = str(exc)
        else:
            missing.add(top)
tops = {{m.split('.')[0] for m in set(sys.modules) - baseline}} - set(sys.stdlib_module_names)
loaded = sorted({{d for t in tops for d in dists.get(t, ())}})
print(json.dumps([loaded, failed, sorted(missing)]))
"""
    out = subprocess.run([sys.executable, "-c", code, json.dumps(sorted(image_dists))], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    loaded, failed, missing = json.loads(out.stdout.strip().splitlines()[-1])
    return ({canonicalize_name(d) for d in loaded} - {"sealcam"}, failed,
            {canonicalize_name(IMPORT_NAMES.get(m, m)) for m in missing})
