/* llamakit's sampling shim: what llama.cpp's sampler API cannot do safely from Python.
 *
 * llama.cpp aborts the process (GGML_ASSERT, or a C++ exception escaping its C API) when a
 * chain selects no token, when a grammar sampler accepts a token the grammar forbids, and
 * when a grammar's trigger pattern is not a valid regex. These wrappers turn each of those
 * into an error code plus a message (lk_last_error), so Python can raise instead. */
#ifndef LK_SAMPLING_H
#define LK_SAMPLING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes of lk_sampler_sample (a token id is >= 0) and of the int32_t functions. */
#define LK_SAMPLE_OK 0
#define LK_SAMPLE_NO_LOGITS (-1)   /* the context holds no logits for that output index */
#define LK_SAMPLE_NO_TOKEN (-2)    /* the chain ended without selecting a token */
#define LK_SAMPLE_FAILED (-3)      /* a stage threw: lk_last_error */
#define LK_SAMPLE_PYTHON (-4)      /* a Python stage raised; Python holds the exception */
#define LK_SAMPLE_GRAMMAR (-5)     /* a grammar stage met a token it forbids: lk_last_error */

/* Flags of lk_sampler_init_python: which optional methods the Python object has, so that
 * missing ones cost no callback per token. */
#define LK_PY_HAS_ACCEPT 1
#define LK_PY_HAS_RESET 2

/* Message of the last failure on this thread (empty if none). */
const char * lk_last_error(void);

/* A grammar stage (plain or lazy) that never aborts: the grammar text is parsed first with
 * llama.cpp's own parser so a syntax error is reported here (not printed to stderr), regex
 * errors in trigger patterns are caught, and accepting a token the grammar forbids is an
 * error instead of an abort. A lazy stage waits for its trigger itself (lk_trigger.h):
 * trigger_patterns[i] is searched as trigger_searches[i] (the same, or without a leading
 * "^[\s\S]*?" / trailing "[\s\S]*") over the last trigger_reaches[i] bytes before each
 * new piece and the piece, never the whole output; at the trigger, llama.cpp's non-lazy
 * grammar gets what its lazy grammar would. Returns NULL on failure; lk_last_error says
 * why, or is empty when llama.cpp logged the reason itself (left recursion). */
struct llama_sampler * lk_sampler_init_grammar(
        const struct llama_vocab * vocab, const char * grammar, const char * root, bool lazy,
        const char ** trigger_patterns, const char ** trigger_searches,
        const int32_t * trigger_reaches, size_t n_trigger_patterns,
        const llama_token * trigger_tokens, size_t n_trigger_tokens);

/* Bytes a grammar stage has given std::regex while waiting for its trigger, since it was
 * made (0 for other stages): tests check that it grows with the pieces, not the output. */
uint64_t lk_sampler_grammar_scanned(const struct llama_sampler * smpl);

/* Whether `smpl` is a stage made by lk_sampler_init_grammar. */
bool lk_sampler_is_grammar(const struct llama_sampler * smpl);

/* Tokens a grammar stage has seen before generation starts (a chat template's generation
 * prompt, which llama.cpp's tool-call grammars begin with): accepted now and after every
 * reset. LK_SAMPLE_GRAMMAR (lk_last_error says why) when the grammar refuses them. */
int32_t lk_sampler_grammar_prefill(struct llama_sampler * smpl, const llama_token * tokens,
                                   size_t n_tokens);

/* A stage that calls back into Python (lk_py_sampler_*) with `handle`. */
struct llama_sampler * lk_sampler_init_python(void * handle, const char * name, int32_t flags);

/* llama_sampler_sample for a chain, without its aborts. When the chain holds grammar stages,
 * the first pass skips them and only if the chosen token breaks a grammar is the chain
 * applied again with the grammars (as llama.cpp's common_sampler does): constraining the
 * whole vocabulary on every token is slow. `top_k` > 0 promises that the chain's first stage
 * after its leading lk_sampler_init_logit_bias stages is top-k with that k (the shim checks
 * the name): the candidates then start as the k best biased logits (when they are unique,
 * i.e. no ties), not all n_vocab of them; 0 means no promise. A chain of greedy alone, or
 * after such bias stages only, takes the argmax of the biased logits directly. Both give
 * exactly llama.cpp's result, faster; `top_k` < 0 turns both off (tests compare). Returns
 * the accepted token or an LK_SAMPLE_ code. */
llama_token lk_sampler_sample(struct llama_sampler * chain, struct llama_context * ctx,
                              int32_t idx, int32_t top_k);

/* lk_sampler_sample over caller-owned logits (n_vocab of them, ids 0..n_vocab-1). */
llama_token lk_sampler_sample_logits(struct llama_sampler * chain, const float * logits,
                                     int32_t n_vocab, int32_t top_k);

/* lk_sampler_sample, then the token's llama_vocab_is_eog into *is_eog and its
 * llama_token_to_piece(lstrip 0, `special`) into piece[0..piece_cap) with the result (the
 * length, or minus the size needed when piece_cap is too small) in *n_piece: one call per
 * generated token instead of three. */
llama_token lk_sampler_sample_piece(struct llama_sampler * chain, struct llama_context * ctx,
                                    int32_t idx, int32_t top_k, bool special, bool * is_eog,
                                    char * piece, int32_t piece_cap, int32_t * n_piece);

/* lk_sampler_sample_piece for n outputs of one decode: chains[i] samples
 * output idxs[i] with promise top_ks[i]; tokens[i], is_eog[i], and the pieces one after
 * another in pieces[0..pieces_cap), n_pieces[i] each one's length (or minus the size it
 * needed, when it did not fit: nothing written for it). Returns n, or the index i of the
 * lowest failing item with its LK_SAMPLE_ code in tokens[i] and its lk_last_error: the
 * items before it have accepted their tokens. On one thread the items after it were not
 * called; on several, some of them may have sampled and accepted a token (the results of
 * a failed call are meant to be dropped whole).
 * With n_threads > 1 (<= 0: the context's llama_n_threads) and at least two items a
 * thread, the chains sample on up to n_threads threads (the calling one and the shim's
 * pool) with exactly the results of one thread, unless a chain appears twice or has a
 * Python stage (then all on the calling thread). lk_sampler_last_candidates reports none
 * after a call on several threads. The threads are OpenMP's when llama.cpp was built with
 * it, else the shim's own (lk_pool.h). */
int32_t lk_sampler_sample_many(struct llama_sampler * const * chains, const int32_t * idxs,
                               const int32_t * top_ks, int32_t n, struct llama_context * ctx,
                               bool special, llama_token * tokens, bool * is_eog,
                               char * pieces, int32_t pieces_cap, int32_t * n_pieces,
                               int32_t n_threads);

/* Whether lk_sampler_sample_many takes OpenMP's threads (true only when built with it):
 * use 0 or 1 sets it (tests run the shim's own pool with 0), -1 only asks. */
bool lk_sampler_many_openmp(int32_t use);

/* Backend sampling: llama.cpp samples a sequence's outputs inside the decode's graph
 * (llama_set_sampler), on the device holding the output layer, instead of the host
 * sampling from copied logits. lk_backend_sampler_attach gives llama.cpp a device copy of
 * `chain` (its stages and their state; a stage of lk_sampler_init_logit_bias as the
 * llama.cpp stage it wraps) for sequence `seq_id` of `ctx`, replacing the sequence's
 * previous one: 1 when llama.cpp took it, 0 when it cannot run the chain in a graph (a
 * stage without a graph form: grammar, Python, DRY, ...; nothing is attached then and
 * lk_last_error says why), LK_SAMPLE_FAILED on error. From the next decode on,
 * lk_sampler_sample / _piece / _many with `chain` on `ctx` return the token sampled in the
 * graph, accepted by both chains; the outputs of an attached sequence have no raw logits
 * (llama_get_logits_ith reads stale values). Attaching and detaching make llama.cpp
 * re-reserve its graphs before the next decode (as llama-server's per-request attach
 * does); lk_backend_sampler_rebind avoids that for a chain built like the attached one:
 * it copies `chain`'s state (llama_sampler_copy per stage) into the sequence's attached
 * copy, which `chain` samples with from then on: 1; 0 when the sequence has no copy or
 * one of other stages (attach then); LK_SAMPLE_FAILED on error.
 * lk_backend_sampler_detach takes the sequence's copy back and frees it (1; 0 if none).
 * lk_context_free: llama_free, then the copies still attached to the context.
 * lk_sampler_free: llama_sampler_free for a chain that may be attached (its copy stays
 * attached until detached). lk_backend_sampler_count: the context's attached sequences. */
int32_t lk_backend_sampler_attach(struct llama_context * ctx, int32_t seq_id,
                                  struct llama_sampler * chain);
int32_t lk_backend_sampler_detach(struct llama_context * ctx, int32_t seq_id);
int32_t lk_backend_sampler_rebind(struct llama_context * ctx, int32_t seq_id,
                                  struct llama_sampler * chain);
int32_t lk_backend_sampler_count(struct llama_context * ctx);
void lk_context_free(struct llama_context * ctx);
void lk_sampler_free(struct llama_sampler * chain);

/* A logit-bias stage that applies exactly as llama_sampler_init_logit_bias's (it wraps
 * one), and whose biases lk_sampler_sample folds into its fast paths. */
struct llama_sampler * lk_sampler_init_logit_bias(int32_t n_vocab, int32_t n_logit_bias,
                                                  const llama_logit_bias * logit_bias);

/* Apply `chain` to caller-owned candidates without accepting anything (tests, analysis).
 * Grammar stages always apply here. */
int32_t lk_sampler_apply(struct llama_sampler * chain, llama_token_data_array * cur_p);

/* llama_sampler_accept that reports instead of aborting. */
int32_t lk_sampler_accept(struct llama_sampler * smpl, llama_token token);

/* Accept `tokens` (a prompt) into every stage of `chain` except grammar stages, as
 * llama.cpp's server does so that penalties and DRY see the prompt. */
int32_t lk_sampler_accept_history(struct llama_sampler * chain, const llama_token * tokens,
                                  size_t n_tokens);

/* llama_sampler_reset / llama_sampler_clone that report instead of aborting. */
int32_t lk_sampler_reset(struct llama_sampler * smpl);
struct llama_sampler * lk_sampler_clone(const struct llama_sampler * smpl);

/* llama.cpp's JSON-schema-to-GBNF converter (common/json-schema-to-grammar.cpp).
 * Returns a malloc'd string: the grammar (*status 0) or the error message (*status 1).
 * *warnings gets a malloc'd string of the converter's warnings, or NULL. Free with lk_free. */
char * lk_json_schema_to_grammar(const char * schema_json, int32_t * status, char ** warnings);
void lk_free(void * ptr);

/* Python callbacks (cffi extern "Python+C", defined by the cffi module). Each returns 1 on
 * success and 0 when the Python code raised; clone returns a new handle or NULL. */
int32_t lk_py_sampler_apply(void * handle, llama_token_data_array * cur_p);
int32_t lk_py_sampler_accept(void * handle, llama_token token);
int32_t lk_py_sampler_reset(void * handle);
void * lk_py_sampler_clone(void * handle);
void lk_py_sampler_free(void * handle);

#ifdef __cplusplus
}
#endif

#endif
