"""The floor: the least work a converter of this image must do, in a few lines of Python.

    python bench/floor.py OUT.gz SQUASHED.tar BLOB...
    python bench/floor.py OUT.gz SQUASHED.tar --archive IMAGE.tar

Reads the layer bytes the source holds and SHA-256es them: every layer blob of the OCI
layout (gzip; checked against its file name, the digest), or, with ``--archive``, every
layer tar of a docker-archive (uncompressed; checked against the config's diff IDs, as a
converter of that archive must). Then reads a tar of the already-squashed root file system
once, SHA-512ing it (the ACI's image ID) while gzipping it (isal, at docker2aci's default
level with as many compression threads: ``docker2aci.compression``) to ``OUT.gz``. No decompression of layers, no parsing of layer tars, no squashing:
a converter can only approach this time, not beat it. Prints the SHA-512.
"""

import hashlib
import json
import os
import sys
import tarfile

from isal import igzip_threaded

from docker2aci.compression import GZIP_LEVEL, GZIP_THREADS

CHUNK = 1 << 20


def check(what: str, f, expected: str) -> None:
    digest = hashlib.sha256()
    while chunk := f.read(CHUNK):
        digest.update(chunk)
    if digest.hexdigest() != expected:
        sys.exit(f"floor: {what}: digest mismatch")


def main(out: str, squashed: str, *blobs: str) -> None:
    if blobs[:1] == ("--archive",):
        with tarfile.open(blobs[1]) as archive:  # only its index: 3 layer members and 2 JSON files
            [image] = json.load(archive.extractfile("manifest.json"))
            diff_ids = json.load(archive.extractfile(image["Config"]))["rootfs"]["diff_ids"]
            for layer, diff_id in zip(image["Layers"], diff_ids, strict=True):
                check(layer, archive.extractfile(layer), diff_id.split(":", 1)[1])
    else:
        for blob in blobs:
            with open(blob, "rb") as f:
                check(blob, f, os.path.basename(blob))
    image_id = hashlib.sha512()
    with open(squashed, "rb") as src, igzip_threaded.open(out, "wb", compresslevel=GZIP_LEVEL,
                                                                   threads=GZIP_THREADS) as dst:
        while chunk := src.read(CHUNK):
            image_id.update(chunk)
            dst.write(chunk)
    print(f"sha512-{image_id.hexdigest()}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
