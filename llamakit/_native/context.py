"""``ContextHandle``: a ``llama_context`` over a model, with its abort flag."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # C module behind signal
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._errors import ContextError, InvalidBatchError
from .._limits import check_kv_fits, check_threads
from .handle import Handle, pinned
from .knobs import set_knobs
from .model import ModelHandle

if TYPE_CHECKING:
    from .lora import LoraHandle
from .status import raise_for_decode, raise_for_sample

__all__ = ["ContextHandle"]


# The main thread's id (a forked child's main thread is the one that forked: threading's
# own after-fork hook, registered before this one, has updated main_thread() by then).
# Read per decode, so kept out of threading.main_thread()'s two Python calls; likewise
# _signal.getsignal, which signal.getsignal wraps in an enum conversion.
_main_thread = [threading.main_thread().ident]
os.register_at_fork(after_in_child=lambda: _main_thread.__setitem__(
    0, threading.main_thread().ident))


def ctrl_c_is_ours() -> bool:
    """Whether lk_interrupt's SIGINT handler may stand in for Python's: on the main thread
    (Ctrl-C is Python's only there) while Python's default handler is installed (an
    application's own SIGINT handler keeps full control of what it does)."""
    return (threading.get_ident() == _main_thread[0]
            and _signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def _evaluate(handle: ContextHandle, ptr: Any, batch: Any, encode: bool) -> int:
    """``llama_decode`` (``llama_encode``) of ``batch`` on ``handle``, whose pointer ``ptr``
    the caller holds pinned: Ctrl-C able to stop it, a lost device raised; returns the
    status. The one place that runs a context's evaluation (``TokenStep`` calls it too);
    tests find a decode in flight by this frame's name."""
    lib = handle.lib
    if handle.parked:
        handle.unpark()
    if not ctrl_c_is_ours():
        status = int((lib.llama_encode if encode else lib.llama_decode)(ptr, batch))
    else:
        flag = handle._abort_flag
        call = lib.lk_encode_interruptible if encode else lib.lk_decode_interruptible
        status = int(call(ptr, batch, flag))
        if flag[0] == lib.LK_ABORT_SIGINT:
            # lk_interrupt took the Ctrl-C in Python's stead (see lk_interrupt.h); raise
            # what Python's handler would have, also when the batch finished regardless.
            flag[0] = 0
            raise KeyboardInterrupt
    handle.sampled_in_graph = handle.backend_samplers > 0
    check = handle.model.device_check
    if check is not None:
        check()  # the backend's error if a device it supplied was lost (ModelDevices)
    return status


def _check_model_for_context(lib: Any, model_ptr: Any) -> None:
    """Refuse the models whose first graph build would abort instead of failing."""
    n_layer = int(lib.llama_model_n_layer(model_ptr))
    if n_layer == 0:
        # a vocabulary-only load has no weights and no backends: the scheduler asserts
        # GGML_ASSERT(n_backends > 0) (ggml-backend.cpp)
        raise ContextError("this model was loaded with vocab_only=True (or has no layers): "
                           "it can tokenize but not evaluate; load it without vocab_only "
                           "to make a context")
    n_head, n_head_kv = int(lib.llama_model_n_head(model_ptr)), \
        int(lib.llama_model_n_head_kv(model_ptr))
    if n_head_kv and n_head % n_head_kv:
        # GGML_ASSERT(ggml_can_mul_mat(k, q)) (ggml.c) when the graph is built; the GGUF
        # validator refuses such files at load, this covers validate=False
        raise ContextError(f"the model's {n_head} attention heads are not a multiple of its "
                           f"{n_head_kv} key/value heads; llama.cpp cannot evaluate it")


class ContextHandle(Handle):
    """A ``llama_context`` over a model, with its abort flag."""

    kind = "context"
    exclusive = True

    def __init__(self, model: ModelHandle, *, n_ctx: int, n_batch: int, n_ubatch: int,
                 n_seq_max: int, n_threads: int, n_threads_batch: int, embeddings: bool,
                 pooling_type: int, kv_unified: bool = False,
                 knobs: Mapping[str, Any] | None = None,
                 max_positions: int | None = None) -> None:
        native, lib, ffi = model.native, model.lib, model.ffi
        check_threads("n_threads", n_threads)
        check_threads("n_threads_batch", n_threads_batch)
        check_kv_fits(model.info(), n_ctx,
                      [d.memory_total for d in native.devices() if d.is_accelerator])
        params = lib.llama_context_default_params()
        set_knobs(lib, params, knobs or {})
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch
        params.n_seq_max = n_seq_max
        params.kv_unified = kv_unified
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch
        params.embeddings = embeddings
        params.pooling_type = pooling_type
        params.no_perf = False
        self._abort_flag = ffi.new("int *", 0)
        params.abort_callback = lib.lk_abort_callback
        params.abort_callback_data = self._abort_flag
        with model.pinned() as model_ptr, native.capture_errors() as errors:
            _check_model_for_context(lib, model_ptr)
            ptr = lib.llama_init_from_model(model_ptr, params)
        if model.device_check is not None:
            try:
                model.device_check()
            except BaseException:
                if ptr != ffi.NULL:
                    lib.llama_free(ptr)
                raise
        if ptr == ffi.NULL:
            reason = f" ({'; '.join(errors)})" if errors else ""
            raise ContextError(
                f"llama.cpp could not create a context with n_ctx={n_ctx}, n_batch={n_batch}"
                f"{reason}; it may not fit in memory (see the 'llamakit.native' log)")
        # lk_context_free: llama_free, then the chains attached for backend sampling
        super().__init__(native, ptr, lib.lk_context_free)
        self.model = model
        model.add_dependent(self)
        self.memory = lib.llama_get_memory(ptr)
        self.n_ctx = int(lib.llama_n_ctx(ptr))
        self.n_batch = int(lib.llama_n_batch(ptr))
        self.n_ubatch = int(lib.llama_n_ubatch(ptr))
        self.n_seq_max = int(lib.llama_n_seq_max(ptr))
        #: One KV buffer shared by all sequences (``n_ctx_seq == n_ctx``) rather than
        #: ``n_seq_max`` separate streams of ``n_ctx / n_seq_max`` positions.
        self.kv_unified = bool(kv_unified)
        self.n_ctx_seq = int(lib.llama_n_ctx_seq(ptr))
        if max_positions is not None:
            # Learned position embeddings end here; ggml asserts past them, and llama.cpp
            # pads n_ctx beyond a small table: what Python lets in stops at the table.
            self.n_ctx = min(self.n_ctx, max_positions)
            self.n_ctx_seq = min(self.n_ctx_seq, max_positions)
        self.pooling_type = int(lib.llama_pooling_type(ptr))
        self.embeddings = embeddings
        # Adapters applied, with their scales; llama.cpp keeps raw pointers to them.
        self.loras: dict[LoraHandle, float] = {}
        # Bumped whenever this layer empties the KV cache behind the public layer's back
        # (e.g. an adapter closing), so that the cached-prefix bookkeeping can notice.
        self.memory_epoch = 0
        #: Sequences with a sampler chain attached for backend sampling
        #: (``sampler.attach_backend``), and whether the last decode ran with any: its
        #: outputs of those sequences then have no raw logits to read.
        self.backend_samplers = 0
        self.sampled_in_graph = False
        #: Sequences whose device chain a finished call left attached for the next call
        #: with the same settings (``sampler.park_backend``; the value: those settings).
        #: Any decode that did not claim it detaches it first (``unpark``).
        self.parked: dict[int, str] = {}

    @pinned
    def set_loras(self, loras: dict[LoraHandle, float]) -> None:
        """Make exactly ``loras`` (adapter -> scale) the applied set."""
        adapters = list(loras)
        with ExitStack() as pins:  # no adapter is freed while C takes its pointer
            pointers = self.ffi.new("struct llama_adapter_lora *[]",
                                    [pins.enter_context(a.pinned()) for a in adapters])
            scales = self.ffi.new("float[]", [loras[a] for a in adapters])
            self.lib.llama_set_adapters_lora(self.ptr, pointers if adapters else self.ffi.NULL,
                                             len(adapters),
                                             scales if adapters else self.ffi.NULL)
            # Keys and values cached under other weights are wrong now.
            self.lib.llama_memory_clear(self.memory, True)
            self.memory_epoch += 1
            for adapter in set(self.loras) - set(loras):
                adapter.users.discard(self)
            for adapter in adapters:
                adapter.users.add(self)
            self.loras = dict(loras)
        # An adapter closed by another thread while it was being applied missed this
        # context in its list of users: take it off again before it is freed.
        if any(a.closed for a in adapters):
            self.set_loras({a: s for a, s in loras.items() if not a.closed})

    def drop_lora(self, adapter: LoraHandle) -> None:
        """Stop applying ``adapter`` (it is about to be freed). Not @pinned itself: the
        adapter is closed by now, pinning it would refuse; set_loras pins this context."""
        if adapter in self.loras:
            self.set_loras({a: s for a, s in self.loras.items() if a is not adapter})

    @pinned
    def unpark(self) -> None:
        """Detach every parked device chain: the decode about to run did not claim them,
        and its outputs must keep their logits."""
        lib = self.lib
        for seq_id in list(self.parked):
            del self.parked[seq_id]
            status = int(lib.lk_backend_sampler_detach(self.ptr, seq_id))
            if status < 0:
                self.backend_samplers = int(lib.lk_backend_sampler_count(self.ptr))
                raise_for_sample(status, self.ffi.string(lib.lk_last_error()).decode(
                    "utf-8", "replace"))
        self.backend_samplers = int(lib.lk_backend_sampler_count(self.ptr))

    def set_abort(self, value: bool) -> None:
        # Not pinned: it must reach a call in flight, which holds the call lock.
        self._abort_flag[0] = 1 if value else 0

    def _interrupt(self) -> None:
        self.set_abort(True)

    @pinned
    def pos_max(self, seq_id: int) -> int:
        """Last position of ``seq_id`` in the memory, -1 when it holds none."""
        return int(self.lib.llama_memory_seq_pos_max(self._memory(), seq_id))

    def check_devices(self) -> None:
        """Raise the backend's error if a device it supplied was lost (see ModelDevices)."""
        check = self.model.device_check
        if check is not None:
            check()

    @pinned
    def _evaluate(self, batch: Any, *, encode: bool) -> int:
        return _evaluate(self, self.ptr, batch, encode)

    @pinned
    def evaluate_batch(self, batch: Any, n_tokens: int, *, encode: bool = False) -> None:
        """``llama_decode`` (``llama_encode``) of a filled ``llama_batch`` of ``n_tokens``:
        the batch size checked first, Ctrl-C able to stop it, the status raised as its
        ``DecodeError``. Every decode of this context should come through here."""
        self._check_batch(n_tokens, encode=encode)
        raise_for_decode(self._evaluate(batch, encode=encode),
                         "llama_encode" if encode else "llama_decode")

    @property
    @pinned
    def causal(self) -> bool:
        """Whether the model attends causally (False for embedding models such as BERT)."""
        return bool(self.lib.llama_get_causal_attn(self.ptr))

    @pinned
    def _check_batch(self, n_tokens: int, *, encode: bool = False) -> None:
        # llama_decode asserts n_tokens <= n_batch, and n_tokens <= n_ubatch without causal
        # attention (embedding models) and in llama_encode; an empty batch is an error
        # return, checked here too.
        if not 0 < n_tokens <= self.n_batch:
            raise InvalidBatchError(f"a batch of {n_tokens} tokens does not fit this context "
                                    f"(1..n_batch={self.n_batch})", status=-1)
        if n_tokens > self.n_ubatch and (encode or not self.lib.llama_get_causal_attn(self.ptr)):
            raise InvalidBatchError(
                f"a batch of {n_tokens} tokens is larger than n_ubatch={self.n_ubatch}, which "
                "a model without causal attention must evaluate at once; create the context "
                "with n_ubatch=n_batch", status=-1)

    @pinned
    def _memory(self) -> Any:
        self.check_open()
        return self.memory

    @pinned
    def synchronize(self) -> None:
        """Wait for the decodes started on this context to finish (``llama_synchronize``)."""
        self.lib.llama_synchronize(self.ptr)

    @pinned
    def clear_memory(self) -> None:
        # Clearing fills the cache on a transfer queue that a GPU backend does not order
        # after a computation still running; wait for it first.
        self.lib.llama_synchronize(self.ptr)
        self.lib.llama_memory_clear(self._memory(), True)

    @pinned
    def remove_from(self, seq_id: int, start: int) -> bool:
        """Drop positions ``start..`` of ``seq_id``; False if the memory cannot do that."""
        return bool(self.lib.llama_memory_seq_rm(self._memory(), seq_id, start, -1))

    @pinned
    def decode(self, tokens: Sequence[int], all_outputs: bool = False) -> None:
        """Decode ``tokens`` (valid ids, at most n_batch) after what sequence 0 holds;
        logits are kept for the last one (for every one with ``all_outputs``). Ctrl-C on
        the main thread stops it between two graph nodes (KeyboardInterrupt); after any
        failure the memory may hold part of ``tokens``, which ``pos_max`` tells."""
        array = self.ffi.new("llama_token[]", tokens)
        batch = self.lib.llama_batch_get_one(array, len(tokens))
        if all_outputs:
            # Positions stay llama.cpp's to assign (pos NULL); only the output flags are set.
            flags = self.ffi.new("int8_t[]", [1] * len(tokens))
            batch.logits = flags
        self.evaluate_batch(batch, len(tokens))

    @pinned
    def evaluate_sequences(self, sequences: Sequence[Sequence[int]], *, encode: bool) -> None:
        """Evaluate each token list as its own sequence (ids 0..), from position 0, with
        an output for every token. The caller checks sizes against n_batch/n_seq_max."""
        lib = self.lib
        total = sum(len(s) for s in sequences)
        self._check_batch(total, encode=encode)
        if len(sequences) > self.n_seq_max:
            raise InvalidBatchError(f"{len(sequences)} sequences in one batch, but this context "
                                    f"holds n_seq_max={self.n_seq_max}", status=-1)
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
            raise_for_decode(self._evaluate(batch, encode=encode),
                             "llama_encode" if encode else "llama_decode")
        finally:
            lib.llama_batch_free(batch)

    def _floats(self, ptr: Any, n: int) -> npt.NDArray[np.float32]:
        values: npt.NDArray[np.float32] = np.frombuffer(self.ffi.buffer(ptr, 4 * n),
                                                        dtype=np.float32).copy()
        return values

    def check_raw_logits(self) -> None:
        """Refuse to read logits that a decode with backend sampling did not copy."""
        if self.sampled_in_graph:
            raise ContextError("the last decode sampled its tokens in llama.cpp's graph "
                               "(backend_sampling) and kept no logits to read; decode again "
                               "without backend sampling")

    @pinned
    def logits(self, index: int) -> npt.NDArray[np.float32]:
        self.check_raw_logits()
        ptr = self.lib.llama_get_logits_ith(self.ptr, index)
        if ptr == self.ffi.NULL:
            raise ContextError(f"no logits for output {index}")
        return self._floats(ptr, self.model.n_vocab)

    @pinned
    def token_embedding(self, index: int, n_embd: int) -> npt.NDArray[np.float32]:
        ptr = self.lib.llama_get_embeddings_ith(self.ptr, index)
        if ptr == self.ffi.NULL:
            raise ContextError(f"no embedding for output {index}")
        return self._floats(ptr, n_embd)

    @pinned
    def sequence_embedding(self, seq_id: int, n_embd: int) -> npt.NDArray[np.float32] | None:
        ptr = self.lib.llama_get_embeddings_seq(self.ptr, seq_id)
        return None if ptr == self.ffi.NULL else self._floats(ptr, n_embd)

    @pinned
    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        check_threads("n_threads", n_threads)
        check_threads("n_threads_batch", n_threads_batch)
        self.lib.llama_set_n_threads(self.ptr, n_threads, n_threads_batch)

    @pinned
    def perf(self) -> dict[str, float]:
        data = self.lib.llama_perf_context(self.ptr)
        # llama.cpp reports counts of at least 1 (to divide by them); no time means none.
        return {"t_load_ms": data.t_load_ms, "t_p_eval_ms": data.t_p_eval_ms,
                "t_eval_ms": data.t_eval_ms,
                "n_p_eval": data.n_p_eval if data.t_p_eval_ms > 0 else 0,
                "n_eval": data.n_eval if data.t_eval_ms > 0 else 0, "n_reused": data.n_reused}

    @pinned
    def reset_perf(self) -> None:
        self.lib.llama_perf_context_reset(self.ptr)
