/* The steps of a batch of generating sequences in C: sample every sequence's next token,
 * decide which end, put the others' tokens into the next batch and decode it, again, with
 * no Python between steps. A Python batch step cost 0.2-0.4 ms of host time at 32-64
 * sequences (the critical path between one decode's end and the next one's start, where a
 * GPU idles); `generate_batch` now hands its steady state to this loop and handles a
 * run's tokens after it, as `generate` does with lk_generate_run. */
#ifndef LK_BATCH_RUN_H
#define LK_BATCH_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One generating sequence of a run: what it starts from, and (out) what the run did. */
struct lk_batch_seq {
    struct llama_sampler * chain;
    int32_t top_k;                   /* the chain's top-k promise (lk_sampler_sample) */
    int32_t seq_id;
    int32_t pos;                     /* in/out: the position of its next decoded token */
    int32_t output;                  /* in: its output row in the last decode (>= 0);
                                        out: its row in the decode started at the end, or -1 */
    int32_t budget;                  /* in/out: tokens it may still generate (>= 1 in) */
    const llama_token * stop_tokens; /* sampled tokens that end it as end-of-generation does
                                        (sorted) */
    int32_t n_stop_tokens;
    const llama_token * preserved;   /* tokens whose piece is rendered with special (sorted) */
    int32_t n_preserved;
    llama_token * tokens;            /* room for n_max tokens: those it sampled in the run */
    char * pieces;                   /* the pieces of its generated tokens, one after another */
    int32_t pieces_cap;
    /* out */
    int32_t n_tokens;                /* tokens sampled (a last end-of-generation one included) */
    int32_t n_decoded;               /* of them, put into a decode (the one at the end too) */
    int32_t n_bytes;                 /* bytes written to pieces */
    int32_t piece_missing;           /* 1: its last token's piece did not fit (not written) */
    int32_t finish;                  /* 0 going on; 1 its last token is end-of-generation or a
                                        stop token (not generated); 2 its budget is spent */
};

/* Steps of `seqs` (in the batch's row order, each once, all in the last decode with an
 * output row), at most `n_max`: each samples every going sequence at its row as
 * lk_sampler_sample_many does (over the context's threads), decides its end (an
 * end-of-generation or stop token: finish 1; its budget: finish 2), and, when none ended,
 * no piece was missing, `max_us` (> 0) has not passed and `n_max` is not reached, decodes
 * the going sequences' tokens as the next batch (one token each, its position `pos`, one
 * output each) through `batch` (llama_batch_init'ed with room for `batch_cap` tokens, one
 * sequence id each). When the run ends that way and `launch_last`, the going sequences'
 * tokens are decoded once more (started: on a GPU the next run or step samples it) and
 * their `output` says where; otherwise every `output` is -1.
 * Before each decode *flag is read (Context.cancel; Ctrl-C when `interruptible`): non-zero
 * ends the run with *decode_status 2 and nothing decoded.
 * Returns the number of whole steps (sampled and ends decided). *decode_status: 0 or the
 * failed decode's status (after its step's tokens were recorded); *sample_status: 0 or the
 * LK_SAMPLE_ code of a failed sample, *failed_seq its sequence's index (that step is not
 * counted, nothing of it recorded; lk_last_error says why, a Python stage's exception stays
 * with Python). */
int32_t lk_batch_run(struct llama_context * ctx, struct llama_batch batch, int32_t batch_cap,
                     struct lk_batch_seq * seqs, int32_t n_seqs, int32_t n_max,
                     int64_t max_us, bool launch_last, int * flag, bool interruptible,
                     int32_t * decode_status, int32_t * sample_status, int32_t * failed_seq);

#ifdef __cplusplus
}
#endif

#endif
