#!/usr/bin/env bash
# Make Docker available for the container test (tests/integration/test_containers.py) and
# scripts/build_image.sh: installs the Debian packages docker.io, docker-compose and debootstrap if missing
# (needs root or sudo), starts dockerd in the background unless a daemon already answers, and waits until
# `docker info` works. Output goes to stderr; the daemon's log to /tmp/cleanroom-dockerd.log.
# There is no image registry to pull from: the image's base is made with debootstrap (build_image.sh).
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
    || ! { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }; then
  echo "start_dockerd: installing docker.io, docker-compose and debootstrap" >&2
  as_root apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose debootstrap >&2
fi

if docker info >/dev/null 2>&1; then
  echo "start_dockerd: a Docker daemon is already running" >&2
  exit 0
fi
as_root sh -c 'nohup dockerd >/tmp/cleanroom-dockerd.log 2>&1 &'
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "start_dockerd: dockerd is up ($(docker version --format '{{.Server.Version}}'))" >&2
    exit 0
  fi
  sleep 0.5
done
echo "start_dockerd: dockerd did not answer within 60 s; see /tmp/cleanroom-dockerd.log" >&2
tail -n 20 /tmp/cleanroom-dockerd.log >&2 || true
exit 1
