"""The modern shader compiler of the Vulkan backend: source verification, cache keys, the
``glslc`` setting, the shader-feature report, and (when one is cached) the compiler itself.

Building the compiler takes about 12 minutes on 2 cores, so no test builds it; the last
tests run only when ``llamakit vulkan-glslc build`` has already been run on this machine.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

import llamakit
from llamakit._config import clear_ambient_config

llamakit_vulkan = pytest.importorskip("llamakit_vulkan")
from llamakit_vulkan import _glslc, _glslc_build  # noqa: E402
from llamakit_vulkan._features import (  # noqa: E402
    ShaderCheck,
    build_features,
    describe_build,
    probe_glslc,
    shader_checks,
)
from llamakit_vulkan._settings import GLSLC_ENV, vulkan_settings  # noqa: E402

MODERN = _glslc_build.cached_glslc()
needs_modern = pytest.mark.skipif(MODERN is None, reason="no modern glslc cached (run "
                                  "`llamakit vulkan-glslc build`, about 12 min on 2 cores)")


@pytest.fixture(autouse=True)
def _fresh_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GLSLC_ENV, raising=False)
    clear_ambient_config()


def _package(tmp_path: Path, name: str, content: bytes, *, good: bool = True
             ) -> _glslc_build.SourcePackage:
    tarball = tmp_path / f"{name}.orig.tar.gz"
    tarball.write_bytes(content)
    digest = hashlib.sha256(content if good else b"something else").hexdigest()
    return _glslc_build.SourcePackage(name, "1-1", tarball.name, digest, len(content))


def test_a_source_with_a_wrong_checksum_is_refused_and_deleted(tmp_path: Path) -> None:
    good = _package(tmp_path, "good", b"good bytes")
    _glslc_build.verify_source(tmp_path / good.tarball, good)  # no error
    bad = _package(tmp_path, "bad", b"tampered bytes", good=False)
    with pytest.raises(llamakit.BuildError, match="refusing to build from it") as info:
        _glslc_build.verify_source(tmp_path / bad.tarball, bad)
    assert hashlib.sha256(b"tampered bytes").hexdigest() in str(info.value)
    assert not (tmp_path / bad.tarball).exists()  # the next fetch downloads it again


def test_fetch_refuses_a_tampered_download_without_fetching(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tarballs already downloaded are checked too (every build, not only the first)."""
    packages = (_package(tmp_path, "a", b"aaa"), _package(tmp_path, "b", b"bbb", good=False))
    monkeypatch.setattr(_glslc_build, "SOURCES", packages)
    with pytest.raises(llamakit.BuildError, match="b.orig.tar.gz has sha256"):
        _glslc_build.fetch_sources(tmp_path)
    monkeypatch.setattr(_glslc_build, "SOURCES", packages[:1])
    assert _glslc_build.fetch_sources(tmp_path) == {"a": tmp_path / "a.orig.tar.gz"}


def test_the_pins_are_debian_trixies_upstream_tarballs() -> None:
    names = [s.name for s in _glslc_build.SOURCES]
    assert names == ["spirv-headers", "spirv-tools", "glslang", "shaderc"]
    for source in _glslc_build.SOURCES:
        assert len(source.sha256) == 64 and source.tarball.endswith(".orig.tar.gz")
        assert source.tarball.startswith(f"{source.name}_")


def test_the_compiler_key_follows_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _glslc_build.glslc_key()
    assert key == _glslc_build.glslc_key() and len(key) == 16
    assert _glslc_build.glslc_dir().name.endswith(key)
    first = _glslc_build.SOURCES[0]
    changed = (first.__class__(first.name, first.version, first.tarball, "0" * 64, first.size),
               *_glslc_build.SOURCES[1:])
    monkeypatch.setattr(_glslc_build, "SOURCES", changed)
    assert _glslc_build.glslc_key() != key
    monkeypatch.undo()
    monkeypatch.setattr(_glslc_build, "CMAKE_FLAGS", {**_glslc_build.CMAKE_FLAGS,
                                                      "CMAKE_BUILD_TYPE": "Debug"})
    assert _glslc_build.glslc_key() != key


def _variant_key() -> str:
    from llamakit._build.variant import _lib_key

    clear_ambient_config()
    return _lib_key(llamakit_vulkan.vulkan_backend())[0]


def _executable(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o755)
    return path


def test_the_variant_key_names_the_compiler(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """system keeps the key variants had before the setting; modern and a path each give
    their own, and two different files at one path give two keys."""
    default = _variant_key()
    monkeypatch.setenv(GLSLC_ENV, "system")
    assert _variant_key() == default
    assert "glslc" not in llamakit_vulkan.vulkan_backend().key_extras()
    monkeypatch.setenv(GLSLC_ENV, "modern")
    modern = _variant_key()
    flags = llamakit_vulkan.vulkan_backend().cmake_flags()
    assert flags["Vulkan_GLSLC_EXECUTABLE"] == str(_glslc_build.glslc_dir() / "bin" / "glslc")
    compiler = _executable(tmp_path / "glslc", b"#!/bin/sh\necho one\n")
    monkeypatch.setenv(GLSLC_ENV, str(compiler))
    first = _variant_key()
    assert llamakit_vulkan.vulkan_backend().cmake_flags()["Vulkan_GLSLC_EXECUTABLE"] == \
        str(compiler)
    _executable(compiler, b"#!/bin/sh\necho two, longer\n")
    second = _variant_key()
    assert len({default, modern, first, second}) == 4


@pytest.mark.parametrize(("value", "message"), [
    ("glslc", "absolute path"),
    ("/no/such/glslc", "not an executable file"),
    (3, "string"),
])
def test_bad_glslc_settings_name_the_key(value: object, message: str) -> None:
    with pytest.raises(llamakit.ConfigError, match=message) as info:
        vulkan_settings({"glslc": value})
    assert info.value.key == "backends.vulkan.glslc"


def test_glslc_settings_accepted(tmp_path: Path) -> None:
    assert vulkan_settings({}).glslc == "system"
    assert vulkan_settings({"glslc": "modern"}).glslc == "modern"
    compiler = _executable(tmp_path / "glslc", b"#!/bin/sh\n")
    assert vulkan_settings({"glslc": str(compiler)}).glslc == str(compiler)
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(llamakit.ConfigError, match="not an executable"):
        vulkan_settings({"glslc": str(tmp_path / "plain")})


def test_a_bad_setting_in_the_config_file_stops_the_build_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "llamakit.toml"
    config.write_text('[backends.vulkan]\nglslc = "newest"\n')
    monkeypatch.setenv("LLAMAKIT_CONFIG", str(config))
    clear_ambient_config()
    with pytest.raises(llamakit.ConfigError, match="backends.vulkan.glslc"):
        llamakit_vulkan.vulkan_backend().cmake_flags()


def test_missing_system_glslc_is_not_required_for_another_choice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_glslc.shutil, "which", lambda name: None)
    assert any("no glslc" in p.problem for p in _glslc.glslc_prerequisites())
    monkeypatch.setenv(GLSLC_ENV, str(_executable(tmp_path / "glslc", b"#!/bin/sh\n")))
    clear_ambient_config()
    assert _glslc.glslc_prerequisites() == []


CMAKELISTS = '''
    test_shader_extension_support(
        "GL_KHR_cooperative_matrix"
        "${CMAKE_CURRENT_SOURCE_DIR}/vulkan-shaders/feature-tests/coopmat.comp"
        "GGML_VULKAN_COOPMAT_GLSLC_SUPPORT"
    )

    test_shader_extension_support(
        "GL_EXT_integer_dot_product"
        "${CMAKE_CURRENT_SOURCE_DIR}/vulkan-shaders/feature-tests/integer_dot.comp"
        "GGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT"
    )
'''


def test_the_probes_are_read_from_llama_cpps_cmakelists() -> None:
    checks = shader_checks(CMAKELISTS)
    assert checks == [
        ShaderCheck("GL_KHR_cooperative_matrix", "vulkan-shaders/feature-tests/coopmat.comp",
                    "GGML_VULKAN_COOPMAT_GLSLC_SUPPORT"),
        ShaderCheck("GL_EXT_integer_dot_product",
                    "vulkan-shaders/feature-tests/integer_dot.comp",
                    "GGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT")]
    assert [c.name for c in checks] == ["coopmat", "integer_dot"]


def test_the_pinned_llama_cpp_probes_the_matrix_core_extensions() -> None:
    from llamakit._build.source import source_tree

    text = (source_tree().path / "ggml/src/ggml-vulkan/CMakeLists.txt").read_text()
    names = [c.name for c in shader_checks(text)]
    assert {"coopmat", "coopmat2", "integer_dot", "bfloat16"} <= set(names)


def test_features_come_from_the_compile_definitions(tmp_path: Path) -> None:
    ninja = ("build ggml-vulkan.cpp.o: CXX_COMPILER\n  DEFINES = -DGGML_BACKEND_BUILD "
             "-DGGML_VULKAN_INTEGER_DOT_GLSLC_SUPPORT -DGGML_USE_VULKAN\n")
    checks = shader_checks(CMAKELISTS)
    assert build_features(checks, ninja) == {"coopmat": False, "integer_dot": True}
    assert build_features(checks, "") == {"coopmat": False, "integer_dot": False}
    (tmp_path / "build.ninja").write_text(ninja)
    (tmp_path / "CMakeCache.txt").write_text(
        "Vulkan_GLSLC_EXECUTABLE:FILEPATH=/opt/glslc\nOTHER:BOOL=ON\n")
    report = describe_build(tmp_path)  # probes of the pinned llama.cpp's CMakeLists
    assert "integer_dot" in report["shader features"].split(", ")
    assert "coopmat" in report["shader features missing"].split(", ")
    assert report["glslc"] == "/opt/glslc"


def test_backends_prints_the_build_report(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import llamakit._backends as backends_module
    from llamakit._cli import main

    status = backends_module.BackendStatus(
        name="vulkan", priority=10, plugin="llamakit-vulkan", description="d", available=True,
        built=True, reason="ready", build_report={"shader features": "coopmat, integer_dot"})
    monkeypatch.setattr(backends_module, "backends", lambda settings=None: [status])
    assert main(["backends"]) == 0
    assert "    shader features: coopmat, integer_dot" in capsys.readouterr().out


def test_command_path_says_when_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from llamakit._cli import main

    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(tmp_path))
    assert main(["vulkan-glslc", "path"]) == 1
    assert "not built" in capsys.readouterr().out
    assert main(["vulkan-glslc", "inputs"]) == 0
    assert "shaderc_2025.2.orig.tar.gz" in capsys.readouterr().out


COOPMAT_SHADER = """#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(local_size_x = 32) in;
layout(binding = 0) buffer A { float16_t a[]; };
layout(binding = 1) buffer C { float c[]; };
void main() {
    coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> ma;
    coopMatLoad(ma, a, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc =
        coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> mb;
    coopMatLoad(mb, a, 256, 16, gl_CooperativeMatrixLayoutRowMajor);
    acc = coopMatMulAdd(ma, mb, acc);
    coopMatStore(acc, c, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
}
"""


@needs_modern
def test_modern_glslc_compiles_a_cooperative_matrix_shader(tmp_path: Path) -> None:
    assert MODERN is not None
    shader = tmp_path / "coopmat.comp"
    shader.write_text(COOPMAT_SHADER)
    out = tmp_path / "coopmat.spv"
    done = subprocess.run([str(MODERN), "-fshader-stage=compute", "--target-env=vulkan1.3",
                           str(shader), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"\x03\x02\x23\x07"  # the SPIR-V magic number
    broken = tmp_path / "broken.comp"
    broken.write_text(COOPMAT_SHADER.replace("coopMatMulAdd(ma, mb, acc)", "coopMatMulAdd(ma)"))
    assert subprocess.run([str(MODERN), "-fshader-stage=compute", "--target-env=vulkan1.3",
                           str(broken), "-o", str(out)], capture_output=True).returncode != 0


@needs_modern
def test_modern_glslc_takes_the_matrix_core_extensions() -> None:
    """Asked the way ggml-vulkan's CMake asks, with its own feature-test shaders."""
    assert MODERN is not None
    found = probe_glslc(MODERN)
    assert found["coopmat"] and found["coopmat2"] and found["integer_dot"], found


def test_a_variant_without_a_kept_report_is_described_from_its_cmake_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llamakit._build.variant import BuiltVariant, build_report

    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(tmp_path))
    spec = llamakit_vulkan.vulkan_backend()
    old = BuiltVariant(backend="vulkan", module_path=tmp_path / "m.so", lib_dir=tmp_path,
                       info={"key": "0123456789abcdef0123"})
    assert build_report(spec, old) == {}  # no CMake folder either
    folder = tmp_path / "cmake" / "vulkan-0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "build.ninja").write_text("DEFINES = -DGGML_VULKAN_COOPMAT_GLSLC_SUPPORT\n")
    assert build_report(spec, old)["shader features"].split(", ")[0] == "coopmat"
    kept = BuiltVariant(backend="vulkan", module_path=tmp_path / "m.so", lib_dir=tmp_path,
                        info={"key": "0123456789abcdef0123",
                              "build_report": {"shader features": "integer_dot"}})
    assert build_report(spec, kept) == {"shader features": "integer_dot"}


@pytest.mark.skipif(not Path("/usr/bin/glslc").exists() and MODERN is None,
                    reason="no glslc to ask")
def test_command_status_asks_the_selected_compiler(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from llamakit._cli import main

    if MODERN is not None:
        monkeypatch.setenv(GLSLC_ENV, "modern")
    assert main(["vulkan-glslc", "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["selected"] == ("modern" if MODERN is not None else "system")
    assert {"coopmat", "integer_dot"} <= set(report["extensions"])
    if MODERN is not None:
        assert report["extensions"]["coopmat"] and report["version"].startswith("shaderc")


def test_modern_is_built_before_the_variant_only_when_chosen_and_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(tmp_path))  # nothing cached there
    calls: list[str] = []
    monkeypatch.setattr(_glslc, "build_glslc", lambda: calls.append("build") or tmp_path)
    _glslc.prepare_glslc()
    assert calls == []  # system: nothing to build
    monkeypatch.setenv(GLSLC_ENV, "modern")
    clear_ambient_config()
    _glslc.prepare_glslc()
    assert calls == ["build"]
    binary = _glslc_build.glslc_dir() / "bin" / "glslc"
    binary.parent.mkdir(parents=True)
    _executable(binary, b"#!/bin/sh\n")
    _glslc.prepare_glslc()
    assert calls == ["build"]  # cached now


def test_modern_without_a_way_to_fetch_is_a_missing_prerequisite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(GLSLC_ENV, "modern")
    clear_ambient_config()
    monkeypatch.setattr(_glslc.shutil, "which", lambda name: None)
    problems = _glslc.glslc_prerequisites()
    assert len(problems) == 1 and "'modern' is not built" in problems[0].problem
