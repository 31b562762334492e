"""llamakit: run GGUF language models from Python on llama.cpp.

    import llamakit
    with llamakit.load_model("model.gguf") as model, model.new_context() as ctx:
        print(ctx.generate("Once upon a time", max_new_tokens=32).text)
"""

from ._backend_spec import BackendSpec, DeviceInfo, Prerequisite
from ._backends import BackendStatus, backends, devices
from ._config import Config, config_schema_markdown, load_config
from ._context import Context
from ._errors import (
    AbortedError,
    BackendError,
    BackendUnavailableError,
    BuildError,
    ClosedError,
    ConfigError,
    ContextError,
    ContextOverflowError,
    DecodeError,
    EmptyPromptError,
    InvalidTokenError,
    LlamakitError,
    ModelLoadError,
    ModelNotFoundError,
    PluginError,
    SamplerError,
    SourceChecksumError,
    TokenizeError,
)
from ._from_config import from_config
from ._gpu import supports_gpu
from ._logging import get_verbosity, set_verbosity
from ._model import Model, ModelInfo, OffloadInfo, load_model
from ._plugins.hookspecs import hookimpl
from ._results import GenerationResult, TextStream, Timings
from ._version import __version__

__all__ = [
    "AbortedError",
    "BackendError",
    "BackendSpec",
    "BackendStatus",
    "BackendUnavailableError",
    "BuildError",
    "ClosedError",
    "Config",
    "ConfigError",
    "Context",
    "ContextError",
    "ContextOverflowError",
    "DecodeError",
    "DeviceInfo",
    "EmptyPromptError",
    "GenerationResult",
    "InvalidTokenError",
    "LlamakitError",
    "Model",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "OffloadInfo",
    "PluginError",
    "Prerequisite",
    "SamplerError",
    "SourceChecksumError",
    "TextStream",
    "Timings",
    "TokenizeError",
    "__version__",
    "backends",
    "config_schema_markdown",
    "devices",
    "from_config",
    "get_verbosity",
    "hookimpl",
    "load_config",
    "load_model",
    "set_verbosity",
    "supports_gpu",
]
