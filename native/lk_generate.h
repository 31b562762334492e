/* The token loop of one generation in C: decode a token, sample the next, again, with no
 * Python between tokens. Python's loop cost a few microseconds a token and two pins (on a
 * fast GPU's small model, where a token takes under a millisecond, that was 3-5% of the
 * token rate); Python now handles a run's tokens after it, with the same checks. */
#ifndef LK_GENERATE_H
#define LK_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What stops lk_generate_run early (the stop strings' bytes and the tokens that end it). */
struct lk_generate_stops {
    const llama_token * stop_tokens;   /* sampled tokens that end the generation (sorted) */
    int32_t n_stop_tokens;
    const llama_token * preserved;     /* tokens whose piece is rendered with special (sorted) */
    int32_t n_preserved;
    const char * stops;                /* the stop strings' UTF-8 bytes, one after another */
    const int32_t * stop_lens;         /* each one's length in bytes (> 0) */
    int32_t n_stops;
    const char * tail;                 /* output bytes a stop may begin in (before token's successor) */
    int32_t n_tail;
};

/* From `token` (sampled, not yet decoded) on, at most `n_max` steps, each: decode the
 * token after what sequence 0 holds (a one-token batch, llama.cpp's positions), then sample
 * the next with `chain` as lk_sampler_sample_piece does (promise `top_k`) into tokens[i],
 * is_eog[i] and pieces (one after another in pieces[0..pieces_cap), n_pieces[i] each one's
 * length, or minus the size it needed when it did not fit: nothing written for it). The
 * piece is rendered with special for `stops->preserved` tokens only.
 * The run ends after the step whose token is end-of-generation or a stop token, whose piece
 * did not fit, or whose piece completes a stop string (searched over stops->tail and the
 * pieces as bytes); after `max_us` microseconds (> 0) of it; and before a decode when *flag
 * is non-zero (Context.cancel, or Ctrl-C when `interruptible`: lk_decode_interruptible's
 * handler is installed for the whole run): *decode_status 2 then, nothing decoded.
 * Returns the number of whole steps. *decode_status: 0, or the status of the decode that
 * failed (the step after the last whole one); *sample_status: 0, or the LK_SAMPLE_ code of
 * the sample that failed after its decode succeeded (lk_last_error says why; a Python
 * stage's exception stays with Python). */
int32_t lk_generate_run(struct llama_context * ctx, struct llama_sampler * chain,
                        llama_token token, int32_t n_max, int32_t top_k,
                        const struct lk_generate_stops * stops, int64_t max_us,
                        int * flag, bool interruptible,
                        llama_token * tokens, bool * is_eog, char * pieces,
                        int32_t pieces_cap, int32_t * n_pieces,
                        int32_t * decode_status, int32_t * sample_status);

#ifdef __cplusplus
}
#endif

#endif
