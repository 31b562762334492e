"""An example third-party llamakit plugin.

The hook implementations are in :mod:`llamakit_example_plugin.plugin`, which the package's
entry point (group ``llamakit``) names; each registered object lives in its own module.
"""

from .recipe import AttentionQ8
from .sampler import NoRepeatNgram, no_repeat_ngram
from .stats import TypeStats, model_stats
from .template import EXAMPLE_PLAIN

__all__ = ["EXAMPLE_PLAIN", "AttentionQ8", "NoRepeatNgram", "TypeStats", "model_stats",
           "no_repeat_ngram"]
