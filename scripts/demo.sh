#!/usr/bin/env bash
# The main job on the bundled image: build it from Debian's busybox-static with umoci
# (fixtures/builders.py), convert it to a signed ACI, trust the demo key, and run it
# with its signature checked (prints its greeting).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p .cache/demo
image=$(.venv/bin/python -m fixtures demo .cache/demo)
key=.cache/demo/demo-key  # generated once: demo-key.pub.asc and demo-key.sec.asc (mode 0600)
if [ ! -f "$key.sec.asc" ] || [ ! -f "$key.pub.asc" ]; then
  rm -f "$key.sec.asc" "$key.pub.asc"
  .venv/bin/docker2aci keys generate --name 'docker2aci demo <demo@example.invalid>' --output "$key"
fi
.venv/bin/docker2aci --output-dir .cache/demo --sign "$key.sec.asc" "oci-archive:$image"
.venv/bin/docker2aci trust add --root --yes --trust-dir .cache/demo/trust "$key.pub.asc"
.venv/bin/docker2aci run --trust-dir .cache/demo/trust .cache/demo/demo-busybox-latest.aci
