"""``docker-daemon:NAME[:TAG]``: an image of the local Docker Engine (``DOCKER_HOST`` honoured).

The engine's export (``GET /images/{name}/get``, what ``docker save`` uses) is streamed
in large chunks, with no read timeout, into a file without a name (freed even if the
process is killed), which the ``docker save``
reader then reads: the engine sends ``manifest.json`` last, so one pass is not possible
(public case 39).

A name without tag or digest is asked for as ``NAME:latest``: the engine would export
every tag of the repository (``docker save NAME``), all of them spooled for one image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator
from typing import BinaryIO

from ..atomic import anonymous_file, temp_dir_name
from ..errors import ImageNotFound, InvalidReference, OutputError, SourceError, UsageError
from ..manifest import Platform
from ..reference import ImageRef
from .archive import DockerArchive
from .base import ResolvedImage
from .files import TarTree

EXPORT_CHUNK = 4 << 20
"""Bytes per read of the engine's export stream."""
ENGINE_ANSWER_SECONDS = 60.0
"""How long the engine may take to answer its version check (seconds): one that accepts
connections but never answers (a stopped dockerd) is an error, not a hang. The export has
no read timeout: the engine prepares the whole export before it sends a byte."""
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
        self.engine_name = name
        if not _IMAGE_ID.fullmatch(name):
            try:
                self.ref = ImageRef.parse(name)
                if ImageRef.parse(name, default_tag=False).tag is None and self.ref.digest is None:
                    self.engine_name = f"{name}:latest"  # not the whole repository
            except InvalidReference as err:
                raise SourceError(self.display, str(err)) from err
        spool = self._export(tmp_dir)
        self._archive = DockerArchive(TarTree(self.display, self.display, opened=spool))  # owns the spool now

    def _export(self, tmp_dir: str | None) -> BinaryIO:
        import docker
        import docker.errors

        try:
            probe = docker.from_env(timeout=ENGINE_ANSWER_SECONDS)  # asks the engine's API version
            try:
                version = probe.api.api_version
            finally:
                probe.close()
            client = docker.from_env(timeout=None, version=version)  # no read timeout on the export body
        except docker.errors.DockerException as err:
            host = os.environ.get("DOCKER_HOST")
            where = (f"at {host} (DOCKER_HOST)" if host
                     else "at unix:///var/run/docker.sock (the default: DOCKER_HOST is not set)")
            raise SourceError(self.display, f"cannot reach the Docker Engine {where}: {_os_cause(err)}") from err
        try:
            spool = anonymous_file(tmp_dir, f"the export of {self.display}")
        except BaseException:
            client.close()
            raise
        try:
            for chunk in client.api.get_image(self.engine_name, chunk_size=EXPORT_CHUNK):
                with _spooling(self.display, tmp_dir):
                    spool.write(chunk)
            with _spooling(self.display, tmp_dir):
                spool.flush()
        except docker.errors.NotFound as err:
            spool.close()
            raise ImageNotFound(self.display, f"the engine has no image {self.engine_name!r}") from err
        except (docker.errors.DockerException, OSError) as err:
            spool.close()
            raise SourceError(self.display, f"exporting from the Docker Engine: {err}") from err
        except BaseException:
            spool.close()
            raise
        finally:
            client.close()
        return spool

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """See :meth:`ImageSource.resolve`; the image is named by the reference as typed.

        Raises:
            UsageError: a selector was given (``--image`` is for files: the export holds
                only the image named).
        """
        if selector is not None:
            raise UsageError("flag --image works only with files.")
        # NAME@DIGEST: the engine exports that one image untagged (RepoTags null)
        by_name = self.ref is not None and self.ref.digest is None
        resolved = self._archive.resolve(self.name if by_name else None, platform)
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


@contextlib.contextmanager
def _spooling(display: str, tmp_dir: str | None) -> Iterator[None]:
    """Writing the export into its spool: an ``OSError`` (a full disk) is an
    ``OutputError`` naming the directory, not an error of the engine's export."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"spooling the export of {display} into {temp_dir_name(tmp_dir)}: "
                          f"{err.strerror or err}") from err


def _os_cause(err: BaseException) -> str:
    """The system's word for why the engine could not be reached (``No such file or
    directory``, ``Connection refused``, ``Permission denied``): docker-py wraps it in
    requests' and urllib3's errors, whose text is a Python tuple (``('Connection aborted.',
    FileNotFoundError(2, ...))``). ``str(err)`` when there is none."""
    todo: list[object] = [err]
    seen: set[int] = set()
    while todo:
        found = todo.pop(0)
        if not isinstance(found, BaseException) or id(found) in seen or len(seen) > 50:
            continue
        seen.add(id(found))
        if isinstance(found, OSError) and found.strerror:
            return found.strerror
        todo.extend([*found.args, found.__cause__, found.__context__])
    return str(err)
