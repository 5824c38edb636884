// refine_codes: the nearest centroid of each embedding, exactly, from scores a fast low-precision matmul computed.
// A row's candidates are the centroids whose approximate score (plus an optional per-centroid bias, -|c|^2 / 2 in
// k-means) is within `slack` of the row's best; each candidate is re-scored in float32 and the best one wins (the
// lowest index on ties). With a slack that
// bounds the approximation error twice over, the true nearest centroid is always a candidate (see
// colbert/indexing/kmeans.py). Contract: colbert/kernels/__init__.py; twin: colbert/kernels/reference.py.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../kernels.h"
#include "clones.h"

namespace colbert {

namespace {

constexpr int64_t kRowsPerTask = 64;  // parallel_for grain over embeddings
constexpr int64_t kLanes = 16;        // floats per vector: one AVX-512 register, two AVX2 ones
constexpr int64_t kGroup = 4 * kLanes;  // scores whose lane-wise maximum is kept for the second pass

inline float bf16_to_float(uint16_t bits) {
    const uint32_t widened = uint32_t{bits} << 16;  // bfloat16 is the top half of a float32
    float out;
    std::memcpy(&out, &widened, sizeof(out));
    return out;
}

inline float score_at(const uint16_t* s, int64_t c) { return bf16_to_float(s[c]); }
inline float score_at(const float* s, int64_t c) { return s[c]; }

// The approximate score of centroid c: the given score plus, with a bias, the centroid's bias.
template <typename score_t>
inline float approx_at(const score_t* s, const float* bias, int64_t c) {
    return bias ? score_at(s, c) + bias[c] : score_at(s, c);
}

#if defined(__GNUC__)
typedef float f16v __attribute__((vector_size(64)));
typedef uint32_t u16v __attribute__((vector_size(64)));
typedef uint16_t h16v __attribute__((vector_size(32)));

#define COLBERT_INLINE inline __attribute__((always_inline))

COLBERT_INLINE f16v load(const float* s) {
    f16v v;
    std::memcpy(&v, s, sizeof(v));
    return v;
}

COLBERT_INLINE f16v load(const uint16_t* s) {
    h16v h;
    std::memcpy(&h, s, sizeof(h));
    const u16v widened = __builtin_convertvector(h, u16v) << 16;
    f16v v;
    std::memcpy(&v, &widened, sizeof(v));
    return v;
}

template <bool kBias, typename score_t>
COLBERT_INLINE f16v load_approx(const score_t* s, const float* bias) {
    return kBias ? load(s) + load(bias) : load(s);
}

COLBERT_INLINE f16v vmax(f16v a, f16v b) { return a > b ? a : b; }

COLBERT_INLINE float hmax(f16v v) {
    float best = v[0];
    for (int j = 1; j < kLanes; ++j) best = std::max(best, v[j]);
    return best;
}

// The best of the first `groups` * kGroup approximate scores; the lane-wise maximum of each group goes to `maxima`.
template <bool kBias, typename score_t>
COLBERT_INLINE float group_maxima(const score_t* s, const float* bias, int64_t groups, float* maxima) {
    // (no arithmetic on a null bias pointer)
    const auto at = [&](int64_t c) { return load_approx<kBias>(s + c, kBias ? bias + c : bias); };
    f16v best = at(0);
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t c = g * kGroup;
        const f16v m = vmax(vmax(at(c), at(c + kLanes)), vmax(at(c + 2 * kLanes), at(c + 3 * kLanes)));
        std::memcpy(maxima + g * kLanes, &m, sizeof(m));
        best = vmax(best, m);
    }
    return hmax(best);
}
#else
#define COLBERT_INLINE inline
#endif

// Appends to `out`, in increasing order, the centroids whose approximate score is within `slack` of the best one.
template <bool kBias, typename score_t>
COLBERT_INLINE void screen(const score_t* s, const float* bias, int64_t C, float slack, std::vector<int64_t>& out,
                           std::vector<float>& scratch) {
    int64_t done = 0;
    float best = -std::numeric_limits<float>::infinity();
#if defined(__GNUC__)
    const int64_t groups = C / kGroup;
    scratch.resize(groups * kLanes);
    float* maxima = scratch.data();
    if (groups > 0) best = group_maxima<kBias>(s, bias, groups, maxima);
    done = groups * kGroup;
#endif
    for (int64_t c = done; c < C; ++c) best = std::max(best, approx_at(s, bias, c));
    const float threshold = best - slack;
#if defined(__GNUC__)
    for (int64_t g = 0; g < groups; ++g) {
        if (!(hmax(load(maxima + g * kLanes)) >= threshold)) continue;
        for (int64_t c = g * kGroup; c < (g + 1) * kGroup; ++c) {
            if (approx_at(s, bias, c) >= threshold) out.push_back(c);
        }
    }
#endif
    for (int64_t c = done; c < C; ++c) {
        if (approx_at(s, bias, c) >= threshold) out.push_back(c);
    }
}

// One compiled copy per score type, each cloned for the CPU's vector width; bias may be null.
COLBERT_CPU_CLONES void screen_row(const uint16_t* s, const float* bias, int64_t C, float slack,
                                   std::vector<int64_t>& out, std::vector<float>& scratch) {
    bias ? screen<true>(s, bias, C, slack, out, scratch) : screen<false>(s, bias, C, slack, out, scratch);
}

COLBERT_CPU_CLONES void screen_row(const float* s, const float* bias, int64_t C, float slack,
                                   std::vector<int64_t>& out, std::vector<float>& scratch) {
    bias ? screen<true>(s, bias, C, slack, out, scratch) : screen<false>(s, bias, C, slack, out, scratch);
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
int32_t refine_row(const score_t* s, float slack, const float* x, const float* centroids, const float* bias,
                   int64_t C, int64_t d, std::vector<int64_t>& candidates, std::vector<float>& scratch) {
    candidates.clear();
    screen_row(s, bias, C, slack, candidates, scratch);
    int64_t best = 0;
    float best_score = -std::numeric_limits<float>::infinity();
    bool found = false;
    for (const int64_t c : candidates) {
        const float exact = bias ? dot(x, centroids + c * d, d) + bias[c] : dot(x, centroids + c * d, d);
        if (!found || exact > best_score) best = c, best_score = exact, found = true;
    }
    return static_cast<int32_t>(best);
}

}  // namespace

at::Tensor refine_codes_cpu(const at::Tensor& scores, const at::Tensor& slack, const at::Tensor& embeddings,
                            const at::Tensor& centroids, const std::optional<at::Tensor>& bias) {
    TORCH_CHECK(scores.dim() == 2 && (scores.scalar_type() == at::kBFloat16 || scores.scalar_type() == at::kFloat),
                "refine_codes: scores must be a 2-D bfloat16/float32 tensor (n, C), got ", scores.scalar_type(),
                " of shape ", scores.sizes());
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
    if (bias.has_value()) {
        TORCH_CHECK(bias->dim() == 1 && bias->scalar_type() == at::kFloat && bias->size(0) == scores.size(1),
                    "refine_codes: bias must be a float32 (", scores.size(1), ",) tensor");
    }
    const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
    const float* b_p = bias.has_value() ? b.data_ptr<float>() : nullptr;
    const at::Tensor s = scores.contiguous(), x = embeddings.contiguous(), c = centroids.contiguous();
    const at::Tensor sl = slack.contiguous();
    const int64_t n = s.size(0), C = s.size(1), d = x.size(1);
    at::Tensor out = at::empty({n}, s.options().dtype(at::kInt));
    int32_t* out_p = out.data_ptr<int32_t>();
    const float* x_p = x.data_ptr<float>();
    const float* c_p = c.data_ptr<float>();
    const float* slack_p = sl.data_ptr<float>();
    const bool low = s.scalar_type() == at::kBFloat16;
    const void* s_p = s.data_ptr();
    at::parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
        std::vector<int64_t> candidates;
        std::vector<float> scratch;
        for (int64_t i = begin; i < end; ++i) {
            out_p[i] = low ? refine_row(static_cast<const uint16_t*>(s_p) + i * C, slack_p[i], x_p + i * d, c_p, b_p,
                                        C, d, candidates, scratch)
                           : refine_row(static_cast<const float*>(s_p) + i * C, slack_p[i], x_p + i * d, c_p, b_p, C,
                                        d, candidates, scratch);
        }
    });
    return out;
}

}  // namespace colbert
