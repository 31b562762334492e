// The shim's worker threads (see lk_pool.h): started on first use, kept for the process,
// asleep on a condition variable between calls (the machine may be shared: no spinning
// while there is no work).
#include "lk_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace {

class pool {
public:
    bool run(int32_t extra, const std::function<void()> & body) {
        std::unique_lock<std::mutex> use(busy, std::try_to_lock);
        if (!use.owns_lock()) {
            return false;
        }
        {
            std::lock_guard<std::mutex> lock(mutex);
            try {
                while ((int32_t) threads.size() < extra) {
                    // Detached and never joined: the pool lives as long as the process.
                    std::thread([this, seen = round] { loop(seen); }).detach();
                    threads.push_back(0);
                }
            } catch (const std::exception &) {  // no more threads: work with those there are
            }
            task = &body;
            wanted = std::min(extra, (int32_t) threads.size());
            round++;
        }
        wake.notify_all();
        body();
        {
            std::lock_guard<std::mutex> lock(mutex);
            wanted = 0;  // copies not started by now would find no work left
        }
        // The others end within about one item of this thread: waiting for them on the
        // condition variable would add a wake-up (tens of microseconds) to every call.
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        while (running.load(std::memory_order_acquire) != 0 &&
               std::chrono::steady_clock::now() < until) {
            std::this_thread::yield();
        }
        std::unique_lock<std::mutex> lock(mutex);
        done.wait(lock, [this] { return running.load() == 0; });
        task = nullptr;
        return true;
    }

private:
    std::mutex busy;   // one caller's work at a time
    std::mutex mutex;  // guards everything below
    std::condition_variable wake, done;
    std::vector<char> threads;  // one entry a started thread (only their number matters)
    const std::function<void()> * task = nullptr;
    uint64_t round = 0;
    int32_t wanted = 0;   // copies of this round's task still to start
    std::atomic<int32_t> running{0};  // copies running now (changed under `mutex`)

    void loop(uint64_t seen) {
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            wake.wait(lock, [&] { return round != seen && wanted > 0; });
            seen = round;
            wanted--;
            running++;
            const std::function<void()> * body = task;
            lock.unlock();
            (*body)();
            lock.lock();
            if (--running == 0) {
                done.notify_all();
            }
        }
    }
};

std::atomic<pool *> current{nullptr};

// A forked child has none of the parent's threads, and the pool's mutexes may have been
// held at the fork: the child starts a fresh pool (the old one is left, never freed).
void forget_in_child() {
    current.store(nullptr);
}

pool & instance() {
    pool * found = current.load();
    if (found != nullptr) {
        return *found;
    }
    static std::once_flag registered;
    std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, forget_in_child); });
    auto * fresh = new pool();
    if (current.compare_exchange_strong(found, fresh)) {
        return *fresh;
    }
    delete fresh;  // another thread installed one first (this one started no thread)
    return *found;
}

}  // namespace

namespace lk_pool {

bool run(int32_t extra, const std::function<void()> & body) {
    if (extra <= 0) {
        body();
        return true;
    }
    return instance().run(extra, body);
}

}  // namespace lk_pool
