// CPU kernels over documents packed end to end: segmented_maxsim, centroid_maxsim (PLAID stages 2-3) and
// gather_segments (the reference's segmented_lookup). Reference behaviour: csrc/README.md.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../checks.h"
#include "../kernels.h"
#include "parallel.h"

namespace colbert {

namespace {

constexpr int64_t kDocsPerTask = 16;       // parallel_for grain over documents
constexpr float kNoKeptCode = -9999.0f;  // filter_pids.cpp starts every per-column max here

// Rows [start, end) of document pid, checked against the P + 1 offsets and the N rows they index.
std::pair<int64_t, int64_t> doc_rows(const int64_t* offsets, int64_t num_docs, int64_t num_rows, int64_t pid,
                                     int64_t i) {
    TORCH_CHECK_INDEX(pid >= 0 && pid < num_docs, "pids[", i, "] = ", pid, " is not a document in [0, ", num_docs,
                      ")");
    const int64_t start = offsets[pid], end = offsets[pid + 1];
    TORCH_CHECK(0 <= start && start <= end && end <= num_rows, "doc_offsets[", pid, ":", pid + 2, "] = [", start,
                ", ", end, "] is not a valid range of the ", num_rows, " rows");
    return {start, end};
}

}  // namespace

at::Tensor segmented_maxsim_cpu(const at::Tensor& scores, const at::Tensor& lengths) {
    check_segmented_maxsim_inputs(scores, lengths);
    check_lengths_sum(lengths, scores.size(0), "segmented_maxsim");
    const at::Tensor s = scores.contiguous(), lens = lengths.contiguous();
    const int64_t ndocs = lens.size(0), Lq = s.size(1);
    at::Tensor out = at::empty({ndocs}, s.options().dtype(at::kFloat));
    std::vector<int64_t> offsets(ndocs + 1, 0);
    const int64_t* len_p = lens.data_ptr<int64_t>();
    for (int64_t i = 0; i < ndocs; ++i) offsets[i + 1] = offsets[i] + len_p[i];
    float* out_p = out.data_ptr<float>();

    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "segmented_maxsim", [&] {
        const scalar_t* s_p = s.data_ptr<scalar_t>();
        parallel_for(0, ndocs, kDocsPerTask, [&](int64_t begin, int64_t end) {
            std::vector<float> best(Lq);
            for (int64_t doc = begin; doc < end; ++doc) {
                if (offsets[doc] == offsets[doc + 1]) {
                    out_p[doc] = 0.0f;  // an empty document scores 0
                    continue;
                }
                const scalar_t* first = s_p + offsets[doc] * Lq;
                for (int64_t q = 0; q < Lq; ++q) best[q] = static_cast<float>(first[q]);
                for (int64_t row = offsets[doc] + 1; row < offsets[doc + 1]; ++row) {
                    const scalar_t* r = s_p + row * Lq;
                    for (int64_t q = 0; q < Lq; ++q) best[q] = std::max(best[q], static_cast<float>(r[q]));
                }
                float total = 0;
                for (int64_t q = 0; q < Lq; ++q) total += best[q];
                out_p[doc] = total;
            }
        });
    });
    return out;
}

at::Tensor centroid_maxsim_cpu(const at::Tensor& centroid_scores, const at::Tensor& codes,
                               const at::Tensor& doc_offsets, const at::Tensor& pids,
                               const std::optional<at::Tensor>& keep) {
    check_centroid_maxsim_inputs(centroid_scores, codes, doc_offsets, pids, keep);
    const at::Tensor cs = centroid_scores.contiguous(), code_t = codes.contiguous();
    const at::Tensor offs = doc_offsets.contiguous(), pid_t = pids.contiguous();
    const at::Tensor keep_t = keep.has_value() ? keep->contiguous() : at::Tensor();
    const int64_t n = pid_t.size(0), num_centroids = cs.size(0), Lq = cs.size(1);
    const int64_t num_docs = offs.size(0) - 1, num_rows = code_t.size(0);
    at::Tensor out = at::empty({n}, cs.options());
    const float* cs_p = cs.data_ptr<float>();
    const int64_t* off_p = offs.data_ptr<int64_t>();
    const int64_t* pid_p = pid_t.data_ptr<int64_t>();
    const bool* keep_p = keep_t.defined() ? keep_t.data_ptr<bool>() : nullptr;
    float* out_p = out.data_ptr<float>();

    AT_DISPATCH_INDEX_TYPES(code_t.scalar_type(), "centroid_maxsim", [&] {
        const index_t* code_p = code_t.data_ptr<index_t>();
        parallel_for(0, n, kDocsPerTask, [&](int64_t begin, int64_t end) {
            std::vector<float> best(Lq);
            for (int64_t i = begin; i < end; ++i) {
                const auto [start, stop] = doc_rows(off_p, num_docs, num_rows, pid_p[i], i);
                std::fill(best.begin(), best.end(), kNoKeptCode);
                for (int64_t row = start; row < stop; ++row) {
                    const int64_t code = code_p[row];
                    TORCH_CHECK_INDEX(code >= 0 && code < num_centroids, "codes[", row, "] = ", code,
                                      " is not a centroid id in [0, ", num_centroids, ")");
                    if (keep_p != nullptr && !keep_p[code]) continue;
                    const float* c = cs_p + code * Lq;
                    for (int64_t q = 0; q < Lq; ++q) best[q] = std::max(best[q], c[q]);
                }
                float total = 0;
                for (int64_t q = 0; q < Lq; ++q) total += best[q];
                out_p[i] = total;
            }
        });
    });
    return out;
}

std::tuple<at::Tensor, at::Tensor> gather_segments_cpu(const at::Tensor& values, const at::Tensor& doc_offsets,
                                                       const at::Tensor& pids) {
    check_gather_inputs(values, doc_offsets, pids);
    const at::Tensor v = values.contiguous();  // no copy for the usual contiguous (memory-mapped) input
    const at::Tensor offs = doc_offsets.contiguous(), pid_t = pids.contiguous();
    const int64_t n = pid_t.size(0), num_docs = offs.size(0) - 1, num_rows = v.size(0);
    const int64_t row_bytes = c10::multiply_integers(v.sizes().slice(1)) * static_cast<int64_t>(v.element_size());
    const int64_t* off_p = offs.data_ptr<int64_t>();
    const int64_t* pid_p = pid_t.data_ptr<int64_t>();

    at::Tensor lengths = at::empty({n}, offs.options());
    std::vector<int64_t> sources(n), targets(n + 1, 0);  // first source row, first output row of each pid
    int64_t* len_p = lengths.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
        const auto [start, stop] = doc_rows(off_p, num_docs, num_rows, pid_p[i], i);
        sources[i] = start;
        len_p[i] = stop - start;
        targets[i + 1] = targets[i] + len_p[i];
    }
    std::vector<int64_t> shape(v.sizes().begin(), v.sizes().end());
    shape[0] = targets[n];
    at::Tensor out = at::empty(shape, v.options());
    const char* src = static_cast<const char*>(v.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    parallel_for(0, n, kDocsPerTask, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            if (len_p[i] == 0) continue;
            std::memcpy(dst + targets[i] * row_bytes, src + sources[i] * row_bytes, len_p[i] * row_bytes);
        }
    });
    return {out, lengths};
}

}  // namespace colbert
