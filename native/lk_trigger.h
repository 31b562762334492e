/* A lazy grammar's wait for its trigger (lk_trigger.cpp), internal to the C++ files: the
 * cffi module includes every native/*.h from C, so everything here is C++-only. */
#ifndef LK_TRIGGER_H
#define LK_TRIGGER_H

#ifdef __cplusplus

#include <cstddef>
#include <cstdint>
#include <deque>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"

namespace lk_trigger {

// One trigger pattern as the shim matches it (see llamakit/_grammar_triggers.py).
struct pattern {
    std::regex search;  // what is searched over the tail of the output
    bool whole_first;   // llama.cpp's "^...$" patterns: regex_match over the whole output first
    size_t reach;       // a new match starts at most this many bytes before the new piece
};

// A token whose piece is (partly) in the kept tail: what a trigger replays.
struct piece_at {
    llama_token token;
    size_t begin;  // absolute byte offsets in the output
    size_t end;
};

// llama.cpp's lazy-grammar wait (llama_grammar_accept_impl while awaiting_trigger) with a
// bounded tail instead of the whole output: the same trigger, the same replay.
struct waiter {
    std::vector<pattern> patterns;
    std::vector<llama_token> tokens;
    size_t keep = 0;          // the largest reach: bytes kept before the newest piece
    std::string tail;         // output bytes [base, base + tail.size())
    size_t base = 0;
    std::deque<piece_at> pieces;
    uint64_t scanned = 0;     // bytes given to std::regex since creation (tests, benchmarks)

    void clear();

    // Accept `token` with its `piece` while waiting. False: still waiting. True: the
    // trigger fired; `replay` holds what llama.cpp gives the grammar (the trigger token
    // with its whole piece, or the pieces from the match's start, the first one cut).
    bool accept(llama_token token, const std::string & piece,
                std::vector<std::pair<llama_token, std::string>> & replay);
};

// Compile `patterns[i]` (checked as llama.cpp would) and `searches[i]` with `reaches[i]`.
// Throws std::regex_error on an invalid pattern, std::invalid_argument on a bad reach.
waiter make_waiter(const char ** patterns, const char ** searches, const int32_t * reaches,
                   size_t n_patterns, const llama_token * tokens, size_t n_tokens);

}  // namespace lk_trigger

#endif  // __cplusplus

#endif
