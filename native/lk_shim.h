/* llamakit's C shim: only what the plain llama.cpp C API cannot give Python cheaply. */
#ifndef LK_SHIM_H
#define LK_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Abort callback for llama_set_abort_callback: `data` points at an int flag that another
 * thread sets to non-zero to cancel the running decode. A C function, so checking the
 * flag never takes the GIL (ggml calls it between graph nodes). */
bool lk_abort_callback(void * data);

/* Version of the shim's ABI, checked by the Python side after loading a module. */
int lk_shim_version(void);

#ifdef __cplusplus
}
#endif

#endif
