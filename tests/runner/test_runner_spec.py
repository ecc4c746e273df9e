"""runner.spec: manifest + options → process (cases 40–43), pure functions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from runner_aci_helpers import GROUP, PASSWD, manifest

from docker2aci.errors import RunnerError
from runner.spec import DEFAULT_PATH, Account, build_process_spec, parse_passwd, resolve_id, split_exec

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
        (manifest({"exec": ["/bin/echo", "cmd"]}, annotations={"appc.io/docker/cmd": '["/bin/echo","cmd"]'}),
         ["/bin/true"], None, ["/bin/true"]),
        (manifest({"exec": ["/bin/echo", "cmd"]}), ["hello", "world"], None, ["/bin/echo", "cmd", "hello", "world"]),
        (_docker_manifest(), ["a", "b"], ["/bin/echo", "over"], ["/bin/echo", "over", "a", "b"]),
        (manifest({}), ["/app", "-v"], None, ["/app", "-v"]),
        (manifest(None), None, ["/bin/sh"], ["/bin/sh"]),
        # ENTRYPOINT [""] resets it (moby's mergeAndVerifyConfig): the args alone, not ["", ...]
        (manifest({"exec": ["/bin/sh"]}, annotations={"appc.io/docker/entrypoint": '[""]',
                                                      "appc.io/docker/cmd": '["/bin/sh"]'}),
         ["/bin/echo", "hi"], None, ["/bin/echo", "hi"]),
    ],
    # an ACI not converted from a Docker image (no appc.io/docker/ annotation): the words
    # after -- are appended to its exec, as rkt's stage0 appends them (runner review: they
    # replaced the whole exec, and 'hello' was run; then exec[0]'s arguments were dropped)
    ids=["exec", "args-replace-cmd", "no-entrypoint", "foreign-aci-args-appended-to-exec", "override",
         "no-exec-with-args", "no-app", "empty-entrypoint-is-reset"],
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

    assert env == {"A": "1", "PATH": DEFAULT_PATH, "HOME": "/home/app", "SHELL": "/bin/sh", "USER": "app",
                   "LOGNAME": "app", "container": "docker2aci", "AC_APP_NAME": "busybox"}


@pytest.mark.parametrize(("user", "passwd", "names"), [
    ("app", PASSWD, {"USER": "app", "LOGNAME": "app"}),
    ("0", None, {"USER": "root", "LOGNAME": "root"}),  # rkt's default: no passwd needed for root
    ("0", "admin:x:0:0::/root:/bin/sh\n", {"USER": "admin", "LOGNAME": "admin"}),
    ("1000", None, {}),  # no name for it: none is made up (rkt said root, rkt #2569)
])
def test_shell_user_and_logname_defaults(user: str, passwd: str | None, names: dict[str, str]) -> None:
    """rkt's stage1 gives every app ``SHELL=/bin/sh``, ``USER`` and ``LOGNAME`` (its
    ``common.defaultEnv``) unless the image sets them; the runner gave neither."""
    env = build_process_spec(_docker_manifest(user=user, group="0"), passwd_text=passwd).env

    assert env["SHELL"] == "/bin/sh"
    assert {name: env[name] for name in ("USER", "LOGNAME") if name in env} == names


def test_image_and_set_env_values_win_over_the_shell_and_user_defaults() -> None:
    image = [{"name": "SHELL", "value": "/bin/bash"}, {"name": "USER", "value": "svc"}]
    doc = _docker_manifest(user="app", group="app", environment=image)

    env = build_process_spec(doc, passwd_text=PASSWD, group_text=GROUP, set_env={"LOGNAME": "cli", "USER": "cli"}).env

    assert (env["SHELL"], env["USER"], env["LOGNAME"]) == ("/bin/bash", "cli", "cli")


def test_groups_list_the_primary_group_once() -> None:
    """``supplementaryGIDs: [1000, 20, 20]`` with group 1000: fly's ``setgroups`` listed
    1000 twice (``id``: ``groups=20,1000(app),1000(app)``); the isolated stage did not."""
    doc = _docker_manifest(user="app", group="app", supplementaryGIDs=[1000, 20, 20])

    assert build_process_spec(doc, passwd_text=PASSWD, group_text=GROUP).groups == (1000, 20)


@pytest.mark.parametrize(("text", "words"), [
    ('/bin/sh -c "id"', ("/bin/sh", "-c", "id")),
    ('echo "a\\b"', ("echo", "a\\b")),  # POSIX: a backslash before b stays, inside double quotes
    ("echo a\\b 'c\\d'", ("echo", "ab", "c\\d")),  # outside quotes it escapes; single quotes keep it
    ('echo "\\$HOME \\` \\" \\\\"', ("echo", '$HOME ` " \\')),  # the four escapes inside "..."
    ("echo \"a\\\nb\" c\\\nd", ("echo", "ab", "cd")),  # a backslash-newline is removed
    ("echo $HOME * ~ '' \"\"", ("echo", "$HOME", "*", "~", "", "")),  # no expansions
    ("a \\\n", ("a",)),  # a continuation between words starts none (dash: one word)
    ("\\\n", ()),  # nothing but a continuation: no word, so "--exec is empty"
    ('/bin/sh -c "echo $*" sh one \\\n   two', ("/bin/sh", "-c", "echo $*", "sh", "one", "two")),
])
def test_exec_is_split_as_posix_shell_words(text: str, words: tuple[str, ...]) -> None:
    """``--exec`` is documented as split "as a shell would, without expansions"; shlex kept
    the backslash of ``"\\$"`` and ``"\\`"``, and a continuation's newline."""
    assert split_exec(text) == words


@pytest.mark.parametrize(("text", "reason"), [('sh -c "id', "No closing quotation"),
                                              ("sh -c 'id", "No closing quotation"),
                                              ("sh \\", "No escaped character")])
def test_exec_split_errors_name_the_option(text: str, reason: str) -> None:
    with pytest.raises(RunnerError) as caught:
        split_exec(text)
    assert str(caught.value) == f"--exec {text!r}: {reason}"


def test_container_variable_is_set_unless_the_image_or_the_user_sets_it() -> None:
    """appc spec/ace.md, "Execution Environment": ``container`` MUST be set for the app
    (run review: it was missing in both stages). An image's ``ENV container docker`` and
    ``--set-env`` keep their value."""
    assert build_process_spec(_docker_manifest()).env["container"] == "docker2aci"
    own = _docker_manifest(environment=[{"name": "container", "value": "docker"}])
    assert build_process_spec(own).env["container"] == "docker"
    assert build_process_spec(own, set_env={"container": "x"}).env["container"] == "x"


def test_image_values_win_over_defaults() -> None:
    doc = _docker_manifest(
        environment=[{"name": "PATH", "value": "/bin"}, {"name": "HOME", "value": "/h"}],
        workingDirectory="/srv",
    )

    spec = build_process_spec(doc)

    assert (spec.env["PATH"], spec.env["HOME"], spec.cwd) == ("/bin", "/h", "/srv")
    assert build_process_spec(_docker_manifest()).cwd == "/"
    assert build_process_spec(_docker_manifest(workingDirectory="srv/app")).cwd == "/srv/app"  # taken from /


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


@pytest.mark.parametrize("kind", ["user", "group"])
@pytest.mark.parametrize("number", [4294967295, 9999999999])
def test_an_id_out_of_range_in_the_image_s_file_is_named(kind: str, number: int) -> None:
    """An id in the image's passwd or group file skipped the range check numbers get, and
    the run failed late with "Invalid argument" or runc's "cannot unmarshal" (runner
    review)."""
    file = "/etc/passwd" if kind == "user" else "/etc/group"
    with pytest.raises(RunnerError, match=f"{kind} 'big' has the id {number} in the image's {file}, "
                                          r"out of range \(0-4294967294\)"):
        resolve_id("big", kind=kind, accounts=[Account("big", number)])
    assert resolve_id("big", kind=kind, accounts=[Account("big", 4294967294)]) == 4294967294


@pytest.mark.parametrize(("variable", "message"), [
    ({"name": "A=B", "value": "c"}, "variable 'A=B': the variable name 'A=B' holds '='"),
    ({"name": "", "value": "x"}, "variable '': the variable name is empty"),
    ({"name": "A\0", "value": "x"}, "NUL characters cannot be passed in the environment"),
    ({"name": "A", "value": "x\0y"}, "NUL characters cannot be passed in the environment"),
])
def test_a_manifest_variable_execve_cannot_pass_is_named(variable: dict[str, str], message: str) -> None:
    """The check --set-env gets: fly failed with a bare ValueError naming nothing, and
    isolated set A to "B=c" for a variable named "A=B" (runner review)."""
    with pytest.raises(RunnerError, match=re.escape("manifest field app.environment, ") + ".*" + re.escape(message)):
        build_process_spec(_docker_manifest(environment=[variable]))


def test_a_nul_character_in_the_command_line_is_named() -> None:
    """execve cannot pass it: fly failed with Python's "embedded null byte", isolated with
    "exec /bin/sh: invalid argument" and status 1, as if the app had (runner review)."""
    with pytest.raises(RunnerError, match=re.escape("argument 2 of the command line ('a\\x00b') holds a NUL "
                                                    "character, which cannot be passed to a program")):
        build_process_spec(_docker_manifest(), exec_override=["/bin/sh", "-c", "a\0b"])
    with pytest.raises(RunnerError, match=re.escape("of the command line ('x\\x00') holds a NUL character")):
        build_process_spec(_docker_manifest(), ["x\0"])


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
