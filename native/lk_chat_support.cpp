// What llama.cpp's chat code (lk_chat.sources) needs from common.cpp and log.cpp, written
// here against llama.h: those two files pull in far more (model loading, downloads, a
// logging thread). The chat code's warnings and errors are kept for lk_chat.cpp to return.
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

#include "common.h"
#include "log.h"
#include "llama.h"

thread_local std::string lk_chat_log;

struct common_log {};

namespace {
common_log the_log;
}

int common_log_get_verbosity_thold(void) {
    return LOG_LEVEL_WARN;  // debug and info lines are never formatted
}

struct common_log * common_log_main() {
    return &the_log;
}

void common_log_add(struct common_log * /*log*/, enum ggml_log_level level, const char * fmt, ...) {
    if (level != GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_ERROR) {
        return;
    }
    char buf[2048];
    va_list args;
    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    if (lk_chat_log.size() < 16384) {
        lk_chat_log += buf;
    }
}

void string_replace_all(std::string & s, const std::string & search, const std::string & replace) {
    if (search.empty()) {
        return;
    }
    std::string out;
    size_t from = 0;
    for (size_t at = s.find(search); at != std::string::npos; at = s.find(search, from)) {
        out.append(s, from, at - from);
        out += replace;
        from = at + search.size();
    }
    out.append(s, from, std::string::npos);
    s.swap(out);
}

std::vector<llama_token> common_tokenize(const struct llama_vocab * vocab, const std::string & text,
                                         bool add_special, bool parse_special) {
    std::vector<llama_token> tokens(text.size() + 2);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(),
                               (int32_t) tokens.size(), add_special, parse_special);
    if (n < 0) {
        tokens.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), tokens.data(),
                           (int32_t) tokens.size(), add_special, parse_special);
    }
    tokens.resize(n < 0 ? 0 : n);
    return tokens;
}

std::string common_token_to_piece(const struct llama_vocab * vocab, llama_token token, bool special) {
    std::string piece(16, '\0');
    int32_t n = llama_token_to_piece(vocab, token, &piece[0], (int32_t) piece.size(), 0, special);
    if (n < 0) {
        piece.resize(-n);
        n = llama_token_to_piece(vocab, token, &piece[0], (int32_t) piece.size(), 0, special);
    }
    piece.resize(n < 0 ? 0 : n);
    return piece;
}
