#!/usr/bin/env bash
# Builds an image of the project with buildah (rootful, chroot isolation: no daemon, works in a VM without
# nested cgroups), or with docker when buildah is absent. pip inside the build uses this host's pip index
# settings (PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS / PIP_CERT, from the environment or `pip config`):
# local file:// indexes (with the folder above a .../simple index, where its files are) and wheel folders are
# mounted read-only into the build, so a host with a local mirror builds offline, and a CA bundle for a TLS proxy
# is mounted too. None of it is stored in the image (build arguments and build-time mounts only).
# Usage: deploy/images/build.sh TAG [CONTAINERFILE [BUILD-ARG=VALUE ...]]
set -euo pipefail
tag=$1 file=${2:-Dockerfile}
shift $(($# < 2 ? $# : 2))
pip=${PIP:-python3 -m pip}
args=() mounts=()
for pair in PIP_INDEX_URL:index-url PIP_EXTRA_INDEX_URL:extra-index-url PIP_FIND_LINKS:find-links; do
  name=${pair%%:*} value=${!name:-}
  [[ -n $value ]] || value=$($pip config get "global.${pair#*:}" 2>/dev/null | tr '\n' ' ' | sed 's/ *$//' || true)
  [[ -n $value ]] || continue
  args+=(--build-arg "$name=$value")
  for location in $value; do
    dir=${location#file://} && dir=${dir%/} && [[ $dir == */simple ]] && dir=${dir%/simple}
    if [[ $location == /* || $location == file://* ]] && [[ -d $dir ]]; then mounts+=(-v "$dir:$dir:ro"); fi
  done
done
cert=${PIP_CERT:-$($pip config get global.cert 2>/dev/null || true)}
if [[ -f $cert ]]; then args+=(--build-arg PIP_CERT=/run/pip-ca.pem) && mounts+=(-v "$cert:/run/pip-ca.pem:ro"); fi
for extra in "$@"; do args+=(--build-arg "$extra"); done
if command -v buildah >/dev/null; then
  exec buildah bud --isolation chroot --layers -f "$file" -t "$tag" "${args[@]}" "${mounts[@]}" .
fi
exec docker build -f "$file" -t "$tag" "${args[@]}" .
