"""The validated configuration schema: one strict pydantic model per config section."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

# INT32_MAX: llama.cpp keeps most counts in int32 fields (re-exported for the samplers).
from .._limits import INT32_MAX as INT32_MAX
from .._limits import MAX_THREADS
from .provenance import _Provenance

#: The largest seed llama.cpp accepts as a fixed seed; 0xFFFFFFFF means "random" there.
MAX_SEED = 2**32 - 2
#: Largest penalty/DRY window: llama.cpp allocates a ring buffer of that many tokens.
MAX_LAST_N = 1 << 24
#: A string that must not be empty (a stop word, a DRY breaker, a trigger).
_Text = Annotated[str, Field(min_length=1)]


def _expand_user(path: Path) -> Path:
    """``path`` with a leading ``~`` expanded; as it is when there is no home to expand to."""
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def _one_or_list(value: object) -> object:
    """One string for a list of one (``stop = "x"``, as ``generate(stop="x")``)."""
    return [value] if isinstance(value, str) else value


def _is_class(annotation: Any) -> TypeGuard[type[Any]]:
    """Whether an annotation is a plain class (``list[str]`` passes isinstance(type) on 3.10)."""
    return isinstance(annotation, type) and typing.get_origin(annotation) is None


# Every section is strict: a TOML string is not an integer, 1 is not a boolean. Floats
# still accept integers (``temperature = 0``) and paths accept strings.
_STRICT = ConfigDict(extra="forbid", strict=True)


class BackendConfig(BaseModel):
    """Which compute backend runs the model."""

    model_config = _STRICT

    name: str = Field(
        default="auto",
        min_length=1,
        description='"auto", "cpu", "vulkan", or any installed backend plugin\'s name. '
        '"auto" picks a backend that works on this machine.',
    )


class ModelConfig(BaseModel):
    """The GGUF model file and how it is loaded."""

    model_config = _STRICT

    path: Path | None = Field(
        default=None,
        strict=False,
        description="The GGUF model file. A relative path in a config file is relative to "
        "that file's folder; `~` is expanded.",
    )
    n_gpu_layers: int = Field(
        default=0,
        ge=-1,
        le=INT32_MAX,
        description="How many layers to offload to the GPU: 0 = none, -1 = all "
        f"(at most {INT32_MAX}, a C int).",
    )
    main_gpu: int = Field(
        default=0, ge=0, le=INT32_MAX,
        description="Index of the accelerator that holds the model with split_mode 'none' "
        "(and the intermediate results otherwise).",
    )
    split_mode: Literal["none", "layer", "row"] = Field(
        default="layer",
        description="How to spread layers over several GPUs: 'none' (main_gpu only), "
        "'layer' (whole layers per GPU) or 'row' (rows of each tensor).",
    )
    tensor_split: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        default=None,
        description="Share of the model for each accelerator device, e.g. [3, 1]; "
        "default: in proportion to free memory.",
    )
    use_mmap: bool = Field(
        default=True, description="Map the model file into memory instead of reading it."
    )
    use_mlock: bool = Field(
        default=False,
        description="Lock the model's memory so the operating system cannot swap it out.",
    )
    vocab_only: bool = Field(
        default=False, description="Load only the vocabulary (for tokenizing), no weights."
    )

    @field_validator("path", mode="before")
    @classmethod
    def _path_not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("should be a file path, not an empty string")
        return value

    @field_validator("path")
    @classmethod
    def _expand_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _expand_user(value)


class ContextConfig(BaseModel):
    """The inference context: its length, batching and threads."""

    model_config = _STRICT

    n_ctx: int | None = Field(
        default=None,
        gt=0,
        le=INT32_MAX,
        description="Context length in tokens (at most 2**31 - 1; a context whose KV cache "
        "cannot fit in this machine's memory is refused with the estimate). Unset: the "
        "model's training context length, at most 4096.",
    )
    n_batch: int = Field(
        default=512, gt=0, le=INT32_MAX,
        description="Most tokens submitted in one decode call (logical batch)."
    )
    n_ubatch: int = Field(
        default=512, gt=0, le=INT32_MAX,
        description="Most tokens computed at once (physical micro-batch)."
    )
    n_threads: int | None = Field(
        default=None,
        gt=0,
        le=MAX_THREADS,
        description=f"CPU threads used while generating, at most {MAX_THREADS} (ggml's "
        "GGML_MAX_N_THREADS). Unset: chosen automatically.",
    )
    n_threads_batch: int | None = Field(
        default=None,
        gt=0,
        le=MAX_THREADS,
        description=f"CPU threads used while processing prompts, at most {MAX_THREADS}. "
        "Unset: chosen automatically.",
    )
    embeddings: bool = Field(
        default=False, description="Extract embeddings (for embedding models)."
    )
    n_seq_max: int = Field(
        default=1, gt=0, le=256,
        description="Sequences the context holds at once (generate_batch slots, texts packed "
        "into one embeddings decode).",
    )
    kv_unified: bool | None = Field(
        default=None,
        description="One KV buffer shared by all sequences (n_ctx positions in all) instead of "
        "n_seq_max streams of n_ctx / n_seq_max. Unset: unified for embeddings contexts, "
        "separate otherwise.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Random seed of the context. Unset: a random seed.",
    )
    deterministic: bool | None = Field(
        default=None,
        description="Reuse the prompt cache only where a call then gives the same tokens as "
        "in a fresh context (whole n_batch chunks decoded as a fresh context decodes them). "
        "Unset: on for greedy (temperature 0) and seeded calls, off otherwise; false: "
        "reuse every shared prefix (fastest).",
    )
    flash_attn: Literal["auto", "on", "off"] = Field(
        default="auto",
        description='Flash attention: "auto" uses it where the backend supports it, "on" '
        'requires it, "off" never uses it. A quantized type_v needs it.',
    )
    type_k: Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"] = (
        Field(
            default="f16",
            description="Data type of the KV cache's keys (llama.cpp's --cache-type-k). A "
            "quantized type needs an attention head size that is a multiple of 32.",
        ))
    type_v: Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"] = (
        Field(
            default="f16",
            description="Data type of the KV cache's values (llama.cpp's --cache-type-v). A "
            'quantized type needs flash_attn "auto" or "on" and a head size that is a '
            "multiple of 32.",
        ))
    rope_freq_base: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="RoPE base frequency. Unset: the model's.",
    )
    rope_freq_scale: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="RoPE frequency scaling factor (context extension by 1/scale). Unset: "
        "the model's.",
    )
    rope_scaling_type: Literal["none", "linear", "yarn", "longrope"] | None = Field(
        default=None,
        description="RoPE scaling method. Unset: the model's (usually none, or linear).",
    )
    yarn_ext_factor: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="YaRN: extrapolation mix factor; 0 = full interpolation. Unset: the "
        "model's (1 with YaRN scaling).",
    )
    yarn_attn_factor: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="YaRN: scale of the attention magnitude. Unset: the model's.",
    )
    yarn_beta_fast: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="YaRN: low correction dimension. Unset: the model's (32).",
    )
    yarn_beta_slow: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="YaRN: high correction dimension. Unset: the model's (1).",
    )
    yarn_orig_ctx: int | None = Field(
        default=None, gt=0, lt=2**32,
        description="YaRN: the model's original (training) context length. Unset: the "
        "model's.",
    )
    swa_full: bool = Field(
        default=True,
        description="Keep a full-size KV cache for sliding-window-attention layers (needed to "
        "reuse cached prompt prefixes and save states); false saves memory.",
    )
    offload_kqv: bool = Field(
        default=True,
        description="Keep the KV cache and attention on the GPU with offloaded layers; false "
        "keeps them in system memory.",
    )
    op_offload: bool = Field(
        default=True,
        description="Let the GPU run operations on weights kept in system memory (large "
        "batches); false computes them on the CPU.",
    )


class SamplingConfig(BaseModel):
    """How the next token is chosen, and when generation stops."""

    model_config = _STRICT

    max_new_tokens: int = Field(
        default=256, ge=0, description="Most tokens generated per call."
    )
    temperature: float = Field(
        default=0.8,
        ge=0,
        allow_inf_nan=False,
        description="Sampling temperature; 0 = greedy (always the most likely token).",
    )
    top_k: int = Field(
        default=40, ge=0, le=INT32_MAX,
        description="Keep only the k most likely tokens; 0 = no limit."
    )
    top_p: float = Field(
        default=0.95,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Nucleus sampling: keep the most likely tokens whose probabilities add "
        "up to p (at least min_keep); 1 = off, 0 = only the most likely token.",
    )
    min_p: float = Field(
        default=0.05,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Drop tokens less likely than min_p times the most likely one; 0 = off.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Random seed of the sampler. Unset: a random seed.",
    )
    typical_p: float = Field(
        default=1.0, ge=0, le=1, allow_inf_nan=False,
        description="Locally typical sampling: keep the tokens closest to the expected "
        "surprise whose probabilities add up to p; 1 = off.",
    )
    top_n_sigma: float = Field(
        default=-1.0, allow_inf_nan=False,
        description="Keep tokens within n standard deviations of the top logit; <= 0 = off.",
    )
    min_keep: int = Field(
        default=1, ge=1, le=INT32_MAX,
        description="Fewest tokens top_p, min_p, typical_p and XTC leave.",
    )
    xtc_probability: float = Field(
        default=0.0, ge=0, le=1, allow_inf_nan=False,
        description="XTC (exclude top choices): chance per token of dropping the likely "
        "tokens above xtc_threshold but one; 0 = off.",
    )
    xtc_threshold: float = Field(
        default=0.1, ge=0, le=1, allow_inf_nan=False,
        description="XTC: probability above which a token counts as a top choice; > 0.5 = off.",
    )
    dynatemp_range: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="Dynamic temperature: vary it by up to this much with the entropy; 0 = off.",
    )
    dynatemp_exponent: float = Field(
        default=1.0, ge=0, allow_inf_nan=False,
        description="Dynamic temperature: exponent of the entropy mapping.",
    )
    repeat_penalty: float = Field(
        default=1.0, gt=0, allow_inf_nan=False,
        description="Divide the logits of recently seen tokens by this; 1 = off.",
    )
    repeat_last_n: int = Field(
        default=64, ge=-1, le=MAX_LAST_N,
        description="How many recent tokens the penalties look at (prompt included); "
        "0 = off, -1 = the whole context.",
    )
    frequency_penalty: float = Field(
        default=0.0, allow_inf_nan=False,
        description="Subtract this times a recent token's count from its logit; 0 = off.",
    )
    presence_penalty: float = Field(
        default=0.0, allow_inf_nan=False,
        description="Subtract this from the logit of any recently seen token; 0 = off.",
    )
    dry_multiplier: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="DRY (don't repeat yourself) penalty strength; 0 = off.",
    )
    dry_base: float = Field(
        default=1.75, ge=0, allow_inf_nan=False,
        description="DRY: the penalty grows as dry_base ** (length of the repeat "
        "- dry_allowed_length).",
    )
    dry_allowed_length: int = Field(
        default=2, ge=0, le=INT32_MAX,
        description="DRY: repeats up to this many tokens are not penalised."
    )
    dry_penalty_last_n: int = Field(
        default=64, ge=-1, le=MAX_LAST_N,
        description="DRY: how many recent tokens to scan; 0 = off, -1 = the whole context.",
    )
    dry_sequence_breakers: list[_Text] = Field(
        default_factory=lambda: ["\n", ":", '"', "*"],
        description="DRY: strings that end a repeated sequence.",
    )
    mirostat: Literal[0, 1, 2] = Field(
        default=0,
        description="Mirostat sampling (targets a perplexity): 0 = off, 1 = v1, 2 = v2. "
        "Replaces top_k/top_p/min_p/typical_p/XTC and the penalties, as in llama.cpp.",
    )
    mirostat_tau: float = Field(
        default=5.0, ge=0, allow_inf_nan=False, description="Mirostat: target surprise."
    )
    mirostat_eta: float = Field(
        default=0.1, ge=0, allow_inf_nan=False, description="Mirostat: learning rate."
    )
    adaptive_target: float = Field(
        default=-1.0, le=1, allow_inf_nan=False,
        description="Adaptive-p: pick tokens near this probability over time (it then picks "
        "the token instead of the usual random draw); < 0 = off.",
    )
    adaptive_decay: float = Field(
        default=0.9, ge=0, le=0.99, allow_inf_nan=False,
        description="Adaptive-p: decay of its moving average (history about 1/(1-decay) "
        "tokens).",
    )
    logit_bias: dict[str, float] = Field(
        default_factory=dict,
        description='Add to the logits of token ids, e.g. {"15043" = 2.0}; -inf bans a token.',
    )
    grammar: str | None = Field(
        default=None, description="A GBNF grammar the output must follow."
    )
    grammar_file: Path | None = Field(
        default=None, strict=False,
        description="A GBNF grammar file (relative to the config file's folder).",
    )
    json_schema: dict[str, Any] | str | None = Field(
        default=None,
        description="A JSON schema (a table, or JSON text) the output must validate against.",
    )
    grammar_trigger_patterns: list[_Text] = Field(
        default_factory=list,
        description="Make the grammar lazy: it applies once the output matches one of these "
        "regular expressions.",
    )
    grammar_trigger_words: list[_Text] = Field(
        default_factory=list,
        description="Make the grammar lazy: it applies once one of these strings appears.",
    )
    grammar_trigger_tokens: list[int] = Field(
        default_factory=list,
        description="Make the grammar lazy: it applies once one of these token ids appears.",
    )
    samplers: list[str | dict[str, Any]] | None = Field(
        default=None,
        description="Order of the sampling stages, llama.cpp's names (penalties, dry, "
        "top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature, infill) and samplers "
        'from plugins ({name = "...", ...parameters}). Unset: the model\'s '
        "general.sampling.sequence, else llama.cpp's order.",
    )
    stop: Annotated[list[_Text], BeforeValidator(_one_or_list)] = Field(
        default_factory=list,
        description="Generation stops when the output contains any of these strings (a "
        "list, or one string).",
    )
    backend_sampling: bool = Field(
        default=False,
        description="Sample inside llama.cpp's decode graph, on the device that computes "
        "the logits (llama.cpp's --backend-sampling, experimental there): each step copies "
        "the sampled token instead of every logit, and the host samples nothing. Applies "
        "when every stage can run there (logit_bias, penalties, top_k, top_p, min_p, "
        "temperature, greedy, dist) and no logprobs are asked for; otherwise the host "
        "samples as usual. Seeded results differ from host sampling.",
    )


class PluginsConfig(BaseModel):
    """Which installed llamakit plugins are not loaded."""

    model_config = _STRICT

    disable: list[str] = Field(
        default_factory=list, description="Names of installed plugins not to load."
    )


class ChatConfig(BaseModel):
    """Chat templates: which one to use, and the limits on rendering one."""

    model_config = _STRICT

    template: str | None = Field(
        default=None,
        min_length=1,
        description="The chat template: Jinja source, or a name (a plugin's template, the "
        "model's `tokenizer.chat_template.<name>`, or a llama.cpp built-in such as "
        '"chatml"); `llamakit chat` also takes a file of Jinja source. Unset: a plugin\'s '
        "template for the model, else the model's own, else a built-in chosen from the "
        "model's metadata.",
    )
    max_output_chars: int = Field(
        default=4_000_000,
        gt=0,
        description="Most characters a rendered template (and any string or list it builds "
        "on the way) may have; a template that goes past it raises TemplateLimitError.",
    )
    max_render_seconds: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="Most seconds one rendering may take; a template that runs longer "
        "raises TemplateLimitError.",
    )
    reasoning_format: Literal["auto", "deepseek", "none"] | None = Field(
        default=None,
        description="Where a reasoning model's thinking goes (llama.cpp's reasoning_format): "
        '"auto" or "deepseek" put it in reasoning_content, "none" leaves it in content. '
        'Unset: "auto" for templates that reason or offer tools, else untouched.',
    )
    reasoning_budget: int | None = Field(
        default=None,
        ge=-1,
        le=0,
        description="-1: think without limit; 0: turn thinking off where the template can "
        "(enable_thinking=false). Token budgets above 0 are not supported yet.",
    )


class GrammarConfig(BaseModel):
    """Limits on grammars and JSON schemas, checked before llama.cpp parses or uses them
    (its parser and converter recurse, and a grammar's size sets the cost of every token)."""

    model_config = _STRICT

    max_rules: int = Field(
        default=5_000, gt=0, le=20_000,
        description="Most rules a grammar may have, counting parenthesised groups (llama.cpp "
        "recurses along chains of rules: 200,000 overflow the C stack; at most 20,000).",
    )
    max_alternatives: int = Field(
        default=2_000, gt=0, le=1_000_000,
        description="Most alternatives ('|') in a grammar, and values in a JSON schema's "
        "enums: sampling tries every alternative open at a position against every token of "
        "the vocabulary, in one C call Ctrl-C cannot stop (2,000 values: about 0.6 s a token "
        "with a 32,000-token vocabulary on 2 busy cores; 10,000: over 4 s).",
    )
    max_chars: int = Field(
        default=1_000_000, gt=0,
        description="Longest grammar text, and longest JSON schema (as JSON), in characters.",
    )
    max_trigger_patterns: int = Field(
        default=64, gt=0,
        description="Most trigger patterns (and words) of a lazy grammar.",
    )
    max_trigger_pattern_chars: int = Field(
        default=1_000, gt=0,
        description="Longest trigger pattern of a lazy grammar, in characters.",
    )
    max_trigger_match_bytes: int = Field(
        default=1_024, gt=0, le=16_384,
        description="Longest text a trigger pattern of a lazy grammar may match, in bytes: "
        "llamakit looks for a trigger only that far back from each new token (llama.cpp "
        "searched the whole output every token, and overflowed the C stack on long ones). "
        "Patterns that can match more (unbounded '*' or '+', except a leading '[\\s\\S]*?' "
        "before a capturing group and a trailing '[\\s\\S]*') are refused. At most 16,384 "
        "(std::regex recurses per byte).",
    )


class EngineConfig(BaseModel):
    """The inference engine (``llamakit.Engine``): slots, queue and prompt caching."""

    model_config = _STRICT

    n_parallel: int = Field(
        default=4, gt=0, le=256,
        description="Slots: requests generated at once, one sequence of the engine's context "
        "each (llama-server's --parallel).",
    )
    n_ctx: int | None = Field(
        default=None, gt=0,
        description="Total context of the engine, split evenly over the slots (each gets "
        "n_ctx // n_parallel). Unset: n_parallel times the model's training context length, "
        "at most 4096.",
    )
    max_queue: int = Field(
        default=64, ge=0,
        description="Requests that may wait for a free slot; one more raises QueueFullError.",
    )
    cache_prompt: bool = Field(
        default=True,
        description="Keep each slot's evaluated tokens, so a request that shares a prefix "
        "with them (the next turn of a conversation) evaluates only the rest.",
    )
    slot_prompt_similarity: float = Field(
        default=0.1, ge=0, le=1, allow_inf_nan=False,
        description="A request goes to the idle slot whose cached tokens share the longest "
        "prefix with its prompt when that prefix is at least this share of the prompt; "
        "otherwise to the least recently used idle slot.",
    )


class ServerConfig(BaseModel):
    """The OpenAI-compatible server (``llamakit serve``, plugin llamakit-server): where it
    listens, who may call it and how big a request may be."""

    model_config = _STRICT

    host: str = Field(
        default="127.0.0.1", min_length=1,
        description="Address to listen on. Loopback by default; any other address needs an "
        "api_key (or allow_insecure).",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    api_key: list[_Text] = Field(
        default_factory=list,
        description="Keys a client must send as 'Authorization: Bearer KEY' (any one of "
        "them); none: no authentication.",
    )
    allow_insecure: bool = Field(
        default=False,
        description="Listen on a non-loopback address without an api_key.",
    )
    alias: str | None = Field(
        default=None, min_length=1,
        description="The model id clients name (default: the model file's name without "
        ".gguf).",
    )
    embeddings: bool = Field(
        default=False,
        description="Serve /v1/embeddings only (the engine computes embeddings, not text), "
        "as llama-server --embeddings.",
    )
    reranking: bool = Field(
        default=False,
        description="Serve /v1/rerank only, with a reranking model (pooling_type rank), as "
        "llama-server --reranking.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, le=1 << 30,
        description="Largest request body accepted, in bytes (larger: 413).",
    )
    max_tokens: int = Field(
        default=4096, gt=0, le=1 << 20,
        description="Largest max_tokens a request may ask for; also the limit of a request "
        "that sets none.",
    )
    max_messages: int = Field(
        default=512, gt=0, le=1 << 16,
        description="Most messages one chat request may carry.",
    )
    max_prompt_chars: int = Field(
        default=1_000_000, gt=0, le=1 << 30,
        description="Most characters of prompt text (all messages, or all embedding inputs) "
        "in one request.",
    )
    drain_seconds: float = Field(
        default=30.0, ge=0, le=3600, allow_inf_nan=False,
        description="On SIGTERM, how long in-flight requests may run before they are cut.",
    )


class UIConfig(BaseModel):
    """How llamakit reports long operations on the terminal."""

    model_config = _STRICT

    progress: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Progress bars on stderr while a model loads, a model is quantized or a "
        'backend variant is built: "auto" draws them when stderr is a terminal, "always" '
        'also when it is not (a file, a pipe), "never" not at all.',
    )


class Config(BaseModel):
    """All of llamakit's settings; :func:`load_config` builds one from files and environment."""

    model_config = _STRICT

    backend: BackendConfig = Field(
        default_factory=BackendConfig, description=BackendConfig.__doc__ or ""
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description=ModelConfig.__doc__ or "")
    context: ContextConfig = Field(
        default_factory=ContextConfig, description=ContextConfig.__doc__ or ""
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig, description=SamplingConfig.__doc__ or ""
    )
    plugins: PluginsConfig = Field(
        default_factory=PluginsConfig, description=PluginsConfig.__doc__ or ""
    )
    chat: ChatConfig = Field(default_factory=ChatConfig, description=ChatConfig.__doc__ or "")
    grammar: GrammarConfig = Field(
        default_factory=GrammarConfig, description=GrammarConfig.__doc__ or ""
    )
    ui: UIConfig = Field(default_factory=UIConfig, description=UIConfig.__doc__ or "")
    engine: EngineConfig = Field(
        default_factory=EngineConfig, description=EngineConfig.__doc__ or ""
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig, description=ServerConfig.__doc__ or ""
    )
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of individual backends, one table per backend name "
        "(e.g. `[backends.vulkan]`); each backend validates its own table.",
    )
    source: Path | None = Field(
        default=None,
        strict=False,
        exclude=True,
        description="The TOML file these settings were read from, if any.",
    )

    _provenance: _Provenance = PrivateAttr(default_factory=_Provenance)

    def origin(self, key: str) -> str:
        """Where the value of the dotted ``key`` (e.g. ``"context.n_ctx"``) came from:
        ``"default"``, ``"config file PATH"``, ``"environment variable NAME"`` or
        ``"keyword argument NAME="``."""
        found = self._provenance.lookup(tuple(key.split(".")), tables=False)
        return found.describe() if found is not None else "default"


_SECTIONS: dict[str, type[BaseModel]] = {
    "backend": BackendConfig,
    "model": ModelConfig,
    "context": ContextConfig,
    "sampling": SamplingConfig,
    "plugins": PluginsConfig,
    "chat": ChatConfig,
    "grammar": GrammarConfig,
    "ui": UIConfig,
    "engine": EngineConfig,
    "server": ServerConfig,
}
# The free-form table of tables.
_FREE_SECTION = "backends"
_SECTION_NAMES = [name for name in Config.model_fields if name != "source"]
