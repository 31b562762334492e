"""Tests of llamakit._config: the schema, the layered loader and the Markdown reference."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llamakit._config import (
    Config,
    ContextConfig,
    config_error_from_validation,
    config_schema_markdown,
    load_config,
)
from llamakit._errors import ConfigError


@pytest.fixture(autouse=True)
def _no_llamakit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide any LLAMAKIT_* variables of the surrounding environment from every test."""
    for name in list(os.environ):
        if name.startswith("LLAMAKIT_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    """With no file, environment or arguments every key has its documented default."""
    config = load_config(env={})
    assert config == Config()
    assert config.backend.name == "auto"
    assert config.model.path is None
    assert config.model.n_gpu_layers == 0
    assert config.model.use_mmap is True
    assert config.model.use_mlock is False
    assert config.model.vocab_only is False
    assert config.context.n_ctx is None
    assert (config.context.n_batch, config.context.n_ubatch) == (512, 512)
    assert config.context.n_threads is None and config.context.n_threads_batch is None
    assert config.context.embeddings is False and config.context.seed is None
    assert config.sampling.max_new_tokens == 256
    assert config.sampling.temperature == 0.8
    assert (config.sampling.top_k, config.sampling.top_p, config.sampling.min_p) == (40, 0.95, 0.05)
    assert config.sampling.seed is None and config.sampling.stop == []
    assert config.plugins.disable == []
    assert config.backends == {}
    assert config.source is None
    assert config.origin("context.n_ctx") == "default"


def test_load_toml_file(tmp_path: Path) -> None:
    """Every section of a TOML file lands in the matching part of the Config."""
    file = write(
        tmp_path / "llamakit.toml",
        """
        [backend]
        name = "cpu"
        [model]
        n_gpu_layers = -1
        use_mmap = false
        [context]
        n_ctx = 2048
        n_threads = 4
        seed = 7
        [sampling]
        temperature = 0
        top_p = 1
        stop = ["</s>", "\\n\\n"]
        [plugins]
        disable = ["noisy"]
        [backends.vulkan]
        allow_cpu_device = true
        """,
    )
    config = load_config(file, env={})
    assert config.backend.name == "cpu"
    assert config.model.n_gpu_layers == -1 and config.model.use_mmap is False
    assert (config.context.n_ctx, config.context.n_threads, config.context.seed) == (2048, 4, 7)
    assert config.sampling.temperature == 0.0 and isinstance(config.sampling.temperature, float)
    assert config.sampling.top_p == 1.0
    assert config.sampling.stop == ["</s>", "\n\n"]
    assert config.plugins.disable == ["noisy"]
    assert config.backends == {"vulkan": {"allow_cpu_device": True}}
    assert config.source == file
    assert config.origin("context.n_ctx") == f"config file {file}"


def test_source_is_excluded_from_dumps(tmp_path: Path) -> None:
    """Config.source records the file but is not part of model_dump()."""
    file = write(tmp_path / "c.toml", "[context]\nn_ctx = 64\n")
    config = load_config(str(file), env={})
    assert config.source == file
    dumped = config.model_dump()
    assert "source" not in dumped
    assert dumped["context"]["n_ctx"] == 64


def test_layering_order_file_env_kwargs(tmp_path: Path) -> None:
    """Keyword arguments beat the environment, which beats the file, which beats defaults."""
    file = write(
        tmp_path / "c.toml",
        "[context]\nn_ctx = 100\nn_batch = 32\n[sampling]\ntemperature = 0.1\ntop_k = 5\n",
    )
    env = {"LLAMAKIT_CONTEXT__N_CTX": "200", "LLAMAKIT_SAMPLING__TEMPERATURE": "0.5"}
    config = load_config(file, env=env, context={"n_ctx": 300})
    assert config.context.n_ctx == 300  # kwargs > env > file
    assert config.context.n_batch == 32  # file only
    assert config.sampling.temperature == 0.5  # env > file
    assert config.sampling.top_k == 5  # file > default
    assert config.sampling.top_p == 0.95  # default
    assert config.origin("context.n_ctx") == "keyword argument context="
    assert config.origin("sampling.temperature") == (
        "environment variable LLAMAKIT_SAMPLING__TEMPERATURE"
    )
    assert config.origin("sampling.top_k") == f"config file {file}"
    assert config.origin("sampling.top_p") == "default"


def test_env_values_are_parsed_as_toml_values() -> None:
    """Environment values parse as TOML values when they can and stay text otherwise."""
    env = {
        "LLAMAKIT_SAMPLING__TEMPERATURE": "0",
        "LLAMAKIT_CONTEXT__EMBEDDINGS": "true",
        "LLAMAKIT_SAMPLING__STOP": '["a", "b"]',
        "LLAMAKIT_PLUGINS__DISABLE": "['x']",
        "LLAMAKIT_BACKEND": "vulkan",
        "LLAMAKIT_MODEL": "models/tiny.gguf",
        "LLAMAKIT_BACKENDS__VULKAN__ALLOW_CPU_DEVICE": "true",
        "LLAMAKIT_BACKENDS__VULKAN__DEVICE": "gpu0",
    }
    config = load_config(env=env)
    assert config.sampling.temperature == 0.0
    assert config.context.embeddings is True
    assert config.sampling.stop == ["a", "b"]
    assert config.plugins.disable == ["x"]
    assert config.backend.name == "vulkan"
    assert config.model.path == Path("models/tiny.gguf")  # env paths are not resolved
    assert config.backends == {"vulkan": {"allow_cpu_device": True, "device": "gpu0"}}


def test_env_string_keys_take_text_as_is() -> None:
    """A string or path key takes the variable's text even when it looks like a TOML value."""
    config = load_config(env={"LLAMAKIT_BACKEND__NAME": "123", "LLAMAKIT_MODEL__PATH": "true"})
    assert config.backend.name == "123"
    assert config.model.path == Path("true")


def test_env_long_spelling_beats_shorthand() -> None:
    """LLAMAKIT_BACKEND__NAME wins over the shorthand LLAMAKIT_BACKEND."""
    config = load_config(env={"LLAMAKIT_BACKEND": "cpu", "LLAMAKIT_BACKEND__NAME": "vulkan"})
    assert config.backend.name == "vulkan"


def test_env_empty_value_is_ignored() -> None:
    """An empty LLAMAKIT_ variable counts as unset."""
    config = load_config(env={"LLAMAKIT_CONTEXT__N_CTX": "", "LLAMAKIT_CONFIG": ""})
    assert config.context.n_ctx is None and config.source is None


def test_env_merges_into_file_backend_table(tmp_path: Path) -> None:
    """A LLAMAKIT_BACKENDS__ variable adds to, not replaces, the file's [backends.x] table."""
    file = write(tmp_path / "c.toml", "[backends.vulkan]\nallow_cpu_device = true\nx = 1\n")
    config = load_config(file, env={"LLAMAKIT_BACKENDS__VULKAN__X": "2"})
    assert config.backends == {"vulkan": {"allow_cpu_device": True, "x": 2}}


def test_os_environ_is_the_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without env=, load_config reads os.environ."""
    monkeypatch.setenv("LLAMAKIT_CONTEXT__N_CTX", "1024")
    assert load_config().context.n_ctx == 1024


def test_env_config_names_the_file(tmp_path: Path) -> None:
    """LLAMAKIT_CONFIG names the file when no path is given; an explicit path wins."""
    from_env = write(tmp_path / "env.toml", "[context]\nn_ctx = 11\n")
    explicit = write(tmp_path / "explicit.toml", "[context]\nn_ctx = 22\n")
    env = {"LLAMAKIT_CONFIG": str(from_env)}
    assert load_config(env=env).context.n_ctx == 11
    assert load_config(env=env).source == from_env
    assert load_config(explicit, env=env).context.n_ctx == 22


def test_other_llamakit_variables_are_ignored() -> None:
    """LLAMAKIT_ variables without a double underscore belong to others and are ignored."""
    env = {"LLAMAKIT_CACHE_DIR": "/tmp/x", "LLAMAKIT_DISABLE_PLUGINS": "1", "PATH": "/bin"}
    assert load_config(env=env) == Config()


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("LLAMAKIT_CONTEXT__N_CTXX", "LLAMAKIT_CONTEXT__N_CTX?"),
        ("LLAMAKIT_CONTXT__N_CTX", "[contxt]"),
        ("LLAMAKIT_CONTEXT__N_CTX__X", "[context] has no key"),
        ("LLAMAKIT_CONTEXT____N_CTX", "malformed"),
    ],
)
def test_unknown_section_key_env_var_is_an_error(name: str, needle: str) -> None:
    """An unknown LLAMAKIT_<SECTION>__<KEY> variable is a ConfigError naming the variable."""
    with pytest.raises(ConfigError) as info:
        load_config(env={name: "1"})
    assert name in str(info.value)
    assert needle in str(info.value)


def test_keyword_overrides_by_section() -> None:
    """Keyword arguments are nested dicts by section, with shorthands and None ignored."""
    config = load_config(
        env={},
        context={"n_ctx": 64},
        sampling={"temperature": 0, "stop": ["x"]},
        backends={"cpu": {"threads": 2}},
        backend="cpu",
        model="m.gguf",
        plugins=None,
    )
    assert config.context.n_ctx == 64
    assert config.sampling.temperature == 0.0 and config.sampling.stop == ["x"]
    assert config.backends == {"cpu": {"threads": 2}}
    assert config.backend.name == "cpu"
    assert config.model.path == Path("m.gguf")
    assert config.plugins.disable == []


def test_keyword_override_accepts_section_model() -> None:
    """A section model instance as keyword argument overrides only the keys set on it."""
    config = load_config(env={"LLAMAKIT_CONTEXT__N_BATCH": "8"}, context=ContextConfig(n_ctx=64))
    assert config.context.n_ctx == 64
    assert config.context.n_batch == 8


def test_keyword_overrides_are_not_mutated(tmp_path: Path) -> None:
    """load_config copies the dicts it is given rather than merging into them."""
    file = write(tmp_path / "c.toml", "[backends.cpu]\na = 1\n")
    backends = {"cpu": {"b": 2}}
    config = load_config(file, env={}, backends=backends)
    assert backends == {"cpu": {"b": 2}}
    assert config.backends == {"cpu": {"a": 1, "b": 2}}


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    """An unknown key in a file is an error naming the dotted key, the file and a suggestion."""
    file = write(tmp_path / "c.toml", "[context]\nn_ctxx = 2048\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    message = str(info.value)
    assert "context.n_ctxx" in message
    assert str(file) in message
    assert "2048" in message
    assert "unknown key" in message
    assert "context.n_ctx'?" in message  # did you mean
    assert info.value.key == "context.n_ctxx"
    assert info.value.path == file


def test_unknown_section_in_file(tmp_path: Path) -> None:
    """An unknown table in a file is an error naming the section and the file."""
    file = write(tmp_path / "c.toml", "[sampler]\ntemperature = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert "sampler" in str(info.value) and "unknown section" in str(info.value)
    assert "did you mean 'sampling'" in str(info.value)
    assert str(file) in str(info.value)


def test_source_is_not_a_setting(tmp_path: Path) -> None:
    """A top-level source key in a file is an unknown key, not a way to set Config.source."""
    file = write(tmp_path / "c.toml", 'source = "elsewhere.toml"\n')
    with pytest.raises(ConfigError, match="unknown key") as info:
        load_config(file, env={})
    assert info.value.key == "source" and info.value.path == file


@pytest.mark.parametrize(
    ("toml", "key", "value", "reason"),
    [
        ('[context]\nn_ctx = "big"', "context.n_ctx", '"big"', "valid integer"),
        ('[context]\nn_batch = "512"', "context.n_batch", '"512"', "valid integer"),
        ("[context]\nn_ctx = 1.5", "context.n_ctx", "1.5", "valid integer"),
        ('[model]\nuse_mmap = "yes"', "model.use_mmap", '"yes"', "valid boolean"),
        ("[model]\nuse_mmap = 1", "model.use_mmap", "1", "valid boolean"),
        ("[sampling]\nstop = 3", "sampling.stop", "3", "valid list"),
        ('[sampling]\nstop = ["a", 3]', "sampling.stop[1]", "3", "valid string"),
        ("[backend]\nname = 3", "backend.name", "3", "valid string"),
        ("context = 5", "context", "5", "table"),
        ("[backends]\nvulkan = 1", "backends.vulkan", "1", "table"),
    ],
)
def test_wrong_type_is_an_error(
    tmp_path: Path, toml: str, key: str, value: str, reason: str
) -> None:
    """A value of the wrong type is an error naming key, value, reason and file."""
    file = write(tmp_path / "c.toml", toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    message = str(info.value)
    assert f"{key} = {value}" in message
    assert reason in message
    assert str(file) in message
    assert info.value.key == key


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("context.n_ctx", "0", "greater than 0"),
        ("context.n_batch", "0", "greater than 0"),
        ("context.n_ubatch", "-1", "greater than 0"),
        ("context.n_threads", "0", "greater than 0"),
        ("context.n_threads_batch", "0", "greater than 0"),
        ("context.seed", "4294967295", "less than or equal to 4294967294"),
        ("context.seed", "-1", "greater than or equal to 0"),
        ("model.n_gpu_layers", "-2", "greater than or equal to -1"),
        ("sampling.max_new_tokens", "-1", "greater than or equal to 0"),
        ("sampling.temperature", "-0.1", "greater than or equal to 0"),
        ("sampling.temperature", "inf", "finite number"),
        ("sampling.temperature", "nan", "finite number"),
        ("sampling.top_k", "-1", "greater than or equal to 0"),
        ("sampling.top_p", "-0.1", "greater than or equal to 0"),
        ("sampling.top_p", "1.5", "less than or equal to 1"),
        ("sampling.min_p", "1.01", "less than or equal to 1"),
        ("sampling.min_p", "-0.5", "greater than or equal to 0"),
        ("sampling.seed", "4294967295", "less than or equal to 4294967294"),
        ("backend.name", '""', "at least 1 character"),
        ("model.path", '""', "not an empty string"),
    ],
)
def test_out_of_range_is_an_error(tmp_path: Path, key: str, value: str, reason: str) -> None:
    """An out-of-range value in a file is an error naming key, value, reason and file."""
    section, name = key.split(".")
    file = write(tmp_path / "c.toml", f"[{section}]\n{name} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    message = str(info.value)
    assert f"{key} = {value}" in message
    assert reason in message
    assert str(file) in message
    assert info.value.key == key and info.value.path == file


def test_boundary_values_are_accepted() -> None:
    """The edges of every range are valid values."""
    config = load_config(
        env={},
        model={"n_gpu_layers": -1},
        context={"n_ctx": 1, "seed": 2**32 - 2},
        sampling={"temperature": 0, "top_p": 1, "min_p": 0, "top_k": 0, "max_new_tokens": 0},
    )
    assert config.model.n_gpu_layers == -1 and config.context.seed == 2**32 - 2
    assert config.sampling.top_p == 1.0 and config.sampling.min_p == 0.0


def test_env_error_names_the_variable(tmp_path: Path) -> None:
    """A bad value from the environment is reported with the variable it came from."""
    file = write(tmp_path / "c.toml", "[context]\nn_ctx = 128\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={"LLAMAKIT_CONTEXT__N_CTX": "-5"})
    message = str(info.value)
    assert "context.n_ctx = -5" in message
    assert "environment variable LLAMAKIT_CONTEXT__N_CTX" in message
    assert str(file) not in message
    assert info.value.path is None


def test_env_text_for_number_is_wrong_type() -> None:
    """Text that is not a number in a numeric variable is a wrong-type error."""
    with pytest.raises(ConfigError, match=r'sampling\.temperature = "hot" \(environment') as info:
        load_config(env={"LLAMAKIT_SAMPLING__TEMPERATURE": "hot"})
    assert "valid number" in str(info.value)


def test_env_list_error_suggests_toml_array() -> None:
    """A bare word for a list key from the environment says how to write an array."""
    with pytest.raises(ConfigError, match=r"TOML array"):
        load_config(env={"LLAMAKIT_PLUGINS__DISABLE": "foo"})


def test_keyword_error_names_the_argument() -> None:
    """A bad keyword override is reported with the argument it came from."""
    with pytest.raises(ConfigError, match=r"context\.n_ctx = 0 \(keyword argument context=\)"):
        load_config(env={}, context={"n_ctx": 0})
    with pytest.raises(ConfigError, match=r"contxt .*keyword argument contxt=.*unknown section"):
        load_config(env={}, contxt={"n_ctx": 1})


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Several invalid values give one ConfigError listing each of them."""
    file = write(tmp_path / "c.toml", "[context]\nn_ctx = 0\n[sampling]\ntop_p = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    message = str(info.value)
    assert "2 problems" in message
    assert "context.n_ctx = 0" in message and "sampling.top_p = 2" in message


def test_config_error_is_a_value_error(tmp_path: Path) -> None:
    """ConfigError can be caught as ValueError."""
    with pytest.raises(ValueError):
        load_config(env={}, context={"n_ctx": -1})


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """Invalid TOML is a ConfigError naming the file and the line."""
    file = write(tmp_path / "c.toml", "[context]\nn_ctx = 1\nn_batch = = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, env={})
    assert str(file) in str(info.value)
    assert "line 3" in str(info.value)
    assert info.value.path == file


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A config file that does not exist is a ConfigError naming the path."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(missing, env={})
    assert str(missing) in str(info.value)
    assert info.value.path == missing


def test_missing_file_from_env_names_the_variable(tmp_path: Path) -> None:
    """A missing file named by LLAMAKIT_CONFIG is an error naming the path and variable."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(env={"LLAMAKIT_CONFIG": str(missing)})
    assert str(missing) in str(info.value) and "LLAMAKIT_CONFIG" in str(info.value)


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    """A directory given as config file is a ConfigError."""
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path, env={})


def test_relative_model_path_resolved_against_file_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative model.path in a file is relative to the file's folder, not the cwd."""
    file = write(tmp_path / "conf" / "c.toml", '[model]\npath = "models/tiny.gguf"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/c.toml"), env={})
    assert config.model.path == tmp_path / "conf" / "models" / "tiny.gguf"
    assert config.source == file


def test_absolute_model_path_in_file_is_kept(tmp_path: Path) -> None:
    """An absolute model.path in a file is used as written."""
    model = tmp_path / "elsewhere" / "m.gguf"
    file = write(tmp_path / "conf" / "c.toml", f"[model]\npath = {str(model)!r}\n")
    assert load_config(file, env={}).model.path == model


def test_model_path_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leading ~ in model.path is expanded."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    config = load_config(env={"LLAMAKIT_MODEL": "~/m.gguf"})
    assert config.model.path == tmp_path / "m.gguf"


def test_config_error_from_validation_for_backend_tables(tmp_path: Path) -> None:
    """Backends validating their own table get errors with full keys and the file."""

    class VulkanSettings(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        allow_cpu_device: bool = Field(default=False, description="test")

    file = write(tmp_path / "c.toml", "[backends.vulkan]\nallow_cpu_devic = true\n")
    config = load_config(file, env={})
    with pytest.raises(ValidationError) as info:
        VulkanSettings.model_validate(config.backends["vulkan"])
    error = config_error_from_validation(info.value, prefix=("backends", "vulkan"), config=config)
    assert isinstance(error, ConfigError)
    assert "backends.vulkan.allow_cpu_devic = true" in str(error)
    assert str(file) in str(error)
    assert error.key == "backends.vulkan.allow_cpu_devic" and error.path == file


def test_markdown_lists_every_key() -> None:
    """The Markdown reference has every section, key, default and environment variable."""
    text = config_schema_markdown()
    for section, info in Config.model_fields.items():
        if section == "source":
            assert "`source`" not in text
            continue
        model = info.annotation
        if section == "backends":
            assert "[backends.<name>]" in text
            continue
        assert isinstance(model, type) and issubclass(model, BaseModel)
        assert f"## `[{section}]`" in text
        for key, field in model.model_fields.items():
            rows = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
            assert rows, f"{section}.{key} missing"
            assert any(f"LLAMAKIT_{section.upper()}__{key.upper()}" in row for row in rows)
            assert any((field.description or "")[:20] in row for row in rows)
    assert "| `n_ctx` | integer, 0 < x <= 2147483647, optional | unset |" in text
    assert "| `top_p` | float, 0 <= x <= 1 | `0.95` |" in text
    assert "`LLAMAKIT_BACKEND`" in text and "`LLAMAKIT_MODEL`" in text


def test_every_field_has_a_description() -> None:
    """Every config key and section carries a description for the generated docs."""
    for section, info in Config.model_fields.items():
        assert info.description
        model = info.annotation
        if section in ("backends", "source"):
            continue
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for field in model.model_fields.values():
            assert field.description
