/* What lk_sampling_many.cpp (lk_sampler_sample_many) needs of lk_sampling.cpp's private
 * state, internal to the C++ files: the cffi module includes every native/*.h from C, so
 * everything here is C++-only. */
#ifndef LK_SAMPLING_MANY_H
#define LK_SAMPLING_MANY_H

#ifdef __cplusplus

#include <string>

#include "llama.h"

namespace lk_many {

// Whether `smpl` is a stage of lk_sampler_init_python.
bool is_python_stage(const llama_sampler * smpl);

// Sets this thread's lk_last_error.
void set_error(const std::string & message);

// Makes this thread's lk_sampler_last_candidates report none.
void forget_candidates();

}  // namespace lk_many

#endif  // __cplusplus
#endif  // LK_SAMPLING_MANY_H
