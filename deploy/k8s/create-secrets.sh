#!/usr/bin/env bash
# Create the Secrets and the recipients ConfigMap deploy/k8s expects, from the same ./secrets and ./keys that
# docker-compose.yml uses (make them with deploy/compose/init-secrets.sh). Re-run to update (apply).
#
#   bash deploy/k8s/create-secrets.sh [NAMESPACE]        (default: sealcam; needs kubectl)
#
# One Secret per holder, so each pod can be given only its own: the buses' aclfiles to the buses, each
# bus password to its one service, the hub key to crypto, storage credentials to the uploader, alert URLs
# to the watchdog, the camera password to the recorder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ns="${1:-sealcam}"
s=secrets
apply() { kubectl -n "$ns" create "$@" --dry-run=client -o yaml | kubectl apply -f -; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl apply -f deploy/k8s/namespace.yaml
apply secret generic bus-plain-acl --from-file=plain.acl=$s/bus/plain.acl
apply secret generic bus-sealed-acl --from-file=sealed.acl=$s/bus/sealed.acl
for pair in plain-recorder plain-motion plain-crypto sealed-crypto sealed-uploader sealed-watchdog; do
    apply secret generic "bus-$pair" --from-file="$pair.pass=$s/bus/$pair.pass"
done
apply secret generic camera-front-door --from-file=camera_front_door=$s/camera_front_door
apply secret generic hub --from-file=hub_signing_key=$s/hub_signing_key --from-file=hub_passphrase=$s/hub_passphrase
apply secret generic storage --from-file=s3_access_key_id=$s/s3_access_key_id \
    --from-file=s3_secret_access_key=$s/s3_secret_access_key
apply secret generic alerts --from-file=ntfy_url=$s/ntfy_url --from-file=uptime_push_url=$s/uptime_push_url
apply configmap sealcam-recipients --from-file=owner.recipient=keys/owner.recipient \
    --from-file=partner.asc=keys/partner.asc
