"""Quantizing GGUF models with llama.cpp's quantizer, and quantization recipes.

The public names are re-exported by ``llamakit``; this package imports nothing on its own,
so the hookspecs can import the recipe protocol without pulling in the backends.
"""
