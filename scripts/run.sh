#!/usr/bin/env bash
# The main job: the whole pipeline on the embedded default, then a verified, decryptable result.
#
#   bash scripts/run.sh [DURATION]      (default 30s)
#
# Installs what it needs (scripts/setup.sh), then `sealcam up --for DURATION` with no config: embedded
# Valkey buses on Unix sockets, a synthetic camera (moving box, burnt-in clock), crypto, uploader and
# motion and watchdog as supervised processes, a local folder as the remote. Then, as the owner would: verify
# the remote folder with the pinned hub key, decrypt it, check with ffprobe that the MP4 plays and lasts as
# long as what was sealed, and recover the motion events (the synthetic camera's moving box) and their
# thumbnails from the sealed EVENT/THUMBNAIL records. Exits non-zero if any check fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-30s}"

bash scripts/setup.sh
sealcam=.venv/bin/sealcam
data="${SEALCAM_DATA_DIR:-$(mktemp -d /tmp/sealcam-run.XXXXXX)/data}"
echo "run: data dir $data"

echo "run: sealcam up --for $duration"
"$sealcam" up --data-dir "$data" --for "$duration"

remote="$data/remote"
signer="$data/keys/hub.key"      # its comment line carries the public signer string; a real owner pins that
identity="$data/keys/owner.identity"
out="$data/decrypted.mp4"

echo "run: sealcam verify --signer <hub> $remote"
"$sealcam" verify --signer "$signer" "$remote"
"$sealcam" verify --json --signer "$signer" "$remote" > "$data/verify.json"

echo "run: sealcam decrypt --identity <owner> -o $out $remote"
"$sealcam" decrypt --identity "$identity" --signer "$signer" -o "$out" "$remote"

echo "run: sealcam decrypt --events --extract (motion events and thumbnails, sealed by crypto)"
"$sealcam" decrypt --identity "$identity" --signer "$signer" --events "$data/events.jsonl" \
    --extract "$data/extracted" "$remote" 2>/dev/null
thumbs=("$data"/extracted/*.jpg)
events="$(grep -c '"t": *"motion"' "$data/events.jsonl" || true)"
if [ "$events" -eq 0 ] || [ ! -e "${thumbs[0]}" ]; then
    echo "run: FAIL: no sealed motion event or thumbnail came back ($events event records)" >&2
    exit 1
fi
echo "run: $events motion event record(s) and ${#thumbs[@]} thumbnail(s) recovered, e.g. ${thumbs[0]}"

echo "run: checking the result with ffprobe/ffmpeg"
ffmpeg -v error -i "$out" -f null - 2> "$data/decode-errors.txt"
if [ -s "$data/decode-errors.txt" ]; then
    echo "run: FAIL: the decrypted video has decode errors:" >&2
    head -5 "$data/decode-errors.txt" >&2
    exit 1
fi
played="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$out")"
.venv/bin/python - "$data/verify.json" "$played" <<'PY'
import datetime as dt, json, sys
rep = json.load(open(sys.argv[1]))
played = float(sys.argv[2])
t = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
first = min(t(f["first_time"]) for f in rep["files"])
last = max(t(f["last_time"]) for f in rep["files"])
sealed = last - first
print(f"run: {len(rep['files'])} segment(s) sealed over {sealed:.1f} s; the decrypted MP4 plays {played:.1f} s")
# The last sealed record is the segment's closing chunk, written up to ~1 fragment after the last video.
if not (rep["ok"] and abs(sealed - played) <= 2.5):
    sys.exit("run: FAIL: the decrypted duration does not match what was sealed")
print("run: OK: verified, decrypted, plays, and lasts as long as what was recorded")
PY
