"""The command line's flags, derived from the config schema (in-process: no subprocess)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from llamakit._cli import BUILTIN_COMMANDS, build_parser, main
from llamakit._cli._options import FLAG_PREFIX, config_from_args, schema_flags
from llamakit._config import SamplingConfig


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {option: action.dest for action in parser._actions
            for option in action.option_strings}


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


def test_every_builtin_and_the_plugins_command_exist(parser: argparse.ArgumentParser) -> None:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(BUILTIN_COMMANDS) | {"plugins"} <= set(action.choices)


def test_flags_are_the_keyword_names(parser: argparse.ArgumentParser) -> None:
    """The flags most used are spelled like the Python keywords and config keys."""
    options = _options(_subparser(parser, "generate"))
    for flag, dest in {"--n-ctx": "context.n_ctx", "--n-gpu-layers": "model.n_gpu_layers",
                       "--temperature": "sampling.temperature", "--top-p": "sampling.top_p",
                       "--max-new-tokens": "sampling.max_new_tokens", "--seed": "sampling.seed",
                       "--backend": "backend.name", "--progress": "ui.progress",
                       "-m": "model.path", "--context-seed": "context.seed"}.items():
        assert options[flag] == FLAG_PREFIX + dest, flag
    assert options["--config"] == "config" and options["--debug"] == "debug"


@pytest.mark.parametrize("command, sections", [
    (("generate",), ("model", "context", "sampling")),
    (("chat",), ("model", "context", "sampling", "chat")),
    (("config", "show"), ("backend", "model", "context", "sampling", "plugins", "chat")),
])
def test_every_config_key_is_a_flag(parser: argparse.ArgumentParser, command: tuple[str, ...],
                                    sections: tuple[str, ...]) -> None:
    """Each key of the command's sections has a flag (derived, not listed by hand)."""
    dests = set(_options(_subparser(parser, *command)).values())
    for section, key, _ in schema_flags(sections):
        assert f"{FLAG_PREFIX}{section}.{key}" in dests, f"{section}.{key}"
    assert len(schema_flags(["sampling"])) == len(SamplingConfig.model_fields)


def test_flag_values_become_a_validated_config(parser: argparse.ArgumentParser,
                                               tmp_path: Path) -> None:
    """Repeated, comma-separated and JSON flags reach the config; flags beat the file."""
    config_file = tmp_path / "llamakit.toml"
    config_file.write_text("[sampling]\ntop_k = 5\nstop = ['x']\n")
    args = parser.parse_args([
        "chat", "--config", str(config_file), "--stop", "END", "--stop", "\n\n",
        "--logit-bias", '{"15": -2.5}', "--grammar-trigger-tokens", "1,2", "--samplers",
        "top_k;temperature", "--no-use-mmap", "--mirostat", "2", "--split-mode", "row",
        "--tensor-split", "3,1", "--chat-template", "chatml", "-m", "x.gguf"])
    config = config_from_args(args, env={})
    s = config.sampling
    assert s.stop == ["END", "\n\n"] and s.top_k == 5
    assert s.logit_bias == {"15": -2.5} and s.grammar_trigger_tokens == [1, 2]
    assert s.samplers == ["top_k", "temperature"] and s.mirostat == 2
    assert config.model.use_mmap is False and config.model.split_mode == "row"
    assert config.model.tensor_split == [3.0, 1.0] and config.model.path == Path("x.gguf")
    assert config.chat.template == "chatml"
    assert config.origin("sampling.stop") == "command-line flag --stop"
    assert config.origin("model.path") == "command-line flag --model"
    assert config.origin("sampling.top_k") == f"config file {config_file}"


@pytest.mark.parametrize("argv, message", [
    (["generate", "m.gguf", "hi", "--mirostat", "3"], "argument --mirostat: invalid choice"),
    (["generate", "m.gguf", "hi", "--tensor-split", "a,b"], "comma-separated floats"),
    (["bench", "m.gguf", "-r", "0"], "expected an integer >= 1"),
    (["nonesuch"], "invalid choice: 'nonesuch'"),
])
def test_usage_errors_are_one_line_with_status_2(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llamakit: error: ") and message in err
