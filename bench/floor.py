"""The floor: the least work a converter of this image must do, in a few lines of Python.

    python bench/floor.py OUT.gz SQUASHED.tar BLOB...

Reads every layer blob of the OCI layout and SHA-256es it (checked against its file
name, the digest), then reads a tar of the already-squashed root file system once,
SHA-512ing it (the ACI's image ID) while gzipping it (isal, level 1, one compression
thread) to ``OUT.gz``. No decompression of layers, no tar parsing, no squashing: a
converter can only approach this time, not beat it. Prints the SHA-512.
"""

import hashlib
import os
import sys

from isal import igzip_threaded

CHUNK = 1 << 20


def main(out: str, squashed: str, *blobs: str) -> None:
    for blob in blobs:
        digest = hashlib.sha256()
        with open(blob, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != os.path.basename(blob):
            sys.exit(f"floor: {blob}: digest mismatch")
    image_id = hashlib.sha512()
    with open(squashed, "rb") as src, igzip_threaded.open(out, "wb", compresslevel=1, threads=1) as dst:
        while chunk := src.read(CHUNK):
            image_id.update(chunk)
            dst.write(chunk)
    print(f"sha512-{image_id.hexdigest()}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
