"""An https forward proxy for tests: TLS to the proxy itself, then ``CONNECT`` tunnels.

What ``HTTPS_PROXY=https://...`` points clients at (squid with an https port, or any
corporate TLS proxy). No tool on this machine provides one, so this small one stands in;
it only tunnels bytes, 127.0.0.1 only, and records the ``CONNECT`` lines it served.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType


class ConnectProxy:
    """A TLS CONNECT proxy on 127.0.0.1 with ``cert``/``key``. Use as a context manager.

    Attributes:
        url: ``https://127.0.0.1:PORT``.
        connects: the ``CONNECT host:port`` targets served, in order.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert), str(key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connects: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, raw: socket.socket) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as client:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = client.recv(4096)
                    if not data:
                        return
                    request += data
                method, target, _ = request.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
                if method != "CONNECT":
                    client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                self.connects.append(target)
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=30) as upstream:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    _pump(client, upstream)
        except (OSError, ValueError):
            pass  # a client that gave up (a refused certificate, among others)


def _pump(client: ssl.SSLSocket, upstream: socket.socket) -> None:
    while True:
        ready = [client] if client.pending() else select.select([client, upstream], [], [], 30)[0]
        if not ready:
            return
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)
