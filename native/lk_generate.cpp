// The token loop of a generation; see lk_generate.h.
#include "lk_generate.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <string>

#include "lk_interrupt.h"
#include "lk_sampling.h"
#include "lk_sampling_many.h"

namespace {

// `tokens` sorted ascending (a caller may pass many: a vocabulary's worth of stop tokens)
bool contains(const llama_token * tokens, int32_t n, llama_token token) {
    return n > 0 && std::binary_search(tokens, tokens + n, token);
}

struct run_state {
    llama_context * ctx;
    llama_sampler * chain;
    llama_token token;
    int32_t n_max;
    int32_t top_k;
    const lk_generate_stops * stops;
    int64_t max_us;
    int * flag;
    llama_token * tokens;
    bool * is_eog;
    char * pieces;
    int32_t pieces_cap;
    int32_t * n_pieces;
    int32_t * decode_status;
    int32_t * sample_status;
    int32_t done = 0;  // whole steps so far
};

// The bytes a stop string may still begin in, and the search of each new piece.
class stop_window {
public:
    explicit stop_window(const lk_generate_stops & stops) : stops_(stops) {
        for (int32_t i = 0; i < stops.n_stops; i++) {
            longest_ = std::max(longest_, stops.stop_lens[i]);
        }
        if (stops.n_tail > 0) {
            bytes_.assign(stops.tail, static_cast<size_t>(stops.n_tail));
        }
    }

    // Whether `piece` completes a stop string (one that ends inside it).
    bool completes(const char * piece, int32_t n) {
        if (stops_.n_stops == 0 || n <= 0) {
            return false;
        }
        const size_t before = bytes_.size();
        bytes_.append(piece, static_cast<size_t>(n));
        const char * stop = stops_.stops;
        for (int32_t i = 0; i < stops_.n_stops; stop += stops_.stop_lens[i], i++) {
            const size_t len = static_cast<size_t>(stops_.stop_lens[i]);
            if (len > bytes_.size()) {
                continue;
            }
            const size_t from = before + 1 > len ? before + 1 - len : 0;
            if (bytes_.find(stop, from, len) != std::string::npos) {
                return true;
            }
        }
        const size_t keep = static_cast<size_t>(longest_ > 0 ? longest_ - 1 : 0);
        if (bytes_.size() > keep) {
            bytes_.erase(0, bytes_.size() - keep);
        }
        return false;
    }

private:
    const lk_generate_stops & stops_;
    std::string bytes_;
    int32_t longest_ = 0;
};

int32_t run(run_state & s) {
    using clock = std::chrono::steady_clock;
    const auto started = clock::now();
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(s.ctx));
    const lk_generate_stops & stops = *s.stops;
    stop_window window(stops);
    llama_token token = s.token;
    int32_t used = 0;
    int32_t & n = s.done;
    while (n < s.n_max) {
        if (__atomic_load_n(s.flag, __ATOMIC_SEQ_CST) != 0) {
            *s.decode_status = 2;  // what llama_decode returns when its abort callback says so
            break;
        }
        const int32_t status = llama_decode(s.ctx, llama_batch_get_one(&token, 1));
        if (status != 0) {
            *s.decode_status = status;
            break;
        }
        const llama_token next = lk_sampler_sample(s.chain, s.ctx, -1, s.top_k);
        if (next < 0) {
            *s.sample_status = next;
            break;
        }
        bool eog = false;
        int32_t n_piece = 0;
        try {
            eog = llama_vocab_is_eog(vocab, next);
            const bool special = contains(stops.preserved, stops.n_preserved, next);
            n_piece = llama_token_to_piece(vocab, next, s.pieces + used, s.pieces_cap - used,
                                           0, special);
        } catch (const std::exception & error) {
            lk_many::set_error(error.what());
            *s.sample_status = LK_SAMPLE_FAILED;
            break;
        }
        s.tokens[n] = next;
        s.is_eog[n] = eog;
        s.n_pieces[n] = n_piece;
        n++;
        if (n_piece < 0 || eog || contains(stops.stop_tokens, stops.n_stop_tokens, next)) {
            break;
        }
        const bool stopped = window.completes(s.pieces + used, n_piece);
        used += n_piece;
        if (stopped) {
            break;
        }
        if (s.max_us > 0 && std::chrono::duration_cast<std::chrono::microseconds>(
                clock::now() - started).count() >= s.max_us) {
            break;
        }
        token = next;
    }
    return n;
}

int32_t run_trampoline(void * data) {
    return run(*static_cast<run_state *>(data));
}

}  // namespace

extern "C" int32_t lk_generate_run(llama_context * ctx, llama_sampler * chain, llama_token token,
                                   int32_t n_max, int32_t top_k,
                                   const lk_generate_stops * stops, int64_t max_us, int * flag,
                                   bool interruptible, llama_token * tokens, bool * is_eog,
                                   char * pieces, int32_t pieces_cap, int32_t * n_pieces,
                                   int32_t * decode_status, int32_t * sample_status) {
    *decode_status = 0;
    *sample_status = 0;
    run_state state{ctx, chain, token, n_max, top_k, stops, max_us, flag, tokens, is_eog,
                    pieces, pieces_cap, n_pieces, decode_status, sample_status};
    try {
        return interruptible ? lk_run_interruptible(run_trampoline, &state, flag)
                             : run(state);
    } catch (const std::exception & error) {  // std::bad_alloc of the stop window
        lk_many::set_error(error.what());
        *sample_status = LK_SAMPLE_FAILED;
        return state.done;
    }
}
