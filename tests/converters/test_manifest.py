"""Image config → appc image manifest, and appc names (pure; no I/O).

Rules: ``../shared/reference/decisions.md`` ("Names", "Manifest"); inputs from public
cases 40, 41, 42, 43, 45, 47, 48, 50 and 52 (``../shared/cases/public-cases.md``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from converters.errors import BadConfig
from converters.manifest import (ImageConfig, Naming, build_manifest, go_json, lower_layer_manifest, manifest_bytes,
                                 parse_passwd, user_group)
from converters.names import (appc_os_arch, file_platform_suffix, is_ac_identifier, sanitize_ac_identifier,
                              sanitize_ac_name)

ANN = "appc.io/docker/"
IMAGE_ID = "sha256:" + "c" * 64
MANIFEST_HASH = "sha256:" + "d" * 64
LINUX_AMD64 = ("linux", "amd64")
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nginx:x:101:102:nginx:/var/cache/nginx:/sbin/nologin\n"
    "app:x:1000:1001::/home/app:/bin/sh\n"
)


def naming(**overrides: Any) -> Naming:
    values: dict[str, Any] = dict(name="test/app", repository="test/app", tag="1.0",
                                  original_name="test/app:1.0", registry_url=None,
                                  image_id=IMAGE_ID, manifest_hash=MANIFEST_HASH)
    values.update(overrides)
    return Naming(**values)


def config(cfg: dict[str, Any] | None = None, **top: Any) -> ImageConfig:
    """An ImageConfig read through ``from_json`` from ``{"config": cfg, **top}``."""
    return ImageConfig.from_json({"architecture": "amd64", "os": "linux", **top, "config": cfg or {}})


def build(cfg: dict[str, Any] | None = None, *, passwd: str | None = None,
          name: Naming | None = None, os_arch: tuple[str, str] = LINUX_AMD64, **top: Any) -> dict[str, Any]:
    return build_manifest(config(cfg, **top), name or naming(), os_arch, passwd).manifest


def annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest["annotations"]}


# -- exec, entrypoint/cmd annotations (cases 40, 41, 42) -----------------------------------

EXEC_CASES = [
    pytest.param(["/docker-entrypoint.sh"], ["nginx", "-g", "daemon off;"],
                 ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"],
                 '["/docker-entrypoint.sh"]', '["nginx","-g","daemon off;"]', id="40a-entrypoint-and-cmd"),
    pytest.param(["/bin/sh", "-c", "rails"], ["-v"], ["/bin/sh", "-c", "rails", "-v"],
                 '["/bin/sh","-c","rails"]', '["-v"]', id="40b-shell-form-entrypoint-swallows-cmd"),
    pytest.param(None, ["sh"], ["sh"], None, '["sh"]', id="40c-cmd-only"),
    pytest.param(["/bin/sh", "-c"], ["echo hi; ls /app"], ["/bin/sh", "-c", "echo hi; ls /app"],
                 '["/bin/sh","-c"]', '["echo hi; ls /app"]', id="shell-string-one-argument"),
    pytest.param(["./run.sh"], None, ["./run.sh"], '["./run.sh"]', None, id="41-relative-entrypoint-kept"),
    pytest.param(None, ["/bin/sh", "-c", "make && make install"],
                 ["/bin/sh", "-c", "make && make install"], None,
                 '["/bin/sh","-c","make \\u0026\\u0026 make install"]', id="go-escapes-ampersands"),
    pytest.param(None, ["/bin/echo", "<b>"], ["/bin/echo", "<b>"], None,
                 '["/bin/echo","\\u003cb\\u003e"]', id="go-escapes-angle-brackets"),
    pytest.param(None, ["/bin/echo", "héllo"], ["/bin/echo", "héllo"], None,
                 '["/bin/echo","héllo"]', id="non-ascii-stays-utf8"),
]


@pytest.mark.parametrize("entrypoint, cmd, expected_exec, ann_entrypoint, ann_cmd", EXEC_CASES)
def test_exec_is_entrypoint_then_cmd_unchanged(entrypoint: list[str] | None, cmd: list[str] | None,
                                               expected_exec: list[str], ann_entrypoint: str | None,
                                               ann_cmd: str | None) -> None:
    m = build({"Entrypoint": entrypoint, "Cmd": cmd})
    assert m["app"]["exec"] == expected_exec
    ann = annotations(m)
    assert ann.get(ANN + "entrypoint") == ann_entrypoint
    assert ann.get(ANN + "cmd") == ann_cmd


@pytest.mark.parametrize("entrypoint, cmd", [
    pytest.param(None, None, id="40d-both-null"),
    pytest.param([], [], id="both-empty-lists"),
    pytest.param(None, [], id="empty-cmd"),
])
def test_no_exec_key_when_nothing_to_run(entrypoint: list[str] | None, cmd: list[str] | None) -> None:
    m = build({"Entrypoint": entrypoint, "Cmd": cmd})
    assert "exec" not in m["app"]
    assert m["app"]["user"] == "0" and m["app"]["group"] == "0"
    ann = annotations(m)
    assert ANN + "entrypoint" not in ann and ANN + "cmd" not in ann


def test_42_no_cmd_keeps_app_with_env_ports_and_labels() -> None:
    m = build({"Env": ["PATH=/bin"], "ExposedPorts": {"80/tcp": {}}, "Labels": {"k": "v"}})
    assert m["app"] == {
        "user": "0",
        "group": "0",
        "environment": [{"name": "PATH", "value": "/bin"}],
        "ports": [{"name": "80-tcp", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False}],
        "userLabels": {"k": "v"},
    }


def test_42_empty_config_gives_minimal_app() -> None:
    m = build_manifest(ImageConfig.from_json({"config": {}}), naming(), LINUX_AMD64).manifest
    assert m["app"] == {"user": "0", "group": "0"}


@pytest.mark.parametrize("doc", [{}, {"config": None}], ids=["no-config", "null-config"])
def test_no_config_object_gives_no_app(doc: dict[str, Any]) -> None:
    """Without a container config the reference writes no ``app`` (a dependency image;
    docker2aci-behaviour.md, "app"); an empty app was written (parity review)."""
    m = build_manifest(ImageConfig.from_json(doc), naming(), LINUX_AMD64).manifest
    assert "app" not in m
    assert list(m) == ["acKind", "acVersion", "name", "labels", "annotations"]


# -- user and group (case 43) --------------------------------------------------------------

USER_CASES = [
    pytest.param("", None, ("0", "0"), id="empty"),
    pytest.param("", PASSWD, ("0", "0"), id="empty-with-passwd"),
    pytest.param("1000", None, ("1000", "0"), id="uid-no-passwd-docker-gid0"),
    pytest.param("4242", PASSWD, ("4242", "0"), id="uid-not-in-passwd-gid0"),
    pytest.param("1000", PASSWD, ("1000", "1001"), id="uid-in-passwd-its-gid"),
    pytest.param("101", PASSWD, ("101", "102"), id="nginx-uid-its-gid"),
    pytest.param("1000:1000", None, ("1000", "1000"), id="uid-gid"),
    pytest.param("nginx", PASSWD, ("nginx", "102"), id="name-from-passwd"),
    pytest.param("nginx", None, ("nginx", "0"), id="name-no-passwd"),
    pytest.param("nginx:www", PASSWD, ("nginx", "www"), id="name-group-as-written"),
    pytest.param("1000:www", None, ("1000", "www"), id="uid-groupname"),
    pytest.param("u:g:x", None, ("u", "g"), id="fields-past-the-group-ignored-as-runc"),
    pytest.param("nginx::x", PASSWD, ("nginx", "102"), id="empty-group-then-more-its-gid"),
    pytest.param(":g", None, ("0", "g"), id="group-only-user-0"),
    pytest.param("nginx:5", PASSWD, ("nginx", "5"), id="name-gid-as-written"),
    pytest.param("root", None, ("root", "0"), id="root-no-passwd"),
    pytest.param("root", PASSWD, ("root", "0"), id="root-with-passwd"),
    pytest.param("65534:65534", None, ("65534", "65534"), id="nobody-ids"),
    pytest.param("nginx", "junk line\nnginx:x:abc:def::/:/bin/sh\n", ("nginx", "0"), id="malformed-passwd-line-skipped"),
    pytest.param("dup", "dup:x:5:6::/:/bin/sh\ndup:x:7:8::/:/bin/sh\n", ("dup", "6"), id="first-passwd-entry-wins"),
]


@pytest.mark.parametrize("spec, passwd, expected", USER_CASES)
def test_user_group(spec: str, passwd: str | None, expected: tuple[str, str]) -> None:
    assert user_group(spec, passwd) == expected


@pytest.mark.parametrize("spec, passwd, expected", [
    pytest.param("nginx", PASSWD, ("nginx", "102"), id="name"),
    pytest.param("1000", None, ("1000", "0"), id="uid"),
    pytest.param("nginx:www", None, ("nginx", "www"), id="name-group"),
])
def test_user_group_in_manifest(spec: str, passwd: str | None, expected: tuple[str, str]) -> None:
    app = build({"User": spec}, passwd=passwd)["app"]
    assert (app["user"], app["group"]) == expected


def test_parse_passwd() -> None:
    assert parse_passwd(PASSWD + "short:x\n\n") == {"root": (0, 0), "nginx": (101, 102), "app": (1000, 1001)}


# -- ports (case 45) -----------------------------------------------------------------------

def _port(name: str, protocol: str, port: int, count: int = 1) -> dict[str, Any]:
    return {"name": name, "protocol": protocol, "port": port, "count": count, "socketActivated": False}


PORT_CASES = [
    pytest.param({"ExposedPorts": {"53/udp": {}, "53/tcp": {}, "8080": {}, "8000-8002/tcp": {}, "80/UDP": {}}},
                 [_port("53-tcp", "tcp", 53), _port("53-udp", "udp", 53), _port("80-udp", "udp", 80),
                  _port("8000-8002-tcp", "tcp", 8000, 3), _port("8080-tcp", "tcp", 8080)], id="45-mixed-sorted"),
    pytest.param({"ExposedPorts": None, "PortSpecs": ["6379"]}, [_port("6379-tcp", "tcp", 6379)],
                 id="45-legacy-portspecs"),
    pytest.param({"PortSpecs": ["6379/udp"]}, [_port("6379-udp", "udp", 6379)], id="portspecs-without-exposedports"),
    pytest.param({"ExposedPorts": {"80/tcp": {}}, "PortSpecs": ["6379"]}, [_port("80-tcp", "tcp", 80)],
                 id="portspecs-ignored-when-exposedports-set"),
    pytest.param({"ExposedPorts": {"443/tcp": {}, "80/tcp": {}}},
                 [_port("443-tcp", "tcp", 443), _port("80-tcp", "tcp", 80)], id="string-order-not-numeric"),
    pytest.param({"ExposedPorts": {"1/tcp": {}, "65535/sctp": {}}},
                 [_port("1-tcp", "tcp", 1), _port("65535-sctp", "sctp", 65535)], id="bounds-and-sctp"),
    pytest.param({"ExposedPorts": {"80": {}, "80/tcp": {}}}, [_port("80-tcp", "tcp", 80)],
                 id="same-port-twice-kept-once"),
    # go-connections nat.SplitProtoPort, which Docker reads these keys with, takes an
    # empty protocol for tcp: "80/" failed the conversion
    pytest.param({"ExposedPorts": {"80/": {}, "8000-8001/": {}}},
                 [_port("80-tcp", "tcp", 80), _port("8000-8001-tcp", "tcp", 8000, 2)], id="empty-protocol-is-tcp"),
    pytest.param({"ExposedPorts": {" 8080/udp ": {}}}, [_port("8080-udp", "udp", 8080)], id="spaces-around-a-key"),
]


@pytest.mark.parametrize("cfg, expected", PORT_CASES)
def test_ports(cfg: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    ports = build(cfg)["app"]["ports"]
    assert ports == expected
    assert all(list(p) == ["name", "protocol", "port", "count", "socketActivated"] for p in ports)


@pytest.mark.parametrize("key", [
    pytest.param("abc", id="not-a-number"),
    pytest.param("0", id="zero"),
    pytest.param("70000", id="above-65535"),
    pytest.param("0/tcp", id="zero-tcp"),
    pytest.param("8002-8000/tcp", id="reversed-range"),
    pytest.param("65535-65536/tcp", id="range-past-65535"),
    pytest.param("/tcp", id="no-port"),
    pytest.param("-80", id="negative"),
    pytest.param("1" * 5000 + "/tcp", id="thousands-of-digits"),  # int() refuses them
    pytest.param("\u0668\u0660/tcp", id="arabic-indic-digits"),  # \d matched them, int() read 80
])
def test_bad_port_names_the_field(key: str) -> None:
    with pytest.raises(BadConfig) as exc:
        build({"ExposedPorts": {key: {}}})
    assert exc.value.field == "config.ExposedPorts"
    assert "config.ExposedPorts" in str(exc.value) and repr(key) in str(exc.value)


# -- mount points ----------------------------------------------------------------------------

VOLUME_CASES = [
    pytest.param(["/data"], [("volume-data", "/data")], id="data"),
    pytest.param(["/My_Dir"], [("volume-my-dir", "/My_Dir")], id="mixed-case-underscore"),
    pytest.param(["/var/tmp", "/data"], [("volume-data", "/data"), ("volume-var-tmp", "/var/tmp")], id="sorted"),
    pytest.param(["/"], [("volume", "/")], id="root"),
    pytest.param(["/a_b", "/a-b"], [("volume-a-b", "/a-b"), ("volume-a-b-1", "/a_b")],
                 id="duplicate-suffix-in-path-order"),
    pytest.param(["/x_y", "/x.y", "/x-y"], [("volume-x-y", "/x-y"), ("volume-x-y-1", "/x.y"),
                                             ("volume-x-y-2", "/x_y")], id="three-way-duplicate"),
    pytest.param(["/a_b", "/a-b", "/a/b/1"], [("volume-a-b", "/a-b"), ("volume-a-b-1", "/a/b/1"),
                                               ("volume-a-b-2", "/a_b")], id="suffix-never-reuses-a-real-name"),
    pytest.param(["/a/../c"], [("volume-c", "/a/../c")], id="named-from-the-cleaned-path-as-the-reference"),
    pytest.param(["data"], [("volume-data", "/data")], id="relative-made-absolute"),
    pytest.param(["", "/x"], [("volume-x", "/x")], id="empty-dropped"),
]


@pytest.mark.parametrize("paths, expected", VOLUME_CASES)
def test_mount_points(paths: list[str], expected: list[tuple[str, str]]) -> None:
    result = build_manifest(config({"Volumes": {p: {} for p in paths}}), naming(), LINUX_AMD64)
    assert result.manifest["app"]["mountPoints"] == [{"name": n, "path": p} for n, p in expected]
    odd = [p for p in paths if not p.startswith("/")]
    assert len(result.warnings) == len(odd)  # an empty or a relative path is said


def test_an_empty_entrypoint_resets_it() -> None:
    """``ENTRYPOINT [""]``, Docker's way to reset an inherited entrypoint, gave ``exec``
    ``["", ...]``, which no runtime can start (hostile-input review). The annotation keeps
    it as stored, as the reference writes it (``generateEPCmdAnnotation``: any non-empty
    list); it was dropped."""
    result = build_manifest(config({"Entrypoint": [""], "Cmd": ["/bin/sh"]}), naming(), LINUX_AMD64)
    assert result.manifest["app"]["exec"] == ["/bin/sh"]
    assert annotations(result.manifest)["appc.io/docker/entrypoint"] == '[""]'
    assert result.warnings == ('config.Entrypoint [""] resets the entrypoint: none used',)
    only = build({"Entrypoint": [""]})
    assert "exec" not in only["app"] and annotations(only)["appc.io/docker/entrypoint"] == '[""]'


# -- environment -----------------------------------------------------------------------------

ENV_CASES = [
    pytest.param(["PATH=/bin", "A=x=y", "EMPTY="], [("PATH", "/bin"), ("A", "x=y"), ("EMPTY", "")], None,
                 id="split-at-first-equals"),
    pytest.param(["my-var=1", "a.b=1", "_x=2"], [("my-var", "1"), ("a.b", "1"), ("_x", "2")], None,
                 id="appc-0.8.11-allows-dot-and-dash"),
    pytest.param(["NOEQ", "A=1"], [("A", "1")], '["NOEQ"]', id="no-equals-dropped"),
    pytest.param(["1BAD=x", "=x", "A=1", "-a=2"], [("A", "1")], '["1BAD=x","=x","-a=2"]', id="bad-names-dropped"),
    pytest.param(["X=1", "Y=2", "X=3"], [("X", "3"), ("Y", "2")], None, id="duplicate-overwrites-in-place"),
    pytest.param(["1&&=x"], [], '["1\\u0026\\u0026=x"]', id="rejected-list-is-go-json"),
]


@pytest.mark.parametrize("env, expected, rejected", ENV_CASES)
def test_environment(env: list[str], expected: list[tuple[str, str]], rejected: str | None) -> None:
    result = build_manifest(config({"Env": env}), naming(), LINUX_AMD64)
    app = result.manifest["app"]
    assert app.get("environment", []) == [{"name": n, "value": v} for n, v in expected]
    assert annotations(result.manifest).get(ANN + "env-rejected") == rejected
    assert len(result.warnings) == (len(json.loads(rejected)) if rejected else 0)
    if rejected:
        for entry in json.loads(rejected):
            assert any(repr(entry.partition("=")[0]) in w or repr(entry) in w for w in result.warnings)


# -- working directory (case 50), created ------------------------------------------------------

@pytest.mark.parametrize("wd, expected, warned", [
    pytest.param("foobar", "/foobar", True, id="50-relative-made-absolute"),
    pytest.param("a/b", "/a/b", True, id="relative-two-parts"),
    # Docker runs a relative one from / and cleans it (moby's SetupWorkingDirectory):
    # "./app" was "/./app"
    pytest.param("./app", "/app", True, id="dot-slash-cleaned"),
    pytest.param(".", "/", True, id="dot-is-root"),
    pytest.param("../x/./y/", "/x/y", True, id="dot-dot-stays-under-root"),
    pytest.param("/app", "/app", False, id="absolute-kept"),
    pytest.param("/srv/./a/../b/", "/srv/./a/../b/", False, id="absolute-kept-as-written-as-the-reference"),
    pytest.param("", None, False, id="empty-omitted"),
])
def test_working_directory(wd: str, expected: str | None, warned: bool) -> None:
    result = build_manifest(config({"WorkingDir": wd}), naming(), LINUX_AMD64)
    assert result.manifest["app"].get("workingDirectory") == expected
    assert len(result.warnings) == int(warned)
    if warned:
        assert repr(wd) in result.warnings[0]


@pytest.mark.parametrize("created, kept", [
    pytest.param("2024-01-02T03:04:05Z", True, id="utc"),
    pytest.param("2026-11-29T12:41:22.610800451Z", True, id="nanoseconds"),
    pytest.param("2024-01-02T03:04:05.5+02:00", True, id="offset"),
    pytest.param("2024-01-02 03:04:05", False, id="space-separator"),
    pytest.param("2024-01-02", False, id="date-only"),
    pytest.param("yesterday", False, id="words"),
    pytest.param("2024-01-02T03:04:05", False, id="no-zone"),
    # Right shape, impossible value: Go's time.Parse (appc types.Date) rejects these, and
    # with them the whole manifest ("bad Date").
    pytest.param("2024-13-01T00:00:00Z", False, id="month-13"),
    pytest.param("2024-02-30T00:00:00Z", False, id="february-30"),
    pytest.param("2023-02-29T00:00:00Z", False, id="february-29-not-leap"),
    pytest.param("2024-02-29T00:00:00Z", True, id="february-29-leap"),
    pytest.param("2024-01-01T24:00:00Z", False, id="hour-24"),
    pytest.param("2024-01-01T00:60:00Z", False, id="minute-60"),
    # RFC 3339's time-numoffset: hour 00-23, minute 00-59 (decisions.md: dropped if not
    # RFC 3339; actool 0.8.11, built with Go 1.19, would take any two digits)
    pytest.param("2024-01-02T03:04:05+23:59", True, id="offset-at-its-bounds"),
    pytest.param("2024-01-02T03:04:05+24:00", False, id="offset-hour-24"),
    pytest.param("2024-01-02T03:04:05-01:60", False, id="offset-minute-60"),
    # RFC 3339 allows lower-case "t" and "z"; Go's time.Parse does not, nor digits other
    # than ASCII ones: actool refused the ACI ("cannot parse "t03:04:05z" as "T"").
    pytest.param("2024-01-02t03:04:05z", False, id="lower-case-t-and-z"),
    pytest.param("2024-01-02T03:04:05z", False, id="lower-case-z"),
    pytest.param("2024-01-02t03:04:05+01:00", False, id="lower-case-t"),
    pytest.param("\uff12024-01-02T03:04:05Z", False, id="fullwidth-digit"),
])
def test_created_annotation(created: str, kept: bool) -> None:
    result = build_manifest(config(created=created), naming(), LINUX_AMD64)
    assert annotations(result.manifest).get("created") == (created if kept else None)
    assert bool(result.warnings) is not kept
    if not kept:
        assert repr(created) in result.warnings[0]


# -- labels, name, annotations, key order (cases 47, 48, 52) ------------------------------------

def test_labels_sorted_and_version_from_tag() -> None:
    m = build(os_arch=("linux", "aarch64"), name=naming(tag="v1.0_rc"))
    assert m["labels"] == [{"name": "arch", "value": "aarch64"}, {"name": "os", "value": "linux"},
                           {"name": "version", "value": "v1.0_rc"}]


def test_48_registry_name_sanitized_and_original_kept() -> None:
    m = build(name=naming(name="localhost:5000/Team/App", repository="Team/App", tag="v1.0_rc",
                          original_name="localhost:5000/Team/App:v1.0_rc", registry_url="localhost:5000"))
    assert m["name"] == "localhost_5000/team/app"
    assert {"name": "version", "value": "v1.0_rc"} in m["labels"]
    ann = annotations(m)
    assert ann[ANN + "originalname"] == "localhost:5000/Team/App:v1.0_rc"
    assert ann[ANN + "registryurl"] == "localhost:5000"
    assert ann[ANN + "tag"] == "v1.0_rc"


def test_48_digest_only_has_no_version_and_no_tag() -> None:
    ref = "localhost:5000/team/app@sha256:" + "e" * 64
    m = build(name=naming(name="localhost:5000/team/app", repository="team/app", tag=None, original_name=ref))
    assert m["labels"] == [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}]
    ann = annotations(m)
    assert ANN + "tag" not in ann
    assert ann[ANN + "originalname"] == ref


FULL_CONFIG = {
    "User": "app:staff",
    "Env": ["PATH=/bin", "bad name=1"],
    "Entrypoint": ["/entry"],
    "Cmd": ["run"],
    "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/data": {}},
    "WorkingDir": "/srv",
    "Labels": {"z": "1", "a": "2"},
}
FULL_NAMING = dict(registry_url="registry.example", parent_image_id="sha256:" + "f" * 64,
                   manifest_list_hash="sha256:" + "b" * 64)


def test_key_orders_follow_appc_schema() -> None:
    m = build(FULL_CONFIG, name=naming(**FULL_NAMING), author="me <me@example.com>",
              created="2024-01-02T03:04:05Z")
    assert list(m) == ["acKind", "acVersion", "name", "labels", "app", "annotations"]
    assert (m["acKind"], m["acVersion"]) == ("ImageManifest", "0.8.11")
    assert list(m["app"]) == ["exec", "user", "group", "workingDirectory", "environment", "mountPoints",
                              "ports", "userLabels"]
    assert list(m["app"]["userLabels"].items()) == [("a", "2"), ("z", "1")]
    assert [a["name"] for a in m["annotations"]] == [
        "authors", "created", ANN + "originalname", ANN + "registryurl", ANN + "repository",
        ANN + "imageid", ANN + "parentimageid", ANN + "manifesthash", ANN + "manifestlisthash",
        ANN + "entrypoint", ANN + "cmd", ANN + "tag", ANN + "env-rejected"]


def test_full_manifest_exact() -> None:
    m = build(FULL_CONFIG, name=naming(**FULL_NAMING), author="me <me@example.com>",
              created="2024-01-02T03:04:05Z")
    assert m == {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "test/app",
        "labels": [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"},
                   {"name": "version", "value": "1.0"}],
        "app": {
            "exec": ["/entry", "run"],
            "user": "app",
            "group": "staff",
            "workingDirectory": "/srv",
            "environment": [{"name": "PATH", "value": "/bin"}],
            "mountPoints": [{"name": "volume-data", "path": "/data"}],
            "ports": [_port("80-tcp", "tcp", 80)],
            "userLabels": {"a": "2", "z": "1"},
        },
        "annotations": [
            {"name": "authors", "value": "me <me@example.com>"},
            {"name": "created", "value": "2024-01-02T03:04:05Z"},
            {"name": ANN + "originalname", "value": "test/app:1.0"},
            {"name": ANN + "registryurl", "value": "registry.example"},
            {"name": ANN + "repository", "value": "test/app"},
            {"name": ANN + "imageid", "value": IMAGE_ID},
            {"name": ANN + "parentimageid", "value": "sha256:" + "f" * 64},
            {"name": ANN + "manifesthash", "value": MANIFEST_HASH},
            {"name": ANN + "manifestlisthash", "value": "sha256:" + "b" * 64},
            {"name": ANN + "entrypoint", "value": '["/entry"]'},
            {"name": ANN + "cmd", "value": '["run"]'},
            {"name": ANN + "tag", "value": "1.0"},
            {"name": ANN + "env-rejected", "value": '["bad name=1"]'},
        ],
    }


def test_manifest_bytes_compact_go_json() -> None:
    m = build({"Cmd": ["/bin/sh", "-c", "a && b"]}, author="<x>")
    raw = manifest_bytes(m)
    assert raw.startswith(b'{"acKind":"ImageManifest","acVersion":"0.8.11","name":"test/app","labels":[')
    assert not raw.endswith(b"\n") and b", " not in raw and b": " not in raw
    assert b'"exec":["/bin/sh","-c","a \\u0026\\u0026 b"]' in raw
    assert b'{"name":"authors","value":"\\u003cx\\u003e"}' in raw
    assert json.loads(raw) == m


def test_same_input_same_bytes_regardless_of_map_order() -> None:
    """Case 52: ports, volumes, labels and env come from JSON objects; order must not leak."""
    a = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/b": {}, "/a": {}}, "Labels": {"y": "1", "x": "2"}}
    b = {"ExposedPorts": {"53/udp": {}, "80/tcp": {}}, "Volumes": {"/a": {}, "/b": {}}, "Labels": {"x": "2", "y": "1"}}
    assert manifest_bytes(build(a)) == manifest_bytes(build(b))


# -- ImageConfig.from_json ------------------------------------------------------------------------

def test_from_json_reads_every_field() -> None:
    doc = {
        "architecture": "arm", "os": "linux", "variant": "v7", "author": "a", "created": "c",
        "config": {"User": "u", "ExposedPorts": {"80/tcp": {}}, "Env": ["A=1"], "Entrypoint": ["/e"],
                   "Cmd": ["c"], "Volumes": {"/v": {}}, "WorkingDir": "/w", "Labels": {"l": "1"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
    }
    assert ImageConfig.from_json(doc) == ImageConfig(
        os="linux", architecture="arm", variant="v7", author="a", created="c", user="u",
        exposed_ports=("80/tcp",), env=("A=1",), entrypoint=("/e",), cmd=("c",), volumes=("/v",),
        working_dir="/w", labels={"l": "1"}, diff_ids=("sha256:" + "1" * 64,))


@pytest.mark.parametrize("key", ["Cmd", "Entrypoint"])
def test_bare_string_cmd_is_one_argument(key: str) -> None:
    """Docker's strslice decodes a JSON string as a one-element list (never re-split)."""
    cfg = ImageConfig.from_json({"config": {key: "echo a  b"}})
    assert getattr(cfg, key.lower()) == ("echo a  b",)
    assert build({key: "echo a  b"})["app"]["exec"] == ["echo a  b"]


def test_from_json_nulls_are_empty() -> None:
    doc = {"config": {"User": None, "ExposedPorts": None, "Env": None, "Entrypoint": None, "Cmd": None,
                      "Volumes": None, "WorkingDir": None, "Labels": None}, "rootfs": None, "os": None}
    assert ImageConfig.from_json(doc) == ImageConfig()


@pytest.mark.parametrize("doc, field", [
    pytest.param({"config": ["x"]}, "config", id="config-list"),
    pytest.param({"config": "x"}, "config", id="config-string"),
    pytest.param({"config": {"Env": [1]}}, "config.Env", id="env-number"),
    pytest.param({"config": {"Cmd": [["x"]]}}, "config.Cmd", id="cmd-nested"),
    pytest.param({"config": {"Entrypoint": {"a": 1}}}, "config.Entrypoint", id="entrypoint-object"),
    pytest.param({"config": {"ExposedPorts": ["80/tcp"]}}, "config.ExposedPorts", id="ports-list"),
    pytest.param({"config": {"Volumes": ["/data"]}}, "config.Volumes", id="volumes-list"),
    pytest.param({"config": {"Labels": {"a": 1}}}, "config.Labels", id="label-number"),
    pytest.param({"config": {"User": 0}}, "config.User", id="user-number"),
    pytest.param({"config": {"WorkingDir": ["/"]}}, "config.WorkingDir", id="workdir-list"),
    pytest.param({"architecture": 64}, "architecture", id="arch-number"),
    pytest.param({"rootfs": {"diff_ids": [None]}}, "rootfs.diff_ids", id="diff-ids-null-entry"),
    pytest.param({"rootfs": ["x"]}, "rootfs", id="rootfs-list"),
    pytest.param({"config": []}, "config", id="config-list"),
    pytest.param({"config": False}, "config", id="config-false"),
    pytest.param({"rootfs": {"type": "btrfs", "diff_ids": []}}, "rootfs.type", id="rootfs-type-not-layers"),
])
def test_from_json_wrong_type_names_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(BadConfig) as exc:
        ImageConfig.from_json(doc)
    assert exc.value.field == field


# -- go_json -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    pytest.param(["a && b"], '["a \\u0026\\u0026 b"]', id="ampersand"),
    pytest.param(["<script>"], '["\\u003cscript\\u003e"]', id="angle-brackets"),
    pytest.param(["\u2028\u2029"], '["\\u2028\\u2029"]', id="line-separators"),
    pytest.param(["é", "日本"], '["é","日本"]', id="utf8-not-escaped"),
    pytest.param({"a": [1, True, None], "b": "x\"y\\"}, '{"a":[1,true,null],"b":"x\\"y\\\\"}', id="compact"),
    pytest.param(["tab\there\nnl"], '["tab\\there\\nnl"]', id="control-chars"),
])
def test_go_json(value: Any, expected: str) -> None:
    assert go_json(value) == expected


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param("localhost:5000/Team/App", "localhost_5000/team/app", id="48-port-and-upper-case"),
    pytest.param("quay.io:443/foo", "quay.io_443/foo", id="quay-port"),
    pytest.param("registry-1.docker.io/library/busybox", "registry-1.docker.io/library/busybox", id="hub-unchanged"),
    pytest.param("library/busybox", "library/busybox", id="local-repository"),
    pytest.param("a b@c", "a_b_c", id="space-and-at"),
    pytest.param("-._~/name/-", "name", id="edges-stripped"),
    pytest.param("sha256-0123456789ab", "sha256-0123456789ab", id="untagged-name"),
    pytest.param("Home~User/App", "home~user/app", id="tilde-is-an-identifier-character"),
])
def test_sanitize_ac_identifier(text: str, expected: str) -> None:
    assert sanitize_ac_identifier(text) == expected


@pytest.mark.parametrize("text, expected", [
    pytest.param("53/udp", "53-udp", id="port"),
    pytest.param("8000-8002/tcp", "8000-8002-tcp", id="range"),
    pytest.param("volume//My__Dir", "volume-my-dir", id="runs-collapse"),
    pytest.param("volume/", "volume", id="trailing"),
    pytest.param("--X--", "x", id="edges-stripped"),
])
def test_sanitize_ac_name(text: str, expected: str) -> None:
    assert sanitize_ac_name(text) == expected


@pytest.mark.parametrize("func", [sanitize_ac_identifier, sanitize_ac_name])
@pytest.mark.parametrize("text", ["", "///", ":::", "___"])
def test_sanitize_nothing_left_is_an_error(func: Any, text: str) -> None:
    with pytest.raises(BadConfig):
        func(text)


@pytest.mark.parametrize("os_name, arch, variant, expected", [
    pytest.param("linux", "amd64", "", ("linux", "amd64"), id="amd64"),
    pytest.param("linux", "amd64", "v3", ("linux", "amd64"), id="amd64-v3"),
    pytest.param("linux", "386", "", ("linux", "i386"), id="47-386"),
    pytest.param("linux", "arm64", "v8", ("linux", "aarch64"), id="47-arm64-v8"),
    pytest.param("linux", "arm64", "", ("linux", "aarch64"), id="arm64-no-variant"),
    pytest.param("linux", "arm64", "v9", ("linux", "aarch64"), id="arm64-any-variant"),
    pytest.param("linux", "arm", "v7", ("linux", "armv7l"), id="47-arm-v7"),
    pytest.param("linux", "arm", "v6", ("linux", "armv6l"), id="47-arm-v6"),
    pytest.param("linux", "arm", "", ("linux", "armv7l"), id="47-bare-arm-is-v7"),
    pytest.param("linux", "arm", "7", ("linux", "armv7l"), id="arm-numeric-variant"),
    pytest.param("linux", "ppc64le", "", ("linux", "ppc64le"), id="ppc64le"),
    pytest.param("linux", "s390x", "", ("linux", "s390x"), id="s390x"),
    pytest.param("Linux", "AMD64", "", ("linux", "amd64"), id="case-insensitive"),
])
def test_appc_os_arch(os_name: str, arch: str, variant: str, expected: tuple[str, str]) -> None:
    assert appc_os_arch(os_name, arch, variant) == expected


@pytest.mark.parametrize("os_name, arch, variant, shown, field", [
    pytest.param("linux", "riscv64", "", "linux/riscv64", "architecture", id="riscv64"),
    pytest.param("linux", "mips64le", "", "linux/mips64le", "architecture", id="mips64le"),
    pytest.param("linux", "arm", "v5", "linux/arm/v5", "architecture", id="arm-v5"),
    pytest.param("windows", "amd64", "", "windows/amd64", "os", id="windows-the-os-is-at-fault"),
    pytest.param("linux", "", "", "linux", "architecture", id="empty-arch"),
])
def test_appc_os_arch_unknown_names_platform(os_name: str, arch: str, variant: str, shown: str, field: str) -> None:
    with pytest.raises(BadConfig) as exc:
        appc_os_arch(os_name, arch, variant)
    assert f"platform {shown} " in str(exc.value)
    assert exc.value.field == field


@pytest.mark.parametrize("text, valid", [
    pytest.param("example.com/app", True, id="host-and-path"),
    pytest.param("a-b.c_d~e/f", True, id="every-separator"),
    pytest.param("a", True, id="one-character"),
    pytest.param("a--b", False, id="doubled-separator"),
    pytest.param("a/-b", False, id="two-separators-in-a-row"),
    pytest.param("-a", False, id="leading-separator"),
    pytest.param("a/", False, id="trailing-separator"),
    pytest.param("A", False, id="upper-case"),
    pytest.param("a:b", False, id="colon"),
    pytest.param("", False, id="empty"),
])
def test_is_ac_identifier(text: str, valid: bool) -> None:
    """appc spec/types.md: runs of ``[a-z0-9]`` joined by single ``-._~/``."""
    assert is_ac_identifier(text) is valid


@pytest.mark.parametrize("os_name, arch, variant, suffix", [
    pytest.param("linux", "arm64", "v8", "-linux-aarch64", id="arm64-v8-unnormalised-is-the-baseline"),
    pytest.param("linux", "arm64", "8", "-linux-aarch64", id="arm64-8"),
    pytest.param("linux", "amd64", "v1", "-linux-amd64", id="amd64-v1"),
    pytest.param("linux", "amd64", "v2", "-linux-amd64-v2", id="amd64-v2-named"),
    pytest.param("freebsd", "arm", "v7", "-freebsd-arm", id="freebsd-arm-v7-is-the-default"),
    pytest.param("freebsd", "arm", "v6", "-freebsd-arm-v6", id="freebsd-arm-v6-named"),
])
def test_file_platform_suffix_of_raw_variants(os_name: str, arch: str, variant: str, suffix: str) -> None:
    """The baseline variants are left out of file names even when the caller has not
    normalised the platform (``file_platform_suffix``'s own rule)."""
    assert file_platform_suffix(os_name, arch, variant) == suffix


def test_lower_layer_manifest_names_the_layer_only() -> None:
    """A lower layer of a ``--nosquash`` image: no app, the image's os/arch, and of the
    provenance only what names the layer (``originalname``, ``manifesthash`` and
    ``manifestlisthash`` name the image: the layer's ACI is the same in every image
    built over it)."""
    name = naming(registry_url="registry.example", parent_image_id="sha256:" + "f" * 64,
                  manifest_list_hash="sha256:" + "b" * 64)
    assert lower_layer_manifest(name, ("linux", "aarch64")) == {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "test/app",
        "labels": [{"name": "arch", "value": "aarch64"}, {"name": "os", "value": "linux"}],
        "annotations": [
            {"name": ANN + "registryurl", "value": "registry.example"},
            {"name": ANN + "repository", "value": "test/app"},
            {"name": ANN + "imageid", "value": IMAGE_ID},
            {"name": ANN + "parentimageid", "value": "sha256:" + "f" * 64},
        ],
    }
