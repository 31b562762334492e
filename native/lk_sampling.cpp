// llamakit's sampling shim; see lk_sampling.h for why each function exists.
#include "lk_sampling.h"
#include "lk_backend_sampling.h"
#include "lk_logprobs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// llama.cpp's own GBNF parser (an internal header of the pinned tree): parsing with it here
// gives the exact acceptance of llama_sampler_init_grammar, and its error text, which
// llama.cpp itself only prints to stderr.
#include "llama-grammar.h"
#include "llama-vocab.h"
#include "lk_sampling_many.h"
#include "lk_sampling_fast.h"
#include "lk_trigger.h"

namespace {

thread_local std::string last_error;

// What the last lk_sampler_sample of this thread left after its chain, for
// lk_logprobs_sampled (post-sampling probabilities): a pointer and a size, so that
// sampling without log-probabilities pays nothing for it.
thread_local const llama_token_data * last_candidates = nullptr;
thread_local size_t n_last_candidates = 0;

// Thrown through llama.cpp's chain code when a Python stage raised; Python keeps the
// exception itself.
struct python_error : std::exception {
    const char * what() const noexcept override { return "a Python sampler raised"; }
};

// A grammar stage met a token it does not allow (llama.cpp would abort or terminate).
struct grammar_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// -- grammar parse check ------------------------------------------------------------------

// Same as the static parse_space of llama-grammar.cpp.
const char * skip_space(const char * pos, bool newline_ok) {
    while (*pos == ' ' || *pos == '\t' || *pos == '#' ||
           (newline_ok && (*pos == '\r' || *pos == '\n'))) {
        if (*pos == '#') {
            while (*pos && *pos != '\r' && *pos != '\n') {
                pos++;
            }
        } else {
            pos++;
        }
    }
    return pos;
}

// llama_grammar_parser::parse without the stderr print: the checks of the pinned tree, in
// its order, with the failing message kept.
bool check_grammar(const llama_vocab * vocab, const char * text, const char * root,
                   std::string & error) {
    llama_grammar_parser parser(vocab);
    const char * rule = text;
    try {
        const char * pos = skip_space(text, true);
        while (*pos) {
            rule = pos;
            pos = parser.parse_rule(pos);
        }
    } catch (const std::exception & err) {
        error = err.what();
        if (error.find(" at ") == std::string::npos) {
            // llama.cpp gives no position with some messages ("unexpected end of input"):
            // name the rule it was parsing, in its "... at <rest>" form for Python to place.
            if (error == "unexpected end of input") {
                error += " (the grammar ends inside a string, character class or group)";
            }
            error += " in the rule at ";
            error += rule;
        }
        return false;
    }
    for (size_t i = 0; i < parser.rules.size(); i++) {
        bool undefined = parser.rules[i].empty();
        uint32_t missing = (uint32_t) i;
        for (const auto & elem : parser.rules[i]) {
            if (elem.type == LLAMA_GRETYPE_RULE_REF &&
                (elem.value >= parser.rules.size() || parser.rules[elem.value].empty())) {
                undefined = true;
                missing = elem.value;
                break;
            }
        }
        if (undefined) {
            for (const auto & kv : parser.symbol_ids) {
                if (kv.second == missing) {
                    error = "undefined rule '" + kv.first + "'";
                    return false;
                }
            }
            error = "undefined rule";
            return false;
        }
    }
    if (parser.rules.empty()) {
        error = "the grammar has no rules";
        return false;
    }
    if (parser.symbol_ids.find(root) == parser.symbol_ids.end()) {
        error = std::string("the grammar has no rule named '") + root + "' (its root)";
        return false;
    }
    return true;
}

// -- the guarded grammar stage ------------------------------------------------------------

// llama.cpp's grammar sampler (src/llama-sampler.cpp) over its own llama_grammar, with the
// lazy wait owned here: llama.cpp's lazy grammar searches the whole output every token
// (O(output) a token; its recursive std::regex overflowed the stack on long outputs), the
// waiter only a bounded tail. The grammar itself is always llama.cpp's non-lazy one, given
// at the trigger exactly what llama.cpp's lazy grammar gives it (llama_grammar_accept_token
// with the cut first piece: internal API, the one way to replay part of a token).
struct grammar_stage {
    const llama_vocab * vocab;
    std::string text;  // parsed again on reset, as llama.cpp's grammar sampler does
    std::string root;
    llama_grammar * grammar;
    bool bypass;  // set by lk_sampler_sample for its first, unconstrained pass
    bool lazy;
    bool awaiting;
    lk_trigger::waiter waiter;
    // Tokens the grammar has seen before generation starts (a chat template's generation
    // prompt, which llama.cpp's tool-call grammars begin with), accepted again on reset.
    std::vector<llama_token> prefill = {};

    ~grammar_stage() {
        llama_grammar_free_impl(grammar);
    }
};

bool grammar_allows(grammar_stage * g, llama_token token) {
    if (g->awaiting) {
        return true;  // llama.cpp's apply constrains nothing before the trigger
    }
    llama_token_data data = {token, 0.0f, 0.0f};
    llama_token_data_array one = {&data, 1, -1, false};
    llama_grammar_apply_impl(*g->grammar, &one);
    return data.logit != -INFINITY;
}

void grammar_accept_token(grammar_stage * g, llama_token token) {
    if (g->awaiting) {
        thread_local std::vector<std::pair<llama_token, std::string>> replay;
        if (g->waiter.accept(token, g->vocab->token_to_piece(token), replay)) {
            g->awaiting = false;
            for (const auto & [tok, piece] : replay) {
                llama_grammar_accept_token(*g->grammar, tok, piece);
            }
        }
        return;
    }
    llama_grammar_accept_impl(*g->grammar, token);
}

void grammar_prefill(grammar_stage * g) {
    for (llama_token token : g->prefill) {
        if (!grammar_allows(g, token)) {
            throw grammar_error("the grammar does not allow its prefill token " +
                                std::to_string(token));
        }
        grammar_accept_token(g, token);
    }
}

const char * grammar_name(const llama_sampler * /*smpl*/) {
    return "grammar";
}

void grammar_accept(llama_sampler * smpl, llama_token token) {
    auto * g = (grammar_stage *) smpl->ctx;
    // llama.cpp aborts on a forbidden end-of-generation token and throws (through its C
    // API, so the process terminates) on any other forbidden token.
    if (!grammar_allows(g, token)) {
        throw grammar_error("the grammar does not allow token " + std::to_string(token));
    }
    try {
        grammar_accept_token(g, token);
    } catch (const std::exception & err) {  // a lazy grammar's replay after its trigger
        throw grammar_error(err.what());
    }
}

void grammar_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    auto * g = (grammar_stage *) smpl->ctx;
    if (!g->bypass && !g->awaiting) {
        llama_grammar_apply_impl(*g->grammar, cur_p);
    }
}

void grammar_reset(llama_sampler * smpl) {
    auto * g = (grammar_stage *) smpl->ctx;
    llama_grammar * fresh = llama_grammar_init_impl(g->vocab, g->text.c_str(), g->root.c_str(),
                                                    false, nullptr, 0, nullptr, 0);
    if (fresh == nullptr) {
        throw grammar_error("llama.cpp could not parse the grammar again");
    }
    llama_grammar_free_impl(g->grammar);
    g->grammar = fresh;
    g->awaiting = g->lazy;
    g->waiter.clear();
    grammar_prefill(g);
}

llama_sampler * grammar_clone(const llama_sampler * smpl);

void grammar_free(llama_sampler * smpl) {
    delete (grammar_stage *) smpl->ctx;
}

llama_sampler_i grammar_iface = {
    /* .name              = */ grammar_name,
    /* .accept            = */ grammar_accept,
    /* .apply             = */ grammar_apply,
    /* .reset             = */ grammar_reset,
    /* .clone             = */ grammar_clone,
    /* .free              = */ grammar_free,
    /* .backend_init      = */ nullptr,
    /* .backend_accept    = */ nullptr,
    /* .backend_apply     = */ nullptr,
    /* .backend_set_input = */ nullptr,
    /* .backend_reset     = */ nullptr,
    /* .copy_state        = */ nullptr,
};

grammar_stage * new_grammar_stage(const llama_vocab * vocab, std::string text, std::string root,
                                  llama_grammar * grammar, bool lazy, bool awaiting,
                                  lk_trigger::waiter waiter, std::vector<llama_token> prefill) {
    return new grammar_stage{vocab, std::move(text), std::move(root), grammar, false, lazy,
                             awaiting, std::move(waiter), std::move(prefill)};
}

llama_sampler * grammar_clone(const llama_sampler * smpl) {
    const auto * g = (const grammar_stage *) smpl->ctx;
    llama_grammar * grammar = llama_grammar_clone_impl(*g->grammar);
    return llama_sampler_init(&grammar_iface,
                              new_grammar_stage(g->vocab, g->text, g->root, grammar, g->lazy,
                                                g->awaiting, g->waiter, g->prefill));
}

// -- the Python stage ---------------------------------------------------------------------

struct python_stage {
    void * handle;
    std::string name;
    int32_t flags;
};

const char * python_name(const llama_sampler * smpl) {
    return ((const python_stage *) smpl->ctx)->name.c_str();
}

void python_accept(llama_sampler * smpl, llama_token token) {
    auto * p = (python_stage *) smpl->ctx;
    if ((p->flags & LK_PY_HAS_ACCEPT) && !lk_py_sampler_accept(p->handle, token)) {
        throw python_error();
    }
}

void python_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    if (!lk_py_sampler_apply(((python_stage *) smpl->ctx)->handle, cur_p)) {
        throw python_error();
    }
}

void python_reset(llama_sampler * smpl) {
    auto * p = (python_stage *) smpl->ctx;
    if ((p->flags & LK_PY_HAS_RESET) && !lk_py_sampler_reset(p->handle)) {
        throw python_error();
    }
}

llama_sampler * python_clone(const llama_sampler * smpl) {
    const auto * p = (const python_stage *) smpl->ctx;
    void * handle = lk_py_sampler_clone(p->handle);
    if (handle == nullptr) {
        throw python_error();
    }
    return lk_sampler_init_python(handle, p->name.c_str(), p->flags);
}

void python_free(llama_sampler * smpl) {
    auto * p = (python_stage *) smpl->ctx;
    lk_py_sampler_free(p->handle);
    delete p;
}

llama_sampler_i python_iface = {
    /* .name              = */ python_name,
    /* .accept            = */ python_accept,
    /* .apply             = */ python_apply,
    /* .reset             = */ python_reset,
    /* .clone             = */ python_clone,
    /* .free              = */ python_free,
    /* .backend_init      = */ nullptr,
    /* .backend_accept    = */ nullptr,
    /* .backend_apply     = */ nullptr,
    /* .backend_set_input = */ nullptr,
    /* .backend_reset     = */ nullptr,
    /* .copy_state        = */ nullptr,
};

// -- helpers ------------------------------------------------------------------------------

int32_t fail(const char * message) {
    last_error = message;
    return LK_SAMPLE_FAILED;
}

// Runs `body` (returning a token or an LK_SAMPLE_ status) with last_error cleared, and
// turns what llama.cpp or a stage throws into a status: nothing unwinds into C callers.
template <typename F>
int32_t guarded(F && body) {
    last_error.clear();
    try {
        return body();
    } catch (const python_error &) {
        return LK_SAMPLE_PYTHON;
    } catch (const grammar_error & err) {
        last_error = err.what();
        return LK_SAMPLE_GRAMMAR;
    } catch (const std::exception & err) {
        return fail(err.what());
    }
}

void fill(std::vector<llama_token_data> & cur, const float * logits, int32_t n_vocab) {
    cur.resize(n_vocab);
    for (llama_token id = 0; id < n_vocab; id++) {
        cur[id] = llama_token_data{id, logits[id], 0.0f};
    }
}

// Apply `chain` to fresh candidates from `logits`; the selected token or an error code.
// `top_k` > 0 says that the chain's first stage after its leading bias stages is top-k(top_k)
// (checked by name); those bias stages' biases are then folded into the k candidates and
// the stages pass through (lk_fast::fill_top_k).
llama_token select(llama_sampler * chain, std::vector<llama_token_data> & cur,
                   const float * logits, int32_t n_vocab, int32_t top_k) {
    thread_local lk_fast::biased_ids biased;
    int32_t n_bias = 0;
    bool sorted = false;
    if (top_k > 0) {
        n_bias = lk_fast::leading_biases(chain, logits, n_vocab, biased);
        const llama_sampler * next = llama_sampler_chain_get(chain, n_bias);
        sorted = next != nullptr && std::strcmp(llama_sampler_name(next), "top-k") == 0 &&
                 lk_fast::fill_top_k(cur, logits, n_vocab, top_k, biased);
    }
    if (!sorted) {
        n_bias = 0;
        fill(cur, logits, n_vocab);
    }
    llama_token_data_array cur_p = {cur.data(), cur.size(), -1, sorted};
    {
        lk_fast::bias_bypass bypass(chain, n_bias);
        llama_sampler_apply(chain, &cur_p);
        last_candidates = cur_p.data;
        n_last_candidates = cur_p.size;
    }
    if (cur_p.selected < 0 || cur_p.selected >= (int64_t) cur_p.size) {
        last_error = "the sampler chain selected no token: end it with a selecting stage "
                     "(greedy, dist, mirostat, mirostat_v2 or adaptive_p)";
        return LK_SAMPLE_NO_TOKEN;
    }
    return cur_p.data[cur_p.selected].id;
}

// A chain of greedy after nothing but bias stages reads nothing but the (biased) logits:
// its token, or -1 when the chain is not of that form.
llama_token greedy_only(llama_sampler * chain, const float * logits, int32_t n_vocab) {
    const int32_t n = llama_sampler_chain_n(chain);
    if (n < 1) {
        return -1;
    }
    const llama_sampler * last = llama_sampler_chain_get(chain, n - 1);
    if (last == nullptr || std::strcmp(llama_sampler_name(last), "greedy") != 0) {
        return -1;
    }
    for (int32_t i = 0; i + 1 < n; i++) {
        if (!lk_fast::is_bias_stage(llama_sampler_chain_get(chain, i))) {
            return -1;
        }
    }
    thread_local lk_fast::biased_ids biased;
    lk_fast::leading_biases(chain, logits, n_vocab, biased);
    return lk_fast::argmax(logits, n_vocab, biased);
}

// Clears the grammars' bypass flags however the sampling call ends.
struct bypass_guard {
    std::vector<grammar_stage *> & stages;
    ~bypass_guard() {
        for (auto * g : stages) {
            g->bypass = false;
        }
    }
};


}  // namespace

namespace lk_many {

bool is_python_stage(const llama_sampler * smpl) {
    return smpl != nullptr && smpl->iface == &python_iface;
}

void set_error(const std::string & message) {
    last_error = message;
}

void forget_candidates() {
    last_candidates = nullptr;
    n_last_candidates = 0;
}

}  // namespace lk_many

extern "C" {

const char * lk_last_error(void) {
    return last_error.c_str();
}

struct llama_sampler * lk_sampler_init_grammar(
        const struct llama_vocab * vocab, const char * grammar, const char * root, bool lazy,
        const char ** trigger_patterns, const char ** trigger_searches,
        const int32_t * trigger_reaches, size_t n_trigger_patterns,
        const llama_token * trigger_tokens, size_t n_trigger_tokens) {
    last_error.clear();
    try {
        if (!check_grammar(vocab, grammar, root, last_error)) {
            return nullptr;
        }
        lk_trigger::waiter waiter;
        if (lazy) {  // std::regex_error from a trigger pattern
            waiter = lk_trigger::make_waiter(trigger_patterns, trigger_searches, trigger_reaches,
                                             n_trigger_patterns, trigger_tokens,
                                             n_trigger_tokens);
        }
        llama_grammar * parsed =
            llama_grammar_init_impl(vocab, grammar, root, false, nullptr, 0, nullptr, 0);
        if (parsed == nullptr) {
            return nullptr;  // llama.cpp logged why (left recursion)
        }
        return llama_sampler_init(&grammar_iface,
                                  new_grammar_stage(vocab, grammar, root, parsed, lazy, lazy,
                                                    std::move(waiter), {}));
    } catch (const std::exception & err) {
        last_error = err.what();
        return nullptr;
    }
}

uint64_t lk_sampler_grammar_scanned(const struct llama_sampler * smpl) {
    if (smpl == nullptr || smpl->iface != &grammar_iface) {
        return 0;
    }
    return ((const grammar_stage *) smpl->ctx)->waiter.scanned;
}

bool lk_sampler_is_grammar(const struct llama_sampler * smpl) {
    return smpl != nullptr && smpl->iface == &grammar_iface;
}

int32_t lk_sampler_grammar_prefill(struct llama_sampler * smpl, const llama_token * tokens,
                                   size_t n_tokens) {
    last_error.clear();
    if (!lk_sampler_is_grammar(smpl)) {
        last_error = "not a grammar stage";
        return LK_SAMPLE_GRAMMAR;
    }
    auto * g = (grammar_stage *) smpl->ctx;
    try {
        g->prefill.assign(tokens, tokens + n_tokens);
        grammar_reset(smpl);
        return 0;
    } catch (const std::exception & err) {
        last_error = err.what();
        return LK_SAMPLE_GRAMMAR;
    }
}

struct llama_sampler * lk_sampler_init_python(void * handle, const char * name, int32_t flags) {
    return llama_sampler_init(&python_iface, new python_stage{handle, name, flags});
}

llama_token lk_sampler_sample(struct llama_sampler * chain, struct llama_context * ctx,
                              int32_t idx, int32_t top_k) {
    llama_token token = -1;
    // a chain attached to the context for backend sampling: the decode sampled already
    const int32_t taken = guarded([&] { return lk_backend::take(chain, ctx, idx, &token); });
    if (taken != 0) {
        return taken < 0 ? taken : token;
    }
    const float * logits = llama_get_logits_ith(ctx, idx);
    if (logits == nullptr) {
        last_error = "the context holds no logits for output " + std::to_string(idx);
        return LK_SAMPLE_NO_LOGITS;
    }
    const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
    token = lk_sampler_sample_logits(chain, logits, n_vocab, top_k);
    if (token < 0) {
        return token;
    }
    const int32_t kept = guarded([&] {
        lk_backend::after_host(chain, ctx, token);
        return LK_SAMPLE_OK;
    });
    return kept < 0 ? kept : token;
}

llama_token lk_sampler_sample_logits(struct llama_sampler * chain, const float * logits,
                                     int32_t n_vocab, int32_t top_k) {
    thread_local std::vector<llama_token_data> cur;
    thread_local std::vector<grammar_stage *> grammars;
    return guarded([&]() -> llama_token {
        last_candidates = nullptr;
        n_last_candidates = 0;
        if (top_k >= 0) {
            const llama_token greedy = greedy_only(chain, logits, n_vocab);
            if (greedy >= 0) {
                llama_sampler_accept(chain, greedy);
                return greedy;
            }
        }
        grammars.clear();
        for (int32_t i = 0, n = llama_sampler_chain_n(chain); i < n; i++) {
            llama_sampler * stage = llama_sampler_chain_get(chain, i);
            if (stage != nullptr && stage->iface == &grammar_iface) {
                grammars.push_back((grammar_stage *) stage->ctx);
            }
        }
        llama_token token;
        {
            bypass_guard guard{grammars};
            for (auto * g : grammars) {
                g->bypass = true;
            }
            token = select(chain, cur, logits, n_vocab, top_k);
            if (token < 0) {
                return token;
            }
            bool allowed = true;
            for (auto * g : grammars) {
                allowed = allowed && grammar_allows(g, token);
            }
            if (!allowed) {
                for (auto * g : grammars) {
                    g->bypass = false;
                }
                token = select(chain, cur, logits, n_vocab, top_k);
                if (token < 0) {
                    return token;
                }
            }
        }
        llama_sampler_accept(chain, token);
        return token;
    });
}

llama_token lk_sampler_sample_piece(struct llama_sampler * chain, struct llama_context * ctx,
                                    int32_t idx, int32_t top_k, bool special, bool * is_eog,
                                    char * piece, int32_t piece_cap, int32_t * n_piece) {
    const llama_token token = lk_sampler_sample(chain, ctx, idx, top_k);
    if (token < 0) {
        return token;
    }
    return guarded([&]() -> llama_token {
        const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
        *is_eog = llama_vocab_is_eog(vocab, token);
        *n_piece = llama_token_to_piece(vocab, token, piece, piece_cap, 0, special);
        return token;
    });
}

int32_t lk_sampler_apply(struct llama_sampler * chain, llama_token_data_array * cur_p) {
    return guarded([&] {
        llama_sampler_apply(chain, cur_p);
        return LK_SAMPLE_OK;
    });
}

int32_t lk_sampler_accept(struct llama_sampler * smpl, llama_token token) {
    return guarded([&] {
        llama_sampler_accept(smpl, token);
        return LK_SAMPLE_OK;
    });
}

int32_t lk_sampler_accept_history(struct llama_sampler * chain, const llama_token * tokens,
                                  size_t n_tokens) {
    return guarded([&] {
        for (int32_t i = 0, n = llama_sampler_chain_n(chain); i < n; i++) {
            llama_sampler * stage = llama_sampler_chain_get(chain, i);
            if (stage == nullptr || stage->iface == &grammar_iface) {
                continue;
            }
            for (size_t t = 0; t < n_tokens; t++) {
                llama_sampler_accept(stage, tokens[t]);
            }
        }
        return LK_SAMPLE_OK;
    });
}

int32_t lk_sampler_reset(struct llama_sampler * smpl) {
    return guarded([&] {
        llama_sampler_reset(smpl);
        return LK_SAMPLE_OK;
    });
}

struct llama_sampler * lk_sampler_clone(const struct llama_sampler * smpl) {
    last_error.clear();
    try {
        return llama_sampler_clone(smpl);
    } catch (const python_error &) {
        last_error = "python";
        return nullptr;
    } catch (const std::exception & err) {
        last_error = err.what();
        return nullptr;
    }
}

const llama_token_data * lk_sampler_last_candidates(size_t * n) {
    *n = n_last_candidates;
    return last_candidates;
}

void lk_free(void * ptr) {
    free(ptr);
}

}  // extern "C"
