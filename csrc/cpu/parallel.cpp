// colbert::parallel_for (declared in parallel.h) and parallel_threads, the probe that shows how many threads it
// runs on (`python -m colbert.kernels`, backend_info()["cpu_threads"], a test).
#include "parallel.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "../kernels.h"

namespace colbert {

namespace {

thread_local int64_t t_cap = 0;  // set_kernel_threads: this thread's cap on the threads of a call (0: none)

int64_t call_threads() {
    const int64_t threads = std::max(at::get_num_threads(), 1);
    return t_cap > 0 ? std::min(threads, t_cap) : threads;
}

}  // namespace

int64_t set_kernel_threads(int64_t threads) {
    const int64_t before = t_cap;
    t_cap = std::max<int64_t>(threads, 0);
    return before;
}

#ifdef _OPENMP

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
    if (call_threads() == 1) {
        if (begin < end) f(begin, end);
        return;
    }
    at::parallel_for(begin, end, grain, f);
}

#else

namespace {

constexpr int64_t kRangesPerThread = 4;  // smaller ranges than one per thread: uneven documents still balance

thread_local bool t_inside = false;  // this thread is running a range: a nested parallel_for runs inline

// parallel_for calls running now, on any thread. When another call is already running (the server's search threads
// under load), a call runs on its own thread: the cores are busy anyway, and helpers would only add hand-offs.
std::atomic<int> g_running{0};

struct Running {
    Running() { g_running.fetch_add(1); }
    ~Running() { g_running.fetch_sub(1); }
};

// One parallel_for call, shared with the pool tasks, which may outlive it (a task that finds no range left returns
// without touching `f`).
struct Job {
    const std::function<void(int64_t, int64_t)>* f;
    int64_t begin, end, size, ranges;
    std::atomic<int64_t> next{0}, done{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex mutex;
    std::condition_variable finished;

    void work() {
        const bool outer = t_inside;
        t_inside = true;
        for (int64_t r = next.fetch_add(1); r < ranges; r = next.fetch_add(1)) {
            if (!failed.load()) {
                try {
                    (*f)(begin + r * size, std::min(end, begin + (r + 1) * size));
                } catch (...) {
                    std::lock_guard<std::mutex> lock(mutex);
                    if (!error) error = std::current_exception();
                    failed.store(true);
                }
            }
            if (done.fetch_add(1) + 1 == ranges) {
                std::lock_guard<std::mutex> lock(mutex);
                finished.notify_all();
            }
        }
        t_inside = outer;
    }
};

}  // namespace

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
    if (begin >= end) return;
    const int64_t n = end - begin, threads = call_threads();
    grain = std::max<int64_t>(grain, 1);
    if (threads == 1 || n <= grain || t_inside || at::in_parallel_region()) {
        f(begin, end);
        return;
    }
    const Running running;
    if (g_running.load() > 1) {  // another call is running: this one stays on its thread
        f(begin, end);
        return;
    }
    auto job = std::make_shared<Job>();
    const int64_t wanted = std::min((n + grain - 1) / grain, threads * kRangesPerThread);
    job->f = &f;
    job->begin = begin;
    job->end = end;
    job->size = (n + wanted - 1) / wanted;
    job->ranges = (n + job->size - 1) / job->size;
    for (int64_t helper = 1; helper < std::min(threads, job->ranges); ++helper) {
        at::launch([job] { job->work(); });
    }
    job->work();
    {
        std::unique_lock<std::mutex> lock(job->mutex);
        job->finished.wait(lock, [&] { return job->done.load() == job->ranges; });
    }
    if (job->error) std::rethrow_exception(job->error);
}

#endif

// How many threads parallel_for runs `tasks` one-item ranges on: each range waits (at most 200 ms) until as many
// ranges as there are threads have started, so that the calling thread cannot run them all before the pool wakes.
int64_t parallel_threads(int64_t tasks) {
    const int64_t n = std::max<int64_t>(tasks, 1);
    const int64_t expected = std::min<int64_t>(n, call_threads());
    std::atomic<int64_t> arrived{0};
    std::mutex mutex;
    std::set<std::thread::id> seen;
    parallel_for(0, n, 1, [&](int64_t, int64_t) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            seen.insert(std::this_thread::get_id());
        }
        arrived.fetch_add(1);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
        while (arrived.load() < expected && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    });
    return static_cast<int64_t>(seen.size());
}

}  // namespace colbert
