"""Fuzz the image config parser and its translation to an appc manifest: the config JSON
as the pipeline loads it → ``converters.manifest.ImageConfig.from_json`` →
``docker2aci.translate.image_manifest`` (``USER`` resolved through an ``/etc/passwd`` read
from a one-layer tree) → ``manifest_bytes``, which must be JSON that reads back the same;
also ``names.appc_os_arch`` on the config's platform and the per-layer manifests.

Input: the config JSON, optionally followed by ``\\0`` and the ``/etc/passwd`` text.

Run: ``python tests/fuzz/fuzz_config.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import io
import json
import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from converters.errors import BadConfig
    from converters.manifest import ImageConfig, Naming, lower_layer_manifest, manifest_bytes, with_layering
    from converters.names import appc_os_arch
    from converters.rootfs import LayerTar, RootfsTree
    from docker2aci.translate import image_manifest

_NAMING = Naming("example.com/fuzz", "fuzz", "latest", "example.com/fuzz:latest", "example.com",
                 "sha256:" + "0" * 64, "sha256:" + "1" * 64, "sha256:" + "2" * 64)


def _tree(passwd: bytes | None) -> RootfsTree:
    if passwd is None:
        return RootfsTree.from_layers([])
    tar = fuzzlib.tar_bytes([("etc/passwd", passwd)])
    return RootfsTree.from_layers([LayerTar("passwd", io.BytesIO(tar))])


def test_one(data: bytes) -> None:
    body, sep, passwd = data.partition(b"\0")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return  # the pipeline reports these as InvalidManifest before the config is read
    if not isinstance(doc, dict):
        return
    config = ImageConfig.from_json(doc)
    try:
        os_arch = appc_os_arch(config.os or "linux", config.architecture or "amd64", config.variant)
    except BadConfig:
        os_arch = ("linux", "amd64")
    warnings: list[str] = []
    manifest = image_manifest("fuzz", _tree(passwd if sep else None), config, _NAMING, os_arch, warnings)
    encoded = manifest_bytes(manifest)
    assert json.loads(encoded)["name"], "the manifest has no name"
    lower = lower_layer_manifest(_NAMING, os_arch)
    parent = {"name": lower["name"], "labels": lower["labels"], "imageID": "sha512-" + "3" * 128}
    manifest_bytes(with_layering(manifest, parent, ["/a"]))


def seeds() -> list[bytes]:
    config = {
        "architecture": "amd64", "os": "linux", "author": "me", "created": "2020-01-02T03:04:05.123Z",
        "config": {"User": "daemon", "Env": ["PATH=/bin", "BAD", "1X=2"], "Entrypoint": ["/bin/sh", "-c"],
                   "Cmd": "echo hi", "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000-8010": {}},
                   "Volumes": {"/data": {}, "/Data": {}}, "WorkingDir": "srv", "Labels": {"a": "b"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "history": [{"created_by": "sh"}],
    }
    legacy = {"id": "b" * 64, "parent": "", "architecture": "arm", "variant": "v6", "os": "linux",
              "config": {"PortSpecs": ["22"], "User": "1000:1000", "Cmd": ["sh"]}}
    passwd = b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n"
    return [json.dumps(config).encode(), json.dumps(config).encode() + b"\0" + passwd,
            json.dumps(legacy).encode(), b"{}", b'{"config": null, "rootfs": null}']


if __name__ == "__main__":
    fuzzlib.main("config", test_one, seeds, max_len=16 * 1024)
    sys.exit(0)
