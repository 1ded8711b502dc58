// Bayer mosaic <-> half-resolution RGGB stack, with black level, white level and WB.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "rawproof/clones.hpp"
#include "rawproof/kernels.hpp"
#include "rawproof/parallel.hpp"
#include "rawproof/pyarg.hpp"

namespace rawproof {

namespace {

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// Pixels per thread below which another thread costs more than it saves.
constexpr std::size_t kMinPixelsPerThread = std::size_t{1} << 18;

struct Levels {
    std::array<float, 4> black;
    std::array<float, 4> wb;
    float white;
};

Levels check_levels(const py::handle& black_obj, double white, const py::handle& wb_obj) {
    Levels lv{};
    lv.black = channel_params(black_obj, "black");
    lv.wb = wb_obj.is_none() ? std::array<float, 4>{1.f, 1.f, 1.f, 1.f} : channel_params(wb_obj, "wb");
    if (!std::isfinite(white) || white <= 0 || white > static_cast<double>(std::numeric_limits<float>::max())) {
        throw std::invalid_argument("white must be finite and > 0 (and within float32 range), got " + std::to_string(white));
    }
    lv.white = static_cast<float>(white);
    for (int c = 0; c < 4; ++c) {
        if (lv.black[c] < 0 || lv.black[c] >= lv.white) {
            throw std::invalid_argument("need 0 <= black < white for every channel, got black[" + std::to_string(c) +
                                        "]=" + std::to_string(lv.black[c]) + " white=" + std::to_string(white));
        }
        if (!(lv.wb[c] > 0)) {
            throw std::invalid_argument("wb gains must be > 0, got wb[" + std::to_string(c) +
                                        "]=" + std::to_string(lv.wb[c]));
        }
    }
    return lv;
}

py::array_t<float> mosaic_to_rggb_py(const py::array& mosaic, const std::string& cfa_name, const py::object& black,
                                     double white, const py::object& wb, std::int64_t threads) {
    require_dtype_c_contiguous<std::uint16_t>(mosaic, "mosaic", "uint16");
    if (mosaic.ndim() != 2) {
        throw std::invalid_argument("mosaic must be 2-D (H x W), got shape " + shape_str(mosaic));
    }
    const py::ssize_t h = mosaic.shape(0), w = mosaic.shape(1);
    if (h < 2 || w < 2 || h % 2 || w % 2) {
        throw std::invalid_argument("mosaic H and W must be even and >= 2, got shape " + shape_str(mosaic));
    }
    const CfaLayout cfa = parse_cfa(cfa_name);
    const Levels lv = check_levels(black, white, wb);
    const unsigned nthreads = resolve_threads(threads);
    std::array<float, 4> scale{};
    for (int c = 0; c < 4; ++c) {
        scale[c] = lv.wb[c] / (lv.white - lv.black[c]);
        // An infinite scale would turn a sample equal to black into 0 * inf = NaN.
        if (!std::isfinite(scale[c])) {
            throw std::invalid_argument("wb[" + std::to_string(c) + "] / (white - black[" + std::to_string(c) +
                                        "]) overflows float32");
        }
    }

    py::array_t<float> out({py::ssize_t{4}, h / 2, w / 2});
    const auto* src = static_cast<const std::uint16_t*>(mosaic.data());
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        const auto H = static_cast<std::size_t>(h), W = static_cast<std::size_t>(w);
        parallel_for(H / 2, nthreads, std::max<std::size_t>(1, kMinPixelsPerThread / W), [&](std::size_t y0, std::size_t y1) {
            mosaic_to_rggb_rows(src, H, W, cfa, lv.black, scale, y0, y1, dst);
        });
    }
    return out;
}

py::array_t<std::uint16_t> rggb_to_mosaic_py(const py::array& stack, const std::string& cfa_name,
                                             const py::object& black, double white, const py::object& wb,
                                             std::int64_t threads) {
    require_dtype_c_contiguous<float>(stack, "stack", "float32");
    if (stack.ndim() != 3 || stack.shape(0) != 4 || stack.shape(1) < 1 || stack.shape(2) < 1) {
        throw std::invalid_argument("stack must be 4 x h x w with h, w >= 1, got shape " + shape_str(stack));
    }
    const CfaLayout cfa = parse_cfa(cfa_name);
    const Levels lv = check_levels(black, white, wb);
    if (white > 65535) {
        throw std::invalid_argument("white must be <= 65535 to fit uint16, got " + std::to_string(white));
    }
    const unsigned nthreads = resolve_threads(threads);
    const auto h = static_cast<std::size_t>(stack.shape(1)), w = static_cast<std::size_t>(stack.shape(2));
    const auto* src = static_cast<const float*>(stack.data());
    const std::size_t n = 4 * h * w;
    const std::size_t min_chunk = kMinPixelsPerThread;

    std::atomic<bool> has_nan{false};
    {
        py::gil_scoped_release release;
        parallel_for(n, nthreads, min_chunk, [&](std::size_t i0, std::size_t i1) {
            bool nan = false;
            for (std::size_t i = i0; i < i1; ++i) nan |= std::isnan(src[i]);
            if (nan) has_nan.store(true, std::memory_order_relaxed);
        });
    }
    if (has_nan.load()) throw std::invalid_argument("stack contains NaN");

    std::array<float, 4> range{};
    for (int c = 0; c < 4; ++c) range[c] = lv.white - lv.black[c];
    py::array_t<std::uint16_t> out({static_cast<py::ssize_t>(2 * h), static_cast<py::ssize_t>(2 * w)});
    std::uint16_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        parallel_for(h, nthreads, std::max<std::size_t>(1, min_chunk / (4 * w)), [&](std::size_t y0, std::size_t y1) {
            rggb_to_mosaic_rows(src, 2 * h, 2 * w, cfa, lv.black, range, lv.wb, y0, y1, dst);
        });
    }
    return out;
}

}  // namespace

CfaLayout parse_cfa(const std::string& name) {
    if (name == "RGGB") return {{{kR, kGr}, {kGb, kB}}};
    if (name == "BGGR") return {{{kB, kGb}, {kGr, kR}}};
    if (name == "GRBG") return {{{kGr, kR}, {kB, kGb}}};
    if (name == "GBRG") return {{{kGb, kB}, {kR, kGr}}};
    throw std::invalid_argument("unknown cfa '" + name + "': expected one of RGGB, BGGR, GRBG, GBRG");
}

namespace {

// One mosaic row -> its two output channel rows. Each pixel pair is read as one
// 32-bit word so that the loop vectorises without stride-2 shuffles.
RAWPROOF_CLONES
void split_row(const std::uint16_t* __restrict row, std::size_t hw, float* __restrict o0, float* __restrict o1,
               float b0, float s0, float b1, float s1) {
    for (std::size_t x = 0; x < hw; ++x) {
        std::uint32_t pair;
        std::memcpy(&pair, row + 2 * x, 4);
        const auto v0 = static_cast<std::int32_t>(kLittleEndian ? pair & 0xFFFF : pair >> 16);
        const auto v1 = static_cast<std::int32_t>(kLittleEndian ? pair >> 16 : pair & 0xFFFF);
        o0[x] = std::min(std::max((static_cast<float>(v0) - b0) * s0, 0.f), 1.f);
        o1[x] = std::min(std::max((static_cast<float>(v1) - b1) * s1, 0.f), 1.f);
    }
}

// Round half away from zero for v in [0, 2^23): the integer part plus one when the
// (exact) fraction is >= 0.5. floor(v + 0.5f) would be wrong for 0.49999997f.
inline std::uint32_t round_half_up(float v) {
    const auto t = static_cast<std::int32_t>(v);
    return static_cast<std::uint32_t>(t + static_cast<std::int32_t>(v - static_cast<float>(t) >= 0.5f));
}

RAWPROOF_CLONES
void merge_row(const float* __restrict i0, const float* __restrict i1, std::size_t hw, std::uint16_t* __restrict row,
               float b0, float r0, float g0, float b1, float r1, float g1) {
    for (std::size_t x = 0; x < hw; ++x) {
        // min(..., 65535): range + black may round a hair above white; white <= 65535 is checked.
        const std::uint32_t v0 = round_half_up(std::min(std::min(std::max(i0[x] / g0, 0.f), 1.f) * r0 + b0, 65535.f));
        const std::uint32_t v1 = round_half_up(std::min(std::min(std::max(i1[x] / g1, 0.f), 1.f) * r1 + b1, 65535.f));
        const std::uint32_t pair = kLittleEndian ? v0 | (v1 << 16) : v1 | (v0 << 16);
        std::memcpy(row + 2 * x, &pair, 4);
    }
}

}  // namespace

void mosaic_to_rggb_rows(const std::uint16_t* mosaic, std::size_t height, std::size_t width, const CfaLayout& cfa,
                         const std::array<float, 4>& black, const std::array<float, 4>& scale,
                         std::size_t y_begin, std::size_t y_end, float* stack) {
    const std::size_t hw = width / 2, plane = (height / 2) * hw;
    for (std::size_t y = y_begin; y < y_end; ++y) {
        for (std::size_t dy = 0; dy < 2; ++dy) {
            const int c0 = cfa[dy][0], c1 = cfa[dy][1];
            split_row(mosaic + (2 * y + dy) * width, hw, stack + c0 * plane + y * hw, stack + c1 * plane + y * hw,
                      black[c0], scale[c0], black[c1], scale[c1]);
        }
    }
}

void rggb_to_mosaic_rows(const float* stack, std::size_t height, std::size_t width, const CfaLayout& cfa,
                         const std::array<float, 4>& black, const std::array<float, 4>& range,
                         const std::array<float, 4>& wb, std::size_t y_begin, std::size_t y_end,
                         std::uint16_t* mosaic) {
    const std::size_t hw = width / 2, plane = (height / 2) * hw;
    for (std::size_t y = y_begin; y < y_end; ++y) {
        for (std::size_t dy = 0; dy < 2; ++dy) {
            const int c0 = cfa[dy][0], c1 = cfa[dy][1];
            merge_row(stack + c0 * plane + y * hw, stack + c1 * plane + y * hw, hw, mosaic + (2 * y + dy) * width,
                      black[c0], range[c0], wb[c0], black[c1], range[c1], wb[c1]);
        }
    }
}

void register_cfa(py::module_& m) {
    m.def("mosaic_to_rggb", &mosaic_to_rggb_py, py::arg("mosaic").noconvert(), py::arg("cfa"), py::arg("black"),
          py::arg("white"), py::arg("wb") = py::none(), py::arg("threads") = 0,
          R"doc(Bayer mosaic (uint16 H x W, DN) -> RGGB stack (float32 4 x H/2 x W/2, channels R, Gr, Gb, B,
linear [0, 1], a new array): clip((v - black[c]) / (white - black[c]) * wb[c], 0, 1).
See rawproof/_native.pyi.)doc");
    m.def("rggb_to_mosaic", &rggb_to_mosaic_py, py::arg("stack").noconvert(), py::arg("cfa"), py::arg("black"),
          py::arg("white"), py::arg("wb") = py::none(), py::arg("threads") = 0,
          R"doc(RGGB stack (float32 4 x h x w, channels R, Gr, Gb, B) -> Bayer mosaic (uint16 2h x 2w, DN):
round_half_away(clip(x / wb[c], 0, 1) * (white - black[c]) + black[c]). NaN raises ValueError.
See rawproof/_native.pyi.)doc");
}

}  // namespace rawproof
