// The steps of a batch's generating sequences; see lk_batch_run.h.
#include "lk_batch_run.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <vector>

#include "lk_interrupt.h"
#include "lk_sampling.h"
#include "lk_sampling_many.h"

namespace {

// `tokens` sorted ascending
bool contains(const llama_token * tokens, int32_t n, llama_token token) {
    return n > 0 && std::binary_search(tokens, tokens + n, token);
}

// Each sequence's piece gets this many bytes of sample_many's buffer; a longer one is
// written again from the token.
constexpr int32_t piece_room = 64;

struct run_state {
    llama_context * ctx;
    llama_batch batch;
    lk_batch_seq * seqs;
    int32_t n_seqs;
    int32_t n_max;
    int64_t max_us;
    bool launch_last;
    int * flag;
    int32_t * decode_status;
    int32_t * sample_status;
    int32_t * failed_seq;
    int32_t done = 0;  // whole steps so far
};

// The going sequences' tokens as one batch, decoded; false when it failed or was cancelled.
bool launch(run_state & s) {
    if (__atomic_load_n(s.flag, __ATOMIC_SEQ_CST) != 0) {
        *s.decode_status = 2;  // what llama_decode returns when its abort callback says so
        return false;
    }
    llama_batch batch = s.batch;
    int32_t n = 0;
    for (int32_t i = 0; i < s.n_seqs; i++) {
        lk_batch_seq & seq = s.seqs[i];
        if (seq.finish != 0) {
            seq.output = -1;
            continue;
        }
        batch.token[n] = seq.tokens[seq.n_tokens - 1];
        batch.pos[n] = seq.pos;
        batch.n_seq_id[n] = 1;
        batch.seq_id[n][0] = seq.seq_id;
        batch.logits[n] = 1;
        seq.output = n;
        n++;
    }
    batch.n_tokens = n;
    const int32_t status = llama_decode(s.ctx, batch);
    if (status != 0) {
        *s.decode_status = status;
        for (int32_t i = 0; i < s.n_seqs; i++) {
            s.seqs[i].output = -1;
        }
        return false;
    }
    for (int32_t i = 0; i < s.n_seqs; i++) {
        lk_batch_seq & seq = s.seqs[i];
        if (seq.finish == 0) {
            seq.pos++;
            seq.n_decoded++;
        }
    }
    return true;
}

int32_t run(run_state & s) {
    using clock = std::chrono::steady_clock;
    const auto started = clock::now();
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(s.ctx));
    const int32_t n = s.n_seqs;
    std::vector<llama_sampler *> chains(n);
    std::vector<int32_t> idxs(n);
    std::vector<int32_t> top_ks(n);
    std::vector<llama_token> tokens(n);
    std::vector<char> eogs(n);  // bool[], without vector<bool>'s packing
    std::vector<int32_t> lengths(n);
    std::vector<char> scratch(static_cast<size_t>(n) * piece_room);
    for (int32_t i = 0; i < n; i++) {
        chains[i] = s.seqs[i].chain;
        top_ks[i] = s.seqs[i].top_k;
    }
    while (true) {
        for (int32_t i = 0; i < n; i++) {
            idxs[i] = s.seqs[i].output;
        }
        const int32_t sampled = lk_sampler_sample_many(
            chains.data(), idxs.data(), top_ks.data(), n, s.ctx, false, tokens.data(),
            reinterpret_cast<bool *>(eogs.data()), scratch.data(),
            static_cast<int32_t>(scratch.size()), lengths.data(), 0);
        if (sampled < n) {
            *s.sample_status = tokens[sampled];
            *s.failed_seq = sampled;
            break;
        }
        bool ended = false;
        int32_t at = 0;  // the piece's place in scratch
        for (int32_t i = 0; i < n; i++) {
            lk_batch_seq & seq = s.seqs[i];
            const llama_token token = tokens[i];
            const int32_t length = lengths[i];
            const char * piece = scratch.data() + at;
            at += length > 0 ? length : 0;
            seq.tokens[seq.n_tokens++] = token;
            if (eogs[i] || contains(seq.stop_tokens, seq.n_stop_tokens, token)) {
                seq.finish = 1;
                ended = true;
                continue;
            }
            const int32_t room = seq.pieces_cap - seq.n_bytes;
            char * out = seq.pieces + seq.n_bytes;
            int32_t written = -1;
            if (length >= 0 && !contains(seq.preserved, seq.n_preserved, token)) {
                if (length <= room) {
                    std::memcpy(out, piece, static_cast<size_t>(length));
                    written = length;
                }
            } else {
                try {
                    written = llama_token_to_piece(
                        vocab, token, out, room, 0,
                        contains(seq.preserved, seq.n_preserved, token));
                } catch (const std::exception & error) {
                    lk_many::set_error(error.what());
                    *s.sample_status = LK_SAMPLE_FAILED;
                    *s.failed_seq = i;
                    return s.done;  // the step's tokens are recorded; Python raises
                }
            }
            if (written < 0) {
                seq.piece_missing = 1;
                ended = true;
            } else {
                seq.n_bytes += written;
            }
            if (--seq.budget <= 0) {
                seq.finish = 2;
                ended = true;
            }
        }
        s.done++;
        const bool more = !ended && s.done < s.n_max &&
            !(s.max_us > 0 && std::chrono::duration_cast<std::chrono::microseconds>(
                  clock::now() - started).count() >= s.max_us);
        if (!more) {
            bool going = false;
            for (int32_t i = 0; i < n; i++) {
                going = going || s.seqs[i].finish == 0;
            }
            if (!(s.launch_last && going && launch(s))) {
                for (int32_t i = 0; i < n; i++) {
                    s.seqs[i].output = -1;
                }
            }
            break;
        }
        if (!launch(s)) {
            break;
        }
    }
    return s.done;
}

int32_t run_trampoline(void * data) {
    return run(*static_cast<run_state *>(data));
}

}  // namespace

extern "C" int32_t lk_batch_run(llama_context * ctx, llama_batch batch, int32_t batch_cap,
                                lk_batch_seq * seqs, int32_t n_seqs, int32_t n_max,
                                int64_t max_us, bool launch_last, int * flag,
                                bool interruptible, int32_t * decode_status,
                                int32_t * sample_status, int32_t * failed_seq) {
    *decode_status = 0;
    *sample_status = 0;
    *failed_seq = -1;
    for (int32_t i = 0; i < n_seqs; i++) {
        lk_batch_seq & seq = seqs[i];
        seq.n_tokens = seq.n_decoded = seq.n_bytes = seq.piece_missing = seq.finish = 0;
    }
    if (n_seqs <= 0 || n_seqs > batch_cap || n_max <= 0) {
        lk_many::set_error("lk_batch_run: 1..batch_cap sequences and n_max >= 1 are needed");
        *sample_status = LK_SAMPLE_FAILED;
        return 0;
    }
    for (int32_t i = 0; i < n_seqs; i++) {
        if (seqs[i].budget <= 0 || seqs[i].output < 0) {
            lk_many::set_error("lk_batch_run: every sequence needs a budget and an output row");
            *sample_status = LK_SAMPLE_FAILED;
            *failed_seq = i;
            return 0;
        }
    }
    run_state state{ctx, batch, seqs, n_seqs, n_max, max_us, launch_last, flag,
                    decode_status, sample_status, failed_seq};
    try {
        return interruptible ? lk_run_interruptible(run_trampoline, &state, flag) : run(state);
    } catch (const std::exception & error) {  // std::bad_alloc of the run's arrays
        lk_many::set_error(error.what());
        *sample_status = LK_SAMPLE_FAILED;
        return state.done;
    }
}
