"""llamakit's patches to the pinned llama.cpp: applied, scoped to the builds that compile
them, and never mixed up with a tree patched otherwise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import llamakit
from llamakit._build import source

_CUDA_ONLY = """--- a/ggml/src/ggml-cuda/common.cuh
+++ b/ggml/src/ggml-cuda/common.cuh
@@ -1 +1 @@
-a
+b
"""


def test_the_pinned_tree_carries_every_listed_patch() -> None:
    """Each patch of pin.json is applied to the tree builds use: it reverses cleanly."""
    pin = source.load_pin()
    tree = source.materialize()
    assert tree == source.pinned_tree_path()
    marker = json.loads((tree / ".llamakit-source.json").read_text())
    assert marker["patches"] == pin["patches"]
    for name in pin["patches"]:
        patch = source.data_path(f"llama.cpp/patches/{name}")
        reverse = subprocess.run(["patch", "-p1", "-R", "-f", "--dry-run", "-i", str(patch)],
                                 cwd=tree, capture_output=True, text=True)
        assert reverse.returncode == 0, reverse.stdout


def test_the_cuda_graph_key_patch_only_keys_cuda_builds() -> None:
    """A patch inside ggml-cuda changes the CUDA build's identity, not the CPU's (whose
    identity stays what it was before any patch, so its cached builds stay valid)."""
    assert "cuda-graph-key.patch" in source.load_pin()["patches"]
    assert source.patch_scope("cuda-graph-key.patch") == "cuda"
    cpu = source.source_identity({"GGML_CUDA": "OFF", "GGML_VULKAN": "ON"})
    cuda = source.source_identity({"GGML_CUDA": "ON"})
    unpatched = source._patches_identity({"patches": []})
    assert cpu.endswith(":" + unpatched)
    assert cuda != cpu
    assert source.source_identity() == cuda  # without flags: every patch counts


@pytest.mark.parametrize(("text", "scope"), [
    (_CUDA_ONLY, "cuda"),
    (_CUDA_ONLY.replace("ggml-cuda", "ggml-cpu"), None),
    (_CUDA_ONLY.replace("ggml/src/ggml-cuda/common.cuh", "src/llama-context.cpp"), None),
    (_CUDA_ONLY + _CUDA_ONLY.replace("ggml-cuda", "ggml-vulkan"), None),
    (_CUDA_ONLY.replace("--- a/ggml/src/ggml-cuda/common.cuh", "--- /dev/null"), "cuda"),
])
def test_patch_scope(text: str, scope: str | None) -> None:
    assert source._scope_of(text) == scope


def test_a_tree_patched_otherwise_is_refused(tmp_path: Path) -> None:
    """A folder whose marker records other patches is not taken for the pinned tree."""
    pin = source.load_pin()
    dest = tmp_path / "tree"
    dest.mkdir()
    (dest / ".llamakit-source.json").write_text(json.dumps(
        {"commit": pin["commit"], "sha256": pin["artifact"]["sha256"], "patches": []}))
    with pytest.raises(llamakit.BuildError, match="another llama.cpp tree"):
        source.materialize(dest)


def test_a_patch_that_does_not_apply_is_an_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    patch = tmp_path / "bad.patch"
    patch.write_text(_CUDA_ONLY)
    monkeypatch.setattr(source, "data_path", lambda relative: patch)
    (tmp_path / "ggml/src/ggml-cuda").mkdir(parents=True)
    (tmp_path / "ggml/src/ggml-cuda/common.cuh").write_text("something else\n")
    with pytest.raises(llamakit.BuildError, match="does not apply"):
        source._apply_patches(tmp_path, ["bad.patch"])


def test_a_cmake_folder_of_another_tree_starts_afresh(tmp_path: Path) -> None:
    """CMake refuses to re-configure a folder made from another source tree."""
    build, tree, other = tmp_path / "build", tmp_path / "tree", tmp_path / "other"
    for folder in (build, tree, other):
        folder.mkdir()
    (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={tree}\n")
    source.reset_if_other_source(build, tree)
    assert (build / "CMakeCache.txt").is_file()
    source.reset_if_other_source(build, other)
    assert not build.exists()


def test_without_the_patch_program_the_error_says_so(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `patch` on it
    with pytest.raises(llamakit.BuildError, match="apt-get install patch"):
        source._apply_patches(tmp_path, ["cuda-graph-key.patch"])
