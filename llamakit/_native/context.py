"""``ContextHandle``: a ``llama_context`` over a model, with its abort flag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ContextError
from .handle import Handle
from .model import ModelHandle
from .status import raise_for_decode

__all__ = ["ContextHandle"]


class ContextHandle(Handle):
    """A ``llama_context`` over a model, with its abort flag."""

    kind = "context"

    def __init__(self, model: ModelHandle, *, n_ctx: int, n_batch: int, n_ubatch: int,
                 n_seq_max: int, n_threads: int, n_threads_batch: int, embeddings: bool,
                 pooling_type: int) -> None:
        native, lib, ffi = model.native, model.lib, model.ffi
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch
        params.embeddings = embeddings
        params.pooling_type = pooling_type
        params.no_perf = False
        self._abort_flag = ffi.new("int *", 0)
        params.abort_callback = lib.lk_abort_callback
        params.abort_callback_data = self._abort_flag
        ptr = lib.llama_init_from_model(model.ptr, params)
        if ptr == ffi.NULL:
            raise ContextError(
                f"llama.cpp could not create a context with n_ctx={n_ctx}, n_batch={n_batch}; "
                "it may not fit in memory (see the 'llamakit.native' log)")
        super().__init__(native, ptr, lib.llama_free)
        self.model = model
        model.add_dependent(self)
        self.memory = lib.llama_get_memory(ptr)
        self.n_ctx = int(lib.llama_n_ctx(ptr))
        self.n_batch = int(lib.llama_n_batch(ptr))
        self.n_ubatch = int(lib.llama_n_ubatch(ptr))
        self.n_seq_max = int(lib.llama_n_seq_max(ptr))
        self.pooling_type = int(lib.llama_pooling_type(ptr))
        self.embeddings = embeddings

    def set_abort(self, value: bool) -> None:
        self._abort_flag[0] = 1 if value else 0

    def _memory(self) -> Any:
        self.ptr  # noqa: B018 - raises ClosedError after close
        return self.memory

    def clear_memory(self) -> None:
        self.lib.llama_memory_clear(self._memory(), True)

    def remove_from(self, seq_id: int, start: int) -> bool:
        """Drop positions ``start..`` of ``seq_id``; False if the memory cannot do that."""
        return bool(self.lib.llama_memory_seq_rm(self._memory(), seq_id, start, -1))

    def decode(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` (valid ids, at most n_batch) after what sequence 0 holds;
        logits are kept for the last one."""
        array = self.ffi.new("llama_token[]", tokens)
        batch = self.lib.llama_batch_get_one(array, len(tokens))
        raise_for_decode(self.lib.llama_decode(self.ptr, batch))

    def evaluate_sequences(self, sequences: Sequence[Sequence[int]], *, encode: bool) -> None:
        """Evaluate each token list as its own sequence (ids 0..), from position 0, with
        an output for every token. The caller checks sizes against n_batch/n_seq_max."""
        lib = self.lib
        total = sum(len(s) for s in sequences)
        batch = lib.llama_batch_init(total, 0, 1)
        try:
            i = 0
            for seq_id, tokens in enumerate(sequences):
                for pos, token in enumerate(tokens):
                    batch.token[i] = token
                    batch.pos[i] = pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = seq_id
                    batch.logits[i] = 1
                    i += 1
            batch.n_tokens = total
            call = lib.llama_encode if encode else lib.llama_decode
            raise_for_decode(call(self.ptr, batch), "llama_encode" if encode else "llama_decode")
        finally:
            lib.llama_batch_free(batch)

    def _floats(self, ptr: Any, n: int) -> npt.NDArray[np.float32]:
        values: npt.NDArray[np.float32] = np.frombuffer(self.ffi.buffer(ptr, 4 * n),
                                                        dtype=np.float32).copy()
        return values

    def logits(self, index: int) -> npt.NDArray[np.float32]:
        ptr = self.lib.llama_get_logits_ith(self.ptr, index)
        if ptr == self.ffi.NULL:
            raise ContextError(f"no logits for output {index}")
        return self._floats(ptr, self.model.n_vocab)

    def token_embedding(self, index: int, n_embd: int) -> npt.NDArray[np.float32]:
        ptr = self.lib.llama_get_embeddings_ith(self.ptr, index)
        if ptr == self.ffi.NULL:
            raise ContextError(f"no embedding for output {index}")
        return self._floats(ptr, n_embd)

    def sequence_embedding(self, seq_id: int, n_embd: int) -> npt.NDArray[np.float32] | None:
        ptr = self.lib.llama_get_embeddings_seq(self.ptr, seq_id)
        return None if ptr == self.ffi.NULL else self._floats(ptr, n_embd)

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        self.lib.llama_set_n_threads(self.ptr, n_threads, n_threads_batch)

    def perf(self) -> dict[str, float]:
        data = self.lib.llama_perf_context(self.ptr)
        return {"t_load_ms": data.t_load_ms, "t_p_eval_ms": data.t_p_eval_ms,
                "t_eval_ms": data.t_eval_ms, "n_p_eval": data.n_p_eval,
                "n_eval": data.n_eval, "n_reused": data.n_reused}

    def reset_perf(self) -> None:
        self.lib.llama_perf_context_reset(self.ptr)
