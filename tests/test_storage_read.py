"""Read-only storage readers (sealcam/storage) against real servers: a local folder, OpenSSH SFTP, pyftpdlib FTP
and SeaweedFS S3 (tests/servers.py). Each holds a sealed archive in the uploader's layout; the viewer's archive
verifies and seeks through it with ranged reads, without fetching what precedes the sought time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from servers import Ftpd, Sshd, seaweedfs, seaweedfs_available, sshd_available
from viewer_archive import T0, build, encode, ffmpeg_available, split, write_segment

from sealcam.format.decrypt import light_report
from sealcam.storage import RangeFile, StorageError, open_storage, parse_storage_url
from sealcam.viewer.archive import Archive
from sealcam.viewer.stream import Stream

pytestmark = pytest.mark.skipif(ffmpeg_available() is not None, reason=str(ffmpeg_available()))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return build(tmp_path_factory.mktemp("sealed") / "root")


def _objects(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.seal"))}


def _check(url: str, built) -> None:  # noqa: ANN001
    objs = _objects(built.root)
    reader = open_storage(url)
    try:
        listing = reader.list()
        assert {k: v.size for k, v in listing.items()} == {k: len(v) for k, v in objs.items()}
        name, data = sorted(objs.items())[1]
        assert reader.read(name, 100, 50) == data[100:150]
        assert reader.read(name, len(data) - 10, 100) == data[-10:]  # short at the end
        assert reader.list(built.handle.hex() + "/").keys() == listing.keys()
        f = RangeFile(reader, name, len(data), readahead=4096)
        rep = light_report(name, fileobj=f)
        assert rep is not None and rep.ok and rep.header.seq == 1
        assert f.fetched < len(data) // 4  # header, keys and signed tail only
        archive = Archive(reader, [built.owner])
        archive.refresh()
        cam = archive.camera(built.handle)
        assert [s.seq for s in cam.segments] == list(range(6)) and not cam.problems and len(cam.gaps) == 1
        s = Stream(archive, built.handle, T0 + 85_000_000)  # seq 5, 5 s in
        info, body = s.open()
        out = b"".join(body)
        assert info.start_us == T0 + 85_000_000 and s.fragments == 5 and out[4:8] == b"ftyp"
    finally:
        reader.close()


def test_local(built) -> None:  # noqa: ANN001
    _check(str(built.root), built)
    _check("file://" + str(built.root), built)


def test_local_refuses_escape(built) -> None:  # noqa: ANN001
    r = open_storage(str(built.root))
    with pytest.raises(StorageError, match="escapes"):
        r.read("../x", 0, 1)


@pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available()))
def test_sftp(built, tmp_path: Path) -> None:  # noqa: ANN001
    with Sshd(tmp_path / "sshd") as sshd:
        _check(f"sftp://root@127.0.0.1:{sshd.port}{built.root}?known_hosts={sshd.known_hosts}&key={sshd.key_file}",
               built)
        other = tmp_path / "other_known_hosts"
        other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0dvW8NaU6VQPNz7fzR1gi5VDBG"
                         "D0gpkaE0ZG2JlHoR\n")
        r = open_storage(f"sftp://root@127.0.0.1:{sshd.port}/?known_hosts={other}&key={sshd.key_file}")
        with pytest.raises(StorageError, match="cannot connect"):
            r.list()  # a host key other than the pinned one is refused


def test_ftp(built, tmp_path: Path) -> None:  # noqa: ANN001
    home = tmp_path / "ftp"
    ftpd = Ftpd(home, tmp_path / "pw")
    try:
        for name, data in _objects(built.root).items():
            (home / name).parent.mkdir(parents=True, exist_ok=True)
            (home / name).write_bytes(data)
        _check(f"ftp://cam@127.0.0.1:{ftpd.port}/?password_file={tmp_path / 'pw'}", built)
    finally:
        ftpd.stop()


@pytest.mark.skipif(seaweedfs_available() is not None, reason=str(seaweedfs_available()))
def test_s3_whole_and_live_objects(built, tmp_path: Path) -> None:  # noqa: ANN001
    with seaweedfs(tmp_path / "weed") as s3:
        c = s3["client"]
        objs = _objects(built.root)
        for name, data in objs.items():
            c.put_object(Bucket="plain", Key="cams/" + name, Body=data)
        d = s3["dir"]
        url = f"s3://plain/cams/?endpoint={s3['url']}&access_key_file={d / 'ak'}&secret_key_file={d / 'sk'}"
        _check(url, built)
        # a segment still being written: only part objects (as the uploader stores them), one still missing
        live = "ffff" * 8 + "/000000000000-2026011012.seal"
        blob = os.urandom(3000)
        c.put_object(Bucket="plain", Key=f"cams/{live}.parts/{0:012d}", Body=blob[:1000])
        c.put_object(Bucket="plain", Key=f"cams/{live}.parts/{1000:012d}", Body=blob[1000:2000])
        c.put_object(Bucket="plain", Key=f"cams/{live}.parts/{2500:012d}", Body=blob[2500:])
        r = open_storage(url)
        info = r.list()[live]
        assert info.live and info.size == 2000  # the contiguous prefix only
        assert r.read(live, 900, 300) == blob[900:1200]  # across two parts
        assert r.read(live, 1900, 500) == blob[1900:2000]


@pytest.mark.skipif(seaweedfs_available() is not None, reason=str(seaweedfs_available()))
def test_s3_live_follow_lists_only_what_is_new(built, tmp_path: Path) -> None:  # noqa: ANN001
    """Each poll of a camera folder with closed segments and a live one stored as parts: one ListObjectsV2 from
    the newest closed segment on (the live one's parts folded into one common prefix) and one for the parts
    after the newest known one; the keys coming back do not grow with the folder or the segment."""
    init, frags = split(encode(20))
    name, _ = write_segment(tmp_path / "staging", built.hub, built.owner, built.handle, 6, built.last_digest,
                            T0 + 90_000_000, init, frags, [])
    data = (tmp_path / "staging" / name).read_bytes()
    bounds = list(range(0, len(data), len(data) // 12)) + [len(data)]
    with seaweedfs(tmp_path / "weed") as s3:
        c = s3["client"]
        for obj, blob in _objects(built.root).items():
            c.put_object(Bucket="plain", Key="cams/" + obj, Body=blob)
        d = s3["dir"]
        reader = open_storage(f"s3://plain/cams/?endpoint={s3['url']}&access_key_file={d / 'ak'}"
                              f"&secret_key_file={d / 'sk'}")
        calls: list[int] = []  # keys + common prefixes returned by each ListObjectsV2

        def put_part(i: int) -> None:
            c.put_object(Bucket="plain", Key=f"cams/{name}.parts/{bounds[i]:012d}", Body=data[bounds[i]:bounds[i + 1]])

        put_part(0)
        a = Archive(reader, [built.owner])
        a.refresh()
        reader._s3.meta.events.register(
            "after-call.s3.ListObjectsV2",
            lambda parsed, **_: calls.append(len(parsed.get("Contents", [])) + len(parsed.get("CommonPrefixes", []))))
        per_poll = []

        def poll(readable: int) -> None:
            calls.clear()
            a.poll(built.handle.hex() + "/")
            per_poll.append(list(calls))
            seg = a.segment(name)
            assert seg.size == readable and not seg.closed

        for i in range(1, len(bounds) - 2):  # the last piece arrives with the whole object
            if i == 6:
                continue
            if i == 5:  # part 6 is stored before part 5: a hole, then filled
                put_part(6)
                poll(bounds[5])
                put_part(5)
                poll(bounds[7])
                continue
            put_part(i)
            poll(bounds[i + 1])
        # 6 closed objects and up to 12 parts in the folder: two calls, one key or prefix each (one more while
        # a part waits beyond a hole)
        assert len(per_poll) >= 10 and all(len(p) == 2 and sum(p) <= 3 for p in per_poll), per_poll
        cam = a.camera(built.handle)
        assert cam.open_segment == name and not cam.problems and a.segment(name).report.verified_count > 15
        # the segment closes: the whole object is PUT, then the parts are deleted
        c.put_object(Bucket="plain", Key="cams/" + name, Body=data)
        for i in range(len(bounds) - 2):
            c.delete_object(Bucket="plain", Key=f"cams/{name}.parts/{bounds[i]:012d}")
        a.poll(built.handle.hex() + "/")
        seg, cam = a.segment(name), a.camera(built.handle)
        assert seg.size == len(data) and seg.closed and seg.full and not cam.problems and cam.open_segment is None


def test_url_errors() -> None:
    assert parse_storage_url("/srv/x") == ("file", {"path": "/srv/x"})
    with pytest.raises(StorageError, match="unknown scheme"):
        parse_storage_url("http://x/y")
    with pytest.raises(StorageError, match="password_file"):
        parse_storage_url("ftp://u:secret@h/p")
    with pytest.raises(StorageError, match="unknown parameter"):
        parse_storage_url("sftp://u@h/p?key=a&pasword_file=b")
    with pytest.raises(StorageError, match="known_hosts"):
        open_storage("sftp://u@h/p?key=a")
