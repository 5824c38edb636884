// CUDA segmented_maxsim: one warp per document, lanes over query columns. Same contract as cpu/segments.cpp.
// centroid_maxsim and gather_segments have no CUDA kernel (the PyTorch reference runs on GPU tensors as is).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

#include "../checks.h"
#include "../kernels.h"

namespace colbert {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;  // documents per block
constexpr unsigned kFullMask = 0xffffffffu;

template <typename scalar_t>
__global__ void segmented_maxsim_kernel(const scalar_t* __restrict__ scores, const int64_t* __restrict__ offsets,
                                        int64_t ndocs, int Lq, float* __restrict__ out) {
    const int64_t doc = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / 32;  // warp-uniform
    const int lane = threadIdx.x % 32;
    if (doc >= ndocs) return;
    const int64_t start = offsets[doc], end = offsets[doc + 1];
    float total = 0.0f;
    for (int q = lane; q < Lq && end > start; q += 32) {
        float best = -INFINITY;
        for (int64_t row = start; row < end; ++row) best = fmaxf(best, static_cast<float>(scores[row * Lq + q]));
        total += best;
    }
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_xor_sync(kFullMask, total, offset);
    if (lane == 0) out[doc] = total;  // 0 for an empty document
}

}  // namespace

at::Tensor segmented_maxsim_cuda(const at::Tensor& scores, const at::Tensor& lengths) {
    check_segmented_maxsim_inputs(scores, lengths);
    check_lengths_sum(lengths, scores.size(0), "segmented_maxsim");
    const c10::cuda::CUDAGuard guard(scores.device());
    const at::Tensor s = scores.contiguous();
    const int64_t ndocs = lengths.size(0), Lq = s.size(1);
    at::Tensor out = at::zeros({ndocs}, s.options().dtype(at::kFloat));
    if (ndocs == 0) return out;
    at::Tensor offsets = at::zeros({ndocs + 1}, lengths.options());  // doc i is rows [offsets[i], offsets[i + 1])
    offsets.narrow(0, 1, ndocs).copy_(lengths.cumsum(0));
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const int64_t blocks = (ndocs + kWarps - 1) / kWarps;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "segmented_maxsim_cuda", [&] {
        segmented_maxsim_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            s.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), ndocs, static_cast<int>(Lq),
            out.data_ptr<float>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

}  // namespace colbert
