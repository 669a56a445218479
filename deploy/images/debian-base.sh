#!/bin/sh
# Makes the base image `localhost/debian-py:bookworm` (Debian bookworm, minbase, with python3 and python3-venv) from
# Debian's packages with debootstrap, for hosts that cannot pull the public python base image. The archive is the
# one this host's apt already uses (first Debian URI in /etc/apt/sources.list*), or $DEBIAN_MIRROR.
# Usage (root):  deploy/images/debian-base.sh [IMAGE]      then  make image BASE_IMAGE=localhost/debian-py:bookworm
set -eu
IMAGE=${1:-localhost/debian-py:bookworm}
if podman image exists "$IMAGE"; then echo "$IMAGE exists"; exit 0; fi
MIRROR=${DEBIAN_MIRROR:-$(grep -hoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | head -n1)}
[ -n "$MIRROR" ] || { echo "error: no Debian archive in /etc/apt/sources.list*: set DEBIAN_MIRROR=URL" >&2; exit 2; }
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOT" "$MIRROR"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | podman import --change 'CMD ["python3"]' - "$IMAGE"
echo "built $IMAGE"
