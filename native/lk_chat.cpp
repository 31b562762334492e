// llama.cpp's own chat layer (common/chat.*: templates with tools, tool-call grammars and
// triggers, the per-family output parsers), compiled from the pinned tree (the sources listed
// in lk_chat.sources) behind two C functions that take and return JSON and never throw.
// llamakit renders and parses nothing of this itself: what llama-server does, it does here.
#include "lk_chat.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "chat.h"
#include "common.h"
#include "json.h"

using json = common_json;

extern thread_local std::string lk_chat_log;  // lk_chat_support.cpp

namespace {

char * copy_out(const std::string & text) {
    char * out = (char *) malloc(text.size() + 1);
    if (out != nullptr) {
        memcpy(out, text.c_str(), text.size() + 1);
    }
    return out;
}

const char * trigger_type_name(common_grammar_trigger_type type) {
    switch (type) {
        case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:        return "token";
        case COMMON_GRAMMAR_TRIGGER_TYPE_WORD:         return "word";
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:      return "pattern";
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: return "pattern_full";
    }
    return "unknown";
}

bool flag(const json & obj, const char * key, bool def) {
    return obj.contains(key) && obj.at(key).is_boolean() ? obj.at(key).get<bool>() : def;
}

std::string text(const json & obj, const char * key, const std::string & def = "") {
    return obj.contains(key) && obj.at(key).is_string() ? obj.at(key).get<std::string>() : def;
}

std::string apply(const char * tmpl, const char * bos, const char * eos, const char * request) {
    lk_chat_log.clear();
    const json in = json::parse(request);
    auto templates = common_chat_templates_init(nullptr, tmpl, bos, eos);

    common_chat_templates_inputs inputs;
    inputs.messages = common_chat_msgs_parse_oaicompat(in.at("messages"));
    if (in.contains("tools") && in.at("tools").is_array()) {
        inputs.tools = common_chat_tools_parse_oaicompat(in.at("tools"));
    }
    inputs.tool_choice = common_chat_tool_choice_parse_oaicompat(text(in, "tool_choice", "auto"));
    inputs.parallel_tool_calls = flag(in, "parallel_tool_calls", false);
    inputs.add_generation_prompt = flag(in, "add_generation_prompt", true);
    if (flag(in, "continue_final_message", false)) {
        inputs.continue_final_message = COMMON_CHAT_CONTINUATION_AUTO;
        inputs.add_generation_prompt = false;
    }
    inputs.reasoning_format = common_reasoning_format_from_name(text(in, "reasoning_format", "none"));
    inputs.enable_thinking = flag(in, "enable_thinking", true);
    inputs.json_schema = text(in, "json_schema");
    inputs.grammar = text(in, "grammar");
    inputs.add_bos = flag(in, "add_bos", false);
    inputs.add_eos = flag(in, "add_eos", false);
    if (in.contains("chat_template_kwargs") && in.at("chat_template_kwargs").is_object()) {
        const json & kwargs = in.at("chat_template_kwargs");
        for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
            inputs.chat_template_kwargs[it.key()] = it.value().dump();
        }
    }
    if (in.contains("now") && in.at("now").is_number()) {
        inputs.now = std::chrono::system_clock::time_point(
            std::chrono::seconds(in.at("now").get<int64_t>()));
    }

    const common_chat_params params = common_chat_templates_apply(templates.get(), inputs);

    json triggers = json::array();
    for (const auto & trigger : params.grammar_triggers) {
        triggers.push_back(json::object({
            {"type", trigger_type_name(trigger.type)},
            {"value", trigger.value},
        }));
    }
    json preserved = json::array();
    for (const auto & token : params.preserved_tokens) {
        preserved.push_back(token);
    }
    json stops = json::array();
    for (const auto & stop : params.additional_stops) {
        stops.push_back(stop);
    }
    json end_tags = json::array();
    for (const auto & tag : params.thinking_end_tags) {
        end_tags.push_back(tag);
    }
    json out = json::object({
        {"prompt", params.prompt},
        {"format", (int) params.format},
        {"format_name", common_chat_format_name(params.format)},
        {"grammar", params.grammar},
        {"grammar_lazy", params.grammar_lazy},
        {"grammar_triggers", triggers},
        {"preserved_tokens", preserved},
        {"additional_stops", stops},
        {"generation_prompt", params.generation_prompt},
        {"supports_thinking", params.supports_thinking},
        {"thinking_start_tag", params.thinking_start_tag},
        {"thinking_end_tags", end_tags},
        {"parser", params.parser},
        {"log", lk_chat_log},
    });
    return out.dump();
}

std::string parse(const char * output, bool is_partial, const char * request) {
    const json in = json::parse(request);
    common_chat_parser_params params;
    params.format = (common_chat_format) in.value("format", 0);
    params.reasoning_format = common_reasoning_format_from_name(text(in, "reasoning_format", "none"));
    params.reasoning_in_content = flag(in, "reasoning_in_content", false);
    params.generation_prompt = text(in, "generation_prompt");
    params.parse_tool_calls = flag(in, "parse_tool_calls", true);
    const std::string parser = text(in, "parser");
    if (!parser.empty()) {
        params.parser.load(parser);
    }
    const common_chat_msg msg = common_chat_parse(output, is_partial, params);
    json calls = json::array();
    for (const auto & call : msg.tool_calls) {
        calls.push_back(json::object({
            {"name", call.name},
            {"arguments", call.arguments},
            {"id", call.id},
        }));
    }
    json out = json::object({
        {"content", msg.content},
        {"reasoning_content", msg.reasoning_content},
        {"tool_calls", calls},
    });
    return out.dump();
}

}  // namespace

extern "C" char * lk_chat_apply(const char * tmpl, const char * bos, const char * eos,
                                const char * request, int32_t * status) {
    try {
        std::string out = apply(tmpl, bos, eos, request);
        *status = 0;
        return copy_out(out);
    } catch (const std::exception & err) {
        *status = 1;
        return copy_out(err.what());
    } catch (...) {
        *status = 1;
        return copy_out("unknown C++ exception in llama.cpp's chat code");
    }
}

extern "C" char * lk_chat_parse(const char * output, int32_t is_partial, const char * request,
                                int32_t * status) {
    try {
        std::string out = parse(output, is_partial != 0, request);
        *status = 0;
        return copy_out(out);
    } catch (const std::exception & err) {
        *status = 1;
        return copy_out(err.what());
    } catch (...) {
        *status = 1;
        return copy_out("unknown C++ exception in llama.cpp's chat code");
    }
}
