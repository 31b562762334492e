// Log-probabilities; see lk_logprobs.h for why this is native code.
#include "lk_logprobs.h"

#include <cmath>

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

}  // namespace

extern "C" {

double lk_logprobs(const float * logits, int32_t n_vocab, llama_token token, int32_t top_k,
                   llama_token * top_ids, double * top_logprobs) {
    if (n_vocab < 1 || token < 0 || token >= n_vocab) {
        return NAN;
    }
    const float max = max_of(logits, n_vocab);
    const double lse = log_sum_exp(logits, n_vocab, max);
    if (top_k > 0) {
        top_buffer top{top_k < LK_LOGPROBS_MAX_TOP ? top_k : LK_LOGPROBS_MAX_TOP};
        for (llama_token id = 0; id < n_vocab; id++) {
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
