/* The rpc area (native/areas/rpc.cdef): ggml's RPC backend, linked only by the rpc variant. */
#include "ggml-rpc.h"
