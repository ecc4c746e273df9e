#!/usr/bin/env bash
# Installs everything docker2aci and its tests need on Debian 12 (run as root or with sudo):
# the real container tools the tests use (umoci, skopeo, busybox-static, actool from
# appc-spec, ...) and a virtual environment in .venv with the project installed.
# With --bench, also what the benchmark's size reference needs (Go and pgzip).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(umoci skopeo busybox-static appc-spec tar gzip zstd xz-utils bzip2 attr ca-certificates
              docker-registry apache2-utils openssl docker.io runc crun debootstrap pigz fish zsh gnupg
              gcc libc6-dev python3-dev)  # the last three build the C tar-header codec (optional)
if [ "${1:-}" = "--bench" ]; then
  # the benchmark's size reference: the reference tool's gzip writer (bench/refgzip.go)
  APT_PACKAGES+=(golang-go golang-github-klauspost-pgzip-dev)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "Installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# (Re)install when the project's build inputs changed, or when the C codec is missing
# though a compiler is there to build it.
if ! .venv/bin/python -c 'import docker2aci, pytest, zstandard, rich' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ] || [ setup.py -nt .venv/.installed ] \
   || [ converters/_tarheader.c -nt .venv/.installed ] \
   || { command -v cc >/dev/null && ! .venv/bin/python -c 'import converters._tarheader' 2>/dev/null; }; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
