/* Backend sampling (lk_backend_sampling.cpp), internal to the C++ files: the cffi module
 * includes every native/*.h from C, so everything here is C++-only. The C API is in
 * lk_sampling.h ("Backend sampling"). */
#ifndef LK_BACKEND_SAMPLING_H
#define LK_BACKEND_SAMPLING_H

#ifdef __cplusplus

#include "llama.h"

namespace lk_backend {

// For a chain bound to a device chain on `ctx` (lk_backend_sampler_attach): the token the
// last decode sampled for output `idx` in its graph (or, when llama.cpp ran only a prefix
// of the chain there, the rest of the chain over the candidates it left), accepted by
// both chains: 1 with *token set. 0 when `chain` is not bound or the decode left nothing
// sampled (the host samples from the raw logits, then calls `after_host`). An LK_SAMPLE_
// code (lk_last_error says why) on failure. May throw; callers guard.
int32_t take(llama_sampler * chain, llama_context * ctx, int32_t idx, llama_token * token);

// After the host sampled `token` with `chain`: a device chain bound to it accepts it too,
// so that its state (penalties' history) stays the host chain's. May throw.
void after_host(llama_sampler * chain, llama_context * ctx, llama_token token);

}  // namespace lk_backend

#endif  // __cplusplus
#endif  // LK_BACKEND_SAMPLING_H
