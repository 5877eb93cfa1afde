#!/usr/bin/env bash
# sealcam end-to-end demo of the owner's side, until the recording pipeline exists:
#   keys -> a 20 s fragmented MP4 test video -> seal -> verify (pinned signer) -> decrypt all and from 10 s
#   -> check the results with ffprobe/ffmpeg -> flip one byte and watch verification fail.
#
# Usage: bash scripts/demo.sh [--keep]
#   --keep   keep the work directory (printed at the start) instead of deleting it
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

keep=0
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "demo: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo_root/scripts/setup.sh"

sealcam="$repo_root/.venv/bin/sealcam"
work="$(mktemp -d "${TMPDIR:-/tmp}/sealcam-demo.XXXXXX")"
if [ "$keep" -eq 0 ]; then
    trap 'rm -rf "$work"' EXIT
fi
cd "$work"

results=()
failed=0
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pass() { results+=("PASS  $*"); echo "PASS: $*"; }
fail() { results+=("FAIL  $*"); echo "FAIL: $*"; failed=1; }
run() { echo "\$ sealcam $*"; "$sealcam" "$@"; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

echo "demo: working in $work"
fps=25
seconds=20
start=$(($(date -u +%s) - 60))  # the recording "started" a minute ago
start_iso="$(iso "$start")"
since_iso="$(iso $((start + 10)))"

# --- 1. keys -----------------------------------------------------------------------------------------
step "1. the owner's identity (stays on the owner's machine) and the hub's signing key"
run keys owner-init --no-passphrase -o owner.identity
recipient="$("$sealcam" keys show owner.identity 2>/dev/null)"
(umask 077 && head -c 24 /dev/urandom | base64 >hub.pass)
run keys hub-init --passphrase-file hub.pass -o hub.key
signer="$(cat hub.key.signer)"

# --- 2. a test video -----------------------------------------------------------------------------------
step "2. a ${seconds} s fragmented MP4 test video (libx264, key frame every second)"
font=""
for f in "$(fc-match -f '%{file}' monospace 2>/dev/null || true)" \
    /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf; do
    if [ -n "$f" ] && [ -f "$f" ]; then font="$f"; break; fi
done
filter="testsrc2=size=640x360:rate=$fps"
if [ -n "$font" ] && ffmpeg -hide_banner -filters 2>/dev/null | grep -q ' drawtext '; then
    filter+=",drawtext=fontfile=$font:text='%{pts\\:gmtime\\:$start}':x=16:y=h-th-16:fontsize=28"
    filter+=":fontcolor=white:box=1:boxcolor=black@0.6"
    echo "burning in a UTC clock that starts at $start_iso"
else
    echo "no font or no drawtext filter: plain testsrc2 without a clock"
fi
ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "$filter" -t "$seconds" \
    -c:v libx264 -preset veryfast -g "$fps" -sc_threshold 0 -pix_fmt yuv420p \
    -movflags +frag_keyframe+empty_moov+default_base_moof+skip_trailer -f mp4 video.mp4
ls -l video.mp4

# --- 3. seal ----------------------------------------------------------------------------------------
step "3. seal it to the owner, signed by the hub, into a 'remote' folder"
mkdir remote
run seal --fmp4 --start "$start_iso" --camera front-door --recipient "$recipient" \
    --signing-key hub.key --passphrase-file hub.pass --chain-state chain.json video.mp4 remote/000000.seg
echo "what the storage sees (no key):"
"$sealcam" inspect remote/000000.seg | head -n 16 || true  # (head closes the pipe early)
if "$sealcam" inspect --json remote/000000.seg | grep -q front-door || grep -q front-door remote/000000.seg; then
    fail "the camera name is visible on the remote"
else
    pass "the camera name is not visible on the remote"
fi

# --- 4. verify --------------------------------------------------------------------------------------
step "4. verify with the pinned signer"
if run verify --signer "$signer" remote; then pass "verify: the remote set is intact"; else fail "verify"; fi

# --- 5. decrypt -------------------------------------------------------------------------------------
step "5. decrypt everything, and from $since_iso (10 s in)"
if run decrypt --identity owner.identity --signer "$signer" -o full.mp4 remote; then
    pass "decrypt all"
else
    fail "decrypt all"
fi
if run decrypt --identity owner.identity --signer "$signer" --since "$since_iso" -o from10.mp4 remote; then
    pass "decrypt --since"
else
    fail "decrypt --since"
fi

# --- 6. check the results with ffmpeg's own tools ----------------------------------------------------------
step "6. check the decrypted video"
duration() { ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$1" 2>/dev/null || echo -1; }
packets() {
    ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets \
        -of default=nw=1:nk=1 "$1" 2>/dev/null || echo -1
}
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }

if [ -f full.mp4 ] && cmp -s video.mp4 full.mp4; then
    pass "full output is byte-identical to the input"
else
    fail "full output differs from the input"
fi
d_in="$(duration video.mp4)"
d_full="$(duration full.mp4 2>/dev/null || echo -1)"
if near "$d_full" "$d_in" 0.5; then
    pass "full output lasts ${d_full} s (input ${d_in} s)"
else
    fail "full output lasts ${d_full} s, input ${d_in} s"
fi
n_seek="$(packets from10.mp4)"
s_seek="$(awk -v n="$n_seek" -v f="$fps" 'BEGIN { printf "%.2f", n / f }')"
if near "$s_seek" 10 0.5; then
    pass "seek output holds ${s_seek} s of video (${n_seek} frames from the key frame at 10 s)"
else
    fail "seek output holds ${s_seek} s of video, expected about 10 s"
fi
if [ -f from10.mp4 ] && errs="$(ffmpeg -nostdin -v error -i from10.mp4 -f null - 2>&1)" && [ -z "$errs" ]; then
    pass "seek output decodes without errors"
else
    fail "seek output does not decode cleanly: ${errs:-missing}"
fi

# --- 7. tamper ---------------------------------------------------------------------------------------
step "7. flip one byte in a copy and verify again (this is expected to FAIL)"
mkdir tampered
cp remote/000000.seg tampered/000000.seg
size=$(stat -c %s tampered/000000.seg)
"$repo_root/.venv/bin/python" - tampered/000000.seg "$((size / 2))" <<'EOF'
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0x01]))
print(f"flipped one bit of byte {at} in {path}")
EOF
set +e
out="$("$sealcam" verify --signer "$signer" tampered 2>&1)"
rc=$?
set -e
echo "$out"
if [ "$rc" -eq 1 ] && grep -q '^modified: ' <<<"$out"; then
    pass "the flipped byte is detected (exit 1, 'modified' with its chunk and byte offset)"
else
    fail "the flipped byte was not reported as expected (exit $rc)"
fi
set +e
"$sealcam" decrypt --identity owner.identity --signer "$signer" -o tampered.mp4 tampered >/dev/null 2>&1
rc=$?
set -e
if [ "$rc" -eq 1 ] && [ ! -e tampered.mp4 ]; then
    pass "decrypt refuses the tampered segment (exit 1, no output written)"
else
    fail "decrypt of the tampered segment: exit $rc"
fi

# --- summary ---------------------------------------------------------------------------------------
step "summary"
printf '%s\n' "${results[@]}"
if [ "$keep" -eq 1 ]; then echo "work directory kept: $work"; fi
if [ "$failed" -ne 0 ]; then
    echo "demo: FAILED" >&2
    exit 1
fi
echo "demo: all checks passed"
