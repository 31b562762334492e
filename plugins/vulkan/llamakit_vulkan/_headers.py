"""Vulkan headers new enough for the pinned llama.cpp.

Debian bookworm ships 1.3.239, whose C++ headers lack ``vk::LayerSettingEXT`` that
ggml-vulkan uses. When the system headers are older than the known-good version, the
plugin fetches Debian trixie's ``libvulkan-dev`` (headers only, checksum-verified) with a
private apt state, leaving the system's apt sources and package database untouched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from llamakit import BuildError, Prerequisite
from llamakit._build.cache import atomic_directory, cache_dir, file_lock

__all__ = ["KNOWN_GOOD", "fetched_include_dir", "header_problems", "headers_include_dir",
           "prepare_headers", "system_header_version"]

logger = logging.getLogger("llamakit.build")

KNOWN_GOOD = (1, 4, 309)
_PACKAGE = "libvulkan-dev"
_VERSION = "1.4.309.0-1"
_SUITE = "trixie"
_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# sha256 of the .deb per architecture (Debian's package, checked after download).
_SHA256 = {"amd64": "8d329d465e16168afff58b1bd0dd6db46aac2cc3f56054a481b25a04e90b345a"}
_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def system_header_version(include: Path = Path("/usr/include")) -> tuple[int, int, int] | None:
    """The version of ``<include>/vulkan/vulkan_core.h``, None when absent."""
    header = include / "vulkan" / "vulkan_core.h"
    try:
        text = header.read_text(errors="replace")
    except OSError:
        return None
    patch = re.search(r"#define VK_HEADER_VERSION (\d+)", text)
    complete = re.search(r"VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION\(\d+, (\d+), (\d+),",
                         text)
    if not (patch and complete):
        return None
    return int(complete.group(1)), int(complete.group(2)), int(patch.group(1))


def _system_include() -> Path:
    sdk = os.environ.get("VULKAN_SDK")
    return Path(sdk) / "include" if sdk else Path("/usr/include")


def fetched_include_dir() -> Path:
    return cache_dir() / "vulkan-headers" / _VERSION / "usr" / "include"


def headers_include_dir() -> Path | None:
    """Where the build takes headers from: None for the system's, else the fetched ones."""
    version = system_header_version(_system_include())
    if version is not None and version >= KNOWN_GOOD and (
            _system_include() / "vulkan" / "vulkan.hpp").exists():
        return None
    return fetched_include_dir()


def _deb_arch() -> str | None:
    return _DEB_ARCH.get(platform.machine())


def header_problems() -> list[Prerequisite]:
    """What stops us from having good headers (nothing when they can be fetched)."""
    if headers_include_dir() is None or (fetched_include_dir() / "vulkan").exists():
        return []
    good = ".".join(map(str, KNOWN_GOOD))
    arch = _deb_arch()
    if arch not in _SHA256 or shutil.which("apt-get") is None or not _KEYRING.exists() \
            or shutil.which("dpkg-deb") is None:
        return [Prerequisite(
            f"Vulkan headers >= {good} (found {system_header_version(_system_include())}) and "
            "no way to fetch Debian's (needs apt-get, dpkg-deb, Debian's archive keyring, "
            "amd64)", f"apt-get install libvulkan-dev (>= {good}) or set VULKAN_SDK")]
    return []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_headers() -> None:
    """Fetch the pinned headers if the build needs them and they are not cached yet."""
    target = headers_include_dir()
    if target is None or (target / "vulkan" / "vulkan.hpp").exists():
        return
    arch = _deb_arch()
    if arch is None or arch not in _SHA256:
        raise BuildError(f"no pinned Vulkan headers for {platform.machine()}; install "
                         f"libvulkan-dev >= {'.'.join(map(str, KNOWN_GOOD))}", backend="vulkan")
    root = cache_dir() / "vulkan-headers"
    with file_lock(root / f"{_VERSION}.lock"):
        if (target / "vulkan" / "vulkan.hpp").exists():
            return
        logger.warning(
            "system Vulkan headers are %s, older than the %s this llama.cpp needs: fetching "
            "Debian %s's %s %s (headers only, sha256-verified) into %s; the system's apt "
            "sources are not touched", system_header_version(_system_include()),
            ".".join(map(str, KNOWN_GOOD)), _SUITE, _PACKAGE, _VERSION, root)
        state = root / "apt"
        for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "prefs"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        (state / "etc" / "sources.list").write_text(
            f"deb [signed-by={_KEYRING}] http://deb.debian.org/debian {_SUITE} main\n")
        options = [f"-oDir::State::Lists={state / 'lists'}",
                   f"-oDir::Etc::SourceList={state / 'etc' / 'sources.list'}",
                   f"-oDir::Etc::SourceParts={state / 'etc' / 'sources.list.d'}",
                   f"-oDir::Etc::PreferencesParts={state / 'prefs'}",
                   f"-oDir::Cache={state / 'cache'}", f"-oAPT::Architecture={arch}"]
        downloads = root / "downloads"
        downloads.mkdir(exist_ok=True)
        for command in (["apt-get", *options, "update"],
                        ["apt-get", *options, "download", f"{_PACKAGE}={_VERSION}"]):
            done = subprocess.run(command, cwd=downloads, capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"fetching Vulkan headers failed: {' '.join(command[:1])} "
                                 f"{command[-1]}: {done.stderr.strip()[-1500:]}",
                                 backend="vulkan")
        deb = downloads / f"{_PACKAGE}_{_VERSION}_{arch}.deb"
        digest = _sha256(deb)
        if digest != _SHA256[arch]:
            deb.unlink()
            raise BuildError(f"{deb.name} has sha256 {digest}, expected {_SHA256[arch]}; "
                             "refusing to use it", backend="vulkan")
        with atomic_directory(root / _VERSION) as tmp:
            done = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise BuildError(f"unpacking {deb.name} failed: {done.stderr}", backend="vulkan")
