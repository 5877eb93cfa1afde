"""The owner's CLI, run as a subprocess exactly as a user runs it: keys, seal, inspect, verify, decrypt."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealcam.cli import exitcodes
from sealcam.media.fmp4 import iter_fragments

T0 = "2024-05-01T12:00:00Z"
T0_EPOCH = 1714564800


@dataclass
class Result:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")


def sealcam(*args: str | Path, cwd: Path, stdin: bytes | None = None, env: dict | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "sealcam.cli.main", *map(str, args)], cwd=cwd, input=stdin if stdin is not None else b"",
        capture_output=True, timeout=120, env={**os.environ, **(env or {})},
    )
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err  # expected errors never show a traceback
    return Result(proc.returncode, proc.stdout, err)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: run `bash scripts/setup.sh --test` (it installs ffmpeg)")
    return path


@dataclass
class Keys:
    dir: Path
    identity: Path
    recipient: str
    hub: Path
    passphrase: Path
    signer: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    pw = d / "hub.pass"
    pw.write_text("correct horse battery staple\n")
    r = sealcam("keys", "owner-init", "--no-passphrase", "-o", "owner.id", cwd=d)
    assert r.rc == 0, r.err
    rcpt = re.search(r"sc1[a-z2-7]+", r.text).group(0)
    r = sealcam("keys", "hub-init", "--passphrase-file", pw, "-o", "hub.key", cwd=d)
    assert r.rc == 0, r.err
    signer = re.search(r"scsig1[a-z2-7]+", r.text).group(0)
    return Keys(d, d / "owner.id", rcpt, d / "hub.key", pw, signer)


def seal(keys: Keys, cwd: Path, src: str | Path, out: str | Path, *extra: str | Path, stdin: bytes | None = None,
         camera: str = "front-door") -> Result:
    return sealcam("seal", "--camera", camera, "--recipient", keys.recipient, "--signing-key", keys.hub,
                   "--passphrase-file", keys.passphrase, *extra, src, out, cwd=cwd, stdin=stdin)


def decrypt(keys: Keys, cwd: Path, *args: str | Path, identity: Path | None = None) -> Result:
    return sealcam("decrypt", "--identity", identity or keys.identity, "--signer", keys.signer, *args, cwd=cwd)


# --- keys ----------------------------------------------------------------------------------------------


def test_owner_init_modes_perms_and_no_overwrite(tmp_path: Path) -> None:
    r = sealcam("keys", "owner-init", "--no-passphrase", cwd=tmp_path)
    assert r.rc == 0, r.err
    ident = tmp_path / "sealcam-owner.identity"
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    text = ident.read_text()
    assert "ENCRYPTED" not in text
    secret = re.search(r"-----\n(.+?)-----END", text, re.S).group(1).strip()
    assert secret not in r.text  # never print key material
    rcpt = re.search(r"sc1[a-z2-7]+", r.text).group(0)
    assert "▀" in r.text or "\x1b[" in r.text  # a QR code
    assert f"--recipient {rcpt}" in r.text

    # stdin is not a terminal and no flag: no passphrase, but a warning
    r = sealcam("keys", "owner-init", "-o", "b.id", cwd=tmp_path)
    assert r.rc == 0 and "WITHOUT" in r.err
    assert "ENCRYPTED" not in (tmp_path / "b.id").read_text()

    (tmp_path / "pw").write_text("s3cret\n")
    r = sealcam("keys", "owner-init", "--passphrase-file", "pw", "-o", "c.id", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert "ENCRYPTED IDENTITY" in (tmp_path / "c.id").read_text()
    r = sealcam("keys", "show", "c.id", "--passphrase-file", "pw", cwd=tmp_path)
    assert r.rc == 0 and re.fullmatch(r"sc1[a-z2-7]+\n", r.text)
    (tmp_path / "bad").write_text("wrong\n")
    r = sealcam("keys", "show", "c.id", "--passphrase-file", "bad", cwd=tmp_path)
    assert r.rc == exitcodes.KEY and "wrong passphrase" in r.err and "hint:" in r.err

    before = ident.read_text()
    r = sealcam("keys", "owner-init", "--no-passphrase", cwd=tmp_path)
    assert r.rc == exitcodes.USAGE and "refusing to overwrite" in r.err
    assert ident.read_text() == before


def test_hub_init_requires_a_passphrase_choice_off_a_terminal(tmp_path: Path) -> None:
    r = sealcam("keys", "hub-init", cwd=tmp_path)
    assert r.rc == exitcodes.USAGE
    assert r.err.startswith("sealcam: error: ") and "hint: give --passphrase-file" in r.err
    assert not (tmp_path / "sealcam-hub.key").exists()

    (tmp_path / "pw").write_text("pass phrase\n")
    r = sealcam("keys", "hub-init", "--passphrase-file", "pw", cwd=tmp_path)
    assert r.rc == 0, r.err
    key = tmp_path / "sealcam-hub.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "ENCRYPTED HUB SIGNING KEY" in key.read_text()
    signer = re.search(r"scsig1[a-z2-7]+", r.text).group(0)
    assert f"sealcam verify --signer {signer}" in r.text
    assert (tmp_path / "sealcam-hub.key.signer").read_text().strip() == signer

    r = sealcam("keys", "show", key, "--passphrase-file", "pw", cwd=tmp_path)
    assert r.rc == 0 and r.text.strip() == signer
    (tmp_path / "bad").write_text("nope\n")
    r = sealcam("keys", "show", key, "--passphrase-file", "bad", cwd=tmp_path)
    assert r.rc == exitcodes.KEY and "wrong passphrase" in r.err and f"({key})" in r.err
    r = sealcam("keys", "show", key, cwd=tmp_path)  # protected, no terminal, no passphrase file
    assert r.rc == exitcodes.KEY and "--passphrase-file" in r.err

    r = sealcam("keys", "hub-init", "--no-passphrase", cwd=tmp_path)
    assert r.rc == exitcodes.USAGE and "refusing to overwrite" in r.err
    r = sealcam("keys", "hub-init", "--no-passphrase", "-o", "plain.key", cwd=tmp_path)
    assert r.rc == 0 and "ENCRYPTED" not in (tmp_path / "plain.key").read_text()


# --- seal / inspect / verify / decrypt ----------------------------------------------------------------


def test_roundtrip_file(keys: Keys, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    r = seal(keys, tmp_path, "in.bin", "a.seg", "--chunk-bytes", "64K", "--checkpoint-every", "2")
    assert r.rc == 0, r.err
    assert not list(tmp_path.glob("*.partial"))
    sealed = (tmp_path / "a.seg").read_bytes()
    assert b"front-door" not in sealed and data[:64] not in sealed

    r = sealcam("inspect", "a.seg", "--json", cwd=tmp_path)
    assert r.rc == 0, r.err
    assert b"front-door" not in r.out and data[:16].hex().encode() not in r.out
    info = json.loads(r.out)["files"][0]
    h = info["header"]
    assert info["magic"] == "SEALCAM" and info["version"] == 1
    assert h["suite"] == "aes256gcm" and h["seq"] == 0 and h["signer"] == keys.signer
    assert h["keys_detached"] is False and set(h["prev_link"]) == {"0"} and len(h["camera_handle"]) == 32
    assert h["created"].endswith("Z")
    assert [x["type"] for x in info["recipients"]] == ["hpke-x25519"]
    recs = info["records"]
    assert len(recs) == 1 + 5  # METADATA + ceil(300000 / 65536) DATA chunks
    assert [x["index"] for x in recs] == list(range(6))
    assert recs[1]["flags"] == ["KEY"] and recs[-1]["flags"] == ["FINAL"]
    assert all({"offset", "length", "type", "time"} <= set(x) for x in recs)
    assert info["checkpoints"] and info["index"]["entries"] == 6 and info["trailer"]["count"] == 6
    assert info["damage"] == []

    r = sealcam("inspect", "a.seg", cwd=tmp_path)
    assert r.rc == 0 and "hpke-x25519" in r.text and "FINAL" in r.text and "front-door" not in r.text

    r = sealcam("verify", "--signer", keys.signer, "a.seg", cwd=tmp_path)
    assert r.rc == 0, r.text + r.err
    assert "OK" in r.text and "not pinned" not in r.err
    r = sealcam("verify", "a.seg", cwd=tmp_path)
    assert r.rc == 0 and "signer not pinned" in r.err and keys.signer in r.err

    r = decrypt(keys, tmp_path, "a.seg", "-o", "out.bin", "--extract", "x")
    assert r.rc == 0, r.err
    assert (tmp_path / "out.bin").read_bytes() == data
    meta = list((tmp_path / "x").glob("*.json"))
    assert len(meta) == 1 and json.loads(meta[0].read_text()) == {
        "camera": "front-door", "source": "in.bin", "content_type": "application/octet-stream"}
    assert "front-door" in r.err  # the camera name shown after decryption


def test_roundtrip_stdin_to_stdout(keys: Keys, tmp_path: Path) -> None:
    data = os.urandom(5000) * 3
    r = seal(keys, tmp_path, "-", "s.seg", "--chunk-bytes", "1K", "--suite", "chacha20poly1305", "--pad", "pow2",
             stdin=data)
    assert r.rc == 0, r.err
    info = json.loads(sealcam("inspect", "--json", "s.seg", cwd=tmp_path).out)["files"][0]
    assert info["header"]["suite"] == "chacha20poly1305"
    r = decrypt(keys, tmp_path, "s.seg")  # stdout is a pipe here: the stream goes there
    assert r.rc == 0, r.err
    assert r.out == data
    r = decrypt(keys, tmp_path, "s.seg", "-o", "-", "--since", "0", "--until", str(T0_EPOCH * 10))
    assert r.rc == 0 and r.out == data


def test_empty_input(keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert seal(keys, tmp_path, "empty", "e.seg").rc == 0
    assert sealcam("verify", "--signer", keys.signer, "e.seg", cwd=tmp_path).rc == 0
    r = decrypt(keys, tmp_path, "e.seg")
    assert r.rc == 0 and r.out == b""


def _tamper(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x01
    path.write_bytes(bytes(b))


def test_tampered_segment_verify_and_decrypt(keys: Keys, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    (tmp_path / "in.bin").write_bytes(data)
    assert seal(keys, tmp_path, "in.bin", "t.seg", "--chunk-bytes", "64K").rc == 0
    rec = json.loads(sealcam("inspect", "--json", "t.seg", cwd=tmp_path).out)["files"][0]["records"][2]
    _tamper(tmp_path / "t.seg", rec["offset"] + rec["length"] // 2)

    r = sealcam("verify", "--signer", keys.signer, "t.seg", cwd=tmp_path)
    assert r.rc == exitcodes.PROBLEMS
    assert f"modified: record bytes differ from the signed digest (t.seg, segment 0, chunk 2, byte {rec['offset']})" \
        in r.text
    assert "FAIL" in r.text and "sealcam: error: verification failed" in r.err
    r = sealcam("verify", "--json", "--signer", keys.signer, "t.seg", cwd=tmp_path)
    rep = json.loads(r.out)
    assert r.rc == 1 and rep["ok"] is False and rep["files"][0]["ok"] is False
    assert rep["problems"] == [{"kind": "modified", "message": "record bytes differ from the signed digest",
                                "file": "t.seg", "offset": rec["offset"], "index": 2, "seq": 0}]

    r = decrypt(keys, tmp_path, "t.seg", "-o", "out.bin")
    assert r.rc == exitcodes.PROBLEMS
    assert "modified" in r.err and f"byte {rec['offset']}" in r.err and "--force" in r.err
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.bin.partial").exists()

    r = decrypt(keys, tmp_path, "t.seg", "-o", "out.bin", "--force")
    assert r.rc == exitcodes.PROBLEMS
    assert "let through: modified" in r.err and "chunk 2" in r.err
    out = (tmp_path / "out.bin").read_bytes()
    assert out == data[: 65536] + data[2 * 65536 :]  # exactly the damaged chunk is missing

    # a flipped byte in the header: refused before anything is decrypted
    assert seal(keys, tmp_path, "in.bin", "h.seg").rc == 0
    _tamper(tmp_path / "h.seg", 40)
    r = sealcam("verify", "--signer", keys.signer, "h.seg", cwd=tmp_path)
    assert r.rc == 1 and "(h.seg" in r.text
    r = decrypt(keys, tmp_path, "h.seg", "-o", "h.out")
    assert r.rc == 1 and "refusing to decrypt" in r.err and not (tmp_path / "h.out").exists()


def test_wrong_signer_pinned(keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x\n")
    assert sealcam("keys", "hub-init", "--passphrase-file", "pw", "-o", "other.key", cwd=tmp_path).rc == 0
    (tmp_path / "in").write_bytes(b"hello")
    assert seal(keys, tmp_path, "in", "w.seg").rc == 0
    r = sealcam("verify", "--signer", "other.key.signer", "w.seg", cwd=tmp_path)
    assert r.rc == 1 and "wrong-signer:" in r.text
    r = decrypt(keys, tmp_path, "w.seg", "--signer", "other.key.signer")
    assert r.rc == 1 and "wrong-signer" in r.err


def test_multi_recipient(keys: Keys, tmp_path: Path) -> None:
    for name in ("b.id", "c.id"):
        assert sealcam("keys", "owner-init", "--no-passphrase", "--no-qr", "-o", name, cwd=tmp_path).rc == 0
    rb = sealcam("keys", "show", "b.id", cwd=tmp_path).text.strip()
    data = os.urandom(10_000)
    (tmp_path / "in").write_bytes(data)
    r = seal(keys, tmp_path, "in", "m.seg", "--recipient", rb)
    assert r.rc == 0, r.err
    info = json.loads(sealcam("inspect", "--json", "m.seg", cwd=tmp_path).out)["files"][0]
    assert len(info["recipients"]) == 2
    for ident in (keys.identity, tmp_path / "b.id"):
        r = decrypt(keys, tmp_path, "m.seg", identity=ident)
        assert r.rc == 0 and r.out == data
    r = decrypt(keys, tmp_path, "m.seg", identity=tmp_path / "c.id")
    assert r.rc == exitcodes.KEY
    assert "none of your identities can decrypt this segment (m.seg)" in r.err and "key ids" in r.err


def test_chain_state_and_missing_segment(keys: Keys, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    data = [os.urandom(3000) for _ in range(3)]
    for i, d in enumerate(data):
        (tmp_path / f"in{i}").write_bytes(d)
        r = seal(keys, tmp_path, f"in{i}", remote / f"{i}.seg", "--chain-state", "chain.json")
        assert r.rc == 0, r.err
        assert f"seq {i}" in r.text
    state = json.loads((tmp_path / "chain.json").read_text())
    (entry,) = state.values()
    assert entry["next_seq"] == 3 and len(entry["prev_link"]) == 64
    # another camera in the same state file starts its own chain
    assert seal(keys, tmp_path, "in0", remote / "other.seg", "--chain-state", "chain.json", camera="yard").rc == 0
    assert len(json.loads((tmp_path / "chain.json").read_text())) == 2

    r = sealcam("verify", "--signer", keys.signer, "remote", cwd=tmp_path)
    assert r.rc == 0, r.text
    assert "4 segment(s)" in r.text
    r = decrypt(keys, tmp_path, "remote/0.seg", "remote/1.seg", "remote/2.seg")
    assert r.rc == 0 and r.out == b"".join(data)

    (remote / "1.seg").unlink()
    r = sealcam("verify", "--signer", keys.signer, "remote", cwd=tmp_path)
    assert r.rc == exitcodes.PROBLEMS
    assert re.search(r"^missing-segment: .*\(remote/2\.seg, segment 2\)$", r.text, re.M), r.text
    r = sealcam("verify", "--json", "--signer", keys.signer, "remote", cwd=tmp_path)
    assert [p["kind"] for p in json.loads(r.out)["problems"]] == ["missing-segment"]
    r = decrypt(keys, tmp_path, "remote", "-o", "x")
    assert r.rc == 1 and "missing-segment" in r.err


def test_detached_keys_shred(keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"secret footage")
    assert seal(keys, tmp_path, "in", "d.seg", "--detach-keys").rc == 0
    assert (tmp_path / "d.seg.keys").exists()
    r = decrypt(keys, tmp_path, "d.seg")
    assert r.rc == 0 and r.out == b"secret footage"
    (tmp_path / "k").mkdir()
    (tmp_path / "d.seg.keys").rename(tmp_path / "k" / "d.seg.keys")
    assert decrypt(keys, tmp_path, "d.seg", "--keys", "k").out == b"secret footage"
    (tmp_path / "k" / "d.seg.keys").unlink()
    assert sealcam("verify", "--signer", keys.signer, "d.seg", cwd=tmp_path).rc == 0  # verifiable without keys
    r = decrypt(keys, tmp_path, "d.seg")
    assert r.rc == exitcodes.KEY and "none of your identities" in r.err


def test_error_messages(keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x")
    typo = keys.recipient[:10] + ("a" if keys.recipient[10] != "a" else "b") + keys.recipient[11:]
    r = sealcam("seal", "--camera", "c", "--recipient", typo, "--signing-key", keys.hub, "--passphrase-file",
                keys.passphrase, "in", "o.seg", cwd=tmp_path)
    assert r.rc == exitcodes.KEY
    assert r.err.startswith("sealcam: error: ") and "checksum" in r.err and "hint: the string has a typo" in r.err
    assert not (tmp_path / "o.seg").exists()

    r = seal(keys, tmp_path, "missing.bin", "o.seg")
    assert r.rc == exitcodes.IO and "(missing.bin)" in r.err and "No such file" in r.err
    assert not list(tmp_path.glob("o.seg*"))
    r = sealcam("verify", "nope.seg", cwd=tmp_path)
    assert r.rc == exitcodes.IO and "sealcam: error: no such file or directory (nope.seg)" in r.err
    r = sealcam("decrypt", "--identity", "no.id", "nope.seg", cwd=tmp_path)
    assert r.rc == exitcodes.IO and "nope.seg" in r.err
    assert seal(keys, tmp_path, "in", "o.seg").rc == 0
    r = sealcam("decrypt", "--identity", "no.id", "o.seg", cwd=tmp_path)
    assert r.rc == exitcodes.KEY and "key file not found (no.id)" in r.err
    r = seal(keys, tmp_path, "in", "o.seg")
    assert r.rc == exitcodes.USAGE and "refusing to overwrite" in r.err
    r = decrypt(keys, tmp_path, "o.seg", "--since", "2024-05-01T12:00:00")
    assert r.rc == exitcodes.USAGE and "no time zone" in r.err and "hint:" in r.err
    r = seal(keys, tmp_path, "in", "p.seg", "--chunk-bytes", "12")
    assert r.rc == exitcodes.USAGE and "--chunk-bytes" in r.err
    r = seal(keys, tmp_path, "in", "p.seg", "--fmp4")
    assert r.rc == exitcodes.USAGE and "fragmented MP4" in r.err and "hint:" in r.err
    assert not list(tmp_path.glob("p.seg*"))
    r = sealcam("seal", "--camera", "c", "--recipient", keys.recipient, "--signing-key", keys.hub, "in", "p.seg",
                cwd=tmp_path)  # protected hub key, no passphrase, no terminal
    assert r.rc == exitcodes.KEY and "--passphrase-file" in r.err
    r = sealcam("verify", "--signer", "scsig1nonsense", "o.seg", cwd=tmp_path)
    assert r.rc == exitcodes.KEY and "hint:" in r.err
    (tmp_path / "junk.seg").write_bytes(b"not a segment at all")
    r = sealcam("verify", "junk.seg", cwd=tmp_path)
    assert r.rc == 1 and "malformed: not a sealcam file (bad magic) (junk.seg, byte 0)" in r.text
    r = sealcam("frobnicate", cwd=tmp_path)
    assert r.rc == exitcodes.USAGE


# --- fragmented MP4 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fmp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    subprocess.run([
        _tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10", "-t", "6",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer", "-f", "mp4", str(path),
    ], check=True, timeout=120)  # fmt: skip
    return path


def _probe(path: Path) -> dict:
    out = subprocess.run(
        [_tool("ffprobe"), "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_packets,start_time:format=duration", "-of", "json", str(path)],
        check=True, capture_output=True, timeout=60,
    ).stdout
    return json.loads(out)


def test_fmp4_seal_and_seek(keys: Keys, tmp_path: Path, fmp4: Path) -> None:
    r = seal(keys, tmp_path, fmp4, "v.seg", "--fmp4", "--start", T0)
    assert r.rc == 0, r.err
    info = json.loads(sealcam("inspect", "--json", "v.seg", cwd=tmp_path).out)["files"][0]
    recs = info["records"]
    assert recs[0]["flags"] == ["KEY"] and recs[0]["time"] == T0  # init segment
    assert recs[1]["flags"] == []  # metadata
    assert len(recs) == 2 + 6  # one fragment per second (-g 10 at 10 fps)
    assert all("KEY" in x["flags"] for x in recs[2:])
    assert [x["time"] for x in recs[2:]] == [f"2024-05-01T12:00:0{i}Z" for i in range(6)]

    r = decrypt(keys, tmp_path, "v.seg", "-o", "full.mp4")
    assert r.rc == 0, r.err
    assert (tmp_path / "full.mp4").read_bytes() == fmp4.read_bytes()

    r = decrypt(keys, tmp_path, "v.seg", "-o", "seek.mp4", "--since", "2024-05-01T14:00:03.5+02:00")
    assert r.rc == 0, r.err
    probe = _probe(tmp_path / "seek.mp4")
    assert int(probe["streams"][0]["nb_read_packets"]) == 30  # from the key frame at 3 s to the end
    assert abs(float(probe["streams"][0]["start_time"]) - 3.0) < 0.2
    subprocess.run([_tool("ffmpeg"), "-v", "error", "-xerror", "-i", str(tmp_path / "seek.mp4"), "-f", "null", "-"],
                   check=True, capture_output=True, timeout=60)
    r = decrypt(keys, tmp_path, "v.seg", "-o", "mid.mp4", "--since", str(T0_EPOCH + 1), "--until", str(T0_EPOCH + 2))
    assert r.rc == 0 and int(_probe(tmp_path / "mid.mp4")["streams"][0]["nb_read_packets"]) == 20

    # two chained segments of one camera: the init segment is written once
    assert seal(keys, tmp_path, fmp4, "c0.seg", "--fmp4", "--start", T0, "--chain-state", "cs.json").rc == 0
    with open(fmp4, "rb") as f:
        r = seal(keys, tmp_path, "-", "c1.seg", "--fmp4", "--start", "2024-05-01T12:00:06Z", "--chain-state",
                 "cs.json", stdin=f.read())
    assert r.rc == 0, r.err
    r = decrypt(keys, tmp_path, "c1.seg", "c0.seg", "-o", "both.mp4")
    assert r.rc == 0, r.err
    video = fmp4.read_bytes()
    with open(fmp4, "rb") as f:
        init = next(iter_fragments(f)).data
    assert (tmp_path / "both.mp4").read_bytes() == video + video[len(init) :]


def test_honest_gap_is_listed_and_not_a_failure(tmp_path: Path) -> None:
    """A segment left unfinished by a restart, explained by a signed gap in the next one (made with the
    library, since `seal` has no restarts)."""
    from sealcam.cli.common import parse_time
    from sealcam.format.constants import GapReason
    from sealcam.format.writer import SegmentWriter
    from sealcam.keys.hub import HubKey
    from sealcam.keys.identity import X25519Identity

    hub, ident = HubKey.generate(), X25519Identity.generate()
    (tmp_path / "owner.id").write_text(ident.dump(None))
    handle, t0 = hub.camera_handle("porch"), parse_time(T0, "t0")
    rec = tmp_path / "rec"
    rec.mkdir()

    def writer(seq: int, prev: bytes, f) -> SegmentWriter:  # noqa: ANN001
        return SegmentWriter(f.write, signer=hub, recipients=[ident.recipient], camera_handle=handle, seq=seq,
                             prev_link=prev, clock=lambda: t0 + seq)

    with open(rec / "0.seg", "wb") as f:
        w = writer(0, bytes(32), f)
        w.add_chunk(b"zero", capture_us=t0, key=True)
        s0 = w.close()
    with open(rec / "1.seg", "wb") as f:
        w = writer(1, s0.digest, f)
        w.add_chunk(b"one", capture_us=t0 + 1_000_000, key=True)
        w.abort()  # the hub died here
    with open(rec / "2.seg", "wb") as f:
        w = writer(2, s0.digest, f)
        w.add_gap(GapReason.FEED_LOST, from_us=t0 + 1_000_000, until_us=t0 + 5_000_000, lost_first_seq=1,
                  lost_count=1, detail="restart")
        w.add_chunk(b"two", capture_us=t0 + 5_000_000, key=True)
        w.close()

    r = sealcam("verify", "--signer", hub.signer_string, "rec", cwd=tmp_path)
    assert r.rc == 0, r.text
    assert ("gap: feed-lost 2024-05-01T12:00:01Z..12:00:05Z, segment(s) 1..1 lost (restart), declared in rec/2.seg"
            in r.text)
    gaps = json.loads(sealcam("verify", "--json", "rec", cwd=tmp_path).out)["gaps"]
    assert gaps[0]["reason"] == "feed-lost" and gaps[0]["lost_first_seq"] == 1
    r = sealcam("decrypt", "--identity", "owner.id", "--signer", hub.signer_string, "rec", cwd=tmp_path)
    assert r.rc == 0 and r.out == b"zerotwo" and "skipped rec/1.seg" in r.err
    r = sealcam("decrypt", "--identity", "owner.id", "--force", "rec", cwd=tmp_path)
    assert r.rc == 1 and r.out == b"zeroonetwo" and "let through: unverified" in r.err
