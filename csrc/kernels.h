// Declarations shared by ops.cpp (the registrations), cpu/*.cpp and cuda/*.cu.
// The contract of each op is in colbert/kernels/__init__.py; csrc/README.md maps it to the reference.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace colbert {

// ---- bit layout of the packed residuals (see csrc/README.md) ----
// The bucket id of dimension i is written LSB first, and bytes are filled MSB first (numpy.packbits), so inside a
// byte the k-th dimension occupies bits [8 - nbits*(k+1), 8 - nbits*k) with its bits in reversed order.
C10_HOST_DEVICE inline int reverse_bits(int value, int nbits) {
    int out = 0;
    for (int b = 0; b < nbits; ++b) out |= ((value >> b) & 1) << (nbits - 1 - b);
    return out;
}

// ---- CPU (cpu/*.cpp) ----
// out (rows, Lq) = v (rows, d) @ Qt (d, Lq), all row-major float32 (cpu/scores.cpp).
void score_rows(const float* v, int64_t rows, int64_t d, const float* Qt, int64_t Lq, float* out);
at::Tensor compress_residuals_cpu(const at::Tensor& residuals, const at::Tensor& bucket_cutoffs, int64_t nbits);
at::Tensor decompress_residuals_cpu(const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& centroids,
                                    const at::Tensor& bucket_weights, int64_t nbits, bool normalize,
                                    at::ScalarType dtype);
at::Tensor decompress_maxsim_cpu(const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed,
                                 const at::Tensor& lengths, const at::Tensor& centroids,
                                 const at::Tensor& bucket_weights, int64_t nbits);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> decompress_maxsim_rows_cpu(
    const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& lengths,
    const at::Tensor& centroids, const at::Tensor& bucket_weights, int64_t nbits);
at::Tensor mmr_cpu(const at::Tensor& relevance, const at::Tensor& vectors, const at::Tensor& index, int64_t k,
                   double diversity);
at::Tensor segmented_maxsim_cpu(const at::Tensor& scores, const at::Tensor& lengths);
at::Tensor centroid_maxsim_cpu(const at::Tensor& centroid_scores, const at::Tensor& codes,
                               const at::Tensor& doc_offsets, const at::Tensor& pids,
                               const std::optional<at::Tensor>& keep);
std::tuple<at::Tensor, at::Tensor> gather_segments_cpu(const at::Tensor& values, const at::Tensor& doc_offsets,
                                                       const at::Tensor& pids);
at::Tensor refine_codes_cpu(const at::Tensor& scores, const at::Tensor& slack, const at::Tensor& embeddings,
                            const at::Tensor& centroids, const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& row_scale);
int64_t parallel_threads(int64_t tasks);  // threads parallel_for ran `tasks` one-item ranges on (cpu/parallel.cpp)
// Caps the threads of the parallel_for calls the calling thread makes (0: no cap, torch.get_num_threads()); returns
// the cap before (cpu/parallel.cpp; colbert.kernels.thread_cap).
int64_t set_kernel_threads(int64_t threads);

// ---- CUDA (cuda/*.cu), compiled only with COLBERT_WITH_CUDA ----
at::Tensor compress_residuals_cuda(const at::Tensor& residuals, const at::Tensor& bucket_cutoffs, int64_t nbits);
at::Tensor decompress_residuals_cuda(const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& centroids,
                                     const at::Tensor& bucket_weights, int64_t nbits, bool normalize,
                                     at::ScalarType dtype);
at::Tensor decompress_maxsim_cuda(const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed,
                                  const at::Tensor& lengths, const at::Tensor& centroids,
                                  const at::Tensor& bucket_weights, int64_t nbits);
at::Tensor segmented_maxsim_cuda(const at::Tensor& scores, const at::Tensor& lengths);

}  // namespace colbert
