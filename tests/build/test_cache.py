"""The build cache: keys, locking, atomic publication, checksums, reuse without compiling."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from pathlib import Path

import pytest

import llamakit
from llamakit import BackendSpec, Prerequisite
from llamakit._build import source, variant
from llamakit._build.cache import atomic_directory, file_lock, hash_json
from llamakit._plugins.manager import get_plugin_host


def test_hash_json_ignores_key_order() -> None:
    """Keys are hashed canonically, values are not."""
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})


def test_atomic_directory_publishes_only_on_success(tmp_path: Path) -> None:
    """A failing block leaves no final folder and no temporary one."""
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(final) as tmp:
        (tmp / "whole").write_text("x")
    assert (final / "whole").read_text() == "x"


def test_file_lock_serialises_holders(tmp_path: Path) -> None:
    """A second holder enters only after the first leaves."""
    events: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def first() -> None:
        with file_lock(tmp_path / "k.lock"):
            events.append("first-in")
            inside.set()
            release.wait()
            events.append("first-out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    second = threading.Thread(target=lambda: (file_lock_enter(tmp_path, events)))
    second.start()
    release.set()
    thread.join()
    second.join()
    assert events == ["first-in", "first-out", "second-in"]


def file_lock_enter(tmp_path: Path, events: list[str]) -> None:
    with file_lock(tmp_path / "k.lock"):
        events.append("second-in")


def test_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    """An artifact whose sha256 differs from the pin is refused and set aside."""
    pin = source.load_pin()
    fake = tmp_path / pin["artifact"]["filename"]
    fake.write_bytes(b"not the real source")
    with pytest.raises(llamakit.SourceChecksumError, match="Refusing"):
        source._download_artifact(pin, tmp_path)
    assert not fake.exists()
    assert fake.with_name(fake.name + ".rejected").exists()


def test_pinned_artifact_matches_its_checksum() -> None:
    """The cached download of the pinned sdist has exactly the pinned sha256."""
    pin = source.load_pin()
    archive = source._download_artifact(pin, variant.cache_dir() / "downloads")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert digest == pin["artifact"]["sha256"]


def test_local_llama_cpp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             llama_cpp_dir: Path) -> None:
    """LLAMAKIT_LLAMA_CPP_DIR replaces the pin; a folder without llama.h is refused."""
    monkeypatch.setenv("LLAMAKIT_LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(llamakit.BuildError, match="llama.h"):
        source.source_tree()
    monkeypatch.setenv("LLAMAKIT_LLAMA_CPP_DIR", str(llama_cpp_dir))
    tree = source.source_tree()
    assert tree.path == llama_cpp_dir.resolve() and tree.identity.startswith("local:")
    assert tree.commit is None


def test_cached_variant_is_reused_without_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build with the same inputs compiles nothing."""
    spec = get_plugin_host().backends()["cpu"]
    built = variant.build_variant(spec)

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled although the cache holds this build")

    monkeypatch.setattr(variant, "_build_libraries", no_compile)
    monkeypatch.setattr(variant, "_compile_module", no_compile)
    again = variant.build_variant(spec)
    assert again.module_path == built.module_path
    assert variant.find_variant(spec) == again


def test_keys_follow_the_inputs() -> None:
    """Flags, backend name and native sources each change the key."""
    spec = get_plugin_host().backends()["cpu"]
    base, _ = variant._lib_key(spec)
    other_flags = dataclasses.replace(spec, cmake_flags=lambda: {"GGML_NATIVE": "OFF"})
    renamed = dataclasses.replace(spec, name="cpu2")
    assert variant._lib_key(other_flags)[0] != base
    assert variant._lib_key(renamed)[0] != base
    assert variant._lib_key(spec)[0] == base
    assert variant._module_key("a")[0] != variant._module_key("b")[0]


def test_missing_prerequisites_stop_before_cmake(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """An unbuilt backend with missing prerequisites names them and the install hint."""
    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(tmp_path))
    missing = [Prerequisite("no glslc", "apt-get install glslc")]
    spec = BackendSpec(name="needs", priority=1, description="t", libraries=(),
                       check_prerequisites=lambda: missing)
    with pytest.raises(llamakit.BuildError, match="no glslc.*apt-get install glslc"):
        variant.build_variant(spec)
    assert not (tmp_path / "cmake").exists()
