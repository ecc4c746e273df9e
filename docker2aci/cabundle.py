"""The CA certificates https connections trust by default, loaded once per process.

requests 2.34 (the version installed; 2.32.0-2.32.3 shared one preloaded context) with
urllib3 2 builds a new SSL context for every new https connection and loads the CA
bundle into it: about 45 ms of CPU each for certifi's bundle, on the path of
the first request, and again for every connection after it (each parallel blob download,
the token service, a blob redirect's host). Here the bundle requests would use is loaded
once into one context built as urllib3 builds its own, and every connection of the
process shares it (:class:`docker2aci.registry.client.RegistryClient` mounts it). The
trust is the same: the bundle is the one requests picks with ``trust_env``
(``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, else certifi's), not the system store.

:func:`preload` loads it in a thread of its own while the process still imports the rest
of the HTTP stack (requests, the registry client): OpenSSL parses the certificates
without holding the GIL, so on a second core the load costs the first request nothing.
A bundle that changes (another path in the environment, or the file replaced) is loaded
again.

This module imports neither requests nor urllib3 at load time, so that the preload can
start before requests (it imports urllib3 itself, on the calling thread).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import NamedTuple

from .errors import UsageError

_Key = tuple[str, str, int, int, int, int]
"""Where the bundle was named, its path, device, inode, size and modification time (ns):
a changed file is loaded again."""


class _Loaded(NamedTuple):
    key: _Key
    context: ssl.SSLContext


_lock = threading.Lock()
_loaded: _Loaded | None = None
_loading: dict[_Key, threading.Thread] = {}


def bundle_path() -> tuple[str, str]:
    """The CA bundle (a file or a directory) requests verifies https with when the session
    trusts the environment (requests' ``Session.merge_environment_settings``).

    Returns:
        ``(origin, path)``: ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``, else
        ``certifi`` and its bundle (requests' ``DEFAULT_CA_BUNDLE_PATH``, unless a
        distribution patched requests; requests itself is not imported here).
    """
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(variable):
            return variable, os.environ[variable]
    import certifi

    return "certifi", certifi.where()


def _key(origin: str, path: str) -> _Key:
    """Raises UsageError when ``path`` is missing."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise UsageError(f"{origin}={path}: cannot read the CA bundle ({err.strerror})") from None
    return (origin, path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _build(key: _Key) -> ssl.SSLContext:
    """A context as urllib3 makes one for a verified connection, with the bundle loaded.

    Raises:
        UsageError: the bundle holds no usable certificate, or cannot be read.
    """
    from urllib3.util.ssl_ import create_urllib3_context  # imported already: see _loader

    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    origin, path = key[:2]
    try:
        if os.path.isdir(path):
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as err:
        raise UsageError(f"{origin}={path}: not a usable CA bundle ({err})") from None
    return context


def _load(key: _Key) -> None:
    global _loaded
    try:
        context: ssl.SSLContext | None = _build(key)
    except Exception:  # noqa: BLE001 (default_context() loads again and raises it to its caller)
        context = None
    with _lock:
        _loading.pop(key, None)
        if context is not None:
            _loaded = _Loaded(key, context)


def _loader(key: _Key) -> tuple[threading.Thread | None, ssl.SSLContext | None]:
    """The loaded context of ``key``, or the thread loading it (started here if none is)."""
    # urllib3 is imported here, by the caller: a thread importing the modules the main
    # thread imports at the same time could be handed one half-initialized (a module
    # lock cycle is broken that way).
    import urllib3.util.ssl_  # noqa: F401

    with _lock:
        if _loaded is not None and _loaded.key == key:
            return None, _loaded.context
        thread = _loading.get(key)
        if thread is None:
            thread = _loading[key] = threading.Thread(target=_load, args=(key,), daemon=True,
                                                      name="docker2aci-ca-bundle")
            thread.start()
    return thread, None


def preload() -> None:
    """Start loading the default CA bundle in a daemon thread, unless it is loaded or
    loading already; a bundle that cannot be read is left for :func:`default_context`
    to report."""
    try:
        _loader(_key(*bundle_path()))
    except UsageError:
        pass


def default_context() -> ssl.SSLContext:
    """The shared SSL context for verified https connections: TLS settings as urllib3's
    ``create_urllib3_context`` makes them, certificates required, the CAs of
    :func:`bundle_path`. Threads asking at once wait for one load (a :func:`preload`'s
    among them).

    Returns:
        the same context for as long as the bundle is unchanged (urllib3 pools
        connections per context, so they are reused across requests).

    Raises:
        UsageError: the bundle cannot be read or holds no usable certificate, naming the
            variable that named it.
    """
    key = _key(*bundle_path())
    thread, context = _loader(key)
    if context is not None:
        return context
    assert thread is not None
    thread.join()
    with _lock:
        if _loaded is not None and _loaded.key == key:
            return _loaded.context
    return _build(key)  # the load failed: its error, raised here
