#!/usr/bin/env bash
# Prepare ./secrets (and ./keys) for docker-compose.yml. Idempotent: existing files are kept.
#
#   bash deploy/compose/init-secrets.sh          (as root, or with sudo, for the group ownership)
#
# - secrets/bus/<bus>-<service>.pass: one random password per bus ACL user, and secrets/bus/{plain,sealed}.acl
#   rendered from sealcam/bus/acl.py (SHA-256 hashes only) by scripts/gen_acl.py;
# - the hub's signing key and its passphrase (sealcam keys hub-init), if missing;
# - a list of the secrets only you can provide (camera and storage credentials, alert URLs);
# - ownership root:10001 and modes 0750/0640: compose bind-mounts secret files as they are, and the
#   containers run as uid 10001 (the buses as 999) with group 10001. Each file is mounted only into the
#   service that needs it (docker-compose.yml); the group bit is not what keeps them apart, the mounts are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
umask 077
python=.venv/bin/python
[ -x "$python" ] || python=python3
sealcam=.venv/bin/sealcam

mkdir -p secrets/bus keys
"$python" scripts/gen_acl.py --passwords secrets/bus

if [ ! -e secrets/hub_signing_key ]; then
    [ -e secrets/hub_passphrase ] || "$python" -c 'import secrets; print(secrets.token_urlsafe(32))' \
        >secrets/hub_passphrase
    if [ -x "$sealcam" ]; then
        "$sealcam" keys hub-init -o secrets/hub_signing_key --passphrase-file secrets/hub_passphrase
        echo "init-secrets: pin the signer string above (also in secrets/hub_signing_key.signer) when verifying"
    fi
fi

missing=()
for f in camera_front_door hub_signing_key hub_passphrase s3_access_key_id s3_secret_access_key ntfy_url \
    uptime_push_url; do
    [ -e "secrets/$f" ] || missing+=("secrets/$f")
done
for f in owner.recipient partner.asc; do
    [ -e "keys/$f" ] || missing+=("keys/$f (public key: sealcam keys owner-init prints an sc1... string)")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "init-secrets: provide these (one line each; or remove their use from the config and compose file):"
    printf '  %s\n' "${missing[@]}"
fi

if [ "$(id -u)" -eq 0 ]; then
    chown -R 0:10001 secrets
    find secrets -type d -exec chmod 0750 {} +
    find secrets -type f -exec chmod 0640 {} +
else
    echo "init-secrets: not root; run: sudo chown -R 0:10001 secrets && sudo find secrets -type d -exec chmod 0750 {} + \\"
    echo "              && sudo find secrets -type f -exec chmod 0640 {} +"
fi
