#!/usr/bin/env bash
# The main job on the bundled image: build it from Debian's busybox-static with umoci
# (fixtures/builders.py), convert it to an ACI, and run it (prints its greeting).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p .cache/demo
image=$(.venv/bin/python -m fixtures demo .cache/demo)
.venv/bin/docker2aci --output-dir .cache/demo "oci-archive:$image"
.venv/bin/docker2aci run --insecure-options=image .cache/demo/demo-busybox-latest.aci
