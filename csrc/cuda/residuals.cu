// CUDA kernels for the residual codec: compress_residuals, decompress_residuals and the fused decompress_maxsim.
// Same contracts and bit layout as cpu/residuals.cpp (csrc/README.md). Only ATen/c10 headers are used, so this file
// also compiles against a CPU-only torch wheel given nvcc (see tests/test_kernels.py::test_cuda_sources_compile).
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

constexpr int kThreads = 256;               // threads per block
constexpr int kWarps = kThreads / 32;       // decompress: one warp per embedding
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kNormEps = 1e-12f;          // as torch.nn.functional.normalize
constexpr int64_t kMaxSharedBytes = 48 * 1024;

__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullMask, value, offset);
    return value;  // every lane holds the sum
}

// centroid[k] + the bucket weight of dimension k of one packed embedding.
__device__ __forceinline__ float residual_value(const uint8_t* bytes, const float* centroid, const float* weights,
                                                int k, int nbits) {
    const int per_byte = 8 / nbits;
    const int slot = k % per_byte;
    const int field = (bytes[k / per_byte] >> (8 - nbits * (slot + 1))) & ((1 << nbits) - 1);
    return centroid[k] + weights[reverse_bits(field, nbits)];
}

template <typename scalar_t>
__global__ void compress_kernel(const scalar_t* __restrict__ x, const float* __restrict__ cutoffs, int ncuts,
                                int nbits, int64_t nbytes, int64_t d, int64_t packed_dim, uint8_t* __restrict__ out) {
    const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;  // one output byte
    if (idx >= nbytes) return;
    const int64_t row = idx / packed_dim, j = idx % packed_dim;
    const int per_byte = 8 / nbits;
    int byte = 0;
    for (int k = 0; k < per_byte; ++k) {
        const float value = static_cast<float>(x[row * d + j * per_byte + k]);
        int id = 0;  // torch.bucketize(right=False): cutoffs strictly below value; NaN -> last bucket
        for (int c = 0; c < ncuts; ++c) id += !(cutoffs[c] >= value);
        byte |= reverse_bits(id, nbits) << (8 - nbits * (k + 1));
    }
    out[idx] = static_cast<uint8_t>(byte);
}

template <typename index_t, typename out_t>
__global__ void decompress_kernel(const index_t* __restrict__ codes, const uint8_t* __restrict__ packed,
                                  const float* __restrict__ centroids, const float* __restrict__ weights, int64_t n,
                                  int64_t num_centroids, int d, int nbits, bool normalize, out_t* __restrict__ out) {
    const int64_t row = blockIdx.x * static_cast<int64_t>(kWarps) + threadIdx.x / 32;  // warp-uniform
    const int lane = threadIdx.x % 32;
    if (row >= n) return;
    const int64_t code = codes[row];
    CUDA_KERNEL_ASSERT(code >= 0 && code < num_centroids);
    const uint8_t* bytes = packed + row * (d * nbits / 8);
    const float* centroid = centroids + code * d;
    float norm = 1.0f;
    if (normalize) {
        float sumsq = 0.0f;
        for (int k = lane; k < d; k += 32) {
            const float v = residual_value(bytes, centroid, weights, k, nbits);
            sumsq += v * v;
        }
        norm = fmaxf(sqrtf(warp_sum(sumsq)), kNormEps);
    }
    for (int k = lane; k < d; k += 32) {
        out[row * d + k] = static_cast<out_t>(residual_value(bytes, centroid, weights, k, nbits) / norm);
    }
}

// One block per document; each warp decodes one token at a time into shared memory, dots it with every query
// column and keeps per-warp column maxima; the block then takes the max over warps and sums the columns.
template <typename index_t>
__global__ void decompress_maxsim_kernel(const float* __restrict__ Qt, const index_t* __restrict__ codes,
                                         const uint8_t* __restrict__ packed, const int64_t* __restrict__ offsets,
                                         const float* __restrict__ centroids, const float* __restrict__ weights,
                                         int64_t num_centroids, int d, int Lq, int nbits, float* __restrict__ out) {
    extern __shared__ float shared[];  // kWarps * d token buffers, then kWarps * Lq column maxima
    __shared__ float partial[kWarps];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* token = shared + warp * d;
    float* best = shared + kWarps * d + warp * Lq;
    const int64_t doc = blockIdx.x, start = offsets[doc], end = offsets[doc + 1];
    for (int q = lane; q < Lq; q += 32) best[q] = -INFINITY;
    for (int64_t row = start + warp; row < end; row += kWarps) {
        const int64_t code = codes[row];
        CUDA_KERNEL_ASSERT(code >= 0 && code < num_centroids);
        float sumsq = 0.0f;
        for (int k = lane; k < d; k += 32) {
            const float v = residual_value(packed + row * (d * nbits / 8), centroids + code * d, weights, k, nbits);
            token[k] = v;
            sumsq += v * v;
        }
        const float norm = fmaxf(sqrtf(warp_sum(sumsq)), kNormEps);
        __syncwarp();
        for (int q = lane; q < Lq; q += 32) {
            float dot = 0.0f;
            for (int k = 0; k < d; ++k) dot += token[k] * Qt[k * Lq + q];
            best[q] = fmaxf(best[q], dot / norm);
        }
        __syncwarp();
    }
    __syncthreads();
    float total = 0.0f;
    for (int q = threadIdx.x; q < Lq; q += blockDim.x) {
        float m = -INFINITY;
        for (int w = 0; w < kWarps; ++w) m = fmaxf(m, shared[kWarps * d + w * Lq + q]);
        total += m;
    }
    total = warp_sum(total);
    if (lane == 0) partial[warp] = total;
    __syncthreads();
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < kWarps; ++w) sum += partial[w];
        out[doc] = end > start ? sum : 0.0f;  // an empty document scores 0
    }
}

int64_t blocks_for(int64_t items, int64_t per_block) { return (items + per_block - 1) / per_block; }

}  // namespace

at::Tensor compress_residuals_cuda(const at::Tensor& residuals, const at::Tensor& bucket_cutoffs, int64_t nbits) {
    check_compress_inputs(residuals, bucket_cutoffs, nbits);
    const c10::cuda::CUDAGuard guard(residuals.device());
    const at::Tensor x = residuals.contiguous(), cuts = bucket_cutoffs.contiguous();
    const int64_t n = x.size(0), d = x.size(1), packed_dim = d * nbits / 8;
    at::Tensor out = at::empty({n, packed_dim}, x.options().dtype(at::kByte));
    if (out.numel() == 0) return out;
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "compress_residuals_cuda", [&] {
        compress_kernel<scalar_t><<<blocks_for(out.numel(), kThreads), kThreads, 0, stream>>>(
            x.data_ptr<scalar_t>(), cuts.data_ptr<float>(), static_cast<int>(cuts.numel()), static_cast<int>(nbits),
            out.numel(), d, packed_dim, out.data_ptr<uint8_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

at::Tensor decompress_residuals_cuda(const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& centroids,
                                     const at::Tensor& bucket_weights, int64_t nbits, bool normalize,
                                     at::ScalarType dtype) {
    check_decompress_inputs(codes, packed, centroids, bucket_weights, nbits);
    TORCH_CHECK(at::isFloatingType(dtype), "decompress_residuals: dtype must be a floating type, got ", dtype);
    const c10::cuda::CUDAGuard guard(codes.device());
    const at::Tensor cent = centroids.to(at::kFloat).contiguous(), bytes = packed.contiguous();
    const at::Tensor code_t = codes.contiguous(), weights = bucket_weights.contiguous();
    const int64_t n = code_t.size(0), d = cent.size(1);
    at::Tensor out = at::empty({n, d}, cent.options().dtype(dtype));
    if (out.numel() == 0) return out;
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_INDEX_TYPES(code_t.scalar_type(), "decompress_residuals_cuda", [&] {
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "decompress_residuals_cuda_out", [&] {
            decompress_kernel<index_t, scalar_t><<<blocks_for(n, kWarps), kThreads, 0, stream>>>(
                code_t.data_ptr<index_t>(), bytes.data_ptr<uint8_t>(), cent.data_ptr<float>(),
                weights.data_ptr<float>(), n, cent.size(0), static_cast<int>(d), static_cast<int>(nbits), normalize,
                out.data_ptr<scalar_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
    });
    return out;
}

at::Tensor decompress_maxsim_cuda(const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed,
                                  const at::Tensor& lengths, const at::Tensor& centroids,
                                  const at::Tensor& bucket_weights, int64_t nbits) {
    check_decompress_maxsim_inputs(Q, codes, packed, lengths, centroids, bucket_weights, nbits);
    check_lengths_sum(lengths, codes.size(0), "decompress_maxsim");
    const c10::cuda::CUDAGuard guard(codes.device());
    const at::Tensor cent = centroids.to(at::kFloat).contiguous(), bytes = packed.contiguous();
    const at::Tensor code_t = codes.contiguous(), weights = bucket_weights.contiguous();
    const at::Tensor Qt = Q.t().contiguous();  // (d, Lq): lanes read consecutive query columns
    const int64_t ndocs = lengths.size(0), d = cent.size(1), Lq = Q.size(0);
    at::Tensor out = at::zeros({ndocs}, Q.options());
    if (ndocs == 0 || Lq == 0) return out;
    const int64_t shared_bytes = kWarps * (d + Lq) * static_cast<int64_t>(sizeof(float));
    TORCH_CHECK(shared_bytes <= kMaxSharedBytes, "decompress_maxsim_cuda: dim ", d, " + Lq ", Lq,
                " needs more shared memory than a block has; use decompress_residuals and segmented_maxsim instead");
    at::Tensor offsets = at::zeros({ndocs + 1}, lengths.options());  // doc i is rows [offsets[i], offsets[i + 1])
    offsets.narrow(0, 1, ndocs).copy_(lengths.cumsum(0));
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_INDEX_TYPES(code_t.scalar_type(), "decompress_maxsim_cuda", [&] {
        decompress_maxsim_kernel<index_t><<<ndocs, kThreads, shared_bytes, stream>>>(
            Qt.data_ptr<float>(), code_t.data_ptr<index_t>(), bytes.data_ptr<uint8_t>(),
            offsets.data_ptr<int64_t>(), cent.data_ptr<float>(), weights.data_ptr<float>(), cent.size(0),
            static_cast<int>(d), static_cast<int>(Lq), static_cast<int>(nbits), out.data_ptr<float>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
}

}  // namespace colbert
