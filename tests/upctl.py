"""Running `sealcam` and `sealcam up` as subprocesses in end-to-end tests: one copy of the helpers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SEALCAM = [sys.executable, "-m", "sealcam.cli.main"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`sealcam ARGS...`, output captured as text."""
    return subprocess.run([*SEALCAM, *args], capture_output=True, text=True, timeout=timeout)


@contextmanager
def running_up(cfg: Path, data: Path, seconds: int) -> Iterator[subprocess.Popen]:
    """`sealcam up --for SECONDS` as a subprocess; stopped (SIGTERM, then SIGKILL) if the test fails early."""
    up = subprocess.Popen([*SEALCAM, "up", "--config", str(cfg), "--data-dir", str(data), "--for", f"{seconds}s"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield up
    finally:
        if up.poll() is None:
            up.terminate()
            try:
                up.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.communicate(timeout=10)


def service_logs(data: Path, tail: int = 2500) -> str:
    """The end of every service log `up` wrote under DATA/logs (for assertion messages)."""
    return "".join(f"\n--- {p.name} ---\n{p.read_text(errors='replace')[-tail:]}"
                   for p in sorted((data / "logs").glob("*.log")))


def service_pid(data: Path, module: str) -> int | None:
    """PID of `python -m MODULE --config DATA/run/config.yml` (this test's `up`, not any other), or None."""
    want = ["-m", module, "--config", str(data / "run" / "config.yml")]
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(argv[i:i + len(want)] == want for i in range(len(argv))):
            return int(p.name)
    return None
