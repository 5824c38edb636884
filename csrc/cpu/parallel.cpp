// parallel_threads: how many threads at::parallel_for actually runs on, for `python -m colbert.kernels` and a test.
// ATen's OpenMP backend implements parallel_for inline in its headers, so a library compiled without -fopenmp runs
// every parallel_for on one thread, silently; this op makes that visible.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../kernels.h"

namespace colbert {

int64_t parallel_threads(int64_t tasks) {
    const int64_t n = std::max<int64_t>(tasks, 1);
    std::vector<std::atomic<int>> seen(std::max(at::get_num_threads(), 1));
    for (auto& s : seen) s.store(0);
    at::parallel_for(0, n, 1, [&](int64_t, int64_t) {
        const int id = at::get_thread_num();
        if (id >= 0 && id < static_cast<int>(seen.size())) seen[id].store(1);
    });
    int64_t used = 0;
    for (auto& s : seen) used += s.load();
    return used;
}

}  // namespace colbert
