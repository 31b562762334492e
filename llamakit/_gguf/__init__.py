"""Pure-Python validation of GGUF files before llama.cpp opens them.

llama.cpp parses GGUF in C++ and aborts the process on some inputs; files come from the
internet. ``validate_gguf`` walks the header with the rules of the pinned gguf.cpp and
llama.cpp's loader, and raises ``GGUFFormatError`` (field and byte offset) instead.
"""

from .validate import GGUFSummary, validate_gguf

__all__ = ["GGUFSummary", "validate_gguf"]
