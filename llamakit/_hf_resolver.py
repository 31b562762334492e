"""The ``hf://`` model resolver: GGUF files from the Hugging Face Hub, through
``huggingface_hub`` (the optional extra ``llamakit[hf]``) and its cache.

- ``hf://owner/repo/path/to/file.gguf``: that file (and, for the first shard of a split
  model, every shard).
- ``hf://owner/repo:TAG`` picks a file the way llama.cpp's ``-hf owner/repo:TAG`` does
  (``common/download.cpp``, ``find_best_model``): the first ``.gguf`` whose path contains
  ``TAG`` followed by ``.`` or ``-`` (any case), leaving out mmproj/imatrix/draft files and
  shards after the first; without a tag, ``Q4_K_M``, then ``Q8_0``, then the first model
  file. All shards of the chosen file are fetched.

The environment is read at each call: ``HF_HUB_OFFLINE=1`` uses only the cache (the files
are listed from the cached snapshot of ``main``); ``HF_HUB_CACHE``, else ``HF_HOME/hub``,
else ``~/.cache/huggingface/hub`` is the cache; ``HF_TOKEN`` is used by huggingface_hub.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ._errors import ModelNotFoundError
from ._resolver_spec import ModelResolver

__all__ = ["best_model_file", "hf_resolver", "parse_hf_reference", "split_siblings"]

_SCHEMES = ("hf://", "hf:/")  # a Path made of "hf://a/b" reads "hf:/a/b"
_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)
_NOT_MODELS = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
_DEFAULT_TAGS = ("Q4_K_M", "Q8_0")


def parse_hf_reference(reference: str) -> tuple[str, str | None, str | None] | None:
    """``(repo_id, file, tag)`` of an ``hf://`` reference; None for other references."""
    scheme = next((s for s in _SCHEMES if reference.startswith(s)), None)
    if scheme is None:
        return None
    rest = reference[len(scheme):].strip("/")
    parts = rest.split("/")
    if len(parts) < 2 or not all(parts):
        raise ModelNotFoundError(f"{reference!r}: an hf:// reference is hf://owner/repo[:TAG] "
                                 "or hf://owner/repo/file.gguf", path=reference)
    if len(parts) == 2:
        repo, _, tag = parts[1].partition(":")
        return f"{parts[0]}/{repo}", None, tag or None
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:]), None


def _is_model(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".gguf") and not any(word in name for word in _NOT_MODELS)


def _split_info(path: str) -> tuple[str, int, int]:
    match = _SPLIT.match(path)
    if match is None:
        return path, 1, 1
    return match["prefix"], int(match["no"]), int(match["count"])


def best_model_file(files: list[str], tag: str | None) -> str | None:
    """The file llama.cpp's ``-hf repo:TAG`` would pick among ``files`` (repo paths)."""
    for wanted in [tag] if tag else list(_DEFAULT_TAGS):
        pattern = re.compile(re.escape(wanted) + r"[.-]", re.I)
        for path in files:
            if _is_model(path) and pattern.search(path) and _split_info(path)[1] == 1:
                return path
    if tag is None:
        return next((p for p in files if _is_model(p) and _split_info(p)[1] == 1), None)
    return None


def split_siblings(files: list[str], chosen: str) -> list[str]:
    """``chosen`` and, when it is a shard, the other shards of its split, in order."""
    prefix, _, count = _split_info(chosen)
    if count <= 1:
        return [chosen]
    shards = [p for p in files if _split_info(p)[0] == prefix and _split_info(p)[2] == count]
    return sorted(shards, key=lambda p: _split_info(p)[1])


def _cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached_files(cache: Path, repo: str) -> list[str]:
    """The files of ``repo``'s cached ``main`` snapshot (repo paths)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return []
    snapshot = folder / "snapshots" / revision
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*")
                  if p.is_file() or p.is_symlink())


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ModelNotFoundError("hf:// references need huggingface_hub: pip install "
                                 "'llamakit[hf]' (or huggingface_hub)") from None
    return huggingface_hub


def _repo_files(hub: Any, cache: Path, repo: str, reference: str) -> list[str]:
    if not _offline():
        try:
            return sorted(hub.list_repo_files(repo))
        except Exception as exc:  # noqa: BLE001 - unreachable Hub: fall back to the cache
            cached = _cached_files(cache, repo)
            if cached:
                return cached
            raise ModelNotFoundError(f"{reference}: cannot list the files of {repo} on the "
                                     f"Hub ({type(exc).__name__}: {exc}) and none are "
                                     f"cached in {cache}", path=reference) from None
    cached = _cached_files(cache, repo)
    if not cached:
        raise ModelNotFoundError(f"{reference}: HF_HUB_OFFLINE is set and {repo} is not in "
                                 f"the Hugging Face cache {cache}; download it once online",
                                 path=reference)
    return cached


def _fetch(hub: Any, cache: Path, repo: str, path: str, reference: str) -> Path:
    if _offline():
        found = hub.try_to_load_from_cache(repo, path, cache_dir=cache)
        if not isinstance(found, str):
            raise ModelNotFoundError(f"{reference}: HF_HUB_OFFLINE is set and {repo}/{path} "
                                     f"is not in the Hugging Face cache {cache}",
                                     path=reference)
        return Path(found)
    try:
        return Path(hub.hf_hub_download(repo, path, cache_dir=cache))
    except Exception as exc:  # noqa: BLE001 - every Hub failure is "not found, because"
        raise ModelNotFoundError(f"{reference}: cannot download {repo}/{path}: "
                                 f"{type(exc).__name__}: {exc}", path=reference) from None


def resolve_hf(reference: str) -> list[Path] | None:
    parsed = parse_hf_reference(reference)
    if parsed is None:
        return None
    repo, file, tag = parsed
    hub, cache = _hub(), _cache_dir()
    if file is None:
        files = _repo_files(hub, cache, repo, reference)
        file = best_model_file(files, tag)
        if file is None:
            listing = ", ".join(p for p in files if p.endswith(".gguf")) or "none"
            wanted = f"{tag} GGUF" if tag else "GGUF model file"
            raise ModelNotFoundError(f"{reference}: {repo} has no {wanted} (its GGUF files: "
                                     f"{listing})", path=reference)
        wanted_files = split_siblings(files, file)
    else:
        _, number, count = _split_info(file)
        prefix = _split_info(file)[0]
        wanted_files = ([f"{prefix}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]
                        if count > 1 and number == 1 else [file])
    return [_fetch(hub, cache, repo, path, reference) for path in wanted_files]


def hf_resolver() -> ModelResolver:
    """The ``hf://`` resolver (see the module)."""
    return ModelResolver("hf", resolve_hf,
                         description="hf://owner/repo/file.gguf or hf://owner/repo[:TAG] "
                         "from the Hugging Face Hub (huggingface_hub; HF_HUB_OFFLINE, HF_HOME)")
