"""``SamplerChain``: llama.cpp's sampler chain, stage by stage, with Python stages anywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._errors import SamplerError
from ._grammar import Grammar
from ._native.sampler import NATIVE_STAGES, SamplerHandle
from ._owned import Owned
from ._plugins.manager import get_plugin_host
from ._sampler_protocol import Candidates, Sampler
from ._sampling import Stage, random_seed

if TYPE_CHECKING:
    from ._context import Context
    from ._context_core import ContextCore
    from ._model import Model

__all__ = ["SamplerChain"]


class SamplerChain(Owned):
    """A llama.cpp sampler chain over ``model``'s vocabulary; stages run in the order added.

    Each ``add_*`` method appends the llama.cpp stage of that name (``add_top_k`` is
    ``llama_sampler_init_top_k``) and returns the chain, so calls can be chained. The last
    stage must pick the token: ``greedy``, ``dist``, ``mirostat``, ``mirostat_v2`` or
    ``adaptive_p``. ``add_custom`` appends a Python :class:`Sampler`; ``add(name, **params)``
    appends a stage by name, including samplers registered by plugins. Random stages take
    ``seed`` (None: a random one, reported by ``seed``). Pass the chain to
    ``Context.generate(sampler=chain)``; generation resets it first and feeds it the prompt.
    Parameters are checked before llama.cpp sees them (``SamplerError``); a grammar that
    does not parse is ``GrammarError``.
    """

    _handle: SamplerHandle

    def __init__(self, model: Model, *, _handle: SamplerHandle | None = None) -> None:
        self.model = model
        self._handle = _handle if _handle is not None else SamplerHandle.new(model._handle)
        self.seed: int | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Free the chain; a second call does nothing."""
        self._handle.close()

    def __len__(self) -> int:
        return len(self._handle.names)

    def __repr__(self) -> str:
        state = "closed" if self.closed else " -> ".join(self._handle.names) or "empty"
        return f"<llamakit.SamplerChain {state}>"

    @property
    def stages(self) -> list[str]:
        """The stages' names, in order."""
        self._handle.check_open()
        return list(self._handle.names)

    # -- building ------------------------------------------------------------------------
    def _seed(self, seed: int | None) -> int:
        from ._sampling import check_seed

        value = check_seed(seed)
        self.seed = random_seed() if value is None else value
        return self.seed

    def add(self, name: str, /, **params: Any) -> SamplerChain:
        """Append the stage ``name``: a llama.cpp stage (``"top_k"``, ``"dry"``, ...) with its
        ``add_*`` method's parameters, or a sampler registered by a plugin."""
        if not isinstance(name, str):
            raise SamplerError(f"a stage name is a str, got {name!r}")
        if name in NATIVE_STAGES:
            if "seed" in params or name in ("dist", "xtc", "mirostat", "mirostat_v2",
                                             "adaptive_p"):
                params["seed"] = self._seed(params.get("seed"))
            if name == "grammar" and isinstance(params.get("grammar"), Grammar):
                params = {**params.pop("grammar").stage_params(), **params}
            self._handle.add(name, params)
            return self
        specs = get_plugin_host().samplers()
        spec = specs.get(name)
        if spec is None:
            known = ", ".join([*sorted(NATIVE_STAGES), *sorted(specs)])
            raise SamplerError(f"unknown sampler {name!r}; known samplers: {known}")
        return self.add_custom(spec.create(self.model, params), name=name)

    def add_custom(self, sampler: Sampler, name: str | None = None) -> SamplerChain:
        """Append a Python stage (see :class:`Sampler`)."""
        label = name or getattr(sampler, "name", None) or type(sampler).__name__
        if not isinstance(label, str) or "\0" in label:
            raise SamplerError(f"stage name must be a str, got {label!r}")
        self._handle.add_python(sampler, label)
        return self

    def add_greedy(self) -> SamplerChain:
        return self.add("greedy")

    def add_dist(self, seed: int | None = None) -> SamplerChain:
        return self.add("dist", seed=seed)

    def add_top_k(self, k: int) -> SamplerChain:
        return self.add("top_k", k=k)

    def add_top_p(self, p: float, min_keep: int = 1) -> SamplerChain:
        return self.add("top_p", p=p, min_keep=min_keep)

    def add_min_p(self, p: float, min_keep: int = 1) -> SamplerChain:
        return self.add("min_p", p=p, min_keep=min_keep)

    def add_typical(self, p: float, min_keep: int = 1) -> SamplerChain:
        return self.add("typical", p=p, min_keep=min_keep)

    def add_temp(self, t: float) -> SamplerChain:
        return self.add("temp", t=t)

    def add_temp_ext(self, t: float, delta: float, exponent: float) -> SamplerChain:
        """Dynamic temperature: between ``t - delta`` and ``t + delta`` by entropy."""
        return self.add("temp_ext", t=t, delta=delta, exponent=exponent)

    def add_xtc(self, p: float, t: float, min_keep: int = 1,
                seed: int | None = None) -> SamplerChain:
        """Exclude Top Choices: with probability ``p``, drop all tokens above threshold
        ``t`` but the least likely of them."""
        return self.add("xtc", p=p, t=t, min_keep=min_keep, seed=seed)

    def add_top_n_sigma(self, n: float) -> SamplerChain:
        return self.add("top_n_sigma", n=n)

    def add_mirostat(self, tau: float = 5.0, eta: float = 0.1, m: int = 100,
                     seed: int | None = None) -> SamplerChain:
        return self.add("mirostat", tau=tau, eta=eta, m=m, seed=seed)

    def add_mirostat_v2(self, tau: float = 5.0, eta: float = 0.1,
                        seed: int | None = None) -> SamplerChain:
        return self.add("mirostat_v2", tau=tau, eta=eta, seed=seed)

    def add_penalties(self, penalty_last_n: int = 64, penalty_repeat: float = 1.0,
                      penalty_freq: float = 0.0, penalty_present: float = 0.0) -> SamplerChain:
        """Repetition, frequency and presence penalties over the last ``penalty_last_n``
        accepted tokens (-1: the model's training context)."""
        return self.add("penalties", penalty_last_n=penalty_last_n,
                        penalty_repeat=penalty_repeat, penalty_freq=penalty_freq,
                        penalty_present=penalty_present)

    def add_dry(self, dry_multiplier: float, dry_base: float = 1.75,
                dry_allowed_length: int = 2, dry_penalty_last_n: int = 64,
                seq_breakers: Sequence[str] = ("\n", ":", '"', "*")) -> SamplerChain:
        """DRY ("don't repeat yourself") penalty on tokens that extend a repetition."""
        return self.add("dry", dry_multiplier=dry_multiplier, dry_base=dry_base,
                        dry_allowed_length=dry_allowed_length,
                        dry_penalty_last_n=dry_penalty_last_n, seq_breakers=list(seq_breakers))

    def add_adaptive_p(self, target: float, decay: float = 0.9,
                       seed: int | None = None) -> SamplerChain:
        """Select tokens near probability ``target`` over time (a selecting stage)."""
        return self.add("adaptive_p", target=target, decay=decay, seed=seed)

    def add_logit_bias(self, logit_bias: Mapping[int, float]) -> SamplerChain:
        """Add ``bias`` to each token's logit; ``-inf`` bans a token."""
        return self.add("logit_bias", logit_bias=logit_bias)

    def add_grammar(self, grammar: Grammar | str, grammar_root: str | None = None
                    ) -> SamplerChain:
        """Constrain to a GBNF grammar (text or :class:`Grammar`, lazy ones included)."""
        value = grammar if isinstance(grammar, Grammar) else Grammar.from_string(grammar)
        params = value.stage_params()
        if grammar_root is not None:
            params["root"] = grammar_root
        return self.add("grammar", **params)

    def add_grammar_lazy_patterns(self, grammar: Grammar | str,
                                  trigger_patterns: Sequence[str] = (),
                                  trigger_tokens: Sequence[int] = (),
                                  grammar_root: str | None = None) -> SamplerChain:
        """A grammar that applies once the output matches a trigger pattern (regex) or a
        trigger token appears."""
        value = grammar if isinstance(grammar, Grammar) else Grammar.from_string(grammar)
        return self.add_grammar(value.lazy_on(patterns=trigger_patterns, tokens=trigger_tokens),
                                grammar_root)

    def add_infill(self) -> SamplerChain:
        """llama.cpp's fill-in-the-middle stage (after top_k/top_p)."""
        return self.add("infill")

    def _add_stage(self, stage: Stage) -> None:
        if stage.sampler is not None:
            self.add_custom(stage.sampler)  # type: ignore[arg-type]
        else:
            self.add(stage.name, **stage.params)

    @classmethod
    def from_stages(cls, model: Model, stages: Sequence[Stage]) -> SamplerChain:
        """A chain of ``stages`` (as ``SamplingParams.stages`` lists them)."""
        chain = cls(model)
        try:
            for stage in stages:
                chain._add_stage(stage)
        except BaseException:
            chain.close()
            raise
        return chain

    # -- using ---------------------------------------------------------------------------
    def _check_context(self, ctx: ContextCore) -> None:
        if ctx.model._handle is not self._handle.model:
            raise SamplerError("this chain was made for another model than the context's")

    def sample(self, ctx: Context, idx: int = -1) -> int:
        """Pick a token from output ``idx`` of ``ctx``'s last evaluation, and accept it."""
        self._check_context(ctx)
        with ctx._lock:
            return self._handle.sample(ctx._handle, idx)

    def accept(self, token: int) -> None:
        """Tell every stage that ``token`` was chosen (penalties, grammar state, ...)."""
        self._handle.accept(token)

    def reset(self) -> None:
        """Back to the state after construction (seeds restart, histories clear)."""
        self._handle.reset()

    def clone(self) -> SamplerChain:
        """An independent copy with the same stages and state."""
        twin = SamplerChain(self.model, _handle=self._handle.clone())
        twin.seed = self.seed
        return twin

    def apply(self, logits: npt.ArrayLike) -> Candidates:
        """Run the stages over candidates with these logits (one per token id) without
        accepting anything; returns the candidates as the chain leaves them."""
        return self._handle.apply(np.asarray(logits, dtype=np.float32))

    def _start(self, prompt: Sequence[int]) -> None:
        """Reset, and let every stage but grammars see the prompt (as llama.cpp's server
        does, so penalties and DRY cover it)."""
        self._handle.reset()
        self._handle.accept_history(prompt)
