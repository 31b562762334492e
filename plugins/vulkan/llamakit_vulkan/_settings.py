"""The Vulkan backend's settings: ``[backends.vulkan]``, or ``LLAMAKIT_BACKENDS__VULKAN__<KEY>``.

One pydantic model declares and validates the table. It is not the spec's
``settings_model``: that one also turns its fields into ``load_model`` keywords, and
neither setting here acts per model load (one is read before the library initialises,
the other when the variant is built).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from llamakit._config.errors import config_error_from_validation

__all__ = ["GLSLC_ENV", "VulkanSettings", "ambient_vulkan_settings", "vulkan_settings"]

GLSLC_ENV = "LLAMAKIT_BACKENDS__VULKAN__GLSLC"  # the config loader's own spelling
ALLOW_CPU_ENV = "LLAMAKIT_VULKAN_ALLOW_CPU_DEVICE"
_TRUE = ("1", "true", "yes", "on")


class VulkanSettings(BaseModel):
    """``[backends.vulkan]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_cpu_device: StrictBool = Field(
        False, description="Admit CPU-type Vulkan devices such as Mesa's lavapipe (ggml-vulkan "
        f"hides them otherwise); also {ALLOW_CPU_ENV}=1. Tests and CI use it.")
    glslc: str = Field(
        "system", description="The shader compiler the Vulkan variant is built with: "
        "'system' (glslc on the PATH), 'modern' (shaderc 2025.2, built once from Debian's "
        "sources by `llamakit vulkan-glslc build`, or on the variant's first build), or an "
        f"absolute path to a glslc ({GLSLC_ENV} in the environment). A newer glslc gives "
        "the variant the cooperative-matrix and integer-dot shaders (matrix cores).")

    @field_validator("glslc")
    @classmethod
    def _glslc(cls, value: str) -> str:
        if value in ("system", "modern"):
            return value
        path = Path(value)
        if not path.is_absolute():
            raise ValueError(f"expected 'system', 'modern' or an absolute path to a glslc, "
                             f"got {value!r}")
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ValueError(f"{value} is not an executable file")
        return value


def vulkan_settings(table: Mapping[str, Any] | None) -> VulkanSettings:
    """The validated table with the environment's overrides; ``ConfigError`` naming the
    key otherwise."""
    try:
        settings = VulkanSettings.model_validate(dict(table or {}))
    except ValidationError as exc:
        raise config_error_from_validation(exc, prefix=("backends", "vulkan")) from None
    if os.environ.get(ALLOW_CPU_ENV, "").lower() in _TRUE and not settings.allow_cpu_device:
        settings = settings.model_copy(update={"allow_cpu_device": True})
    return settings


def ambient_vulkan_settings() -> VulkanSettings:
    """The settings of the process's own config (``$LLAMAKIT_CONFIG`` and the environment):
    what a variant build reads, since building takes no config of its own."""
    from llamakit._config import ambient_config

    return vulkan_settings(ambient_config().backends.get("vulkan"))
