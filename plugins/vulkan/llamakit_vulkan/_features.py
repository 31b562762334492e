"""Which shader features a Vulkan variant was built with, in llama.cpp's own terms.

ggml-vulkan's CMakeLists probes the shader compiler once per extension
(``test_shader_extension_support(EXTENSION TEST_SHADER DEFINE)``) and, when glslc takes the
extension, adds ``DEFINE`` (``GGML_VULKAN_COOPMAT_GLSLC_SUPPORT``, ...) to the compile
definitions: only then are the matching shaders compiled. The report reads the list of
probes from that CMakeLists and the definitions from the build's ``build.ninja``, so it
says what the compiled code has, not what a compiler might do.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ShaderCheck", "build_features", "describe_build", "probe_glslc", "shader_checks"]

_CHECK = re.compile(r'test_shader_extension_support\(\s*"([^"]+)"\s*"([^"]+)"\s*"(\w+)"\s*\)')
_DEFINE = re.compile(r"-D(GGML_VULKAN_\w+_GLSLC_SUPPORT)\b")
_GLSLC = re.compile(r"^Vulkan_GLSLC_EXECUTABLE:FILEPATH=(.*)$", re.M)
_CMAKELISTS = Path("ggml/src/ggml-vulkan/CMakeLists.txt")


@dataclass(frozen=True)
class ShaderCheck:
    extension: str
    """The GLSL extension (``GL_KHR_cooperative_matrix``)."""
    test_shader: str
    """Relative to ggml-vulkan's folder (``vulkan-shaders/feature-tests/coopmat.comp``)."""
    define: str

    @property
    def name(self) -> str:
        """The short name: ``coopmat``, ``coopmat2``, ``integer_dot``, ``bfloat16``, ..."""
        return self.define.removeprefix("GGML_VULKAN_").removesuffix("_GLSLC_SUPPORT").lower()


def shader_checks(cmakelists: str) -> list[ShaderCheck]:
    """The extension probes of ggml-vulkan's CMakeLists.txt, in its order."""
    return [ShaderCheck(ext, shader.replace("${CMAKE_CURRENT_SOURCE_DIR}/", ""), define)
            for ext, shader, define in _CHECK.findall(cmakelists)]


def build_features(checks: list[ShaderCheck], build_ninja: str) -> dict[str, bool]:
    """``{short name: compiled in}`` for every probe, from a build's compile definitions."""
    defined = set(_DEFINE.findall(build_ninja))
    return {check.name: check.define in defined for check in checks}


def _source_checks() -> list[ShaderCheck]:
    from llamakit._build.source import source_tree

    return shader_checks((source_tree().path / _CMAKELISTS).read_text())


def describe_build(build_dir: Path) -> dict[str, str]:
    """The ``build_report`` of a Vulkan variant: the glslc it used and its shader features."""
    features = build_features(_source_checks(), (build_dir / "build.ninja").read_text())
    cache = build_dir / "CMakeCache.txt"
    found = _GLSLC.search(cache.read_text(errors="replace")) if cache.is_file() else None
    report = {"shader features": ", ".join(n for n, on in features.items() if on) or "none",
              "shader features missing": ", ".join(n for n, on in features.items() if not on)
              or "none"}
    if found:
        report["glslc"] = found.group(1)
    return report


def probe_glslc(glslc: Path) -> dict[str, bool]:
    """Which of ggml-vulkan's probed extensions ``glslc`` takes, asked the way its CMake
    asks (its own test shaders; "extension not supported: NAME" on stderr means no)."""
    from llamakit._build.source import source_tree

    folder = (source_tree().path / _CMAKELISTS).parent
    result = {}
    for check in _source_checks():
        done = subprocess.run([str(glslc), "-o", "-", "-fshader-stage=compute",
                               "--target-env=vulkan1.3", str(folder / check.test_shader)],
                              capture_output=True)  # stdout is SPIR-V: bytes
        errors = done.stderr.decode(errors="replace")
        result[check.name] = f"extension not supported: {check.extension}" not in errors
    return result
