"""Pure transformations: image config → appc manifest, layer tars → one rootfs tar.

Nothing here imports ``docker2aci``, reads the environment or does network I/O.
"""
