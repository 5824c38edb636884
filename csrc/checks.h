// Input checks shared by the CPU and CUDA kernels (inline: one header, no extra translation unit to compile).
// The Python wrappers in colbert/kernels/__init__.py raise the same complaints as ValueError/TypeError before
// dispatch; these guard direct torch.ops.colbert.* calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/sum.h>
#include <c10/util/Exception.h>

#include <optional>

namespace colbert {

namespace detail {

inline bool is_index(const at::Tensor& t) {
    return t.scalar_type() == at::kInt || t.scalar_type() == at::kLong;
}

inline bool is_float(const at::Tensor& t) {
    return t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

inline void check_packed_width(const at::Tensor& packed, int64_t dim, int64_t nbits, const char* op) {
    TORCH_CHECK(dim * nbits % 8 == 0, op, ": dim * nbits must be a multiple of 8, got dim ", dim, " and nbits ",
                nbits);
    TORCH_CHECK(packed.size(1) == dim * nbits / 8, op, ": packed has ", packed.size(1),
                " bytes per row, but dim ", dim, " at nbits ", nbits, " needs ", dim * nbits / 8);
}

}  // namespace detail

inline void check_nbits(int64_t nbits) {
    TORCH_CHECK(nbits == 1 || nbits == 2 || nbits == 4, "nbits must be 1, 2 or 4, got ", nbits);
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
    TORCH_CHECK(a.device() == b.device(), a_name, " is on ", a.device(), " but ", b_name, " is on ", b.device());
}

inline void check_compress_inputs(const at::Tensor& residuals, const at::Tensor& bucket_cutoffs, int64_t nbits) {
    check_nbits(nbits);
    TORCH_CHECK(residuals.dim() == 2 && detail::is_float(residuals),
                "compress_residuals: residuals must be a 2-D float16/bfloat16/float32 tensor, got ",
                residuals.scalar_type(), " of shape ", residuals.sizes());
    TORCH_CHECK(bucket_cutoffs.dim() == 1 && bucket_cutoffs.scalar_type() == at::kFloat,
                "compress_residuals: bucket_cutoffs must be a 1-D float32 tensor");
    TORCH_CHECK(bucket_cutoffs.numel() == (int64_t{1} << nbits) - 1, "compress_residuals: nbits ", nbits,
                " needs ", (int64_t{1} << nbits) - 1, " bucket_cutoffs, got ", bucket_cutoffs.numel());
    TORCH_CHECK(residuals.size(1) * nbits % 8 == 0,
                "compress_residuals: dim * nbits must be a multiple of 8, got dim ", residuals.size(1));
    check_same_device(residuals, "residuals", bucket_cutoffs, "bucket_cutoffs");
}

inline void check_decompress_inputs(const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& centroids,
                             const at::Tensor& bucket_weights, int64_t nbits) {
    check_nbits(nbits);
    TORCH_CHECK(codes.dim() == 1 && detail::is_index(codes), "codes must be a 1-D int32/int64 tensor, got ",
                codes.scalar_type(), " of shape ", codes.sizes());
    TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == at::kByte, "packed must be a 2-D uint8 tensor, got ",
                packed.scalar_type(), " of shape ", packed.sizes());
    TORCH_CHECK(packed.size(0) == codes.size(0), "packed has ", packed.size(0), " rows but codes has ",
                codes.size(0));
    TORCH_CHECK(centroids.dim() == 2 && detail::is_float(centroids),
                "centroids must be a 2-D float16/bfloat16/float32 tensor, got ", centroids.scalar_type(),
                " of shape ", centroids.sizes());
    TORCH_CHECK(bucket_weights.dim() == 1 && bucket_weights.scalar_type() == at::kFloat &&
                    bucket_weights.numel() == (int64_t{1} << nbits),
                "bucket_weights must be a float32 tensor of 2**nbits = ", int64_t{1} << nbits, " values, got ",
                bucket_weights.scalar_type(), " of shape ", bucket_weights.sizes());
    detail::check_packed_width(packed, centroids.size(1), nbits, "decompress_residuals");
    check_same_device(codes, "codes", packed, "packed");
    check_same_device(codes, "codes", centroids, "centroids");
    check_same_device(codes, "codes", bucket_weights, "bucket_weights");
}

inline void check_segmented_maxsim_inputs(const at::Tensor& scores, const at::Tensor& lengths) {
    TORCH_CHECK(scores.dim() == 2 && detail::is_float(scores),
                "segmented_maxsim: scores must be a 2-D float tensor, got ", scores.scalar_type(), " of shape ",
                scores.sizes());
    TORCH_CHECK(lengths.dim() == 1 && lengths.scalar_type() == at::kLong,
                "segmented_maxsim: lengths must be a 1-D int64 tensor");
    check_same_device(scores, "scores", lengths, "lengths");
}

inline void check_centroid_maxsim_inputs(const at::Tensor& centroid_scores, const at::Tensor& codes,
                                  const at::Tensor& doc_offsets, const at::Tensor& pids,
                                  const std::optional<at::Tensor>& keep) {
    TORCH_CHECK(centroid_scores.dim() == 2 && centroid_scores.scalar_type() == at::kFloat,
                "centroid_maxsim: centroid_scores must be a 2-D float32 tensor (C, Lq)");
    TORCH_CHECK(codes.dim() == 1 && detail::is_index(codes), "centroid_maxsim: codes must be a 1-D int32/int64 tensor");
    TORCH_CHECK(doc_offsets.dim() == 1 && doc_offsets.numel() >= 1 && doc_offsets.scalar_type() == at::kLong,
                "centroid_maxsim: doc_offsets must be a non-empty 1-D int64 tensor (P + 1,)");
    TORCH_CHECK(pids.dim() == 1 && pids.scalar_type() == at::kLong, "centroid_maxsim: pids must be 1-D int64");
    if (keep.has_value()) {
        TORCH_CHECK(keep->dim() == 1 && keep->scalar_type() == at::kBool &&
                        keep->numel() == centroid_scores.size(0),
                    "centroid_maxsim: keep must be a bool tensor of ", centroid_scores.size(0),
                    " values (one per centroid)");
        check_same_device(centroid_scores, "centroid_scores", *keep, "keep");
    }
    check_same_device(centroid_scores, "centroid_scores", codes, "codes");
    check_same_device(centroid_scores, "centroid_scores", doc_offsets, "doc_offsets");
    check_same_device(centroid_scores, "centroid_scores", pids, "pids");
}

inline void check_gather_inputs(const at::Tensor& values, const at::Tensor& doc_offsets, const at::Tensor& pids) {
    TORCH_CHECK(values.dim() >= 1, "gather_segments: values must have at least one dimension");
    TORCH_CHECK(doc_offsets.dim() == 1 && doc_offsets.numel() >= 1 && doc_offsets.scalar_type() == at::kLong,
                "gather_segments: doc_offsets must be a non-empty 1-D int64 tensor (P + 1,)");
    TORCH_CHECK(pids.dim() == 1 && pids.scalar_type() == at::kLong, "gather_segments: pids must be 1-D int64");
    check_same_device(values, "values", doc_offsets, "doc_offsets");
    check_same_device(values, "values", pids, "pids");
}

inline void check_decompress_maxsim_inputs(const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed,
                                    const at::Tensor& lengths, const at::Tensor& centroids,
                                    const at::Tensor& bucket_weights, int64_t nbits) {
    check_decompress_inputs(codes, packed, centroids, bucket_weights, nbits);
    TORCH_CHECK(Q.dim() == 2 && Q.scalar_type() == at::kFloat && Q.size(1) == centroids.size(1),
                "decompress_maxsim: Q must be a float32 (Lq, ", centroids.size(1), ") tensor, got ",
                Q.scalar_type(), " of shape ", Q.sizes());
    TORCH_CHECK(lengths.dim() == 1 && lengths.scalar_type() == at::kLong,
                "decompress_maxsim: lengths must be a 1-D int64 tensor");
    check_same_device(codes, "codes", Q, "Q");
    check_same_device(codes, "codes", lengths, "lengths");
}

inline void check_mmr_inputs(const at::Tensor& relevance, const at::Tensor& vectors, const at::Tensor& index,
                             int64_t k, double diversity) {
    TORCH_CHECK(relevance.dim() == 1 && relevance.scalar_type() == at::kFloat,
                "mmr: relevance must be a 1-D float32 tensor, got ", relevance.scalar_type(), " of shape ",
                relevance.sizes());
    TORCH_CHECK(vectors.dim() == 2 && vectors.scalar_type() == at::kFloat,
                "mmr: vectors must be a 2-D float32 tensor, got ", vectors.scalar_type(), " of shape ",
                vectors.sizes());
    TORCH_CHECK(index.dim() == 2 && index.scalar_type() == at::kLong && index.size(0) == relevance.size(0),
                "mmr: index must be an int64 (", relevance.size(0), ", Lq) tensor, got ", index.scalar_type(),
                " of shape ", index.sizes());
    TORCH_CHECK(k >= 0, "mmr: k must be >= 0, got ", k);
    TORCH_CHECK(diversity >= 0 && diversity <= 1, "mmr: diversity must be in [0, 1], got ", diversity);
    check_same_device(relevance, "relevance", vectors, "vectors");
    check_same_device(relevance, "relevance", index, "index");
}

inline void check_lengths_sum(const at::Tensor& lengths, int64_t total, const char* what) {
    if (lengths.numel() == 0) {
        TORCH_CHECK(total == 0, what, ": no lengths given but there are ", total, " rows");
        return;
    }
    const int64_t smallest = std::get<0>(at::aminmax(lengths)).item<int64_t>();
    TORCH_CHECK(smallest >= 0, what, ": lengths must be >= 0, got ", smallest);
    const int64_t sum = lengths.sum().item<int64_t>();
    TORCH_CHECK(sum == total, what, ": lengths sum to ", sum, " but there are ", total, " rows");
}

}  // namespace colbert
