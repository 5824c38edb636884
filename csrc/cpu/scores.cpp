// score_rows: a small dense matmul, scores (rows, Lq) = V (rows, d) @ Qt (d, Lq), for decompress_maxsim's per-thread
// blocks. Plain C++ (no torch headers). With GCC/Clang it uses vector extensions, register-blocked 4 rows x 16
// columns, and on x86-64 Linux (glibc) it is compiled three times and picked at load time for the CPU: AVX-512,
// AVX2+FMA, or the baseline. A BLAS call per thread inside parallel_for would nest thread pools instead.
#include <cstdint>
#include <cstring>

#include "clones.h"

namespace colbert {

namespace {

constexpr int kRowTile = 4;   // rows scored together, so each Qt load feeds four rows
constexpr int kColTile = 16;  // query columns per tile: two 8-float vectors

float dot_column(const float* v, int64_t d, const float* Qt, int64_t Lq, int64_t q) {
    float acc = 0.0f;
    for (int64_t k = 0; k < d; ++k) acc += v[k] * Qt[k * Lq + q];
    return acc;
}

#if defined(__GNUC__)
typedef float f8 __attribute__((vector_size(32)));  // 8 floats; the compiler maps it to the target's registers

// out[t, q0:q0+16] for t < ROWS: the accumulators stay in registers for the whole k loop.
template <int ROWS>
inline __attribute__((always_inline)) void tile(const float* v, int64_t d, const float* Qt, int64_t Lq, int64_t q0,
                                                float* out) {
    f8 acc[ROWS][2] = {};
    for (int64_t k = 0; k < d; ++k) {
        f8 lo, hi;
        std::memcpy(&lo, Qt + k * Lq + q0, sizeof(f8));
        std::memcpy(&hi, Qt + k * Lq + q0 + 8, sizeof(f8));
        for (int t = 0; t < ROWS; ++t) {
            const float vk = v[t * d + k];
            acc[t][0] += vk * lo;
            acc[t][1] += vk * hi;
        }
    }
    for (int t = 0; t < ROWS; ++t) {
        std::memcpy(out + t * Lq + q0, &acc[t][0], sizeof(f8));
        std::memcpy(out + t * Lq + q0 + 8, &acc[t][1], sizeof(f8));
    }
}
#else
template <int ROWS>
void tile(const float* v, int64_t d, const float* Qt, int64_t Lq, int64_t q0, float* out) {
    for (int t = 0; t < ROWS; ++t) {
        for (int64_t q = q0; q < q0 + kColTile; ++q) out[t * Lq + q] = dot_column(v + t * d, d, Qt, Lq, q);
    }
}
#endif

// Rows [0, ROWS) of a tile row: full 16-column tiles, then the leftover columns one by one.
template <int ROWS>
inline void score_tile_row(const float* v, int64_t d, const float* Qt, int64_t Lq, float* out) {
    int64_t q = 0;
    for (; q + kColTile <= Lq; q += kColTile) tile<ROWS>(v, d, Qt, Lq, q, out);
    for (int t = 0; t < ROWS; ++t) {
        for (int64_t rest = q; rest < Lq; ++rest) out[t * Lq + rest] = dot_column(v + t * d, d, Qt, Lq, rest);
    }
}

}  // namespace

// Declared in kernels.h (not included here, so that this file compiles without the torch headers, in a second).
COLBERT_CPU_CLONES void score_rows(const float* v, int64_t rows, int64_t d, const float* Qt, int64_t Lq,
                                   float* out) {
    int64_t t = 0;
    for (; t + kRowTile <= rows; t += kRowTile) score_tile_row<kRowTile>(v + t * d, d, Qt, Lq, out + t * Lq);
    for (; t < rows; ++t) score_tile_row<1>(v + t * d, d, Qt, Lq, out + t * Lq);
}

}  // namespace colbert
