// The shim's fast sampling paths: exactly llama.cpp's result without writing and scanning
// all n_vocab candidates, including when the chain starts with logit-bias stages (the
// biases of a few ids are folded into the argmax / top-k selection instead of applied to a
// full candidate array). See lk_sampling_fast.h.
#include "lk_sampling_fast.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "lk_sampling.h"

namespace {

// A logit-bias stage: llama.cpp's own (it does the applying) plus a copy of its biases for
// the fast paths, and a switch that makes it pass through while they are folded in.
struct bias_stage {
    llama_sampler * inner;
    std::vector<llama_logit_bias> biases;
    bool bypass;
};

const char * bias_name(const llama_sampler * smpl) {
    return llama_sampler_name(((const bias_stage *) smpl->ctx)->inner);
}

void bias_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    auto * b = (bias_stage *) smpl->ctx;
    if (!b->bypass) {
        llama_sampler_apply(b->inner, cur_p);
    }
}

llama_sampler * bias_clone(const llama_sampler * smpl);

void bias_free(llama_sampler * smpl) {
    auto * b = (bias_stage *) smpl->ctx;
    llama_sampler_free(b->inner);
    delete b;
}

llama_sampler_i bias_iface = {
    /* .name              = */ bias_name,
    /* .accept            = */ nullptr,
    /* .apply             = */ bias_apply,
    /* .reset             = */ nullptr,
    /* .clone             = */ bias_clone,
    /* .free              = */ bias_free,
    /* .backend_init      = */ nullptr,
    /* .backend_accept    = */ nullptr,
    /* .backend_apply     = */ nullptr,
    /* .backend_set_input = */ nullptr,
    /* .backend_reset     = */ nullptr,
    /* .copy_state        = */ nullptr,
};

llama_sampler * bias_clone(const llama_sampler * smpl) {
    const auto * b = (const bias_stage *) smpl->ctx;
    return llama_sampler_init(&bias_iface,
                              new bias_stage{llama_sampler_clone(b->inner), b->biases, false});
}

// Largest of n floats (NaN never wins), with eight independent maxima so that the loop
// is not one long dependency chain.
float block_max(const float * x, int32_t n) {
    float m[8];
    for (float & v : m) {
        v = -INFINITY;
    }
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int32_t j = 0; j < 8; j++) {
            const float v = x[i + j];
            m[j] = v > m[j] ? v : m[j];
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

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define LK_ARGMAX_AVX2 1
// block_max, and whether the block holds a NaN or an infinity (`v * 0` is NaN for those
// only): a block without either whose maximum is below a threshold has nothing at or
// above it, and fill_top_k's scan may skip it.
__attribute__((target("avx2"))) float block_max_marked_avx2(const float * x, int32_t n,
                                                            bool & marked) {
    float m[8];
    float z[8];
    for (int32_t j = 0; j < 8; j++) {
        m[j] = -INFINITY;
        z[j] = 0.0f;
    }
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int32_t j = 0; j < 8; j++) {
            const float v = x[i + j];
            m[j] = v > m[j] ? v : m[j];
            z[j] += v * 0.0f;
        }
    }
    float best = -INFINITY;
    float zero = 0.0f;
    for (; i < n; i++) {
        best = x[i] > best ? x[i] : best;
        zero += x[i] * 0.0f;
    }
    for (int32_t j = 0; j < 8; j++) {
        best = m[j] > best ? m[j] : best;
        zero += z[j];
    }
    marked = std::isnan(zero);
    return best;
}

// The first index from `i` on (before `end`) whose logit is at or above `threshold`, or
// NaN; `end` if none. Eight at a time: GCC vectorises the count, not an early exit.
__attribute__((target("avx2"))) int32_t next_reaching_avx2(const float * x, int32_t i,
                                                            int32_t end, float threshold) {
    for (; i + 8 <= end; i += 8) {
        int32_t hits = 0;
        for (int32_t j = 0; j < 8; j++) {
            hits += x[i + j] < threshold ? 0 : 1;
        }
        if (hits != 0) {
            break;
        }
    }
    for (; i < end; i++) {
        if (!(x[i] < threshold)) {
            return i;
        }
    }
    return end;
}

// One pass over x[begin, end): each of 8 lanes keeps its maximum and the first index that
// reached it (`>`: NaN never wins, a tie keeps the earlier index); the lanes' best, at its
// first index, replaces (best, at) only when strictly larger, so earlier runs keep ties.
// Compiled for AVX2 (GCC vectorises the lane loop into 8-wide compares and blends: about
// 4x the two-pass scan below on a 262k vocabulary) and called only where the CPU has it.
__attribute__((target("avx2"))) void run_best_avx2(const float * x, int32_t begin,
                                                   int32_t end, float & best, int32_t & at) {
    float m[8];
    int32_t k[8];
    for (int32_t j = 0; j < 8; j++) {
        m[j] = -INFINITY;
        k[j] = -1;
    }
    int32_t i = begin;
    for (; i + 8 <= end; i += 8) {
        for (int32_t j = 0; j < 8; j++) {
            const float v = x[i + j];
            const bool gt = v > m[j];
            m[j] = gt ? v : m[j];
            k[j] = gt ? i + j : k[j];
        }
    }
    float lane_best = -INFINITY;
    int32_t lane_at = -1;
    for (int32_t j = 0; j < 8; j++) {
        if (k[j] >= 0 && (m[j] > lane_best || (m[j] == lane_best && k[j] < lane_at))) {
            lane_best = m[j];
            lane_at = k[j];
        }
    }
    for (; i < end; i++) {  // after every lane's index: `>` keeps the first
        if (x[i] > lane_best) {
            lane_best = x[i];
            lane_at = i;
        }
    }
    if (lane_at >= 0 && lane_best > best) {
        best = lane_best;
        at = lane_at;
    }
}

// __builtin_cpu_init first: this initialiser may run before libgcc's own constructor.
const bool has_avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}();
#endif

bool is_biased(const lk_fast::biased_ids & biased, llama_token id) {
    return std::binary_search(
        biased.begin(), biased.end(), std::make_pair(id, 0.0f),
        [](const std::pair<llama_token, float> & a, const std::pair<llama_token, float> & b) {
            return a.first < b.first;
        });
}

}  // namespace

namespace lk_fast {

bool is_bias_stage(const llama_sampler * smpl) {
    return smpl != nullptr && smpl->iface == &bias_iface;
}

llama_sampler * bias_inner(const llama_sampler * smpl) {
    return is_bias_stage(smpl) ? ((const bias_stage *) smpl->ctx)->inner : nullptr;
}

int32_t leading_biases(llama_sampler * chain, const float * logits, int32_t n_vocab,
                       biased_ids & out) {
    // (token, order of the entry, bias): sorting by the first two keeps llama.cpp's order
    // of the float additions for a token that several entries bias.
    thread_local std::vector<std::pair<std::pair<llama_token, int32_t>, float>> entries;
    entries.clear();
    out.clear();
    int32_t n = 0;
    for (const int32_t total = llama_sampler_chain_n(chain); n < total; n++) {
        const llama_sampler * stage = llama_sampler_chain_get(chain, n);
        if (!is_bias_stage(stage)) {
            break;
        }
        for (const auto & lb : ((const bias_stage *) stage->ctx)->biases) {
            if (lb.token >= 0 && lb.token < n_vocab) {
                entries.push_back({{lb.token, (int32_t) entries.size()}, lb.bias});
            }
        }
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto & a, const auto & b) { return a.first < b.first; });
    for (const auto & e : entries) {
        const llama_token id = e.first.first;
        if (out.empty() || out.back().first != id) {
            out.emplace_back(id, logits[id]);
        }
        out.back().second += e.second;
    }
    return n;
}

bias_bypass::bias_bypass(llama_sampler * chain_, int32_t n_) : chain(chain_), n(n_) {
    for (int32_t i = 0; i < n; i++) {
        ((bias_stage *) llama_sampler_chain_get(chain, i)->ctx)->bypass = true;
    }
}

bias_bypass::~bias_bypass() {
    for (int32_t i = 0; i < n; i++) {
        ((bias_stage *) llama_sampler_chain_get(chain, i)->ctx)->bypass = false;
    }
}

// llama.cpp's greedy stage scans with `>` from the first candidate: the first index of the
// largest value, where a NaN first value is never beaten and later NaNs never win. The
// maximum first (over the unbiased runs between biased ids, and the biased values), then
// its first index; on a CPU with AVX2 both in one pass (run_best_avx2).
llama_token argmax(const float * logits, int32_t n_vocab, const biased_ids & biased) {
    const float first = !biased.empty() && biased[0].first == 0 ? biased[0].second : logits[0];
    if (std::isnan(first)) {
        return 0;
    }
#ifdef LK_ARGMAX_AVX2
    if (has_avx2) {
        float best = first;
        int32_t at = 0;
        int32_t begin = 0;
        for (const auto & [id, value] : biased) {
            if (id > begin) {
                run_best_avx2(logits, begin, id, best, at);
            }
            if (value > best) {
                best = value;
                at = id;
            }
            begin = id + 1;
        }
        if (begin < n_vocab) {
            run_best_avx2(logits, begin, n_vocab, best, at);
        }
        return at;
    }
#endif
    float best = first;
    int32_t start = 0;
    for (const auto & [id, value] : biased) {
        if (id > start) {
            best = std::max(best, block_max(logits + start, id - start));
        }
        best = value > best ? value : best;
        start = id + 1;
    }
    if (start < n_vocab) {
        best = std::max(best, block_max(logits + start, n_vocab - start));
    }
    start = 0;
    for (const auto & [id, value] : biased) {
        for (int32_t i = start; i < id; i++) {
            if (logits[i] == best) {
                return i;
            }
        }
        if (value == best) {
            return id;
        }
        start = id + 1;
    }
    for (int32_t i = start; i < n_vocab; i++) {
        if (logits[i] == best) {
            return i;
        }
    }
    return 0;
}

// Two passes: the maxima of blocks of the logits give a threshold, the (k+1+b)-th largest
// maximum for b biased ids, that at least k+1+b logits reach (one per block), so at least
// k+1 unbiased ones; the second pass keeps the few unbiased logits at or above it, the
// biased values join them, and the k+1 best of those are the k+1 best of all (every
// unbiased logit left out is below the threshold, which the (k+1)-th kept one reaches).
bool fill_top_k(std::vector<llama_token_data> & cur, const float * logits, int32_t n_vocab,
                int32_t k, const biased_ids & biased) {
    const int32_t n_biased = (int32_t) biased.size();
    if (k <= 0 || k >= n_vocab || k > 1024 || n_biased > 1024) {
        return false;
    }
    const int32_t need = k + 1;
    const int32_t reach = need + n_biased;
    const int32_t block = n_vocab / (4 * reach);
    if (block < 8) {
        return false;
    }
    const int32_t n_blocks = n_vocab / block;
    thread_local std::vector<float> maxima;
    thread_local std::vector<float> ranked;
    thread_local std::vector<char> marked;
    maxima.resize(n_blocks);
    marked.assign(n_blocks, 1);  // without AVX2: every block scanned, as before
#ifdef LK_ARGMAX_AVX2
    const bool fast = has_avx2;
#else
    const bool fast = false;
#endif
    for (int32_t b = 0; b < n_blocks; b++) {
        const float * x = logits + (size_t) b * block;
#ifdef LK_ARGMAX_AVX2
        if (fast) {
            bool mark = false;
            maxima[b] = block_max_marked_avx2(x, block, mark);
            marked[b] = mark;
            continue;
        }
#endif
        maxima[b] = block_max(x, block);
    }
    ranked.assign(maxima.begin(), maxima.end());
    std::nth_element(ranked.begin(), ranked.begin() + (reach - 1), ranked.end(),
                     std::greater<float>());
    const float threshold = ranked[reach - 1];
    thread_local std::vector<std::pair<float, llama_token>> found;
    found.clear();
    // Only the blocks that can hold a logit at or above the threshold (or a NaN) are
    // scanned, in id order as a whole scan would: about reach of the 4 x reach blocks.
    const auto next = [&](llama_token id, llama_token end) {
#ifdef LK_ARGMAX_AVX2
        if (fast) {
            return next_reaching_avx2(logits, id, end, threshold);
        }
#endif
        return id;
    };
    const auto scan = [&](llama_token begin, llama_token end) {
        for (llama_token id = next(begin, end); id < end; id = next(id + 1, end)) {
            if (!(logits[id] < threshold)) {  // at or above it, or NaN
                if (std::isnan(logits[id])) {
                    return false;
                }
                if (n_biased == 0 || !is_biased(biased, id)) {
                    found.emplace_back(logits[id], id);
                }
            }
        }
        return true;
    };
    for (int32_t b = 0; b < n_blocks; b++) {
        if ((marked[b] || !(maxima[b] < threshold)) &&
            !scan((llama_token) b * block, (llama_token) (b + 1) * block)) {
            return false;
        }
    }
    if (!scan((llama_token) n_blocks * block, n_vocab)) {
        return false;
    }
    if ((int32_t) found.size() < need) {
        return false;  // the threshold is -inf or NaN-shadowed: not worth special-casing
    }
    for (const auto & [id, value] : biased) {
        if (std::isnan(value)) {
            return false;
        }
        found.emplace_back(value, id);
    }
    std::partial_sort(found.begin(), found.begin() + need, found.end(),
                      [](const std::pair<float, llama_token> & a,
                         const std::pair<float, llama_token> & b) { return a.first > b.first; });
    for (int32_t i = 0; i + 1 < need; i++) {
        if (!(found[i].first > found[i + 1].first)) {
            return false;  // a tie within the k, or between the k-th and the (k+1)-th
        }
    }
    cur.resize(k);
    for (int32_t i = 0; i < k; i++) {
        cur[i] = llama_token_data{found[i].second, found[i].first, 0.0f};
    }
    return true;
}

}  // namespace lk_fast

extern "C" {

struct llama_sampler * lk_sampler_init_logit_bias(int32_t n_vocab, int32_t n_logit_bias,
                                                  const llama_logit_bias * logit_bias) {
    llama_sampler * inner = llama_sampler_init_logit_bias(n_vocab, n_logit_bias, logit_bias);
    if (inner == nullptr) {
        return nullptr;
    }
    std::vector<llama_logit_bias> biases;
    if (n_logit_bias > 0) {
        biases.assign(logit_bias, logit_bias + n_logit_bias);
    }
    return llama_sampler_init(&bias_iface, new bias_stage{inner, std::move(biases), false});
}

}  // extern "C"
