"""runner.spec: manifest + options → process (cases 40–43), pure functions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from runner_aci_helpers import GROUP, PASSWD, manifest

from docker2aci.errors import RunnerError
from runner.spec import DEFAULT_PATH, Account, build_process_spec, parse_passwd, resolve_id

ENTRYPOINT = ["/bin/sh", "-c"]
CMD = ["echo from cmd"]


def _docker_manifest(**app: Any) -> dict[str, Any]:
    annotations = {
        "appc.io/docker/entrypoint": json.dumps(ENTRYPOINT),
        "appc.io/docker/cmd": json.dumps(CMD),
    }
    return manifest({"exec": ENTRYPOINT + CMD, **app}, annotations=annotations)


@pytest.mark.parametrize(
    ("doc", "args", "override", "expected"),
    [
        (_docker_manifest(), None, None, ENTRYPOINT + CMD),
        (_docker_manifest(), ["echo args"], None, [*ENTRYPOINT, "echo args"]),
        (manifest({"exec": ["/bin/echo", "cmd"]}), ["/bin/true"], None, ["/bin/true"]),
        (_docker_manifest(), ["a", "b"], ["/bin/echo", "over"], ["/bin/echo", "over", "a", "b"]),
        (manifest({}), ["/app", "-v"], None, ["/app", "-v"]),
        (manifest(None), None, ["/bin/sh"], ["/bin/sh"]),
    ],
    ids=["exec", "args-replace-cmd", "no-entrypoint", "override", "no-exec-with-args", "no-app"],
)
def test_argv(
    doc: dict[str, Any], args: list[str] | None, override: list[str] | None, expected: list[str]
) -> None:
    assert build_process_spec(doc, args, exec_override=override).argv == tuple(expected)


def test_no_exec_asks_for_exec_option() -> None:
    with pytest.raises(RunnerError, match="test/busybox has no exec.*--exec"):
        build_process_spec(manifest({"user": "0", "group": "0"}))


def test_environment_defaults() -> None:
    doc = _docker_manifest(user="app", group="app", environment=[{"name": "A", "value": "1"}])

    env = build_process_spec(doc, passwd_text=PASSWD, group_text=GROUP).env

    assert env == {"A": "1", "PATH": DEFAULT_PATH, "HOME": "/home/app", "AC_APP_NAME": "busybox"}


def test_image_values_win_over_defaults() -> None:
    doc = _docker_manifest(
        environment=[{"name": "PATH", "value": "/bin"}, {"name": "HOME", "value": "/h"}],
        workingDirectory="/srv",
    )

    spec = build_process_spec(doc)

    assert (spec.env["PATH"], spec.env["HOME"], spec.cwd) == ("/bin", "/h", "/srv")
    assert build_process_spec(_docker_manifest()).cwd == "/"


USERS = parse_passwd(PASSWD + "# comment\nbroken:x:notanumber:0::/:/bin/sh\n"
                     "huge:x:" + "1" * 5000 + ":0::/:/bin/sh\n")  # not an id: skipped, never int()-ed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 0), (None, 0), ("1000", 1000), ("app", 1000), ("root", 0), ("65534", 65534), (7, 7)],
)
def test_user_forms(value: str | int | None, expected: int) -> None:
    assert resolve_id(value, kind="user", accounts=USERS) == expected


def test_root_needs_no_passwd_and_names_win_over_numbers() -> None:
    assert resolve_id("root", kind="user", accounts=()) == 0
    assert resolve_id("42", kind="user", accounts=[Account("42", 4242)]) == 4242


@pytest.mark.parametrize("value", ["nginx", "broken", "huge", "-1", "4294967295", "9" * 5000])
def test_unknown_or_bad_user_is_named(value: str) -> None:
    with pytest.raises(RunnerError, match=f"user '{value}'"):
        resolve_id(value, kind="user", accounts=USERS)


def test_group_names_come_from_the_image_group_file() -> None:
    spec = build_process_spec(
        _docker_manifest(user="1000", group="app"), passwd_text=None, group_text=GROUP
    )

    assert (spec.uid, spec.gid) == (1000, 1000)
    with pytest.raises(RunnerError, match="group 'www' is not in the image's /etc/group"):
        build_process_spec(_docker_manifest(user="0", group="www"), group_text=GROUP)


def test_path_form_uses_the_file_owner() -> None:
    owners = {"/srv/data": (33, 44)}

    spec = build_process_spec(
        _docker_manifest(user="/srv/data", group="/srv/data"), owner_of=owners.__getitem__
    )

    assert (spec.uid, spec.gid) == (33, 44)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ({"exec": "/bin/sh"}, "app.exec is not a list"),
        ({"exec": ["/x"], "environment": [{"name": "A"}]}, "app.environment"),
        ({"exec": ["/x"], "supplementaryGIDs": ["1"]}, "supplementaryGIDs"),
        ({"exec": [""]}, "executable name is empty"),
    ],
)
def test_malformed_manifests_are_named(app: dict[str, Any], message: str) -> None:
    with pytest.raises(RunnerError, match=message):
        build_process_spec(manifest(app))
