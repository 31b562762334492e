"""llamakit: run GGUF language models from Python on llama.cpp.

    import llamakit
    with llamakit.load_model("model.gguf") as model, model.new_context() as ctx:
        print(ctx.generate("Once upon a time", max_new_tokens=32).text)
"""

from ._backend_spec import BackendSpec, DeviceInfo, ModelDevices, Prerequisite
from ._backends import BackendStatus, backends, devices
from ._chat.builtin import builtin_chat_templates
from ._chat.render import apply_chat_template
from ._chat.results import ChatResult, ChatStream, ChatUsage
from ._chat.template import ChatTemplate
from ._command_spec import CommandSpec
from ._config import Config, config_schema_markdown, load_config
from ._context import Context
from ._demo import demo_model, demo_model_path
from ._engine import Engine, EngineStats
from ._errors import (
    AbortedError,
    BackendError,
    BackendUnavailableError,
    BuildError,
    ChatTemplateError,
    ClosedError,
    ComputeError,
    ConfigError,
    ContextBusyError,
    ContextError,
    ContextOverflowError,
    DecodeError,
    EmptyPromptError,
    EngineClosedError,
    GGUFFormatError,
    GrammarError,
    InvalidBatchError,
    InvalidTokenError,
    KVCacheFullError,
    LlamakitError,
    LoraError,
    ModelLoadError,
    ModelNotFoundError,
    PluginError,
    QuantizeError,
    QueueFullError,
    SamplerError,
    SourceChecksumError,
    StateError,
    TemplateLimitError,
    TemplateSecurityError,
    TokenizeError,
)
from ._from_config import from_config
from ._gguf import GGUFSummary, validate_gguf
from ._gpu import supports_gpu
from ._grammar import Grammar
from ._kv import KVCache
from ._logging import get_verbosity, set_verbosity
from ._lora import LoraAdapter
from ._model import Model, ModelInfo, OffloadInfo, load_model
from ._plugins.hookspecs import hookimpl
from ._plugins.manager import PluginWarning
from ._quantize.api import QuantizeResult, quantization_recipes, quantization_types, quantize
from ._quantize.catalog import QuantizationType
from ._quantize.plan import QuantizationRecipe, QuantizePlan, TensorInfo
from ._results import GenerationResult, TextStream, Timings
from ._sampler_chain import SamplerChain
from ._sampler_protocol import Candidates, Sampler, SamplerSpec
from ._version import __version__

__all__ = [
    "AbortedError",
    "BackendError",
    "BackendSpec",
    "BackendStatus",
    "BackendUnavailableError",
    "BuildError",
    "Candidates",
    "ChatResult",
    "ChatStream",
    "ChatTemplate",
    "ChatTemplateError",
    "ChatUsage",
    "ClosedError",
    "CommandSpec",
    "ComputeError",
    "Config",
    "ConfigError",
    "Context",
    "ContextBusyError",
    "ContextError",
    "ContextOverflowError",
    "DecodeError",
    "DeviceInfo",
    "EmptyPromptError",
    "Engine",
    "EngineClosedError",
    "EngineStats",
    "GGUFFormatError",
    "GGUFSummary",
    "GenerationResult",
    "Grammar",
    "GrammarError",
    "InvalidBatchError",
    "InvalidTokenError",
    "KVCache",
    "KVCacheFullError",
    "LlamakitError",
    "LoraAdapter",
    "LoraError",
    "Model",
    "ModelDevices",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "OffloadInfo",
    "PluginError",
    "PluginWarning",
    "Prerequisite",
    "QuantizationRecipe",
    "QuantizationType",
    "QuantizeError",
    "QuantizePlan",
    "QuantizeResult",
    "QueueFullError",
    "Sampler",
    "SamplerChain",
    "SamplerError",
    "SamplerSpec",
    "SourceChecksumError",
    "StateError",
    "TemplateLimitError",
    "TemplateSecurityError",
    "TensorInfo",
    "TextStream",
    "Timings",
    "TokenizeError",
    "__version__",
    "apply_chat_template",
    "backends",
    "builtin_chat_templates",
    "config_schema_markdown",
    "demo_model",
    "demo_model_path",
    "devices",
    "from_config",
    "get_verbosity",
    "hookimpl",
    "load_config",
    "load_model",
    "quantization_recipes",
    "quantization_types",
    "quantize",
    "set_verbosity",
    "supports_gpu",
    "validate_gguf",
]
