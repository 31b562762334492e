// llama.cpp's JSON-schema-to-GBNF converter, compiled from the pinned tree into the module
// (common/ is not part of the static libraries), behind a C function that never throws.
#include "lk_sampling.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <sstream>
#include <string>

#include "common.h"
#include "json-schema-to-grammar.h"

namespace {

thread_local std::string schema_warnings;

// The converter prints "WARNING: JSON schema conversion was incomplete" straight to stderr;
// the one fprintf of that file is routed here so Python can log it instead.
int collect_warning(FILE * /*stream*/, const char * format, ...) {
    char buf[4096];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(buf, sizeof(buf), format, args);
    va_end(args);
    schema_warnings += buf;
    return n;
}

char * copy_string(const std::string & text) {
    char * out = (char *) malloc(text.size() + 1);
    if (out != nullptr) {
        memcpy(out, text.c_str(), text.size() + 1);
    }
    return out;
}

}  // namespace

#define fprintf collect_warning
#include "json-schema-to-grammar.cpp"
#undef fprintf

extern "C" char * lk_json_schema_to_grammar(const char * schema_json, int32_t * status,
                                            char ** warnings) {
    schema_warnings.clear();
    *warnings = nullptr;
    std::string result;
    try {
        result = json_schema_to_grammar(common_json::parse(schema_json), /* force_gbnf = */ true);
        *status = 0;
    } catch (const std::exception & err) {
        result = err.what();
        *status = 1;
    }
    if (!schema_warnings.empty()) {
        *warnings = copy_string(schema_warnings);
    }
    return copy_string(result);
}
