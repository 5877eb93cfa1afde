"""Container v1 test vectors (tests/vectors/, made by scripts/make_vectors.py): every case, checked.

Each case's case.json declares what a careful verifier and decryptor must say (see tests/vectors/README.md);
`observe` computes the same from the library and the two must be equal.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sealcam.format.chain import check_chains
from sealcam.format.constants import STREAM_KINDS
from sealcam.format.decrypt import (
    DecryptStats,
    VerificationFailed,
    decrypt_segment,
    iter_plain,
    light_report,
    select,
    unwrap_key,
)
from sealcam.format.errors import NoMatchingIdentity
from sealcam.format.verify import verify_segment
from sealcam.keys.hub import load_signer
from sealcam.keys.identity import load_identity

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(__file__).resolve().parent / "vectors"
MIN_CASES = 25


def case_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "case.json").is_file()) if root.is_dir() else []


CASES = case_dirs(VECTORS)


def load(case: Path) -> tuple[dict, list[Path], bytes, object]:
    doc = json.loads((case / "case.json").read_text())
    files = [case / n for n in doc["files"]]
    pin = load_signer(doc["signer"])
    ident = load_identity(case.parent / doc["identity"], lambda: None)
    return doc, files, pin, ident


def decrypt_set(files: list[Path], pin: bytes, ident, *, force: bool) -> tuple[str, str | None, DecryptStats]:  # noqa: ANN001
    """Decrypt a set in file order, as tests/vectors/README.md describes; (result, plaintext sha256, stats)."""
    total = DecryptStats()
    out = hashlib.sha256()
    reports = [verify_segment(p, signer=pin) for p in files]
    sr = check_chains(reports)
    if sr.problems and not force:
        return "refused", None, total
    total.let_through.extend(p for p in sr.problems if p.kind not in {q.kind for r in reports for q in r.problems})
    try:
        for path, rep in zip(files, reports, strict=True):
            if rep.problems and not force:  # the set is clean, so a signed gap explains this file's problems
                key = unwrap_key(rep, [ident])
                covered = [r for r in select(rep, None, None) if rep.records.index(r) < rep.verified_count]
                for plain in iter_plain(rep, key, covered, stats=total):
                    if plain.kind in STREAM_KINDS:
                        out.update(plain.payload)
                continue
            st = decrypt_segment(path, [ident], out.update, signer=pin, force=force)
            total.chunks += st.chunks
            total.bytes += st.bytes
            total.let_through.extend(st.let_through)
    except VerificationFailed:
        return "refused", None, total
    except NoMatchingIdentity:
        return "no-identity", None, total
    return "ok", out.hexdigest(), total


def observe(case: Path) -> dict:
    """What the library says about a case, in the shape of case.json's `expect`."""
    doc, files, pin, ident = load(case)
    sr = check_chains(verify_segment(p, signer=pin) for p in files)
    got: dict = {"verify_ok": sr.ok, "problems": sorted({p.kind for p in sr.problems}), "gaps": len(sr.gaps)}
    result, digest, _ = decrypt_set(files, pin, ident, force=False)
    got["decrypt"] = result
    if digest is not None:
        got["plaintext_sha256"] = digest
    if "force_decrypt" in doc["expect"]:
        result, digest, stats = decrypt_set(files, pin, ident, force=True)
        got["force_decrypt"] = {"result": result, "chunks": stats.chunks}
        if digest is not None:
            got["force_decrypt"]["plaintext_sha256"] = digest
        if result == "ok" and not sr.ok:
            assert stats.let_through, "force let damaged data through without reporting it"
    return got


def observe_seek(case: Path, seek: dict) -> dict:
    doc, files, pin, ident = load(case)
    path = files[seek.get("file", 0)]
    since, until = seek["since_us"], seek.get("until_us")
    rep = light_report(path, signer=pin)
    assert rep is not None, "a closed, valid segment must verify from its signed tail alone"
    key = unwrap_key(rep, [ident])
    indexes, h = [], hashlib.sha256()
    for plain in iter_plain(rep, key, select(rep, since, until)):
        indexes.append(plain.index)
        if plain.kind in STREAM_KINDS:
            h.update(plain.payload)
    via_file = hashlib.sha256()
    decrypt_segment(path, [ident], via_file.update, signer=pin, since_us=since, until_us=until)
    assert via_file.hexdigest() == h.hexdigest(), "decrypt_segment and select+iter_plain disagree"
    got = {"since_us": since}
    if until is not None:
        got["until_us"] = until
    got.update(first_index=indexes[1] if len(indexes) > 1 else indexes[0], indexes=indexes,
               plaintext_sha256=h.hexdigest())
    return got


def expectations(root: Path) -> dict[str, dict]:
    out = {}
    for case in case_dirs(root):
        doc = json.loads((case / "case.json").read_text())
        out[case.name] = {k: v for k, v in doc.items() if k != "signer"}  # the signer key is fresh each run
    return out


# --- tests ------------------------------------------------------------------------------------------------


def test_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} vector cases in {VECTORS}; run scripts/make_vectors.py"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_vector(case: Path) -> None:
    expect = json.loads((case / "case.json").read_text())["expect"]
    assert observe(case) == expect


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_file_on_its_own(case: Path) -> None:
    """A file with problems of its own is refused on its own (no force); a clean closed file verifies from
    its signed tail alone to the same segment digest and gaps as the full read."""
    _, files, pin, ident = load(case)
    for path in files:
        full = verify_segment(path, signer=pin)
        if full.problems:
            with pytest.raises(VerificationFailed):
                decrypt_segment(path, [ident], lambda _b: None, signer=pin)
        else:
            light = light_report(path, signer=pin)
            assert light is not None and light.digest == full.digest
            assert light.gaps == full.gaps and light.verified_count == full.verified_count


SEEKS = [(c, s) for c in CASES for s in json.loads((c / "case.json").read_text()).get("seek", [])]


@pytest.mark.parametrize("case,seek", SEEKS, ids=[f"{c.name}@{s['since_us']}" for c, s in SEEKS])
def test_seek(case: Path, seek: dict) -> None:
    assert observe_seek(case, seek) == seek


def test_seek_cases_exist() -> None:
    assert len(SEEKS) >= 3


@pytest.mark.slow
def test_generator_is_reproducible(tmp_path: Path) -> None:
    """Regenerating gives the same cases and expectations, and they hold for the fresh keys too."""
    out = tmp_path / "vectors"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_vectors.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert expectations(out) == expectations(VECTORS)
    for case in case_dirs(out):
        doc = json.loads((case / "case.json").read_text())
        assert observe(case) == doc["expect"], case.name
        for seek in doc.get("seek", []):
            assert observe_seek(case, seek) == seek, case.name
