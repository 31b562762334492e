// lk_sampler_sample_many (see lk_sampling.h): the chains of one decode, sampled on the
// calling thread or, when there are enough of them, on several (OpenMP's or lk_pool's).
#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "lk_backend_sampling.h"
#include "lk_pool.h"
#include "lk_sampling.h"
#include "lk_sampling_many.h"

namespace {

// Each thread of lk_sampler_sample_many samples at least this many chains. One chain of
// the default chain over a 32k vocabulary takes 8-15 µs on the 2-core VM, 50-100 on the
// H200's host; measured on the VM (benchmarks/micro/sample_many.py): 2 chains gain nothing on
// 2 threads, 4 chains 1.3x, 8 chains 1.6x.
constexpr int32_t min_items_per_thread = 2;

#ifdef _OPENMP
std::atomic<bool> use_openmp{true};
#else
std::atomic<bool> use_openmp{false};
#endif

bool has_python_stage(llama_sampler * chain) {
    for (int32_t i = 0, n = llama_sampler_chain_n(chain); i < n; i++) {
        if (lk_many::is_python_stage(llama_sampler_chain_get(chain, i))) {
            return true;
        }
    }
    return false;
}

// Chains may sample on other threads when each appears once (a chain's stages carry its
// state from one token to the next) and none has a Python stage (the callback takes the
// GIL, and Python's error travels in this thread's state).
bool parallel_safe(struct llama_sampler * const * chains, int32_t n) {
    std::vector<const llama_sampler *> seen(chains, chains + n);
    std::sort(seen.begin(), seen.end());
    if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
        return false;
    }
    for (int32_t i = 0; i < n; i++) {
        if (has_python_stage(chains[i])) {
            return false;
        }
    }
    return true;
}

// The token's end-of-generation flag and piece, as lk_sampler_sample_piece gives them.
llama_token finish_piece(const llama_vocab * vocab, llama_token token, bool special,
                         bool * is_eog, char * piece, int32_t piece_cap, int32_t * n_piece) {
    try {
        *is_eog = llama_vocab_is_eog(vocab, token);
        *n_piece = llama_token_to_piece(vocab, token, piece, piece_cap, 0, special);
        return token;
    } catch (const std::exception & err) {
        lk_many::set_error(err.what());
        return LK_SAMPLE_FAILED;
    }
}

// lk_sampler_sample_many over `workers` threads (the calling one among them). The logits
// are looked up here first: llama_get_logits_ith reorders the context's outputs on its
// first call after a decode. Each thread claims the next unclaimed item; an item above a
// failed one is not started. The pieces are written here afterwards, in order, so the
// buffer holds exactly what the one-thread loop writes.
int32_t sample_threaded(struct llama_sampler * const * chains, const int32_t * idxs,
                        const int32_t * top_ks, int32_t n, struct llama_context * ctx,
                        bool special, llama_token * tokens, bool * is_eog, char * pieces,
                        int32_t pieces_cap, int32_t * n_pieces, int32_t workers) {
    lk_many::set_error("");
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<const float *> logits(n);
    // Items whose chain is attached for backend sampling (lk_backend_sampler_attach) take
    // the token their decode sampled, here, on this thread (llama.cpp reorders its outputs
    // on the first lookup after a decode).
    std::vector<char> taken(n, 0);
    std::vector<std::string> errors(n);
    int32_t limit = n;         // the first item without logits
    int32_t failed_early = n;  // the first item whose backend token could not be taken
    for (int32_t i = 0; i < n && limit == n && failed_early == n; i++) {
        int32_t got = 0;
        try {
            got = lk_backend::take(chains[i], ctx, idxs[i], &tokens[i]);
        } catch (const std::exception & err) {
            lk_many::set_error(err.what());
            got = LK_SAMPLE_FAILED;
        }
        if (got < 0) {
            tokens[i] = got;
            errors[i] = lk_last_error();
            failed_early = i;
        } else if (got > 0) {
            taken[i] = 1;
        } else {
            logits[i] = llama_get_logits_ith(ctx, idxs[i]);
            if (logits[i] == nullptr) {
                limit = i;
            }
        }
    }
    limit = std::min(limit, failed_early + 1);
    std::atomic<int32_t> next{0};
    std::atomic<int32_t> first_failed{failed_early < n ? failed_early : limit};
    // Nothing may throw out of a thread of the pool or of an OpenMP region.
    const std::function<void()> body = [&] {
        for (int32_t i = next++; i < limit && i < first_failed.load(); i = next++) {
            if (taken[i]) {
                continue;
            }
            llama_token token = LK_SAMPLE_FAILED;
            try {  // only a failed allocation can throw here
                token = lk_sampler_sample_logits(chains[i], logits[i], n_vocab, top_ks[i]);
                if (token < 0) {
                    errors[i] = lk_last_error();  // in the state of the thread that ran it
                } else {
                    lk_backend::after_host(chains[i], ctx, token);
                }
            } catch (const std::exception &) {
                token = LK_SAMPLE_FAILED;
            }
            tokens[i] = token;
            if (token < 0) {
                int32_t seen = first_failed.load();
                while (i < seen && !first_failed.compare_exchange_weak(seen, i)) {
                }
            }
        }
    };
    const int32_t team = std::min(workers, limit);
    if (team <= 1) {
        body();
    } else if (use_openmp.load()) {
        // llama.cpp built with OpenMP: its threads spin for a while after each graph
        // compute (libgomp's default wait policy), so threads of another pool would share
        // their cores with them; the same team, still spinning, starts at once.
#ifdef _OPENMP
#pragma omp parallel num_threads(team)
#endif
        body();
    } else if (!lk_pool::run(team - 1, body)) {
        body();  // the pool serves another caller now: this thread does it all
    }
    // Candidates left in this thread's state belong to whichever item it sampled last.
    lk_many::forget_candidates();
    const int32_t failed = first_failed.load();
    int32_t used = 0;
    for (int32_t i = 0; i < failed; i++) {
        int32_t length = 0;
        tokens[i] = finish_piece(vocab, tokens[i], special, &is_eog[i], pieces + used,
                                 pieces_cap - used, &length);
        if (tokens[i] < 0) {
            return i;
        }
        n_pieces[i] = length;
        used += length > 0 ? length : 0;
    }
    if (failed < limit) {
        lk_many::set_error(errors[failed]);
    } else if (failed < n) {
        tokens[failed] = LK_SAMPLE_NO_LOGITS;
        lk_many::set_error("the context holds no logits for output " +
                           std::to_string(idxs[failed]));
    }
    return failed;
}

}  // namespace

extern "C" {

int32_t lk_sampler_sample_many(struct llama_sampler * const * chains, const int32_t * idxs,
                               const int32_t * top_ks, int32_t n, struct llama_context * ctx,
                               bool special, llama_token * tokens, bool * is_eog,
                               char * pieces, int32_t pieces_cap, int32_t * n_pieces,
                               int32_t n_threads) {
    if (n_threads <= 0) {
        n_threads = llama_n_threads(ctx);
    }
    const int32_t workers = std::min(n_threads, n / min_items_per_thread);
    if (workers > 1 && parallel_safe(chains, n)) {
        return sample_threaded(chains, idxs, top_ks, n, ctx, special, tokens, is_eog, pieces,
                               pieces_cap, n_pieces, workers);
    }
    int32_t used = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t length = 0;
        tokens[i] = lk_sampler_sample_piece(chains[i], ctx, idxs[i], top_ks[i], special,
                                            &is_eog[i], pieces + used, pieces_cap - used,
                                            &length);
        if (tokens[i] < 0) {
            return i;
        }
        n_pieces[i] = length;
        used += length > 0 ? length : 0;
    }
    return n;
}

bool lk_sampler_many_openmp(int32_t use) {
#ifdef _OPENMP
    if (use >= 0) {
        use_openmp.store(use != 0);
    }
#endif
    return use_openmp.load();
}

}  // extern "C"
