"""The inference engine: continuous batching of many requests on one context."""

from .engine import Engine, EngineStats
from .request import AsyncStream, Request

__all__ = ["AsyncStream", "Engine", "EngineStats", "Request"]
