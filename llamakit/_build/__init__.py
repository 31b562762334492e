"""Building llama.cpp variants and their native modules, cached by their inputs."""
