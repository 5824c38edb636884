// Every op of the colbert library, declared once, with one TORCH_LIBRARY_IMPL per backend.
// Python reaches them as torch.ops.colbert.<name>; colbert/kernels/__init__.py is the documented entry point and
// falls back to colbert/kernels/reference.py for any (op, device) that has no kernel registered here.
#include <torch/library.h>

#include "kernels.h"

TORCH_LIBRARY(colbert, m) {
    m.def("compress_residuals(Tensor residuals, Tensor bucket_cutoffs, int nbits) -> Tensor");
    m.def(
        "decompress_residuals(Tensor codes, Tensor packed, Tensor centroids, Tensor bucket_weights, int nbits, "
        "bool normalize, ScalarType dtype) -> Tensor");
    m.def("segmented_maxsim(Tensor scores, Tensor lengths) -> Tensor");
    m.def(
        "centroid_maxsim(Tensor centroid_scores, Tensor codes, Tensor doc_offsets, Tensor pids, Tensor? keep) "
        "-> Tensor");
    m.def("gather_segments(Tensor values, Tensor doc_offsets, Tensor pids) -> (Tensor, Tensor)");
    m.def(
        "decompress_maxsim(Tensor Q, Tensor codes, Tensor packed, Tensor lengths, Tensor centroids, "
        "Tensor bucket_weights, int nbits) -> Tensor");
    m.def(
        "decompress_maxsim_rows(Tensor Q, Tensor codes, Tensor packed, Tensor lengths, Tensor centroids, "
        "Tensor bucket_weights, int nbits) -> (Tensor, Tensor, Tensor, Tensor)");
    m.def("mmr(Tensor relevance, Tensor vectors, Tensor index, int k, float diversity) -> Tensor");
    m.def(
        "refine_codes(Tensor scores, Tensor slack, Tensor embeddings, Tensor centroids, Tensor? bias, "
        "Tensor? row_scale) -> Tensor");
    m.def("parallel_threads(int tasks) -> int", &colbert::parallel_threads);  // no tensors: one kernel for all
    m.def("set_kernel_threads(int threads) -> int", &colbert::set_kernel_threads);
}

TORCH_LIBRARY_IMPL(colbert, CPU, m) {
    m.impl("compress_residuals", &colbert::compress_residuals_cpu);
    m.impl("decompress_residuals", &colbert::decompress_residuals_cpu);
    m.impl("segmented_maxsim", &colbert::segmented_maxsim_cpu);
    m.impl("centroid_maxsim", &colbert::centroid_maxsim_cpu);
    m.impl("gather_segments", &colbert::gather_segments_cpu);
    m.impl("decompress_maxsim", &colbert::decompress_maxsim_cpu);
    m.impl("decompress_maxsim_rows", &colbert::decompress_maxsim_rows_cpu);
    m.impl("mmr", &colbert::mmr_cpu);
    m.impl("refine_codes", &colbert::refine_codes_cpu);
}

#ifdef COLBERT_WITH_CUDA
// centroid_maxsim, gather_segments, refine_codes, decompress_maxsim_rows and mmr have no CUDA kernel: on GPU tensors
// the PyTorch reference is already fast (and GPU indexing assigns codes with a plain float32 argmax).
TORCH_LIBRARY_IMPL(colbert, CUDA, m) {
    m.impl("compress_residuals", &colbert::compress_residuals_cuda);
    m.impl("decompress_residuals", &colbert::decompress_residuals_cuda);
    m.impl("segmented_maxsim", &colbert::segmented_maxsim_cuda);
    m.impl("decompress_maxsim", &colbert::decompress_maxsim_cuda);
}
#endif
