/* Ctrl-C during a decode: a SIGINT handler, installed only around the call, that sets the
 * context's abort flag.
 *
 * llama_decode runs with the GIL released, and Python's own SIGINT handler only records
 * the signal; KeyboardInterrupt would be raised once the main thread runs Python code
 * again, i.e. after the whole batch. This handler instead sets the flag that
 * lk_abort_callback reads, so ggml stops at the next graph node and llama_decode returns
 * 2; the caller sees LK_ABORT_SIGINT in the flag and raises KeyboardInterrupt itself.
 * Python's handler is not chained on purpose: it would raise KeyboardInterrupt inside
 * whatever Python callback (the log callback) llama.cpp calls next on this thread, where
 * cffi can only print and drop it. The Python side uses this only while Python's default
 * SIGINT handler (raise KeyboardInterrupt) is installed, so the behaviour is the same.
 * Nothing runs in Python per graph node. */
#ifndef LK_INTERRUPT_H
#define LK_INTERRUPT_H

#include <stdint.h>

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The value the handler stores in the abort flag (Context.cancel() stores 1), so the
 * caller can tell a Ctrl-C from a cancel. */
#define LK_ABORT_SIGINT 2

/* llama_decode / llama_encode with the handler installed while they run, if a handler
 * (not SIG_DFL or SIG_IGN) is installed for SIGINT; otherwise the plain call. The previous
 * handler is put back before they return. Only the main thread may call these: there is
 * one handler per process. */
int32_t lk_decode_interruptible(struct llama_context * ctx, struct llama_batch batch, int * flag);
int32_t lk_encode_interruptible(struct llama_context * ctx, struct llama_batch batch, int * flag);

/* fn(data) with that handler installed around it, on the same conditions (lk_generate_run's
 * whole token loop runs under one). */
int32_t lk_run_interruptible(int32_t (*fn)(void *), void * data, int * flag);

#ifdef __cplusplus
}
#endif

#endif
