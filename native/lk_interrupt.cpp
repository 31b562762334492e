#include "lk_interrupt.h"

#include <cstring>

#if !defined(_WIN32)
#include <signal.h>

namespace {

int * volatile g_flag = nullptr;   // the abort flag of the decode in progress

void on_sigint(int) {
    int * flag = __atomic_load_n(&g_flag, __ATOMIC_SEQ_CST);
    if (flag != nullptr) {
        __atomic_store_n(flag, LK_ABORT_SIGINT, __ATOMIC_SEQ_CST);
    }
}

bool is_handler(const struct sigaction & action) {
    if (action.sa_flags & SA_SIGINFO) {
        return action.sa_sigaction != nullptr;
    }
    return action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN;
}

}  // namespace

template <typename Run>
static int32_t interruptible(Run run, int * flag) {
    struct sigaction previous;
    if (sigaction(SIGINT, nullptr, &previous) != 0 || !is_handler(previous)) {
        return run();
    }
    struct sigaction ours;
    std::memset(&ours, 0, sizeof ours);
    ours.sa_handler = on_sigint;
    ours.sa_flags = previous.sa_flags & SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    __atomic_store_n(&g_flag, flag, __ATOMIC_SEQ_CST);
    if (sigaction(SIGINT, &ours, nullptr) != 0) {
        __atomic_store_n(&g_flag, static_cast<int *>(nullptr), __ATOMIC_SEQ_CST);
        return run();
    }
    const int32_t status = run();
    sigaction(SIGINT, &previous, nullptr);
    __atomic_store_n(&g_flag, static_cast<int *>(nullptr), __ATOMIC_SEQ_CST);
    return status;
}
#else
template <typename Run>
static int32_t interruptible(Run run, int *) {
    return run();
}
#endif

extern "C" int32_t lk_decode_interruptible(llama_context * ctx, llama_batch batch, int * flag) {
    return interruptible([&] { return llama_decode(ctx, batch); }, flag);
}

extern "C" int32_t lk_encode_interruptible(llama_context * ctx, llama_batch batch, int * flag) {
    return interruptible([&] { return llama_encode(ctx, batch); }, flag);
}

extern "C" int32_t lk_run_interruptible(int32_t (*fn)(void *), void * data, int * flag) {
    return interruptible([&] { return fn(data); }, flag);
}
