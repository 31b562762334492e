/* Log-probabilities of tokens, for `logprobs=` and perplexity.
 *
 * One pass over the vocabulary for the maximum, one for the sum of exponentials (a
 * vectorized exponential accurate to a float's precision, summed in double across blocks)
 * and one that keeps the k best in a small sorted buffer, so that asking for
 * log-probabilities costs little next to a decode and no Python code loops over the
 * vocabulary. lk_nll_rows (perplexity) uses expf term by term instead, exactly as
 * llama-perplexity does, so that the two agree to the last printed digit. */
#ifndef LK_LOGPROBS_H
#define LK_LOGPROBS_H

#include <stddef.h>
#include <stdint.h>

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_LOGPROBS_MAX_TOP 64

/* log-softmax of `logits` (n_vocab floats) at `token`; with top_k > 0 (at most
 * LK_LOGPROBS_MAX_TOP) also the top_k largest log-probabilities, in descending order (ties:
 * smaller id first), into top_ids/top_logprobs. Returns the token's log-probability, NAN
 * when n_vocab < 1 or the token is out of range. */
double lk_logprobs(const float * logits, int32_t n_vocab, llama_token token, int32_t top_k,
                   llama_token * top_ids, double * top_logprobs);

/* The same over the candidates that the last lk_sampler_sample of this thread left after
 * its chain (their logits after temperature, top-k, top-p, ...: the distribution the final
 * stage drew from). A candidate list may be shorter than top_k: *n_top gets how many were
 * written. When that call kept no candidate list (a greedy-only chain reads the logits
 * directly), `logits` (the raw row) is used. A token not among the candidates gets -inf. */
double lk_logprobs_sampled(const float * logits, int32_t n_vocab, llama_token token,
                           int32_t top_k, llama_token * top_ids, double * top_logprobs,
                           int32_t * n_top);

/* Sum of -log p(targets[i]) over n_rows rows of logits (row i scores targets[i]) and the
 * sum of their squares, as llama-perplexity's process_logits accumulates them. */
void lk_nll_rows(const float * logits, int32_t n_rows, int32_t n_vocab,
                 const llama_token * targets, double * nll, double * nll2);

/* Defined in lk_sampling.cpp: the candidates the last lk_sampler_sample of this thread
 * left (NULL and 0 when it kept none). Valid until that thread samples again. */
const llama_token_data * lk_sampler_last_candidates(size_t * n);

#ifdef __cplusplus
}
#endif

#endif
