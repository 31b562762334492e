// The parts of llama.cpp's common/ that its JSON-schema converter needs (see
// lk_json_schema.cpp), compiled from the pinned tree. common.cpp itself pulls in far more
// (logging, downloads, ...), so its three string helpers are repeated here verbatim.
#include <sstream>
#include <string>
#include <vector>

// json.cpp first: it specialises common_json::get<T>, which json-schema.cpp uses.
#include "json.cpp"
#include "json-schema.cpp"
#include "trie.cpp"
#include "unicode.cpp"

std::string string_join(const std::vector<std::string> & values, const std::string & separator) {
    std::ostringstream result;
    for (size_t i = 0; i < values.size(); ++i) {
        if (i > 0) {
            result << separator;
        }
        result << values[i];
    }
    return result.str();
}

std::vector<std::string> string_split(const std::string & str, const std::string & delimiter) {
    std::vector<std::string> parts;
    size_t start = 0;
    size_t end = str.find(delimiter);
    while (end != std::string::npos) {
        parts.push_back(str.substr(start, end - start));
        start = end + delimiter.length();
        end = str.find(delimiter, start);
    }
    parts.push_back(str.substr(start));
    return parts;
}

std::string string_repeat(const std::string & str, size_t n) {
    if (n == 0) {
        return "";
    }
    std::string result;
    result.reserve(str.length() * n);
    for (size_t i = 0; i < n; ++i) {
        result += str;
    }
    return result;
}
