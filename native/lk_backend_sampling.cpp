// Backend sampling (see lk_sampling.h): a sequence's sampler chain run by llama.cpp inside
// the decode's graph (llama_set_sampler), on the device that holds the output layer. The
// decode then copies each output's sampled token to the host instead of its n_vocab
// logits, and the host samples nothing.
//
// llama.cpp's rules that this file keeps from Python: a chain may be given to
// llama_set_sampler once in its life (a second time aborts: "backend_init() called
// twice"), and once given, its host-side apply skips the stages that ran in the graph. So
// the chain given is always a fresh device copy of the caller's chain, owned here, and
// the caller samples with its own chain as before: the shim maps it to its copy.
#include "lk_backend_sampling.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "lk_sampling.h"
#include "lk_sampling_fast.h"
#include "lk_sampling_many.h"

namespace {

// One sequence's device chain: llama.cpp holds `device` for `seq` of `ctx`; `host` is the
// chain the caller samples with (NULL once that chain was freed: its address may come
// back for another chain).
struct binding {
    llama_context * ctx;
    llama_seq_id seq;
    llama_sampler * host;
    llama_sampler * device;
};

std::mutex mutex;
std::vector<binding> bindings;       // few: one per attached sequence
std::atomic<int32_t> n_bindings{0};  // lets sampling without any binding skip the lock

// Whether llama.cpp can put `stage` into a graph (llama_set_sampler's own test).
bool offloadable(const llama_sampler * stage) {
    return stage != nullptr && stage->iface != nullptr &&
           stage->iface->backend_init != nullptr && stage->iface->backend_apply != nullptr;
}

// The device copy of `chain`: its stages cloned with their state (a random stage's
// generator, the penalties' history), the shim's bias stages as the llama.cpp stage they
// wrap. NULL, with the reason in `why`, when a stage cannot run in a graph.
llama_sampler * device_chain(llama_sampler * chain, std::string & why) {
    const int32_t n = llama_sampler_chain_n(chain);
    if (n <= 0) {
        why = "the sampler chain is empty";
        return nullptr;
    }
    std::vector<const llama_sampler *> stages;
    for (int32_t i = 0; i < n; i++) {
        const llama_sampler * stage = llama_sampler_chain_get(chain, i);
        const llama_sampler * inner = lk_fast::bias_inner(stage);
        stage = inner != nullptr ? inner : stage;
        if (!offloadable(stage)) {
            why = std::string("the stage '") + (stage ? llama_sampler_name(stage) : "?") +
                  "' cannot run in llama.cpp's graph";
            return nullptr;
        }
        stages.push_back(stage);
    }
    llama_sampler_chain_params params = llama_sampler_chain_default_params();
    params.no_perf = true;
    llama_sampler * device = llama_sampler_chain_init(params);
    for (const llama_sampler * stage : stages) {
        llama_sampler * copy = llama_sampler_clone(stage);
        if (copy == nullptr) {
            llama_sampler_free(device);
            why = "a stage could not be copied";
            return nullptr;
        }
        llama_sampler_chain_add(device, copy);
    }
    return device;
}

// Removes the binding of (ctx, seq), if any, freeing its device chain (llama.cpp must
// hold it no longer). Under `mutex`.
void drop(llama_context * ctx, llama_seq_id seq) {
    for (auto it = bindings.begin(); it != bindings.end(); ++it) {
        if (it->ctx == ctx && it->seq == seq) {
            llama_sampler_free(it->device);
            bindings.erase(it);
            break;
        }
    }
    n_bindings.store((int32_t) bindings.size());
}

llama_sampler * device_of(llama_sampler * host, llama_context * ctx) {
    if (n_bindings.load(std::memory_order_relaxed) == 0 || host == nullptr) {
        return nullptr;
    }
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto & b : bindings) {
        if (b.host == host && b.ctx == ctx) {
            return b.device;
        }
    }
    return nullptr;
}

}  // namespace

namespace lk_backend {

int32_t take(llama_sampler * chain, llama_context * ctx, int32_t idx, llama_token * token) {
    llama_sampler * device = device_of(chain, ctx);
    if (device == nullptr) {
        return 0;
    }
    llama_token found = llama_get_sampled_token_ith(ctx, idx);
    if (found == LLAMA_TOKEN_NULL) {
        // llama.cpp ran a prefix of the chain in the graph (a stage whose operations the
        // device lacks): the rest runs here over the candidates it left, as llama.cpp's
        // common_sampler does. The chain's apply skips the stages that ran.
        const float * probs = llama_get_sampled_probs_ith(ctx, idx);
        const float * logits = llama_get_sampled_logits_ith(ctx, idx);
        if (probs == nullptr && logits == nullptr) {
            return 0;  // nothing sampled for this output: its raw logits are there
        }
        const llama_token * ids = llama_get_sampled_candidates_ith(ctx, idx);
        const uint32_t count = probs != nullptr ? llama_get_sampled_probs_count_ith(ctx, idx)
                                                : llama_get_sampled_logits_count_ith(ctx, idx);
        thread_local std::vector<llama_token_data> cur;
        cur.resize(count);
        for (uint32_t i = 0; i < count; i++) {
            cur[i] = llama_token_data{ids[i], logits != nullptr ? logits[i] : 0.0f,
                                      probs != nullptr ? probs[i] : 0.0f};
        }
        llama_token_data_array cur_p = {cur.data(), cur.size(), -1, false};
        llama_sampler_apply(device, &cur_p);
        if (cur_p.selected < 0 || cur_p.selected >= (int64_t) cur_p.size) {
            lk_many::set_error("the sampler chain selected no token from the backend's "
                               "candidates");
            return LK_SAMPLE_NO_TOKEN;
        }
        found = cur_p.data[cur_p.selected].id;
    }
    llama_sampler_accept(device, found);
    llama_sampler_accept(chain, found);
    *token = found;
    return 1;
}

void after_host(llama_sampler * chain, llama_context * ctx, llama_token token) {
    llama_sampler * device = device_of(chain, ctx);
    if (device != nullptr) {
        llama_sampler_accept(device, token);
    }
}

}  // namespace lk_backend

extern "C" {

int32_t lk_backend_sampler_attach(struct llama_context * ctx, int32_t seq_id,
                                  struct llama_sampler * chain) {
    lk_many::set_error("");
    try {
        if (seq_id < 0 || (uint32_t) seq_id >= llama_n_seq_max(ctx)) {
            lk_many::set_error("sequence id " + std::to_string(seq_id) + " is outside 0.." +
                               std::to_string(llama_n_seq_max(ctx) - 1));
            return LK_SAMPLE_FAILED;
        }
        std::string why;
        llama_sampler * device = device_chain(chain, why);
        std::lock_guard<std::mutex> lock(mutex);
        if (device == nullptr) {
            // The sequence's previous chain must not stay: its outputs would have no raw
            // logits for the host to sample from.
            if (std::any_of(bindings.begin(), bindings.end(), [&](const binding & b) {
                    return b.ctx == ctx && b.seq == seq_id;
                })) {
                llama_set_sampler(ctx, seq_id, nullptr);
                drop(ctx, seq_id);
            }
            lk_many::set_error(why);
            return 0;
        }
        bool taken = false;
        try {
            taken = llama_set_sampler(ctx, seq_id, device);
        } catch (...) {
            llama_sampler_free(device);  // llama.cpp still holds the sequence's old chain
            throw;
        }
        // The sequence's previous device chain, if any, was replaced (taken) or dropped
        // (not taken) by llama.cpp just now.
        drop(ctx, seq_id);
        if (!taken) {
            llama_sampler_free(device);
            lk_many::set_error("llama.cpp cannot run this sampler chain in the graph");
            return 0;
        }
        bindings.push_back(binding{ctx, seq_id, chain, device});
        n_bindings.store((int32_t) bindings.size());
        return 1;
    } catch (const std::exception & err) {
        lk_many::set_error(err.what());
        return LK_SAMPLE_FAILED;
    }
}

int32_t lk_backend_sampler_rebind(struct llama_context * ctx, int32_t seq_id,
                                  struct llama_sampler * chain) {
    lk_many::set_error("");
    try {
        std::lock_guard<std::mutex> lock(mutex);
        auto found = std::find_if(bindings.begin(), bindings.end(), [&](const binding & b) {
            return b.ctx == ctx && b.seq == seq_id;
        });
        if (found == bindings.end() || chain == nullptr) {
            return 0;
        }
        llama_sampler * device = found->device;
        const int32_t n = llama_sampler_chain_n(chain);
        if (n <= 0 || n != llama_sampler_chain_n(device)) {
            return 0;
        }
        // Every pair checked before any is copied: llama_sampler_copy asserts equal kinds,
        // and a stage without copy_state would be replaced by a clone that lost what
        // llama_set_sampler's backend_init gave it.
        std::vector<std::pair<const llama_sampler *, llama_sampler *>> pairs;
        for (int32_t i = 0; i < n; i++) {
            const llama_sampler * stage = llama_sampler_chain_get(chain, i);
            const llama_sampler * inner = lk_fast::bias_inner(stage);
            stage = inner != nullptr ? inner : stage;
            llama_sampler * target = llama_sampler_chain_get(device, i);
            if (stage == nullptr || target == nullptr || stage->iface != target->iface ||
                target->iface->copy_state == nullptr) {
                return 0;
            }
            pairs.emplace_back(stage, target);
        }
        // The mutable state (a random stage's generator, the penalties' history) comes
        // from `chain`; what belongs to llama.cpp's reserved graph stays.
        for (const auto & pair : pairs) {
            llama_sampler_copy(pair.first, pair.second);
        }
        found->host = chain;
        return 1;
    } catch (const std::exception & err) {
        lk_many::set_error(err.what());
        return LK_SAMPLE_FAILED;
    }
}

int32_t lk_backend_sampler_detach(struct llama_context * ctx, int32_t seq_id) {
    lk_many::set_error("");
    try {
        std::lock_guard<std::mutex> lock(mutex);
        const bool bound = std::any_of(bindings.begin(), bindings.end(), [&](const binding & b) {
            return b.ctx == ctx && b.seq == seq_id;
        });
        if (!bound) {
            return 0;
        }
        llama_set_sampler(ctx, seq_id, nullptr);
        drop(ctx, seq_id);
        return 1;
    } catch (const std::exception & err) {
        lk_many::set_error(err.what());
        return LK_SAMPLE_FAILED;
    }
}

int32_t lk_backend_sampler_count(struct llama_context * ctx) {
    std::lock_guard<std::mutex> lock(mutex);
    return (int32_t) std::count_if(bindings.begin(), bindings.end(),
                                   [&](const binding & b) { return b.ctx == ctx; });
}

void lk_context_free(struct llama_context * ctx) {
    if (ctx == nullptr) {
        return;
    }
    std::vector<llama_sampler *> devices;
    {
        std::lock_guard<std::mutex> lock(mutex);
        for (auto it = bindings.begin(); it != bindings.end();) {
            if (it->ctx == ctx) {
                devices.push_back(it->device);
                it = bindings.erase(it);
            } else {
                ++it;
            }
        }
        n_bindings.store((int32_t) bindings.size());
    }
    llama_free(ctx);
    // llama_free frees none of the chains it was given: they go after the context that
    // pointed to them.
    for (llama_sampler * device : devices) {
        llama_sampler_free(device);
    }
}

void lk_sampler_free(struct llama_sampler * chain) {
    if (chain == nullptr) {
        return;
    }
    if (n_bindings.load() > 0) {
        std::lock_guard<std::mutex> lock(mutex);
        for (auto & b : bindings) {
            if (b.host == chain) {
                b.host = nullptr;  // the device chain stays with llama.cpp until detached
            }
        }
    }
    llama_sampler_free(chain);
}

}  // extern "C"
