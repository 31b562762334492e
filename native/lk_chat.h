/* llama.cpp's chat layer (common/chat.*) behind JSON in, JSON out (lk_chat.cpp). */
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Render a conversation (OpenAI-shaped JSON request) with the Jinja template ``tmpl`` as
 * common_chat_templates_apply does: the prompt, the tool-call grammar and its triggers, the
 * parser. Returns malloc'd JSON (status 0) or an error message (status 1); lk_free() it. */
char * lk_chat_apply(const char * tmpl, const char * bos, const char * eos,
                     const char * request, int32_t * status);

/* Parse model output into content, reasoning_content and tool_calls (common_chat_parse). */
char * lk_chat_parse(const char * output, int32_t is_partial, const char * request,
                     int32_t * status);

#ifdef __cplusplus
}
#endif
