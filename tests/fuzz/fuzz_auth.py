"""Fuzz the ``WWW-Authenticate`` parser (``docker2aci.registry.auth.parse_challenges``) and
what the client reads from its result (realm, service, scopes, error, the challenge
choice, the learned scopes).

``parse_challenges`` documents no error at all: malformed parts are skipped, so any
exception is a crash. Every challenge has a non-empty lower-case scheme and lower-case
parameter names.

Run: ``python tests/fuzz/fuzz_auth.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import sys

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from docker2aci.registry.auth import Authenticator, _choose, parse_challenges


def _no_send(*args: object, **kwargs: object) -> object:
    raise AssertionError("no token request is expected")


def test_one(data: bytes) -> None:
    header = data.decode("utf-8", "surrogateescape")
    challenges = parse_challenges(header)
    for challenge in challenges:
        assert challenge.scheme and challenge.scheme == challenge.scheme.lower(), challenge
        assert all(k == k.lower() for k in challenge.params), challenge
        challenge.realm, challenge.service, challenge.scopes, challenge.error  # noqa: B018
    _choose(challenges)
    auth = Authenticator("registry.example", None, _no_send)
    auth.learn(header)


def seeds() -> list[bytes]:
    headers = [
        ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
         'scope="repository:library/busybox:pull"'),
        'Basic realm="Registry Realm"',
        'bearer realm=https://a/t, Basic realm="b, c", Negotiate abc==',
        'Bearer realm="h\\"t\\\\p",error="insufficient_scope",scope="a:b:pull b:c:push"',
        'Bearer realm="unterminated',
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
        ", , ,", "=", 'Bearer ,realm="x"',
    ]
    return [h.encode() for h in headers]


if __name__ == "__main__":
    fuzzlib.main("auth", test_one, seeds, max_len=4096)
    sys.exit(0)
