"""Helpers shared by the benchmark scripts of compare/ and micro/ (not a package of llamakit)."""
