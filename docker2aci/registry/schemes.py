"""Which registries answered only plain http, remembered for a while.

With ``--insecure-allow-http`` the client tries https first and falls back to http when
https fails at the connection level (:meth:`RegistryClient.ping`). Against a plain-http
registry that first attempt costs a TLS context (loading every CA certificate) and a
round trip on every run: about 60 ms of a warm re-conversion's 0.4 s. A host that fell
back is remembered here, one empty file per host whose modification time says when, and
for :data:`REMEMBER_SECONDS` later runs go to http first.

Only a host that names its port, whose https attempt got a plain-text answer to the TLS
hello on that very port, is remembered: a refused connection, a timeout or a certificate
problem (which an attacker could cause once) never makes later runs skip https. Nothing
is remembered or read without ``--insecure-allow-http``, which already lets an active
attacker force the fallback within a run; when http no longer answers, the memo is
dropped and https is tried first again. A memo that cannot be read or written is ignored.
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote

REMEMBER_SECONDS = 3600.0
"""How long a host that answered only over http is asked over http first (seconds)."""


class PlainHttpHosts:
    """The hosts that answered only plain http, as files in ``directory``.

    Args:
        directory: where the memo files live (created on the first :meth:`remember`).
        ttl: how long a memo holds, in seconds (default :data:`REMEMBER_SECONDS`).
    """

    def __init__(self, directory: str, ttl: float = REMEMBER_SECONDS) -> None:
        self.directory = directory
        self.ttl = ttl

    def _path(self, host: str) -> str:
        return os.path.join(self.directory, quote(host, safe=""))  # [::1]:5000 → %5B%3A%3A1%5D%3A5000

    def remembers(self, host: str) -> bool:
        """Whether ``host`` fell back to http less than ``ttl`` seconds ago."""
        try:
            age = time.time() - os.stat(self._path(host)).st_mtime
        except OSError:
            return False
        return 0 <= age < self.ttl

    def remember(self, host: str) -> None:
        """Note that ``host`` answered over http after https failed (now)."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            with open(self._path(host), "wb"):
                pass
            os.utime(self._path(host))
        except OSError:
            pass

    def forget(self, host: str) -> None:
        """Drop the memo of ``host``: https is tried first again."""
        try:
            os.unlink(self._path(host))
        except OSError:
            pass
