"""The Python API as a program embedding docker2aci uses it (README "Python"):
:class:`docker2aci.ConvertOptions` checks each field when it is made, naming the field,
instead of failing deep inside :func:`docker2aci.convert` or converting otherwise than
asked (``compression="xz"`` wrote an uncompressed ACI); :func:`docker2aci.convert` runs
in several threads of a process at once and leaves the process as it found it."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import docker2aci
from docker2aci import Compression, ConvertOptions
from docker2aci.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import archivebuild as ab


@pytest.mark.parametrize("field, value, expected", [
    pytest.param("compression", "xz", "a Compression (Compression.GZIP, Compression.NONE, Compression.XZ, "
                 "Compression.BZIP2; Compression('xz') from a name), got 'xz'", id="compression-name"),
    pytest.param("compression_level", "3", "an int, got '3'", id="level-str"),
    pytest.param("compression_level", True, "an int, got True", id="level-bool"),
    pytest.param("max_layer_size", "512M", "an int, got '512M'", id="size-str"),
    pytest.param("max_layer_size", 0, "a size in bytes, at least 1, got 0", id="size-zero"),
    pytest.param("squash", "no", "a bool, got 'no'", id="squash-str"),
    pytest.param("use_cache", 0, "a bool, got 0", id="use-cache-int"),
    pytest.param("output_dir", 5, "a path (str or os.PathLike), got 5", id="output-dir-int"),
    pytest.param("output_dir", None, "a path (str or os.PathLike), got None", id="output-dir-none"),
    pytest.param("output_dir", "", "a directory's path, not empty and without NUL, got ''", id="output-dir-empty"),
    pytest.param("output_dir", "out\0x", "a directory's path, not empty and without NUL, got 'out\\x00x'",
                 id="output-dir-nul"),
    pytest.param("cache_dir", "", "a directory's path, not empty and without NUL, got ''",
                 id="cache-dir-empty-is-no-default"),
    pytest.param("tmp_dir", b"/tmp", "a path (str or os.PathLike) or None, got b'/tmp'", id="tmp-dir-bytes"),
    pytest.param("platform", 5, "a str or None, got 5", id="platform-int"),
    pytest.param("image", ["a"], "a str or None, got ['a']", id="image-list"),
    pytest.param("claims_as", None, "a str, got None", id="claims-as-none"),
    pytest.param("creds", ("user", "secret"), "a str or None, got a tuple", id="creds-never-shown"),
    # an empty signing field (an unset variable; a batch item's `sign: ""`) wrote unsigned ACIs (docs review)
    pytest.param("sign_key", "", "a key file, fingerprint or key ID, not empty, or None (no signing), got ''",
                 id="sign-key-empty-is-not-unsigned"),
    pytest.param("gpg_key", " ", "a gpg key ID or fingerprint, not empty, or None (no signing), got ' '",
                 id="gpg-key-empty-is-not-unsigned"),
    pytest.param("sign_passphrase_file", "", "a file's path, not empty, or None (no passphrase), got ''",
                 id="passphrase-file-empty"),
    # an empty creds (an unset variable) is neither the Docker config files' credentials nor none
    pytest.param("creds", "", "USER:PASSWORD, not empty, or None (the Docker config files' credentials), got a str",
                 id="creds-empty"),
])
def test_a_wrong_option_is_a_usage_error_naming_the_field(field: str, value: Any, expected: str) -> None:
    with pytest.raises(UsageError) as refused:
        ConvertOptions(**{field: value})
    assert str(refused.value) == f"ConvertOptions.{field}: expected {expected}"


def test_the_defaults_are_as_documented() -> None:
    options = ConvertOptions()
    assert (options.output_dir, options.compression, options.compression_level, options.squash,
            options.use_cache, options.max_layer_size) == (".", Compression.GZIP, 3, True, True, 16 << 30)


def test_paths_may_be_path_objects_and_are_kept_as_str(tmp_path: Path) -> None:
    saved = ab.build_manifest_save(tmp_path / "save.tar", [ab.SavedImage(ab.image_config([ab.BASE_LAYER]),
                                                                         [ab.BASE_LAYER], ["busybox:latest"])])
    (tmp_path / "tmp").mkdir()
    options = ConvertOptions(output_dir=tmp_path / "out", tmp_dir=tmp_path / "tmp", cache_dir=tmp_path / "cache",
                             compression=Compression.XZ)
    assert (options.output_dir, options.tmp_dir, options.cache_dir) == (
        str(tmp_path / "out"), str(tmp_path / "tmp"), str(tmp_path / "cache"))

    [aci] = docker2aci.convert(f"docker-archive:{saved}", options)
    assert Path(aci.path).parent == tmp_path / "out"
    assert Path(aci.path).read_bytes()[:6] == b"\xfd7zXZ\x00"


def _process_state() -> tuple[object, ...]:
    """What a conversion must leave as it found it: descriptors, threads, the collector,
    signal handlers, logging handlers, the environment."""
    handlers = {name: list(logger.handlers) for name, logger in logging.Logger.manager.loggerDict.items()
                if isinstance(logger, logging.Logger)}
    return (sorted(os.listdir("/proc/self/fd")), threading.enumerate(), gc.isenabled(), gc.get_freeze_count(),
            [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)],
            list(logging.getLogger().handlers), handlers, dict(os.environ))


def test_threads_convert_at_once_and_leave_the_process_as_it_was(tmp_path: Path) -> None:
    sources = []
    for tag in ("one", "two", "three"):
        image = ab.SavedImage(ab.image_config([ab.BASE_LAYER], Cmd=[f"/bin/{tag}"]), [ab.BASE_LAYER],
                              [f"busybox:{tag}"])
        sources.append(f"docker-archive:{ab.build_manifest_save(tmp_path / f'{tag}.tar', [image])}")
    expected = {source: docker2aci.convert(source, ConvertOptions(output_dir=tmp_path / "alone",
                                                                   cache_dir=tmp_path / "alone-cache"))[0].image_id
                for source in sources}
    before = _process_state()

    def convert(call: int) -> tuple[str, str]:
        source = sources[call % len(sources)]
        cache = tmp_path / ("shared-cache" if call % 2 else f"cache-{call}")
        [aci] = docker2aci.convert(source, ConvertOptions(output_dir=tmp_path / "out" / str(call), cache_dir=cache,
                                                           cache_local=call % 4 < 2))
        return source, aci.image_id

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(convert, range(60)))

    assert all(image_id == expected[source] for source, image_id in results)
    assert _process_state() == before
