// Blockwise 8x8 orthonormal DCT-II / DCT-III (JPEG's transform), separable.
//
// Each 8-row band is done in column chunks that stay in L1: a vertical pass
// (contiguous along x, so it vectorises across columns) into a small buffer, then a
// horizontal pass per block row (a broadcast-multiply against the matrix rows).
// The band kernel is compiled for AVX2+FMA and for baseline x86-64 (clones.hpp); FMA
// contraction makes the two differ by about one float32 ulp.
#include <cmath>
#include <stdexcept>
#include <string>

#include "rawproof/clones.hpp"
#include "rawproof/kernels.hpp"
#include "rawproof/parallel.hpp"
#include "rawproof/pyarg.hpp"


namespace rawproof {

namespace {

// Floats per row of the chunk buffer: 8 rows x 512 floats = 16 KiB, within L1.
constexpr std::size_t kChunkFloats = 512;
// Channels beyond this would not leave room for one block per chunk.
constexpr py::ssize_t kMaxChannels = kChunkFloats / 8;

struct Basis {
    float a[8][8];   // the transform applied to columns: out[u] = sum_k a[u][k] in[k]
    float at[8][8];  // its transpose, for rows
};

Basis make_basis(bool inverse) {
    Basis b{};
    const double pi = std::acos(-1.0);
    for (int u = 0; u < 8; ++u) {
        for (int k = 0; k < 8; ++k) {
            const double cu = u == 0 ? std::sqrt(0.125) : 0.5;
            const auto d = static_cast<float>(cu * std::cos((2 * k + 1) * u * pi / 16));  // DCT-II matrix D[u][k]
            if (inverse) {
                b.a[k][u] = d;  // DCT-III = D^T
                b.at[u][k] = d;
            } else {
                b.a[u][k] = d;
                b.at[k][u] = d;
            }
        }
    }
    return b;
}

const Basis& basis(bool inverse) {
    static const Basis fwd = make_basis(false), inv = make_basis(true);
    return inverse ? inv : fwd;
}

// 8 floats, and its unaligned alias for loads and stores (GCC lets vector types alias
// their element type). On baseline x86-64 each operation becomes two SSE instructions.
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));

RAWPROOF_CLONES
void dct_band(const float* __restrict src, float* __restrict dst, std::size_t row_len, std::size_t channels,
              const Basis& b) {
    alignas(64) float tmp[8][kChunkFloats];
    const std::size_t chunk = kChunkFloats / (8 * channels) * (8 * channels);  // whole blocks
    v8f at[8];
    for (int k = 0; k < 8; ++k) at[k] = *reinterpret_cast<const v8f_u*>(b.at[k]);
    for (std::size_t x0 = 0; x0 < row_len; x0 += chunk) {
        const std::size_t n = std::min(chunk, row_len - x0);  // a multiple of 8
        // Vertical pass, 8 columns at a time: tmp[u][x] = sum_k a[u][k] src[k][x].
        for (std::size_t x = 0; x < n; x += 8) {
            v8f in[8];
            for (int k = 0; k < 8; ++k) in[k] = *reinterpret_cast<const v8f_u*>(src + k * row_len + x0 + x);
            for (int u = 0; u < 8; ++u) {
                const float* a = b.a[u];
                v8f acc = a[0] * in[0];
                for (int k = 1; k < 8; ++k) acc += a[k] * in[k];
                *reinterpret_cast<v8f_u*>(&tmp[u][x]) = acc;
            }
        }
        // Horizontal pass: dst[r][8j+v] = sum_k tmp[r][8j+k] at[k][v] (per channel).
        for (int r = 0; r < 8; ++r) {
            float* __restrict out = dst + r * row_len + x0;
            const float* t = tmp[r];
            if (channels == 1) {
                for (std::size_t j = 0; j < n; j += 8) {
                    v8f acc = t[j] * at[0];
                    for (int k = 1; k < 8; ++k) acc += t[j + k] * at[k];
                    *reinterpret_cast<v8f_u*>(out + j) = acc;
                }
            } else {
                for (std::size_t j = 0; j < n; j += 8 * channels) {
                    for (std::size_t c = 0; c < channels; ++c) {
                        v8f acc = t[j + c] * at[0];
                        for (int k = 1; k < 8; ++k) acc += t[j + k * channels + c] * at[k];
                        for (int v = 0; v < 8; ++v) out[j + v * channels + c] = acc[v];
                    }
                }
            }
        }
    }
}

py::array_t<float> dct8x8_py(const py::array& image, bool inverse, std::int64_t threads) {
    require_dtype_c_contiguous<float>(image, "image", "float32");
    if (image.ndim() != 2 && image.ndim() != 3) {
        throw std::invalid_argument("image must be H x W or H x W x C, got shape " + shape_str(image));
    }
    const py::ssize_t h = image.shape(0), w = image.shape(1), c = image.ndim() == 3 ? image.shape(2) : 1;
    if (h < 8 || w < 8 || h % 8 || w % 8) {
        throw std::invalid_argument("image H and W must be positive multiples of 8, got shape " + shape_str(image));
    }
    if (c < 1 || c > kMaxChannels) {
        throw std::invalid_argument("image must have 1 to " + std::to_string(kMaxChannels) +
                                    " channels, got shape " + shape_str(image));
    }
    const unsigned nthreads = resolve_threads(threads);

    py::array_t<float> out(std::vector<py::ssize_t>(image.shape(), image.shape() + image.ndim()));
    const auto* src = static_cast<const float*>(image.data());
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        const auto row_len = static_cast<std::size_t>(w * c);
        parallel_for(static_cast<std::size_t>(h / 8), nthreads, std::max<std::size_t>(1, (1u << 15) / row_len),
                     [&](std::size_t b0, std::size_t b1) {
                         dct8x8_bands(src, dst, static_cast<std::size_t>(w), static_cast<std::size_t>(c), inverse,
                                      b0, b1);
                     });
    }
    return out;
}

}  // namespace

void dct8x8_bands(const float* src, float* dst, std::size_t width, std::size_t channels, bool inverse,
                  std::size_t band_begin, std::size_t band_end) {
    const Basis& b = basis(inverse);
    const std::size_t row_len = width * channels;
    for (std::size_t i = band_begin; i < band_end; ++i) {
        dct_band(src + 8 * i * row_len, dst + 8 * i * row_len, row_len, channels, b);
    }
}

void register_dct(py::module_& m) {
    m.def("dct8x8", &dct8x8_py, py::arg("image").noconvert(), py::arg("inverse") = false, py::arg("threads") = 0,
          R"doc(Blockwise 8x8 orthonormal DCT-II (inverse=True: DCT-III) of a float32 H x W or H x W x C image
(H, W multiples of 8), as JPEG does; coefficient (u, v) of block (i, j) at [8i+u, 8j+v(, c)].
Returns a new float32 array of the same shape. See rawproof/_native.pyi.)doc");
}

}  // namespace rawproof
