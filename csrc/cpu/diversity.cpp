// CPU kernel of diverse search: mmr, the greedy picks of maximal marginal relevance over each document's evidence
// (colbert/search/diversity.py says what is computed; colbert/kernels/reference.py is its PyTorch twin).
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../kernels.h"
#include "parallel.h"

namespace colbert {

namespace {

constexpr int64_t kDocsPerTask = 16;  // parallel_for grain over the documents compared with picks (fewer: one thread)
constexpr int64_t kColumnTile = 16;  // score_rows' full tile: a pick's vectors are zero-padded to a multiple of it

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

// Symmetrised mean MaxSim of documents i and p over their distinct evidence vectors: the mean over i's query vectors
// of the best match among p's, and p's mean of the best match among i's, averaged. compact holds every document's
// distinct vectors in `distinct` order, p_t p's transposed and zero-padded to `cols` columns; scores is scratch.
float similarity(const DistinctRows& distinct, const float* compact, int64_t d, int64_t i, int64_t p,
                 const float* p_t, int64_t cols, std::vector<float>& scores) {
    const int64_t i0 = distinct.start[i], ui = distinct.start[i + 1] - i0;
    const int64_t p0 = distinct.start[p], up = distinct.start[p + 1] - p0;
    scores.resize(ui * cols);
    score_rows(compact + i0 * d, ui, d, p_t, cols, scores.data());  // (ui, d) @ (d, cols)
    float theirs = 0.0f, mine = 0.0f;
    for (int64_t e = 0; e < ui; ++e) {
        theirs += distinct.weight[i0 + e] * *std::max_element(scores.data() + e * cols, scores.data() + e * cols + up);
    }
    for (int64_t t = 0; t < up; ++t) {
        float column = -std::numeric_limits<float>::infinity();
        for (int64_t e = 0; e < ui; ++e) column = std::max(column, scores[e * cols + t]);
        mine += distinct.weight[p0 + t] * column;
    }
    return 0.5f * (theirs + mine);
}

}  // namespace

// Lazy greedy MMR. A document's gain only falls as documents are picked, so the gain it had when last compared is an
// upper bound. Each step takes the document of the highest bound; if that bound is stale, the document is compared
// with the picks it has not met, then every document whose bound still reaches the best exact gain, until the
// highest bound is exact: that document is the greedy pick (the first of equal gains, as argmax). After the first
// pick every document is compared once; later picks usually compare a few.
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
    const DistinctRows distinct = distinct_rows(idx, n, Lq);
    const int64_t entries = static_cast<int64_t>(distinct.row.size());
    const int64_t cols = (Lq + kColumnTile - 1) / kColumnTile * kColumnTile;
    std::vector<float> compact(entries * d);  // every document's distinct vectors, documents end to end
    for (int64_t e = 0; e < entries; ++e) {
        std::copy(V + distinct.row[e] * d, V + (distinct.row[e] + 1) * d, compact.data() + e * d);
    }
    std::vector<float> picks_t(picks * d * cols, 0.0f);  // each pick's distinct vectors, transposed (d, cols)
    const float lambda = static_cast<float>(diversity), keep = 1.0f - lambda;
    std::vector<float> closest(n, -std::numeric_limits<float>::infinity());  // max similarity to the picks met
    std::vector<int64_t> seen(n, 0);  // how many picks (in order) closest accounts for
    std::vector<char> taken(n, 0);
    std::vector<int64_t> picked, stale;
    const auto bound = [&](int64_t i) {
        return picked.empty() ? rel[i] : keep * rel[i] - lambda * std::max(closest[i], -1.0f);
    };
    const auto meet = [&](const std::vector<int64_t>& docs) {  // compare docs with the picks they have not met
        const int64_t t = static_cast<int64_t>(picked.size());
        parallel_for(0, static_cast<int64_t>(docs.size()), kDocsPerTask, [&](int64_t begin, int64_t end) {
            std::vector<float> scratch;
            for (int64_t j = begin; j < end; ++j) {
                const int64_t i = docs[j];
                for (int64_t p = seen[i]; p < t; ++p) {
                    const float* p_t = picks_t.data() + p * d * cols;
                    closest[i] = std::max(closest[i], similarity(distinct, compact.data(), d, i, picked[p], p_t, cols,
                                                                 scratch));
                }
                seen[i] = t;
            }
        });
    };

    while (static_cast<int64_t>(picked.size()) < picks) {
        const int64_t t = static_cast<int64_t>(picked.size());
        int64_t s = -1;
        while (true) {
            s = -1;
            float best = 0.0f, floor = -std::numeric_limits<float>::infinity();
            for (int64_t i = 0; i < n; ++i) {  // the first document of the highest bound, as argmax
                if (taken[i]) continue;
                const float gain = bound(i);
                if (s < 0 || gain > best) {
                    s = i;
                    best = gain;
                }
                if (seen[i] == t) floor = std::max(floor, gain);  // the best exact gain
            }
            if (seen[s] == t) break;
            stale.assign(1, s);  // s first; then whoever could still beat the exact gains once s's is known
            meet(stale);
            floor = std::max(floor, bound(s));
            stale.clear();
            for (int64_t i = 0; i < n; ++i) {
                if (!taken[i] && seen[i] < t && bound(i) >= floor) stale.push_back(i);
            }
            meet(stale);
        }
        out.data_ptr<int64_t>()[t] = s;
        picked.push_back(s);
        taken[s] = 1;
        float* s_t = picks_t.data() + t * d * cols;
        for (int64_t e = distinct.start[s]; e < distinct.start[s + 1]; ++e) {
            for (int64_t j = 0; j < d; ++j) s_t[j * cols + (e - distinct.start[s])] = compact[e * d + j];
        }
    }
    return out;
}

}  // namespace colbert
