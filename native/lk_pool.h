/* A small pool of worker threads owned by the shim (lk_pool.cpp), internal to the C++ files:
 * the cffi module includes every native/*.h from C, so everything here is C++-only. */
#ifndef LK_POOL_H
#define LK_POOL_H

#ifdef __cplusplus

#include <cstdint>
#include <functional>

namespace lk_pool {

// Runs `body` on the calling thread and on up to `extra` pool threads at once, and returns
// once every started copy has returned. `body` must share out its work itself (an atomic
// counter): a pool thread that wakes after the calling thread's copy has returned does not
// start, so the calling thread alone may do all of it. Returns false, running nothing, when
// the pool is busy with another caller's work (the caller then does its work alone).
bool run(int32_t extra, const std::function<void()> & body);

}  // namespace lk_pool

#endif  // __cplusplus
#endif  // LK_POOL_H
