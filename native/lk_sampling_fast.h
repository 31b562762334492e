/* The shim's fast sampling paths (lk_sampling_fast.cpp), internal to the C++ files: the
 * cffi module includes every native/*.h from C, so everything here is C++-only. */
#ifndef LK_SAMPLING_FAST_H
#define LK_SAMPLING_FAST_H

#ifdef __cplusplus

#include <cstdint>
#include <utility>
#include <vector>

#include "llama.h"

namespace lk_fast {

// Biased logits of a few token ids: (id, logit + its biases), ids ascending and unique.
using biased_ids = std::vector<std::pair<llama_token, float>>;

// Whether `smpl` is a stage of lk_sampler_init_logit_bias.
bool is_bias_stage(const llama_sampler * smpl);

// The llama.cpp logit-bias stage that a stage of lk_sampler_init_logit_bias wraps (it
// applies the biases; it can run in a decode's graph), or NULL for any other stage.
llama_sampler * bias_inner(const llama_sampler * smpl);

// The number of bias stages at the start of `chain`, and their biases folded over `logits`
// into `out` in llama.cpp's order of additions (entries outside the vocabulary dropped, as
// llama.cpp drops them).
int32_t leading_biases(llama_sampler * chain, const float * logits, int32_t n_vocab,
                       biased_ids & out);

// Makes the first `n` stages of `chain` (bias stages) pass through while it lives: their
// biases are already in the candidates.
struct bias_bypass {
    llama_sampler * chain;
    int32_t n;
    bias_bypass(llama_sampler * chain, int32_t n);
    ~bias_bypass();
};

// llama.cpp's greedy choice over `logits` with `biased` replacing those ids' logits.
llama_token argmax(const float * logits, int32_t n_vocab, const biased_ids & biased);

// The `k` largest of the same biased logits, sorted descending, into `cur`, when that set
// and its order are unique (no ties at or above the k-th, no NaN); false otherwise.
bool fill_top_k(std::vector<llama_token_data> & cur, const float * logits, int32_t n_vocab,
                int32_t k, const biased_ids & biased);

}  // namespace lk_fast

#endif  // __cplusplus

#endif
