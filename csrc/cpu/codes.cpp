// refine_codes: the nearest centroid of each embedding, exactly, from scores a fast low-precision matmul computed.
// A row's candidates are the centroids whose approximate score (plus an optional per-centroid bias, -|c|^2 / 2 in
// k-means) is within `slack` of the row's best; each candidate is re-scored in float32 and the best one wins (the
// lowest index on ties). With a slack that
// bounds the approximation error twice over, the true nearest centroid is always a candidate (see
// colbert/indexing/kmeans.py). Contract: colbert/kernels/__init__.py; twin: colbert/kernels/reference.py.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../kernels.h"
#include "parallel.h"
#include "clones.h"

#if defined(__GNUC__) && !defined(__clang__)
// approximate scores are score * scale + bias in two roundings, as the PyTorch twin computes them: GCC would fuse
// them into one FMA (it contracts across statements by default), which can move a candidate across the threshold
#pragma GCC optimize("fp-contract=off")
#endif

namespace colbert {

namespace {

constexpr int64_t kRowsPerTask = 64;  // parallel_for grain over embeddings
constexpr int64_t kLanes = 16;        // floats per vector: one AVX-512 register, two AVX2 ones
constexpr int64_t kGroup = 4 * kLanes;  // scores whose lane-wise maximum is kept for the second pass
constexpr int64_t kSpan = 8;            // groups whose maxima the second pass tests with one horizontal maximum

inline float bf16_to_float(uint16_t bits) {
    const uint32_t widened = uint32_t{bits} << 16;  // bfloat16 is the top half of a float32
    float out;
    std::memcpy(&out, &widened, sizeof(out));
    return out;
}

inline float score_at(const uint16_t* s, int64_t c) { return bf16_to_float(s[c]); }
inline float score_at(const float* s, int64_t c) { return s[c]; }
inline float score_at(const int32_t* s, int64_t c) { return static_cast<float>(s[c]); }

// What turns a row's scores into approximate scores: score * row_scale + bias[c], each part optional (scaled
// false: no scaling; bias null: no bias).
struct Terms {
    const float* bias;
    bool scaled;
    float row_scale;
};

// The approximate score of centroid c (two roundings, never fused: see the pragma above).
template <bool kBias, bool kScale, typename score_t>
inline float approx_at(const score_t* s, const Terms& t, int64_t c) {
    float v = score_at(s, c);
    if (kScale) v = v * t.row_scale;
    if (kBias) v = v + t.bias[c];
    return v;
}

#if defined(__GNUC__)
typedef float f16v __attribute__((vector_size(64)));
typedef uint32_t u16v __attribute__((vector_size(64)));
typedef int32_t i16v __attribute__((vector_size(64)));
typedef uint16_t h16v __attribute__((vector_size(32)));

#define COLBERT_INLINE inline __attribute__((always_inline))

// The vector of type V at p (any alignment).
template <typename V, typename E>
COLBERT_INLINE V load_lanes(const E* p) {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

// kLanes scores from s on, as float32.
COLBERT_INLINE f16v load(const float* s) { return load_lanes<f16v>(s); }

COLBERT_INLINE f16v load(const uint16_t* s) {
    const u16v widened = __builtin_convertvector(load_lanes<h16v>(s), u16v) << 16;  // bf16: a float's top half
    return load_lanes<f16v>(&widened);
}

COLBERT_INLINE f16v load(const int32_t* s) { return __builtin_convertvector(load_lanes<i16v>(s), f16v); }

// approx_at for the kLanes centroids from c on, with the same operations in the same order.
template <bool kBias, bool kScale, typename score_t>
COLBERT_INLINE f16v load_approx(const score_t* s, const Terms& t, int64_t c) {
    f16v v = load(s + c);
    if (kScale) v = v * t.row_scale;
    if (kBias) v = v + load(t.bias + c);
    return v;
}

template <typename V>
COLBERT_INLINE V vmax(V a, V b) { return a > b ? a : b; }

// The largest lane, by halving: four shuffle-and-max steps instead of fifteen dependent scalar ones.
template <typename V>
COLBERT_INLINE auto hmax(V v) {
    const u16v i8 = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
    const u16v i4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
    const u16v i2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
    const u16v i1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
    v = vmax(v, __builtin_shuffle(v, i8));
    v = vmax(v, __builtin_shuffle(v, i4));
    v = vmax(v, __builtin_shuffle(v, i2));
    v = vmax(v, __builtin_shuffle(v, i1));
    return v[0];
}

// The best of the first `groups` * kGroup values (`at(c)`: the kLanes values from c on); the lane-wise maximum of
// each group of kGroup goes to `maxima`.
template <typename V, typename E, typename At>
COLBERT_INLINE E group_maxima(const At& at, int64_t groups, E* maxima) {
    V best = at(0);
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t c = g * kGroup;
        const V m = vmax(vmax(at(c), at(c + kLanes)), vmax(at(c + 2 * kLanes), at(c + 3 * kLanes)));
        std::memcpy(maxima + g * kLanes, &m, sizeof(m));
        best = vmax(best, m);
    }
    return hmax(best);
}

// visit(c) for every c of the groups whose maximum reaches `threshold`, in increasing order. Candidates are few
// (about one to three a row): kSpan groups' maxima are tested at once, and a span, then a group, is looked into
// only when its maximum reaches the threshold.
template <typename V, typename E, typename Visit>
COLBERT_INLINE void visit_groups_reaching(const E* maxima, int64_t groups, E threshold, const Visit& visit) {
    for (int64_t first = 0; first < groups; first += kSpan) {
        const int64_t last = std::min(first + kSpan, groups);
        V span = load_lanes<V>(maxima + first * kLanes);
        for (int64_t g = first + 1; g < last; ++g) span = vmax(span, load_lanes<V>(maxima + g * kLanes));
        if (!(hmax(span) >= threshold)) continue;
        for (int64_t g = first; g < last; ++g) {
            if (!(hmax(load_lanes<V>(maxima + g * kLanes)) >= threshold)) continue;
            for (int64_t c = g * kGroup; c < (g + 1) * kGroup; ++c) visit(c);
        }
    }
}
#else
#define COLBERT_INLINE inline
#endif

// Appends to `out`, in increasing order, the centroids whose approximate score is within `slack` of the best one.
template <bool kBias, bool kScale, typename score_t>
COLBERT_INLINE void screen(const score_t* s, const Terms& t, int64_t C, float slack, std::vector<int64_t>& out,
                           std::vector<float>& scratch) {
    int64_t done = 0;
    float best = -std::numeric_limits<float>::infinity();
#if defined(__GNUC__)
    const int64_t groups = C / kGroup;
    scratch.resize(groups * kLanes);
    float* maxima = scratch.data();
    const auto at = [&](int64_t c) { return load_approx<kBias, kScale>(s, t, c); };
    if (groups > 0) best = group_maxima<f16v>(at, groups, maxima);
    done = groups * kGroup;
#endif
    for (int64_t c = done; c < C; ++c) best = std::max(best, approx_at<kBias, kScale>(s, t, c));
    const float threshold = best - slack;
    const auto keep = [&](int64_t c) {
        if (approx_at<kBias, kScale>(s, t, c) >= threshold) out.push_back(c);
    };
#if defined(__GNUC__)
    visit_groups_reaching<f16v>(maxima, groups, threshold, keep);
#endif
    for (int64_t c = done; c < C; ++c) keep(c);
}

// One compiled copy per score type and choice of terms, each cloned for the CPU's vector width.
template <typename score_t>
COLBERT_INLINE void screen_any(const score_t* s, const Terms& t, int64_t C, float slack, std::vector<int64_t>& out,
                               std::vector<float>& scratch) {
    if (t.bias && t.scaled) return screen<true, true>(s, t, C, slack, out, scratch);
    if (t.bias) return screen<true, false>(s, t, C, slack, out, scratch);
    if (t.scaled) return screen<false, true>(s, t, C, slack, out, scratch);
    screen<false, false>(s, t, C, slack, out, scratch);
}

// int32 scores times a positive row scale, without bias: float(I) * r is non-decreasing in I, so the screen runs on
// the integers. The best is float(M) * r for the largest score M, and the candidates are the scores from I_min up,
// the smallest integer whose float(I_min) * r reaches the threshold (found from a guess, then checked with that
// same expression, so the candidates are exactly those of `screen`).
COLBERT_INLINE void screen_int(const int32_t* s, float r, int64_t C, float slack, std::vector<int64_t>& out,
                               std::vector<float>& scratch) {
    int64_t done = 0;
    int32_t best = std::numeric_limits<int32_t>::min();
#if defined(__GNUC__)
    const int64_t groups = C / kGroup;
    scratch.resize(groups * kLanes);  // int32 maxima, in the float scratch's bytes (read and written by memcpy)
    int32_t* maxima = reinterpret_cast<int32_t*>(scratch.data());
    const auto at = [&](int64_t c) { return load_lanes<i16v>(s + c); };
    if (groups > 0) best = group_maxima<i16v>(at, groups, maxima);
    done = groups * kGroup;
#endif
    for (int64_t c = done; c < C; ++c) best = std::max(best, s[c]);
    const auto value = [r](int64_t i) { return static_cast<float>(static_cast<int32_t>(i)) * r; };
    const float threshold = value(best) - slack;
    int64_t low = static_cast<int64_t>(std::ceil(static_cast<double>(threshold) / r));
    low = std::min<int64_t>(std::max<int64_t>(low, std::numeric_limits<int32_t>::min()), best);
    while (low < best && !(value(low) >= threshold)) ++low;  // (value(best) >= threshold: slack >= 0)
    while (low > std::numeric_limits<int32_t>::min() && value(low - 1) >= threshold) --low;
    const int32_t lowest = static_cast<int32_t>(low);
    const auto keep = [&](int64_t c) {
        if (s[c] >= lowest) out.push_back(c);
    };
#if defined(__GNUC__)
    visit_groups_reaching<i16v>(maxima, groups, lowest, keep);
#endif
    for (int64_t c = done; c < C; ++c) keep(c);
}

COLBERT_CPU_CLONES void screen_row(const uint16_t* s, const Terms& t, int64_t C, float slack,
                                   std::vector<int64_t>& out, std::vector<float>& scratch) {
    screen_any(s, t, C, slack, out, scratch);
}

COLBERT_CPU_CLONES void screen_row(const float* s, const Terms& t, int64_t C, float slack,
                                   std::vector<int64_t>& out, std::vector<float>& scratch) {
    screen_any(s, t, C, slack, out, scratch);
}

COLBERT_CPU_CLONES void screen_row(const int32_t* s, const Terms& t, int64_t C, float slack,
                                   std::vector<int64_t>& out, std::vector<float>& scratch) {
    if (t.scaled && !t.bias && t.row_scale > 0.0f && std::isfinite(t.row_scale)) {
        return screen_int(s, t.row_scale, C, slack, out, scratch);
    }
    screen_any(s, t, C, slack, out, scratch);
}

// float32 dot product in kLanes partial sums (so that it vectorises), added up in a fixed order.
COLBERT_CPU_CLONES float dot(const float* a, const float* b, int64_t d) {
    float lanes[kLanes] = {};
    int64_t k = 0;
    for (; k + kLanes <= d; k += kLanes) {
        for (int64_t j = 0; j < kLanes; ++j) lanes[j] += a[k + j] * b[k + j];
    }
    float total = 0.0f;
    for (int64_t j = 0; j < kLanes; ++j) total += lanes[j];
    for (; k < d; ++k) total += a[k] * b[k];
    return total;
}

// The code of one embedding: the best exact score (dot product plus bias) among the candidates; the first centroid
// when there is none (only possible when the row's scores are NaN), as the twin's argmax.
template <typename score_t>
int32_t refine_row(const score_t* s, const Terms& t, float slack, const float* x, const float* centroids, int64_t C,
                   int64_t d, std::vector<int64_t>& candidates, std::vector<float>& scratch) {
    candidates.clear();
    screen_row(s, t, C, slack, candidates, scratch);
    int64_t best = 0;
    float best_score = -std::numeric_limits<float>::infinity();
    bool found = false;
    for (const int64_t c : candidates) {
        const float exact = t.bias ? dot(x, centroids + c * d, d) + t.bias[c] : dot(x, centroids + c * d, d);
        if (!found || exact > best_score) best = c, best_score = exact, found = true;
    }
    return static_cast<int32_t>(best);
}

template <typename score_t>
void refine_all(const score_t* s, const float* slack, const float* x, const float* centroids, const float* bias,
                const float* row_scale, int64_t n, int64_t C, int64_t d, int32_t* out) {
    parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
        std::vector<int64_t> candidates;
        std::vector<float> scratch;
        for (int64_t i = begin; i < end; ++i) {
            const Terms t{bias, row_scale != nullptr, row_scale ? row_scale[i] : 1.0f};
            out[i] = refine_row(s + i * C, t, slack[i], x + i * d, centroids, C, d, candidates, scratch);
        }
    });
}

}  // namespace

at::Tensor refine_codes_cpu(const at::Tensor& scores, const at::Tensor& slack, const at::Tensor& embeddings,
                            const at::Tensor& centroids, const std::optional<at::Tensor>& bias,
                            const std::optional<at::Tensor>& row_scale) {
    TORCH_CHECK(scores.dim() == 2 && (scores.scalar_type() == at::kBFloat16 || scores.scalar_type() == at::kFloat ||
                                      scores.scalar_type() == at::kInt),
                "refine_codes: scores must be a 2-D bfloat16/float32/int32 tensor (n, C), got ",
                scores.scalar_type(), " of shape ", scores.sizes());
    TORCH_CHECK(embeddings.dim() == 2 && embeddings.scalar_type() == at::kFloat &&
                    embeddings.size(0) == scores.size(0),
                "refine_codes: embeddings must be a float32 (", scores.size(0), ", d) tensor, got ",
                embeddings.scalar_type(), " of shape ", embeddings.sizes());
    TORCH_CHECK(centroids.dim() == 2 && centroids.scalar_type() == at::kFloat &&
                    centroids.size(0) == scores.size(1) && centroids.size(1) == embeddings.size(1),
                "refine_codes: centroids must be a float32 (", scores.size(1), ", ", embeddings.size(1),
                ") tensor, got ", centroids.scalar_type(), " of shape ", centroids.sizes());
    TORCH_CHECK(slack.dim() == 1 && slack.scalar_type() == at::kFloat && slack.size(0) == scores.size(0),
                "refine_codes: slack must be a float32 (", scores.size(0), ",) tensor");
    TORCH_CHECK(scores.size(1) > 0 || scores.size(0) == 0, "refine_codes: there must be at least one centroid");
    const auto check_vector = [](const std::optional<at::Tensor>& v, int64_t size, const char* name) {
        TORCH_CHECK(!v.has_value() || (v->dim() == 1 && v->scalar_type() == at::kFloat && v->size(0) == size),
                    "refine_codes: ", name, " must be a float32 (", size, ",) tensor");
    };
    check_vector(bias, scores.size(1), "bias");
    check_vector(row_scale, scores.size(0), "row_scale");
    const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
    const at::Tensor rs = row_scale.has_value() ? row_scale->contiguous() : at::Tensor();
    const float* b_p = bias.has_value() ? b.data_ptr<float>() : nullptr;
    const float* rs_p = row_scale.has_value() ? rs.data_ptr<float>() : nullptr;
    const at::Tensor s = scores.contiguous(), x = embeddings.contiguous(), c = centroids.contiguous();
    const at::Tensor sl = slack.contiguous();
    const int64_t n = s.size(0), C = s.size(1), d = x.size(1);
    at::Tensor out = at::empty({n}, s.options().dtype(at::kInt));
    int32_t* out_p = out.data_ptr<int32_t>();
    const float* x_p = x.data_ptr<float>();
    const float* c_p = c.data_ptr<float>();
    const float* slack_p = sl.data_ptr<float>();
    switch (s.scalar_type()) {
        case at::kBFloat16:
            refine_all(static_cast<const uint16_t*>(s.data_ptr()), slack_p, x_p, c_p, b_p, rs_p, n, C, d, out_p);
            break;
        case at::kInt:
            refine_all(s.data_ptr<int32_t>(), slack_p, x_p, c_p, b_p, rs_p, n, C, d, out_p);
            break;
        default:
            refine_all(s.data_ptr<float>(), slack_p, x_p, c_p, b_p, rs_p, n, C, d, out_p);
    }
    return out;
}

}  // namespace colbert
