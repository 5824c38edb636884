// colbert::parallel_for: what every CPU kernel splits its work with, on torch.get_num_threads() threads (or fewer:
// set_kernel_threads).
//
// ATen's at::parallel_for is OpenMP, inline in ATen's headers: in a library compiled without -fopenmp it runs on one
// thread. Compiled with -fopenmp (COLBERT_KERNELS_OPENMP=1) it runs on an OpenMP team per calling thread, whose
// threads spin after each region and took the cores from the server's query encoding in one measurement (see
// csrc/README.md). So, without -fopenmp, this one runs its ranges on torch's inter-op thread pool (at::launch),
// whose idle threads sleep, and on the calling thread.
#pragma once

#include <cstdint>
#include <functional>

namespace colbert {

// Calls f(b, e) on disjoint ranges that cover [begin, end), each at least `grain` long (but the last), in parallel
// when there is more than one grain of work and more than one thread. The calling thread takes ranges too and
// returns once every range is done; a range nobody else has started yet is run by the caller, so a pool that is busy
// or missing (a forked child) only makes the call slower, never stuck. The first exception thrown by f is rethrown
// here once the ranges already started are done; ranges not started by then are skipped. While another call is
// running (on any thread), a call runs on its calling thread alone: concurrent callers already keep the cores busy.
void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& f);

// set_kernel_threads (kernels.h) caps the threads of the calls a thread makes.

}  // namespace colbert
