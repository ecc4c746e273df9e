"""``docker-daemon:NAME[:TAG]``: an image of the local Docker Engine (``DOCKER_HOST`` honoured).

The engine's export (``GET /images/{name}/get``, what ``docker save`` uses) is streamed
in large chunks, with no read timeout, into a temporary file, which the ``docker save``
reader then reads: the engine sends ``manifest.json`` last, so one pass is not possible
(public case 39).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile

from ..errors import ImageNotFound, InvalidReference, SourceError
from ..manifest import Platform
from ..reference import ImageRef
from .archive import DockerArchive
from .base import ResolvedImage
from .files import TarTree

EXPORT_CHUNK = 4 << 20
"""Bytes per read of the engine's export stream."""
_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")
"""An image ID or its prefix, as ``docker save`` takes it."""


class DaemonSource:
    """One image of a Docker Engine.

    Args:
        name: ``NAME[:TAG]`` or an image ID, as ``docker save`` takes it.
        tmp_dir: where the export is spooled (default: the system's temporary directory).

    Raises:
        SourceError: the engine cannot be reached or does not have the image.
    """

    cacheable = False

    def __init__(self, name: str, tmp_dir: str | None = None) -> None:
        self.display = f"docker-daemon:{name}"
        self.name = name
        self.ref: ImageRef | None = None  # None: an image ID, named by what the export says
        if not _IMAGE_ID.fullmatch(name):
            try:
                self.ref = ImageRef.parse(name)
            except InvalidReference as err:
                raise SourceError(self.display, str(err)) from err
        self._spool = self._export(tmp_dir)
        try:
            self._archive = DockerArchive(TarTree(self._spool, self.display))
        except BaseException:
            os.unlink(self._spool)
            raise

    def _export(self, tmp_dir: str | None) -> str:
        import docker
        import docker.errors

        try:
            client = docker.from_env(timeout=None)  # no read timeout on the export body
        except docker.errors.DockerException as err:
            raise SourceError(self.display, f"cannot reach the Docker Engine: {err}") from err
        fd, path = tempfile.mkstemp(prefix="docker2aci-daemon-", suffix=".tar", dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in client.api.get_image(self.name, chunk_size=EXPORT_CHUNK):
                    out.write(chunk)
        except docker.errors.NotFound as err:
            os.unlink(path)
            raise ImageNotFound(self.display, f"the engine has no image {self.name!r}") from err
        except (docker.errors.DockerException, OSError) as err:
            os.unlink(path)
            raise SourceError(self.display, f"exporting from the Docker Engine: {err}") from err
        except BaseException:
            os.unlink(path)
            raise
        finally:
            client.close()
        return path

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """See :meth:`ImageSource.resolve`; the image is named by the reference as typed."""
        resolved = self._archive.resolve(selector or (self.name if self.ref else None), platform)
        if self.ref is None:
            return resolved
        name = dataclasses.replace(resolved.name, repository=self.ref.repository, tag=self.ref.tag,
                                   original_name=self.name, ac_name=self.ref.repository)
        return dataclasses.replace(resolved, name=name)

    def platforms(self, selector: str | None) -> list[Platform] | None:
        """See :meth:`ImageSource.platforms`: an engine image has one platform."""
        return None

    def close(self) -> None:
        self._archive.close()
        try:
            os.unlink(self._spool)
        except FileNotFoundError:
            pass
