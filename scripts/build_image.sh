#!/usr/bin/env bash
# Build the cleanroom image with no image registry; only the Debian mirror and PyPI are used.
#
#   scripts/build_image.sh [TAG]          # default TAG: $CLEANROOM_IMAGE, else cleanroom:latest
#
# 1. Base image $CLEANROOM_BASE (default cleanroom-base:bookworm-r2; made only when that tag is missing):
#    debootstrap a minimal Debian bookworm (variant minbase, plus python3: no pip, no compiler) from the
#    mirror this host's apt uses, apply bookworm-updates and bookworm-security, drop apt lists, docs and man
#    pages, then `docker import`. Needs root (debootstrap, chroot) and the debootstrap package.
#    REBUILD_BASE=1 makes it again.
# 2. Wheelhouse build/wheelhouse/: requirements.txt (pyproject.toml's dependencies) and, by `pip download`
#    on this host (with its pip configuration and proxy), the wheels they need on CPython 3.11 / glibc 2.36,
#    plus the build backend and pip (the builder stage runs pip from its wheel). Skipped while the
#    requirements are unchanged (REFRESH_WHEELS=1 resolves them again).
# 3. `docker build` of the Dockerfile (the single description of the image) with no network.
# Environment: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (default: this host's apt sources, else deb.debian.org),
# PYTHON (the interpreter that runs pip download; default .venv/bin/python, else python3).
set -euo pipefail
trap 'echo "build_image.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."

IMAGE="${1:-${CLEANROOM_IMAGE:-cleanroom:latest}}"
BASE="${CLEANROOM_BASE:-cleanroom-base:bookworm-r2}"   # rN: bump when the base recipe changes
SUITE=bookworm          # its python3 is CPython 3.11 with glibc 2.36: the wheels below must match
GLIBC_MINOR=36
ARCH="$(uname -m)"
WHEELHOUSE=build/wheelhouse
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

die() { echo "build_image.sh: $*" >&2; exit 2; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

# The first Debian URI in this host's apt sources whose path ends as given ("/debian" or "/debian-security").
host_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }
           $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
    | grep -E "$1/?\$" | head -n 1 || true
}

MIRROR="${DEBIAN_MIRROR:-$(host_mirror /debian)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(host_mirror /debian-security)}"
SECURITY_MIRROR="${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}"

ROOTFS=""
cleanup_rootfs() {
  [ -n "$ROOTFS" ] || return 0
  # debootstrap and the upgrade below mount proc/sys inside; never let rm cross into them.
  { grep -o " $ROOTFS/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do umount -l "$mnt"; done
  rm -rf --one-file-system "$ROOTFS"
}
trap cleanup_rootfs EXIT

write_apt_sources() {
  local fs="$1"
  rm -f "$fs/etc/apt/sources.list"
  cat >"$fs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Nothing in the image needs documentation, man pages or translations (copyright files stay).
slim_rootfs() {
  local fs="$1"
  cat >"$fs/etc/dpkg/dpkg.cfg.d/01-cleanroom-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
  find "$fs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$fs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$fs"/usr/share/{man,info,locale,lintian}/* "$fs"/var/lib/apt/lists/* "$fs"/var/cache/apt/*
  rm -rf "$fs"/var/log/* "$fs"/var/cache/debconf/*-old "$fs"/var/lib/dpkg/*-old "$fs"/tmp/*
  : >"$fs/etc/resolv.conf"   # Docker provides these three at run time
  : >"$fs/etc/hostname"
  : >"$fs/etc/hosts"
}

build_base() {
  [ "$(id -u)" = 0 ] || die "the base image $BASE is missing and making it needs root (debootstrap, chroot)"
  command -v debootstrap >/dev/null || die "the base image $BASE is missing: apt-get install debootstrap"
  local started fs
  started=$(date +%s)
  ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/cleanroom-rootfs.XXXXXX")"
  fs="$ROOTFS/fs"
  echo "== base image $BASE: debootstrap $SUITE (minbase + python3) from $MIRROR"
  debootstrap --variant=minbase --include=python3 "$SUITE" "$fs" "$MIRROR" >"$ROOTFS/log" 2>&1 \
    || { tail -n 20 "$ROOTFS/log" >&2; die "debootstrap failed"; }
  write_apt_sources "$fs"
  cp /etc/resolv.conf "$fs/etc/resolv.conf"
  mount -t proc proc "$fs/proc"
  echo "== base image: $SUITE-updates and $SUITE-security from $SECURITY_MIRROR"
  chroot "$fs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get -y -qq -o Dpkg::Use-Pty=0 upgrade && apt-get clean' >"$ROOTFS/log" 2>&1 \
    || { tail -n 20 "$ROOTFS/log" >&2; die "upgrading the base failed"; }
  umount "$fs/proc"
  slim_rootfs "$fs"
  tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -C "$fs" -c . \
    | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase --include=python3 $SUITE $MIRROR" - "$BASE" \
        >/dev/null
  cleanup_rootfs
  ROOTFS=""
  echo "== base image $BASE made in $(seconds_since "$started") s"
}

download_wheels() {
  local started requirements platforms=()
  started=$(date +%s)
  mkdir -p "$WHEELHOUSE"
  requirements="$(mktemp)"
  # requirements.txt: what the image's venv gets (the Dockerfile checks it against pyproject.toml); the
  # download adds pip (the builder runs it) and the build backend.
  "$PYTHON" - "$WHEELHOUSE/requirements.txt" >"$requirements" <<'EOF'
import sys
import tomllib

with open("pyproject.toml", "rb") as handle:
    project = tomllib.load(handle)
runtime = project["project"]["dependencies"]
with open(sys.argv[1], "w") as handle:
    handle.write("\n".join(runtime) + "\n")
print("\n".join(["pip", *runtime, *project["build-system"]["requires"]]))
EOF
  echo "# glibc 2.$GLIBC_MINOR $ARCH" >>"$requirements"
  if [ "${REFRESH_WHEELS:-0}" != 1 ] && cmp -s "$requirements" "$WHEELHOUSE/.requirements"; then
    rm -f "$requirements"
    echo "== wheelhouse $WHEELHOUSE is complete for pyproject.toml (REFRESH_WHEELS=1 resolves again)"
    return 0
  fi
  for minor in $(seq 17 "$GLIBC_MINOR"); do platforms+=(--platform "manylinux_2_${minor}_${ARCH}"); done
  platforms+=(--platform "manylinux2014_${ARCH}")
  echo "== wheelhouse $WHEELHOUSE (pip download for CPython 3.11, glibc <= 2.$GLIBC_MINOR, $ARCH)"
  # (this host's pip configuration may name local index folders that do not exist: not worth a warning)
  "$PYTHON" -m pip download -q --disable-pip-version-check --dest "$WHEELHOUSE" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
    -r "$requirements" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  mv "$requirements" "$WHEELHOUSE/.requirements"   # the stamp: what this wheelhouse was resolved for
  echo "== wheelhouse ready in $(seconds_since "$started") s ($(du -sh "$WHEELHOUSE" | cut -f1))"
}

build_image() {
  local started size log
  started=$(date +%s)
  echo "== docker build $IMAGE (FROM $BASE, no network)"
  # The classic builder: it is in every Docker engine's CLI (BuildKit needs the buildx plugin on new CLIs).
  log="$(mktemp)"
  if ! DOCKER_BUILDKIT=0 docker build --network none --force-rm --build-arg "BASE=$BASE" -t "$IMAGE" . \
    >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "docker build failed"
  fi
  rm -f "$log"
  size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
  echo "== image $IMAGE built in $(seconds_since "$started") s; size $((size / 1000000)) MB"
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (start dockerd)"
total_started=$(date +%s)
# One build at a time per checkout (e.g. .ci/run's background build and the container test): the second
# waits, then finds the base, the wheelhouse and every layer ready.
mkdir -p build
exec 9>build/.build.lock
if command -v flock >/dev/null && ! flock -n 9; then
  echo "== waiting for another build_image.sh in this checkout"
  flock 9
fi
if [ "${REBUILD_BASE:-0}" = 1 ] || ! docker image inspect "$BASE" >/dev/null 2>&1; then
  build_base
else
  echo "== base image $BASE exists (REBUILD_BASE=1 makes it again)"
fi
download_wheels
build_image
echo "== done in $(seconds_since "$total_started") s"
