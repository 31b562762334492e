"""llamakit's configuration: the validated schema, the layered loader and its reference.

Settings come in four layers, each overriding the one before::

    defaults  <  TOML file  <  environment (LLAMAKIT_*)  <  keyword arguments of load_config()

A config file has one table per section of :class:`Config`::

    [backend]
    name = "vulkan"

    [model]
    path = "models/tiny.gguf"    # relative paths are relative to this file's folder
    n_gpu_layers = -1

    [context]
    n_ctx = 2048

    [sampling]
    temperature = 0.2
    stop = ["</s>"]

    [backends.vulkan]            # free-form; the vulkan backend validates it
    allow_cpu_device = true

Every mistake (unknown key, wrong type, value out of range, unreadable file) is one
:class:`~llamakit._errors.ConfigError` whose message names the dotted key, the value, the
reason and where the value came from.
"""

from __future__ import annotations

from .ambient import ambient_config, clear_ambient_config
from .errors import config_error_from_validation
from .loader import load_config
from .reference import config_schema_markdown
from .schema import (
    BackendConfig,
    Config,
    ContextConfig,
    ModelConfig,
    PluginsConfig,
    SamplingConfig,
)

__all__ = [
    "BackendConfig",
    "Config",
    "ContextConfig",
    "ModelConfig",
    "PluginsConfig",
    "SamplingConfig",
    "ambient_config",
    "clear_ambient_config",
    "config_error_from_validation",
    "config_schema_markdown",
    "load_config",
]
