// CPU kernels for the residual codec: compress_residuals, decompress_residuals and the fused decompress_maxsim.
// Bit layout and the reference behaviour each op matches: csrc/README.md.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../kernels.h"
#include "parallel.h"

namespace colbert {

namespace {

constexpr int64_t kRowsPerTask = 256;       // parallel_for grain over embeddings
constexpr int64_t kTokensPerBlock = 256;    // decompress_maxsim: rows decoded per thread at once (128 KiB at d=128)
constexpr float kNormEps = 1e-12f;          // as torch.nn.functional.normalize

// table[b * (8 / nbits) + k] = the bucket weight stored in slot k of a packed byte whose value is b.
std::vector<float> byte_table(const at::Tensor& bucket_weights, int nbits) {
    const at::Tensor weights = bucket_weights.contiguous();
    const float* w = weights.data_ptr<float>();
    const int per_byte = 8 / nbits, mask = (1 << nbits) - 1;
    std::vector<float> table(256 * per_byte);
    for (int b = 0; b < 256; ++b) {
        for (int k = 0; k < per_byte; ++k) {
            const int field = (b >> (8 - nbits * (k + 1))) & mask;
            table[b * per_byte + k] = w[reverse_bits(field, nbits)];
        }
    }
    return table;
}

constexpr int64_t kPrefetchRows = 4;       // decoders fetch the centroid of the row this many rows ahead

// out[i] = centroid[i] + bucket weight of dimension i, for one embedding of packed_dim bytes.
template <int NBITS>
void decode_row(const uint8_t* __restrict__ bytes, int64_t packed_dim, const float* __restrict__ centroid,
                const float* __restrict__ table, float* __restrict__ out) {
    constexpr int kPerByte = 8 / NBITS;
    for (int64_t j = 0; j < packed_dim; ++j) {
        const float* w = table + bytes[j] * kPerByte;
        for (int k = 0; k < kPerByte; ++k) out[j * kPerByte + k] = centroid[j * kPerByte + k] + w[k];
    }
}

using DecodeFn = void (*)(const uint8_t*, int64_t, const float*, const float*, float*);

DecodeFn decoder(int64_t nbits) {
    return nbits == 1 ? &decode_row<1> : nbits == 2 ? &decode_row<2> : &decode_row<4>;
}

// max(||v||, eps), the divisor of torch.nn.functional.normalize.
float row_norm(const float* v, int64_t d) {
    float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // eight independent sums so the loop vectorises
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        for (int k = 0; k < 8; ++k) partial[k] += v[i + k] * v[i + k];
    }
    float sumsq = 0;
    for (; i < d; ++i) sumsq += v[i] * v[i];
    for (int k = 0; k < 8; ++k) sumsq += partial[k];
    return std::max(std::sqrt(sumsq), kNormEps);
}

// Ask for the centroid of row i + kPrefetchRows (when it is below `end` and a centroid id): codes are random, so
// each row's centroid is a cache miss that the hardware prefetcher cannot foresee; decoding waits on it otherwise.
template <typename index_t>
void prefetch_centroid(const index_t* codes, int64_t i, int64_t end, const float* centroids, int64_t d,
                       int64_t num_centroids) {
    if (i + kPrefetchRows >= end) return;
    const int64_t code = codes[i + kPrefetchRows];
    if (code < 0 || code >= num_centroids) return;  // checked_code raises when that row is decoded
    const char* row = reinterpret_cast<const char*>(centroids + code * d);
    for (int64_t byte = 0; byte < d * static_cast<int64_t>(sizeof(float)); byte += 64) __builtin_prefetch(row + byte);
}

template <typename index_t>
int64_t checked_code(const index_t* codes, int64_t i, int64_t num_centroids) {
    const int64_t code = codes[i];
    TORCH_CHECK_INDEX(code >= 0 && code < num_centroids, "codes[", i, "] = ", code,
                      " is not a centroid id in [0, ", num_centroids, ")");
    return code;
}

}  // namespace

at::Tensor compress_residuals_cpu(const at::Tensor& residuals, const at::Tensor& bucket_cutoffs, int64_t nbits) {
    check_compress_inputs(residuals, bucket_cutoffs, nbits);
    const at::Tensor x = residuals.contiguous(), cuts = bucket_cutoffs.contiguous();
    const int64_t n = x.size(0), d = x.size(1), packed_dim = d * nbits / 8, ncuts = cuts.numel();
    const int per_byte = static_cast<int>(8 / nbits);
    at::Tensor out = at::empty({n, packed_dim}, x.options().dtype(at::kByte));
    const float* cut = cuts.data_ptr<float>();
    uint8_t* packed = out.data_ptr<uint8_t>();
    std::vector<int> reversed(ncuts + 1);
    for (int64_t id = 0; id <= ncuts; ++id) reversed[id] = reverse_bits(static_cast<int>(id), static_cast<int>(nbits));

    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "compress_residuals", [&] {
        const scalar_t* values = x.data_ptr<scalar_t>();
        parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
            for (int64_t row = begin; row < end; ++row) {
                const scalar_t* v = values + row * d;
                for (int64_t j = 0; j < packed_dim; ++j) {
                    int byte = 0;
                    for (int k = 0; k < per_byte; ++k) {
                        const float value = static_cast<float>(v[j * per_byte + k]);
                        int id = 0;  // torch.bucketize(right=False): cutoffs strictly below value; NaN -> last
                        for (int64_t c = 0; c < ncuts; ++c) id += !(cut[c] >= value);
                        byte |= reversed[id] << (8 - nbits * (k + 1));
                    }
                    packed[row * packed_dim + j] = static_cast<uint8_t>(byte);
                }
            }
        });
    });
    return out;
}

at::Tensor decompress_residuals_cpu(const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& centroids,
                                    const at::Tensor& bucket_weights, int64_t nbits, bool normalize,
                                    at::ScalarType dtype) {
    check_decompress_inputs(codes, packed, centroids, bucket_weights, nbits);
    TORCH_CHECK(at::isFloatingType(dtype), "decompress_residuals: dtype must be a floating type, got ", dtype);
    const at::Tensor cent = centroids.to(at::kFloat).contiguous(), bytes = packed.contiguous();
    const at::Tensor code_t = codes.contiguous();
    const int64_t n = code_t.size(0), d = cent.size(1), num_centroids = cent.size(0), packed_dim = bytes.size(1);
    at::Tensor out = at::empty({n, d}, cent.options().dtype(dtype));
    const std::vector<float> table = byte_table(bucket_weights, static_cast<int>(nbits));
    const DecodeFn decode = decoder(nbits);
    const float* cent_p = cent.data_ptr<float>();
    const uint8_t* bytes_p = bytes.data_ptr<uint8_t>();

    AT_DISPATCH_INDEX_TYPES(code_t.scalar_type(), "decompress_residuals", [&] {
        const index_t* code_p = code_t.data_ptr<index_t>();
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "decompress_residuals_out", [&] {
            scalar_t* out_p = out.data_ptr<scalar_t>();
            parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
                std::vector<float> row(d);
                for (int64_t i = begin; i < end; ++i) {
                    prefetch_centroid(code_p, i, end, cent_p, d, num_centroids);
                    const int64_t code = checked_code(code_p, i, num_centroids);
                    decode(bytes_p + i * packed_dim, packed_dim, cent_p + code * d, table.data(), row.data());
                    const float norm = normalize ? row_norm(row.data(), d) : 1.0f;
                    for (int64_t k = 0; k < d; ++k) out_p[i * d + k] = static_cast<scalar_t>(row[k] / norm);
                }
            });
        });
    });
    return out;
}

namespace {

// decompress_maxsim, and with kRows also each query column's best row (first on ties), that row's normalised
// vector and the first query column that matched the same row: the same loop, so the two agree on every score bit
// for bit. The vectors are copied from the thread's decoded block (decoded again when an earlier block held them), so
// diverse search needs no second parallel pass to decompress its evidence.
template <bool kRows>
void fused_maxsim(const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& lengths,
                  const at::Tensor& centroids, const at::Tensor& bucket_weights, int64_t nbits, at::Tensor& out,
                  at::Tensor& rows_out, at::Tensor& vectors_out, at::Tensor& first_out) {
    const at::Tensor cent = centroids.to(at::kFloat).contiguous(), bytes = packed.contiguous();
    const at::Tensor code_t = codes.contiguous(), lens = lengths.contiguous();
    const at::Tensor Qt = Q.t().contiguous();  // (d, Lq)
    const int64_t ndocs = lens.size(0), d = cent.size(1), Lq = Q.size(0);
    const int64_t num_centroids = cent.size(0), packed_dim = bytes.size(1);
    if (ndocs == 0 || Lq == 0) return;

    std::vector<int64_t> offsets(ndocs + 1, 0);  // doc i is rows [offsets[i], offsets[i + 1])
    const int64_t* len_p = lens.data_ptr<int64_t>();
    for (int64_t i = 0; i < ndocs; ++i) offsets[i + 1] = offsets[i] + len_p[i];
    const std::vector<float> table = byte_table(bucket_weights, static_cast<int>(nbits));
    const DecodeFn decode = decoder(nbits);
    const float* cent_p = cent.data_ptr<float>();
    const uint8_t* bytes_p = bytes.data_ptr<uint8_t>();
    const float* Qt_p = Qt.data_ptr<float>();
    float* out_p = out.data_ptr<float>();
    int64_t* rows_p = kRows ? rows_out.data_ptr<int64_t>() : nullptr;
    float* vectors_p = kRows ? vectors_out.data_ptr<float>() : nullptr;
    int64_t* first_p = kRows ? first_out.data_ptr<int64_t>() : nullptr;

    // Each task owns documents [begin, end). It decodes a document kTokensPerBlock rows at a time into its own
    // buffer, scores the block against Q (score_rows: no BLAS call, so no thread pool nested inside parallel_for)
    // and keeps the per-column maxima. Dividing the scores by the norms, not the vectors, saves a pass.
    AT_DISPATCH_INDEX_TYPES(code_t.scalar_type(), "decompress_maxsim", [&] {
        const index_t* code_p = code_t.data_ptr<index_t>();
        parallel_for(0, ndocs, 1, [&](int64_t begin, int64_t end) {
            std::vector<float> block(kTokensPerBlock * d), scores(kTokensPerBlock * Lq), norms(kTokensPerBlock);
            std::vector<float> best(Lq);
            std::vector<float> block_best(kRows ? Lq : 0);
            std::vector<int32_t> best_at(kRows ? Lq : 0);  // row within the document
            std::vector<float> spare(kRows ? d : 0);
            for (int64_t doc = begin; doc < end; ++doc) {
                std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
                if constexpr (kRows) std::fill(best_at.begin(), best_at.end(), 0);
                for (int64_t start = offsets[doc]; start < offsets[doc + 1]; start += kTokensPerBlock) {
                    const int64_t rows = std::min(kTokensPerBlock, offsets[doc + 1] - start);
                    for (int64_t r = 0; r < rows; ++r) {
                        prefetch_centroid(code_p, start + r, offsets[end], cent_p, d, num_centroids);
                        const int64_t code = checked_code(code_p, start + r, num_centroids);
                        float* v = block.data() + r * d;
                        decode(bytes_p + (start + r) * packed_dim, packed_dim, cent_p + code * d, table.data(), v);
                        norms[r] = row_norm(v, d);
                    }
                    score_rows(block.data(), rows, d, Qt_p, Lq, scores.data());  // (rows, d) @ (d, Lq)
                    // per-column maxima, into `best` directly, or with kRows into this block's own, whose rows are
                    // then found: the one max loop (it vectorises) for both ops
                    float* maxima = kRows ? block_best.data() : best.data();
                    if constexpr (kRows) {
                        std::fill(block_best.begin(), block_best.end(), -std::numeric_limits<float>::infinity());
                    }
                    for (int64_t r = 0; r < rows; ++r) {
                        for (int64_t q = 0; q < Lq; ++q) maxima[q] = std::max(maxima[q], scores[r * Lq + q] / norms[r]);
                    }
                    if constexpr (kRows) {
                        for (int64_t q = 0; q < Lq; ++q) {  // an earlier block keeps a tie: the first maximum
                            if (!(best[q] < block_best[q])) continue;
                            best[q] = block_best[q];
                            int64_t r = 0;
                            while (r + 1 < rows && scores[r * Lq + q] / norms[r] != block_best[q]) ++r;
                            best_at[q] = static_cast<int32_t>(start + r - offsets[doc]);
                        }
                    }
                }
                float sum = 0;
                for (int64_t q = 0; q < Lq; ++q) sum += best[q];
                const bool empty = offsets[doc + 1] == offsets[doc];
                out_p[doc] = empty ? 0.0f : sum;  // an empty document scores 0
                if constexpr (kRows) {  // rows in codes and their vectors; -1 and zeros for an empty document
                    const int64_t length = offsets[doc + 1] - offsets[doc];
                    const int64_t last_block =  // the first row of the block still held in `block`
                        offsets[doc] + (empty ? 0 : (length - 1) / kTokensPerBlock * kTokensPerBlock);
                    for (int64_t q = 0; q < Lq; ++q) {  // the first query vector that matched the same row
                        int64_t first = 0;
                        while (!empty && best_at[first] != best_at[q]) ++first;
                        first_p[doc * Lq + q] = first;
                    }
                    for (int64_t q = 0; q < Lq; ++q) {
                        float* out_v = vectors_p + (doc * Lq + q) * d;
                        if (empty) {
                            rows_p[doc * Lq + q] = -1;
                            std::fill(out_v, out_v + d, 0.0f);
                            continue;
                        }
                        const int64_t row = offsets[doc] + best_at[q];
                        rows_p[doc * Lq + q] = row;
                        const float* v = spare.data();
                        float norm;
                        if (row >= last_block) {
                            v = block.data() + (row - last_block) * d;
                            norm = norms[row - last_block];
                        } else {  // decoded in an earlier block: decode it again
                            const int64_t code = checked_code(code_p, row, num_centroids);
                            decode(bytes_p + row * packed_dim, packed_dim, cent_p + code * d, table.data(),
                                   spare.data());
                            norm = row_norm(v, d);
                        }
                        for (int64_t j = 0; j < d; ++j) out_v[j] = v[j] / norm;
                    }
                }
            }
        });
    });
}

}  // namespace

at::Tensor decompress_maxsim_cpu(const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed,
                                 const at::Tensor& lengths, const at::Tensor& centroids,
                                 const at::Tensor& bucket_weights, int64_t nbits) {
    check_decompress_maxsim_inputs(Q, codes, packed, lengths, centroids, bucket_weights, nbits);
    check_lengths_sum(lengths, codes.size(0), "decompress_maxsim");
    at::Tensor out = at::zeros({lengths.size(0)}, Q.options()), no_rows, no_vectors, no_first;
    fused_maxsim<false>(Q, codes, packed, lengths, centroids, bucket_weights, nbits, out, no_rows, no_vectors,
                        no_first);
    return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> decompress_maxsim_rows_cpu(
    const at::Tensor& Q, const at::Tensor& codes, const at::Tensor& packed, const at::Tensor& lengths,
    const at::Tensor& centroids, const at::Tensor& bucket_weights, int64_t nbits) {
    check_decompress_maxsim_inputs(Q, codes, packed, lengths, centroids, bucket_weights, nbits);
    check_lengths_sum(lengths, codes.size(0), "decompress_maxsim_rows");
    at::Tensor out = at::zeros({lengths.size(0)}, Q.options());
    at::Tensor rows = at::empty({lengths.size(0), Q.size(0)}, Q.options().dtype(at::kLong));
    at::Tensor vectors = at::empty({lengths.size(0), Q.size(0), centroids.size(1)}, Q.options());
    at::Tensor first = at::empty({lengths.size(0), Q.size(0)}, Q.options().dtype(at::kLong));
    fused_maxsim<true>(Q, codes, packed, lengths, centroids, bucket_weights, nbits, out, rows, vectors, first);
    return {out, rows, vectors, first};
}

}  // namespace colbert
