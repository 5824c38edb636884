// CPU kernel of diverse search: mmr, the greedy picks of maximal marginal relevance over each document's evidence
// (colbert/search/diversity.py says what is computed; colbert/kernels/reference.py is its PyTorch twin).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../kernels.h"

namespace colbert {

namespace {

constexpr int64_t kVectorsPerTask = 256;  // parallel_for grain over the evidence vectors (the matmul)
constexpr int64_t kDocsPerTask = 8;       // parallel_for grain over documents (their similarity to a pick)
constexpr int64_t kColumnTile = 16;       // score_rows' full tile: a pick's vectors are padded to a multiple of it

// Each document's distinct evidence rows and their shares of its Lq query vectors, documents end to end.
struct DistinctRows {
    std::vector<int64_t> start;  // document i owns entries [start[i], start[i + 1])
    std::vector<int64_t> row;
    std::vector<float> weight;
};

DistinctRows distinct_rows(const int64_t* index, int64_t n, int64_t Lq) {
    DistinctRows out;
    out.start.reserve(n + 1);
    out.start.push_back(0);
    std::vector<int64_t> sorted(Lq);
    for (int64_t i = 0; i < n; ++i) {
        std::copy(index + i * Lq, index + (i + 1) * Lq, sorted.begin());
        std::sort(sorted.begin(), sorted.end());
        for (int64_t q = 0; q < Lq; ++q) {
            if (q == 0 || sorted[q] != sorted[q - 1]) {
                out.row.push_back(sorted[q]);
                out.weight.push_back(0.0f);
            }
            out.weight.back() += 1.0f / static_cast<float>(Lq);
        }
        out.start.push_back(static_cast<int64_t>(out.row.size()));
    }
    return out;
}

}  // namespace

at::Tensor mmr_cpu(const at::Tensor& relevance, const at::Tensor& vectors, const at::Tensor& index, int64_t k,
                   double diversity) {
    check_mmr_inputs(relevance, vectors, index, k, diversity);
    const at::Tensor rel_t = relevance.contiguous(), V_t = vectors.contiguous(), index_t = index.contiguous();
    const int64_t n = index_t.size(0), Lq = index_t.size(1), u = V_t.size(0), d = V_t.size(1);
    const int64_t picks = std::min(k, n);
    at::Tensor out = at::empty({picks}, index.options());
    if (picks == 0) return out;
    const float* rel = rel_t.data_ptr<float>();
    const float* V = V_t.data_ptr<float>();
    const int64_t* idx = index_t.data_ptr<int64_t>();
    for (int64_t i = 0; i < n * Lq; ++i) {
        TORCH_CHECK_INDEX(idx[i] >= 0 && idx[i] < u, "index[", i / Lq, ", ", i % Lq, "] = ", idx[i],
                          " is not a row of the ", u, " vectors");
    }
    DistinctRows distinct = distinct_rows(idx, n, Lq);
    // the vectors some document uses, copied together (callers may pass rows that no index names)
    std::vector<int64_t> used(distinct.row);
    std::sort(used.begin(), used.end());
    used.erase(std::unique(used.begin(), used.end()), used.end());
    std::vector<int64_t> position(u, -1);
    for (int64_t j = 0; j < static_cast<int64_t>(used.size()); ++j) position[used[j]] = j;
    for (int64_t& row : distinct.row) row = position[row];
    const int64_t m = static_cast<int64_t>(used.size());
    std::vector<float> compact(m * d);
    for (int64_t j = 0; j < m; ++j) std::copy(V + used[j] * d, V + (used[j] + 1) * d, compact.data() + j * d);
    const float lambda = static_cast<float>(diversity), keep = 1.0f - lambda;
    std::vector<float> closest(n, -std::numeric_limits<float>::infinity());  // max similarity to the picks
    std::vector<char> taken(n, 0);
    const int64_t cols = (Lq + kColumnTile - 1) / kColumnTile * kColumnTile;
    std::vector<float> picked_t(d * cols), G(m * cols);  // a pick's vectors transposed (d, cols); (m, cols)
    int64_t* out_p = out.data_ptr<int64_t>();

    for (int64_t step = 0; step < picks; ++step) {
        int64_t s = -1;
        float best = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < n; ++i) {  // the first document of the highest gain, as argmax
            if (taken[i]) continue;
            const float gain = step == 0 ? rel[i] : keep * rel[i] - lambda * std::max(closest[i], -1.0f);
            if (s < 0 || gain > best) {
                s = i;
                best = gain;
            }
        }
        out_p[step] = s;
        taken[s] = 1;
        if (step + 1 == picks) break;

        // G = the used vectors @ (s's distinct vectors)^T, one matmul (zero columns pad it to whole tiles)
        const int64_t first = distinct.start[s], us = distinct.start[s + 1] - first;
        std::fill(picked_t.begin(), picked_t.end(), 0.0f);
        for (int64_t t = 0; t < us; ++t) {
            const float* v = compact.data() + distinct.row[first + t] * d;
            for (int64_t j = 0; j < d; ++j) picked_t[j * cols + t] = v[j];
        }
        at::parallel_for(0, m, kVectorsPerTask, [&](int64_t begin, int64_t end) {
            score_rows(compact.data() + begin * d, end - begin, d, picked_t.data(), cols, G.data() + begin * cols);
        });
        // each document: the mean of its query vectors' best match among s's, and s's among its, averaged
        at::parallel_for(0, n, kDocsPerTask, [&](int64_t begin, int64_t end) {
            std::vector<float> best_of_s(us);
            for (int64_t i = begin; i < end; ++i) {
                std::fill(best_of_s.begin(), best_of_s.end(), -std::numeric_limits<float>::infinity());
                float theirs = 0.0f;
                for (int64_t e = distinct.start[i]; e < distinct.start[i + 1]; ++e) {
                    const float* g = G.data() + distinct.row[e] * cols;
                    float top = -std::numeric_limits<float>::infinity();
                    for (int64_t t = 0; t < us; ++t) {
                        top = std::max(top, g[t]);
                        best_of_s[t] = std::max(best_of_s[t], g[t]);
                    }
                    theirs += distinct.weight[e] * top;
                }
                float mine = 0.0f;
                for (int64_t t = 0; t < us; ++t) mine += distinct.weight[first + t] * best_of_s[t];
                closest[i] = std::max(closest[i], 0.5f * (theirs + mine));
            }
        });
    }
    return out;
}

}  // namespace colbert
