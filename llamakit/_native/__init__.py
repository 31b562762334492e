"""The handle layer: the only code that touches a backend's cffi ``lib``."""
