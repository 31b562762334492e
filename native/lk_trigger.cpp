// A lazy grammar's wait for its trigger, matched over a bounded tail of the output; see
// lk_trigger.h and llamakit/_grammar_triggers.py (which computes each pattern's reach).
#include "lk_trigger.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace lk_trigger {

namespace {

// llama_grammar_trigger_pattern::find's start: the first capture group that matched
// something, else the whole match.
template <typename M>
size_t start_of(const M & match) {
    for (size_t i = 1; i < match.size(); i++) {
        if (match.length(i) > 0) {
            return (size_t) match.position(i);
        }
    }
    return (size_t) match.position(0);
}

}  // namespace

void waiter::clear() {
    tail.clear();
    base = 0;
    pieces.clear();
}

bool waiter::accept(llama_token token, const std::string & piece,
                    std::vector<std::pair<llama_token, std::string>> & replay) {
    replay.clear();
    if (std::find(tokens.begin(), tokens.end(), token) != tokens.end()) {
        clear();
        replay.emplace_back(token, piece);
        return true;
    }
    const size_t before = base + tail.size();
    const size_t end = before + piece.size();
    pieces.push_back({token, before, end});
    tail += piece;
    size_t start = std::string::npos;
    for (const auto & p : patterns) {
        // A match that was not there before this piece ends in it or looks at it, so it
        // starts at most p.reach bytes before it (see _grammar_triggers.py); before then,
        // only llama.cpp's whole-output match of a "^...$" pattern can differ from a search.
        if (p.whole_first && end <= p.reach) {
            std::smatch match;
            scanned += tail.size();
            if (std::regex_match(tail, match, p.search)) {
                start = start_of(match);
                break;
            }
        }
        const size_t from = before > p.reach ? before - p.reach : 0;  // >= base: see trim
        std::match_results<std::string::const_iterator> match;
        const auto flags = from > 0 ? std::regex_constants::match_prev_avail
                                    : std::regex_constants::match_default;
        scanned += end - from;
        if (std::regex_search(tail.cbegin() + (std::ptrdiff_t) (from - base), tail.cend(),
                              match, p.search, flags)) {
            start = from + start_of(match);
            break;
        }
    }
    if (start != std::string::npos) {
        // As llama.cpp: every token that reaches past the start, the first one cut there.
        for (const auto & at : pieces) {
            if (at.end <= start) {
                continue;
            }
            const size_t from = std::max(at.begin, start);
            replay.emplace_back(at.token, tail.substr(from - base, at.end - from));
        }
        clear();
        return true;
    }
    // Keep the last `keep` bytes (the next window's start), dropping in chunks.
    if (tail.size() > 2 * keep + 4096) {
        const size_t cut = end - keep - base;
        tail.erase(0, cut);
        base += cut;
        while (!pieces.empty() && pieces.front().end <= base) {
            pieces.pop_front();
        }
    }
    return false;
}

waiter make_waiter(const char ** patterns, const char ** searches, const int32_t * reaches,
                   size_t n_patterns, const llama_token * tokens, size_t n_tokens) {
    waiter w;
    for (size_t i = 0; i < n_patterns; i++) {
        const std::string text = patterns[i];
        std::regex checked(text);  // llama.cpp compiles the pattern as given: same errors
        if (reaches[i] <= 0) {
            throw std::invalid_argument("a trigger pattern's reach must be positive");
        }
        const bool same = std::strcmp(patterns[i], searches[i]) == 0;
        w.patterns.push_back(pattern{
            same ? std::move(checked) : std::regex(searches[i]),
            same && !text.empty() && text.front() == '^' && text.back() == '$',
            (size_t) reaches[i]});
        w.keep = std::max(w.keep, (size_t) reaches[i]);
    }
    w.tokens.assign(tokens, tokens + n_tokens);
    return w;
}

}  // namespace lk_trigger
