"""``llamakit serve``: flags (from the config schema, plus llama-server's short names), the
safety checks before listening, and uvicorn's lifetime (SIGTERM drains, then exits)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llamakit._cli._common import cli_config, open_model
from llamakit._cli._options import FLAG_PREFIX, add_config_flags, add_global_options
from llamakit._config import Config
from llamakit._errors import ConfigError

__all__ = ["add_arguments", "check_bind", "run"]

#: llama-server's names for keys whose llamakit flag is spelled otherwise; same meaning.
ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("engine", "n_ctx"): ("-c", "--ctx-size"),
    ("engine", "n_parallel"): ("-np", "--parallel"),
    ("model", "n_gpu_layers"): ("-ngl", "--gpu-layers"),
}
_CONTEXT_KEYS = [("context", k) for k in ("n_batch", "n_ubatch", "n_threads",
                                         "n_threads_batch", "kv_unified")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve MODEL over an OpenAI-compatible HTTP API (/v1/chat/completions, "
        "/v1/completions, /v1/embeddings, /v1/models, /health, /metrics). Listens on "
        "127.0.0.1 unless --host says otherwise; see docs/server.md.")
    parser.add_argument("model_arg", nargs="?", metavar="MODEL",
                        help="the .gguf file (or -m/--model, or [model] path)")
    parser.add_argument("--demo", action="store_true",
                        help="serve the embedded demo model (greedy unless --temperature)")
    # Plugin commands do not inherit the built-ins' parent parser: --config, --backend,
    # --progress and --debug are added here so they may follow the command's name.
    add_global_options(parser, top=False)
    add_config_flags(parser, ("server", "engine", "model", "sampling", "chat"))
    add_config_flags(parser, ("context",), only=_CONTEXT_KEYS, title="context settings")
    for (section, key), flags in ALIASES.items():
        parser.add_argument(*flags, dest=f"{FLAG_PREFIX}{section}.{key}",
                            type=int, default=argparse.SUPPRESS, metavar="INT",
                            help=f"llama-server's name for [{section}] {key}")


def check_bind(config: Config) -> None:
    """Refuse a non-loopback address without an API key (unless allow_insecure)."""
    server = config.server
    host = server.host
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not server.api_key and not server.allow_insecure:
        raise ConfigError(f"refusing to listen on {host} without an API key: anyone who "
                          "reaches it could use the model. Pass --api-key KEY (or "
                          "[server] api_key), or --allow-insecure on a trusted network",
                          key="server.host")


def _server(config: Any) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM once it has shut down, which kills the process
            # before the engine is closed; stop the same way but return normally.
            handled = (signal.SIGINT, signal.SIGTERM)
            before = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

    return Server(config)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from llamakit._from_config import engine_from_config

    from .app import create_app

    model_arg = args.model_arg
    if args.demo:
        from llamakit._demo import demo_model_path
        if model_arg is not None:
            raise ConfigError("give MODEL or --demo, not both")
        model_arg = str(demo_model_path())
    config, _ = cli_config(args, model=model_arg)
    if args.demo and "temperature" not in config.sampling.model_fields_set:
        config = config.model_copy(update={"sampling": config.sampling.model_copy(
            update={"temperature": 0.0})})
        config.sampling.model_fields_set.add("temperature")
    check_bind(config)
    model = open_model(config)
    try:
        model_id = config.server.alias or Path(str(config.model.path)).name.removesuffix(
            ".gguf")
        if config.server.embeddings and config.server.reranking:
            raise ConfigError("give --embeddings or --reranking, not both",
                              key="server.reranking")
        if config.server.embeddings or config.server.reranking:
            config = config.model_copy(update={"context": config.context.model_copy(
                update={"embeddings": True})})
        engine = engine_from_config(model, config)
        pooling = engine._ctx.pooling
        if config.server.reranking and pooling != "rank":
            engine.close(drain=False)
            raise ConfigError(f"--reranking needs a reranking model (pooling_type rank, a "
                              f"classification head); {model_id} pools with {pooling!r}",
                              key="server.reranking")
        app = create_app(engine, config, model_id)
        uv = uvicorn.Config(app, host=config.server.host, port=config.server.port,
                            log_level="warning", access_log=False,
                            timeout_graceful_shutdown=math.ceil(config.server.drain_seconds),
                            lifespan="off")
        server = _server(uv)
        print(f"llamakit serve: {model_id} on http://{config.server.host}:"
              f"{config.server.port} ({engine.n_parallel} slots of {engine.n_ctx_slot} "
              f"tokens, backend {model.backend})", file=sys.stderr, flush=True)
        try:
            server.run()
        finally:
            # uvicorn has stopped taking requests and waited for open ones (drain_seconds);
            # whatever is still queued finishes or is cut here.
            engine.close(drain=True, timeout=config.server.drain_seconds)
    finally:
        model.close()
    return 0
