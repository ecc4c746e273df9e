"""``docker-daemon:`` against a real dockerd started by the suite (flags from
../shared/reference/real-infra.md that keep it off the host network), on a unix socket
in a temporary directory, stopped by PID."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from services import die_with_pytest

import docker2aci
from docker2aci.errors import ImageNotFound, OutputError, UsageError
from runner.linux import root_is_mount_point

SHARED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"
EXAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "example-manifest-oci-archive.json"
CONFIG_DIGEST = "sha256:3655964a1898a9b4363b5f6dff5c245cc4f86efb66baa0134a138492459cdb92"


@pytest.fixture(scope="module")
def dockerd() -> Iterator[str]:
    """A dockerd of our own; yields its DOCKER_HOST (unix socket)."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd (Debian docker.io) is not installed")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    if not root_is_mount_point():  # dockerd's `mount --make-rprivate /` fails when unpacking
        pytest.skip("/ is not a mount point here (a chroot): dockerd cannot unpack images (remount / fails)")
    base = tempfile.mkdtemp(prefix="d2a-dockerd-", dir="/tmp")  # short: unix socket paths are limited
    sock = os.path.join(base, "docker.sock")
    log = open(os.path.join(base, "dockerd.log"), "wb")
    proc = subprocess.Popen(
        ["dockerd", "--host", f"unix://{sock}", "--data-root", f"{base}/data", "--exec-root", f"{base}/exec",
         "--pidfile", f"{base}/dockerd.pid", "--storage-driver", "vfs", "--iptables=false", "--ip6tables=false",
         "--ip-masq=false", "--ip-forward=false", "--bridge=none", "--exec-opt", "native.cgroupdriver=cgroupfs",
         "--userland-proxy=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_pytest)
    host = f"unix://{sock}"
    try:
        import docker

        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start: " + Path(base, "dockerd.log").read_text()[-2000:])
            time.sleep(0.05)
        client = docker.DockerClient(base_url=host, version="auto")
        try:
            with open(SHARED_IMAGES / "img.tar", "rb") as f:
                client.images.load(f.read())
        finally:
            client.close()
        yield host
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", f"{base}/exec"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        for group in ("docker",):  # dockerd leaves an empty cgroup behind
            for controller in Path("/sys/fs/cgroup").glob(f"*/{group}"):
                try:
                    controller.rmdir()
                except OSError:
                    pass


def test_daemon_image_converts_like_the_archive(dockerd: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    spool = tmp_path / "spool"
    spool.mkdir()
    [aci] = docker2aci.convert("docker-daemon:test/busybox:latest",
                               docker2aci.ConvertOptions(output_dir=str(tmp_path / "daemon"), tmp_dir=str(spool)))
    [from_archive] = docker2aci.convert(str(SHARED_IMAGES / "img.tar"),
                                        docker2aci.ConvertOptions(output_dir=str(tmp_path / "archive")))
    expected = json.loads(EXAMPLE.read_text())
    for annotation in expected["annotations"]:
        if annotation["name"] == "appc.io/docker/manifesthash":
            annotation["value"] = CONFIG_DIGEST  # an engine export has no registry manifest
    assert aci.manifest == expected
    assert Path(aci.path).name == "test-busybox-latest.aci"
    from test_shared_images import read_aci

    assert read_aci(aci.path)[1] == read_aci(from_archive.path)[1]
    assert list(spool.iterdir()) == []  # the export was spooled there, in a file without a name


def test_a_full_tmp_dir_under_the_export_is_an_output_error_naming_it(
        dockerd: str, tmpfs: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's export (about 2 MB) spooled into a full --tmp-dir: an OutputError that
    names the directory (not a source error), and nothing left there."""
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    spool = tmpfs("spool", "256k")
    with pytest.raises(OutputError, match=f"spooling the export of docker-daemon:test/busybox:latest into {spool}: "
                                          "No space left on device"):
        docker2aci.convert("docker-daemon:test/busybox:latest",
                           docker2aci.ConvertOptions(output_dir=str(tmp_path / "out"), tmp_dir=str(spool)))
    assert list(spool.iterdir()) == []
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_daemon_reference_is_kept_as_typed(dockerd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    [aci] = docker2aci.convert("docker-daemon:docker.io/test/busybox",
                               docker2aci.ConvertOptions(output_dir=str(tmp_path)))
    annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
    assert annotations["appc.io/docker/originalname"] == "docker.io/test/busybox"
    assert aci.name == "test/busybox" and aci.labels["version"] == "latest"


def test_daemon_missing_image_is_a_clear_error(dockerd: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    with pytest.raises(ImageNotFound, match="no-such/image"):
        docker2aci.convert("docker-daemon:no-such/image:1", docker2aci.ConvertOptions(output_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_unreachable_daemon_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The system's reason, not docker-py's wrapped text (``('Connection aborted.',
    FileNotFoundError(2, 'No such file or directory'))``, new-user review)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(docker2aci.errors.SourceError) as raised:
        docker2aci.convert("docker-daemon:busybox", docker2aci.ConvertOptions(output_dir=str(tmp_path)))
    assert str(raised.value) == (f"docker-daemon:busybox: cannot reach the Docker Engine at unix://{tmp_path}/"
                                 "nothing.sock (DOCKER_HOST): No such file or directory")


def test_an_engine_that_never_answers_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that accepts the connection and never answers (a stopped dockerd; here a
    socket that listens and reads nothing, the fault a running engine cannot be made to
    show): the conversion hung for good, before any export."""
    import socket

    from docker2aci.sources import daemon

    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/silent.sock")
    monkeypatch.setattr(daemon, "ENGINE_ANSWER_SECONDS", 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(docker2aci.errors.SourceError, match="cannot reach the Docker Engine at unix://"):
            docker2aci.convert("docker-daemon:busybox", docker2aci.ConvertOptions(output_dir=str(tmp_path / "out")))
    finally:
        silent.close()
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_daemon_image_by_id_is_named_by_its_id(dockerd: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker save <id>`` exports the image untagged: it is named by its config digest,
    as every untagged image in an archive (not ``library/sha256``)."""
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    for image_id in (CONFIG_DIGEST, CONFIG_DIGEST.split(":")[1][:12]):
        [aci] = docker2aci.convert(f"docker-daemon:{image_id}",
                                   docker2aci.ConvertOptions(output_dir=str(tmp_path / image_id[:8])))
        assert aci.name == "sha256-3655964a1898" and Path(aci.path).name == "sha256-3655964a1898.aci"
        assert "version" not in aci.labels


def test_a_name_without_tag_exports_only_its_latest_tag(
        dockerd: str, tmpfs: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker save NAME`` exports every tag of the repository: ``docker-daemon:NAME``
    (NAME:latest) spooled them all, here 8 MB more for a 2 MB image, and a --tmp-dir the
    image fits in was full."""
    import docker

    monkeypatch.setenv("DOCKER_HOST", dockerd)
    client = docker.DockerClient(base_url=dockerd, version="auto")
    try:
        big = tmp_path / "big.tar"
        with tarfile.open(big, "w") as tar:
            info = tarfile.TarInfo("big.bin")
            info.size = 8 << 20
            tar.addfile(info, io.BytesIO(os.urandom(info.size)))
        client.api.import_image_from_file(str(big), repository="test/busybox", tag="big")
        spool = tmpfs("spool", "4m")
        [aci] = docker2aci.convert("docker-daemon:test/busybox",
                                   docker2aci.ConvertOptions(output_dir=str(tmp_path / "out"), tmp_dir=str(spool)))
        assert aci.name == "test/busybox" and aci.labels["version"] == "latest"
        annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
        assert annotations["appc.io/docker/imageid"] == CONFIG_DIGEST
        with pytest.raises(ImageNotFound, match="the engine has no image 'test/nothing:latest'"):
            docker2aci.convert("docker-daemon:test/nothing", docker2aci.ConvertOptions(output_dir=str(tmp_path)))
    finally:
        client.images.remove("test/busybox:big")
        client.close()


def test_image_flag_is_refused_for_an_engine_image(dockerd: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--image`` picked another tag out of the repository's export and labelled it with
    the tag typed (the image of test/busybox:other written as test-busybox-latest.aci)."""
    import docker

    monkeypatch.setenv("DOCKER_HOST", dockerd)
    client = docker.DockerClient(base_url=dockerd, version="auto")
    try:
        client.images.get("test/busybox:latest").tag("test/busybox", "other")
        with pytest.raises(UsageError, match="flag --image works only with files"):
            docker2aci.convert("docker-daemon:test/busybox",
                               docker2aci.ConvertOptions(output_dir=str(tmp_path), image="test/busybox:other"))
        assert list(tmp_path.iterdir()) == []
    finally:
        client.images.remove("test/busybox:other")
        client.close()


def test_daemon_image_by_digest(dockerd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker-daemon:NAME@DIGEST`` (a pushed or pulled image): the engine exports it with
    no RepoTags, which was 'no image ...; present: sha256:3655...'. Named by the reference,
    without a version label, as a registry pull by digest."""
    import docker
    from services import REGISTRY_BIN, require_tools, run_registry

    require_tools(REGISTRY_BIN)
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    client = docker.DockerClient(base_url=dockerd, version="auto")
    with run_registry(tmp_path / "registry") as registry:
        repo = f"{registry.host}/test/busybox"
        try:
            client.images.get("test/busybox:latest").tag(repo, "latest")
            client.images.push(repo, tag="latest")  # 127.0.0.0/8 is an insecure registry by default
            [digested] = [d for d in client.images.get(f"{repo}:latest").attrs["RepoDigests"] if d.startswith(repo)]
            [aci] = docker2aci.convert(f"docker-daemon:{digested}",
                                       docker2aci.ConvertOptions(output_dir=str(tmp_path / "out")))
        finally:
            client.images.remove(f"{repo}:latest")
            client.close()
    assert aci.name == "test/busybox" and "version" not in aci.labels
    assert Path(aci.path).name == "test-busybox.aci"
    annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
    assert annotations["appc.io/docker/originalname"] == digested
    assert annotations["appc.io/docker/imageid"] == CONFIG_DIGEST
    assert "appc.io/docker/tag" not in annotations
