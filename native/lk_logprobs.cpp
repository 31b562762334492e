// Log-probabilities; see lk_logprobs.h for why this is native code.
#include "lk_logprobs.h"

#include <cmath>
#include <cstring>
#include <vector>

// Without it GCC keeps float-to-int conversions and selects scalar (they could trap), and
// the exponential loop of sum_exp_fast runs about three times slower.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

// The shim is built for the baseline ISA (no -march): on x86-64 Linux an AVX2 clone of the
// vocabulary loops, picked at load time, makes them about 1.7x faster where AVX2 exists.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LK_VOCAB_LOOP __attribute__((target_clones("avx2", "default")))
#else
#define LK_VOCAB_LOOP
#endif

namespace {

// Keeps the k best (value, id) pairs seen, sorted descending; ties keep the smaller id
// (seen first, since ids arrive in increasing order when scanning a row).
struct top_buffer {
    int32_t k;
    int32_t n = 0;
    float values[LK_LOGPROBS_MAX_TOP];
    llama_token ids[LK_LOGPROBS_MAX_TOP];

    void offer(float value, llama_token id) {
        if (n == k && !(value > values[n - 1])) {
            return;
        }
        int32_t i = n < k ? n++ : k - 1;
        while (i > 0 && value > values[i - 1]) {
            values[i] = values[i - 1];
            ids[i] = ids[i - 1];
            i--;
        }
        values[i] = value;
        ids[i] = id;
    }
};

float max_of(const float * x, int32_t n) {
    float m[8];
    for (float & v : m) {
        v = -INFINITY;
    }
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int32_t j = 0; j < 8; j++) {
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
        }
    }
    float best = -INFINITY;
    for (; i < n; i++) {
        best = x[i] > best ? x[i] : best;
    }
    for (float v : m) {
        best = v > best ? v : best;
    }
    return best;
}

// log(sum(exp(x - max))) with expf per element, summed in double (llama-perplexity's way).
double log_sum_exp(const float * x, int32_t n, float max) {
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        sum += expf(x[i] - max);
    }
    return std::log(sum);
}

// The maximum of each block of 64 floats (vectorized: lanes of independent maxima).
LK_VOCAB_LOOP void block_maxima(const float * x, int32_t n_blocks, float * out) {
    for (int32_t b = 0; b < n_blocks; b++) {
        const float * block = x + (size_t) b * 64;
        float m[8];
        for (int32_t l = 0; l < 8; l++) {
            m[l] = block[l];
        }
        for (int32_t i = 8; i < 64; i += 8) {
            for (int32_t l = 0; l < 8; l++) {
                m[l] = block[i + l] > m[l] ? block[i + l] : m[l];
            }
        }
        float best = m[0];
        for (int32_t l = 1; l < 8; l++) {
            best = m[l] > best ? m[l] : best;
        }
        out[b] = best;
    }
}

// exp(x) for x <= 0 by 2^n * a degree-7 polynomial on |r| <= ln2/2: relative error below
// 2e-7 (a float's own precision), branch-free, so the loop over a vocabulary vectorizes.
inline float exp_le0(float x) {
    x = x > -87.0f ? x : -87.0f;  // exp(-87) ~ 1.6e-38: still a normal float
    const float n = (float) (int32_t) (x * 1.44269504088896341f - 0.5f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 +
                    r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    const int32_t bits = ((int32_t) n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// log(sum(exp(x - max))) for log-probabilities: blocks of 256 exponentials into a buffer
// (a loop the compiler vectorizes), summed in float per block and in double across blocks.
LK_VOCAB_LOOP double log_sum_exp_fast(const float * x, int32_t n, float max) {
    float tmp[256];
    double total = 0.0;
    int32_t i = 0;
    for (; i + 256 <= n; i += 256) {
        for (int32_t j = 0; j < 256; j++) {
            tmp[j] = exp_le0(x[i + j] - max);
        }
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int32_t j = 0; j < 256; j += 8) {
            for (int32_t l = 0; l < 8; l++) {
                acc[l] += tmp[j + l];
            }
        }
        float block = 0.0f;
        for (float a : acc) {
            block += a;
        }
        total += block;
    }
    for (; i < n; i++) {
        total += exp_le0(x[i] - max);
    }
    return std::log(total);
}

}  // namespace

extern "C" {

double lk_logprobs(const float * logits, int32_t n_vocab, llama_token token, int32_t top_k,
                   llama_token * top_ids, double * top_logprobs) {
    if (n_vocab < 1 || token < 0 || token >= n_vocab) {
        return NAN;
    }
    // The maxima of blocks of 64 give the overall maximum and spare the top-k most of the
    // vocabulary: with B the k-th largest block maximum, at least k logits are >= B, so
    // every top-k logit is >= B and lies in a block whose maximum is >= B.
    constexpr int32_t block = 64;
    const int32_t n_blocks = n_vocab / block;
    thread_local std::vector<float> maxima;
    maxima.resize(n_blocks);
    block_maxima(logits, n_blocks, maxima.data());
    float max = -INFINITY;
    for (int32_t b = 0; b < n_blocks; b++) {
        max = maxima[b] > max ? maxima[b] : max;
    }
    const int32_t tail = n_blocks * block;
    const float tail_max = tail < n_vocab ? max_of(logits + tail, n_vocab - tail) : -INFINITY;
    max = tail_max > max ? tail_max : max;
    const double lse = log_sum_exp_fast(logits, n_vocab, max);
    if (top_k > 0) {
        const int32_t k = top_k < LK_LOGPROBS_MAX_TOP ? top_k : LK_LOGPROBS_MAX_TOP;
        top_buffer top{k};
        float bound = -INFINITY;
        if (n_blocks > k) {
            top_buffer best_blocks{k};
            for (int32_t b = 0; b < n_blocks; b++) {
                best_blocks.offer(maxima[b], b);
            }
            bound = best_blocks.values[k - 1];
        }
        for (int32_t b = 0; b < n_blocks; b++) {
            if (!(maxima[b] < bound)) {  // NaN maxima are scanned too
                for (int32_t id = b * block; id < (b + 1) * block; id++) {
                    top.offer(logits[id], id);
                }
            }
        }
        for (llama_token id = tail; id < n_vocab; id++) {
            top.offer(logits[id], id);
        }
        for (int32_t i = 0; i < top.n; i++) {
            top_ids[i] = top.ids[i];
            top_logprobs[i] = (double) (top.values[i] - max) - lse;
        }
    }
    return (double) (logits[token] - max) - lse;
}

double lk_logprobs_sampled(const float * logits, int32_t n_vocab, llama_token token,
                           int32_t top_k, llama_token * top_ids, double * top_logprobs,
                           int32_t * n_top) {
    size_t n = 0;
    const llama_token_data * cur = lk_sampler_last_candidates(&n);
    if (cur == nullptr || n == 0) {
        *n_top = top_k < n_vocab ? top_k : n_vocab;
        return lk_logprobs(logits, n_vocab, token, top_k, top_ids, top_logprobs);
    }
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        max = cur[i].logit > max ? cur[i].logit : max;
    }
    double sum = 0.0;
    double chosen = -INFINITY;
    top_buffer top{top_k < LK_LOGPROBS_MAX_TOP ? top_k : LK_LOGPROBS_MAX_TOP};
    for (size_t i = 0; i < n; i++) {
        sum += expf(cur[i].logit - max);
    }
    const double lse = std::log(sum);
    for (size_t i = 0; i < n; i++) {
        if (cur[i].id == token) {
            chosen = (double) (cur[i].logit - max) - lse;
        }
        if (top_k > 0 && cur[i].logit > -INFINITY) {
            // candidates are in no particular id order: break ties by id explicitly
            const float value = cur[i].logit;
            if (top.n == top.k && value == top.values[top.n - 1] &&
                    cur[i].id < top.ids[top.n - 1]) {
                top.ids[top.n - 1] = cur[i].id;
            } else {
                top.offer(value, cur[i].id);
            }
        }
    }
    for (int32_t i = 0; i < top.n; i++) {
        top_ids[i] = top.ids[i];
        top_logprobs[i] = (double) (top.values[i] - max) - lse;
    }
    *n_top = top_k > 0 ? top.n : 0;
    return chosen;
}

void lk_nll_rows(const float * logits, int32_t n_rows, int32_t n_vocab,
                 const llama_token * targets, double * nll, double * nll2) {
    double sum = 0.0;
    double sum2 = 0.0;
    for (int32_t r = 0; r < n_rows; r++) {
        const float * row = logits + (size_t) r * n_vocab;
        const float max = max_of(row, n_vocab);
        const double v = -((double) (row[targets[r]] - max) - log_sum_exp(row, n_vocab, max));
        sum += v;
        sum2 += v * v;
    }
    *nll = sum;
    *nll2 = sum2;
}

}  // extern "C"
