// Unpacking of MIPI CSI-2 packed RAW10/12/14 and plain 8/16-bit sensor rows.
//
// The packed formats are decoded 4 pixels at a time with one unaligned 64-bit load
// and SWAR bit spreading, portable to any CPU; the last groups of a row, where 8 bytes
// would run past the row, go byte by byte. On x86-64 CPUs with SSSE3 (chosen at run
// time, so the wheel needs no -march) RAW10 and RAW12 first decode 8 pixels per
// 16-byte load with a byte shuffle, leaving the row's last groups to the paths above.
#include <cstring>
#include <stdexcept>
#include <string>

#include "rawproof/kernels.hpp"
#include "rawproof/parallel.hpp"
#include "rawproof/pyarg.hpp"

namespace rawproof {

namespace {

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

inline std::uint64_t load_le64(const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    if constexpr (!kLittleEndian) v = __builtin_bswap64(v);
    return v;
}

inline void store_u16x4(std::uint16_t* dst, std::uint64_t lanes) {
    if constexpr (!kLittleEndian) {
        for (int i = 0; i < 4; ++i) dst[i] = static_cast<std::uint16_t>(lanes >> (16 * i));
    } else {
        std::memcpy(dst, &lanes, 8);
    }
}

// Moves the 4 bytes of a 32-bit value into the low bytes of four 16-bit lanes.
inline std::uint64_t spread_bytes(std::uint64_t x) {
    x &= 0xFFFFFFFFull;
    x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
    return (x | (x << 8)) & 0x00FF00FF00FF00FFull;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RAWPROOF_SHUFFLE_UNPACK 1
typedef std::uint8_t v16u8 __attribute__((vector_size(16)));
typedef std::uint16_t v8u16 __attribute__((vector_size(16)));
typedef std::uint8_t v16u8_u __attribute__((vector_size(16), aligned(1)));
typedef std::uint16_t v8u16_u __attribute__((vector_size(16), aligned(1)));

// cpu_init first: this initialiser may run before libgcc's own constructor.
const bool kHaveSsse3 = (__builtin_cpu_init(), __builtin_cpu_supports("ssse3"));

// 2 RAW10 groups (10 of the 16 bytes loaded) -> 8 pixels. Each 16-bit lane gets the
// pixel's MSB byte low and its group's LSB byte high; multiplying the LSB byte by
// 2^(6 - 2i) moves pixel i's 2 bits to bits 7:6. Returns the groups done.
__attribute__((target("ssse3"))) std::size_t raw10_shuffle(const std::uint8_t* s, std::size_t groups,
                                                           std::uint16_t* d) {
    const v16u8 idx = {0, 4, 1, 4, 2, 4, 3, 4, 5, 9, 6, 9, 7, 9, 8, 9};
    const v8u16 mul = {64, 16, 4, 1, 64, 16, 4, 1};
    std::size_t g = 0;
    for (; g + 4 <= groups; g += 2, s += 10, d += 8) {  // 16-byte load needs 3.2 groups
        const v8u16 lane = (v8u16)__builtin_shuffle(*reinterpret_cast<const v16u8_u*>(s), idx);
        *reinterpret_cast<v8u16_u*>(d) = ((lane & 0xFF) << 2) | ((((lane >> 8) * mul) & 0xC0) >> 6);
    }
    return g;
}

// 4 RAW12 groups (12 of the 16 bytes loaded) -> 8 pixels: lane = MSB byte | LSB byte << 8,
// even pixels take the low LSB nibble, odd ones the high one.
__attribute__((target("ssse3"))) std::size_t raw12_shuffle(const std::uint8_t* s, std::size_t groups,
                                                           std::uint16_t* d) {
    const v16u8 idx = {0, 2, 1, 2, 3, 5, 4, 5, 6, 8, 7, 8, 9, 11, 10, 11};
    const v8u16 even = {0xF, 0, 0xF, 0, 0xF, 0, 0xF, 0};
    const v8u16 odd = {0, 0xF, 0, 0xF, 0, 0xF, 0, 0xF};
    std::size_t g = 0;
    for (; g + 6 <= groups; g += 4, s += 12, d += 8) {  // 16-byte load needs 5.33 groups
        const v8u16 lane = (v8u16)__builtin_shuffle(*reinterpret_cast<const v16u8_u*>(s), idx);
        *reinterpret_cast<v8u16_u*>(d) = ((lane & 0xFF) << 4) | ((lane >> 8) & even) | ((lane >> 12) & odd);
    }
    return g;
}
#endif

void raw10_row(const std::uint8_t* s, std::size_t groups, std::uint16_t* d) {
    std::size_t g = 0;
#ifdef RAWPROOF_SHUFFLE_UNPACK
    if (kHaveSsse3) {
        g = raw10_shuffle(s, groups, d);
        s += 5 * g;
        d += 4 * g;
    }
#endif
    for (; g + 1 < groups; ++g, s += 5, d += 4) {  // +1: the 8-byte load reads 3 bytes of the next group
        const std::uint64_t v = load_le64(s);
        std::uint64_t lo = (v >> 32) & 0xFF;  // byte 4: 2 LSBs of each pixel, pixel 0 lowest
        lo = (lo | (lo << 28)) & 0x0000000F0000000Full;
        lo = (lo | (lo << 14)) & 0x0003000300030003ull;
        store_u16x4(d, (spread_bytes(v) << 2) | lo);
    }
    for (; g < groups; ++g, s += 5, d += 4) {
        for (int i = 0; i < 4; ++i) d[i] = static_cast<std::uint16_t>((s[i] << 2) | ((s[4] >> (2 * i)) & 3));
    }
}

void raw12_row(const std::uint8_t* s, std::size_t groups, std::uint16_t* d) {
    std::size_t g = 0;
#ifdef RAWPROOF_SHUFFLE_UNPACK
    if (kHaveSsse3) {
        g = raw12_shuffle(s, groups, d);
        s += 3 * g;
        d += 2 * g;
    }
#endif
    for (; g + 2 < groups; g += 2, s += 6, d += 4) {  // two 3-byte groups per 8-byte load; +2: it reads 2 bytes of group g+2
        const std::uint64_t v = load_le64(s);
        const std::uint64_t msb = (v & 0xFFFF) | ((v >> 8) & 0xFFFF0000ull);  // bytes 0, 1, 3, 4
        std::uint64_t lo = ((v >> 16) & 0xFF) | ((v >> 32) & 0xFF00);         // bytes 2, 5: 4 nibbles
        lo = (lo | (lo << 24)) & 0x000000FF000000FFull;
        lo = (lo | (lo << 12)) & 0x000F000F000F000Full;
        store_u16x4(d, (spread_bytes(msb) << 4) | lo);
    }
    for (; g < groups; ++g, s += 3, d += 2) {
        d[0] = static_cast<std::uint16_t>((s[0] << 4) | (s[2] & 0x0F));
        d[1] = static_cast<std::uint16_t>((s[1] << 4) | (s[2] >> 4));
    }
}

void raw14_row(const std::uint8_t* s, std::size_t groups, std::uint16_t* d) {
    std::size_t g = 0;
    for (; g + 1 < groups; ++g, s += 7, d += 4) {
        const std::uint64_t v = load_le64(s);
        std::uint64_t lo = (v >> 32) & 0xFFFFFF;  // bytes 4..6: four 6-bit LSB fields, little-endian
        lo = (lo | (lo << 20)) & 0x00000FFF00000FFFull;
        lo = (lo | (lo << 10)) & 0x003F003F003F003Full;
        store_u16x4(d, (spread_bytes(v) << 6) | lo);
    }
    for (; g < groups; ++g, s += 7, d += 4) {
        const std::uint32_t lo = s[4] | (s[5] << 8) | (s[6] << 16);
        for (int i = 0; i < 4; ++i) d[i] = static_cast<std::uint16_t>((s[i] << 6) | ((lo >> (6 * i)) & 0x3F));
    }
}

void u16le_row(const std::uint8_t* s, std::size_t width, std::uint16_t* d) {
    if constexpr (kLittleEndian) {
        std::memcpy(d, s, 2 * width);
    } else {
        for (std::size_t x = 0; x < width; ++x) d[x] = static_cast<std::uint16_t>(s[2 * x] | (s[2 * x + 1] << 8));
    }
}

void u8_row(const std::uint8_t* s, std::size_t width, std::uint16_t* d) {
    for (std::size_t x = 0; x < width; ++x) d[x] = s[x];
}

// Accepts a buffer whose format is unsigned bytes ("B", optionally with a byte-order prefix).
bool is_ubyte_format(const std::string& f) {
    return f == "B" || f == "@B" || f == "=B" || f == "<B" || f == ">B" || f == "!B";
}

py::array_t<std::uint16_t> unpack_py(const py::buffer& buf, std::int64_t width, std::int64_t height,
                                     const std::string& fmt_name, std::int64_t stride, std::int64_t threads) {
    const PixelFormat fmt = parse_pixel_format(fmt_name);
    if (width <= 0 || height <= 0) {
        throw std::invalid_argument("width and height must be > 0, got width=" + std::to_string(width) +
                                    " height=" + std::to_string(height));
    }
    constexpr std::int64_t kMaxPixels = std::int64_t{1} << 31;
    if (width > kMaxPixels || height > kMaxPixels || width * height > kMaxPixels) {
        throw std::invalid_argument("declared size " + std::to_string(width) + "x" + std::to_string(height) +
                                    " exceeds the limit of 2^31 pixels");
    }
    const int gp = group_pixels(fmt);
    if (width % gp != 0) {
        throw std::invalid_argument("odd width for packed format " + fmt_name + ": width must be a multiple of " +
                                    std::to_string(gp) + ", got " + std::to_string(width));
    }
    const std::int64_t row_bytes = width / gp * group_bytes(fmt);
    if (stride < 0) throw std::invalid_argument("stride must be >= 0 (0 = minimal), got " + std::to_string(stride));
    if (stride == 0) stride = row_bytes;
    if (stride < row_bytes) {
        throw std::invalid_argument("stride " + std::to_string(stride) + " is shorter than one " + fmt_name +
                                    " row of width " + std::to_string(width) + " (" + std::to_string(row_bytes) +
                                    " bytes)");
    }
    const unsigned nthreads = resolve_threads(threads);

    const py::buffer_info info = buf.request();
    if (info.itemsize != 1 || !is_ubyte_format(info.format)) {
        throw py::type_error("buf must hold unsigned bytes (numpy uint8, bytes, bytearray), got buffer format '" +
                             info.format + "' with itemsize " + std::to_string(info.itemsize));
    }
    if (info.ndim != 1) {
        throw std::invalid_argument("buf must be 1-D, got " + std::to_string(info.ndim) + " dimensions");
    }
    if (info.shape[0] > 1 && info.strides[0] != 1) {
        throw py::type_error("buf must be contiguous, got a strided view with stride " +
                             std::to_string(info.strides[0]) + " bytes");
    }
    const std::int64_t len = info.shape[0];
    std::int64_t padded = 0;   // every row padded to stride
    std::int64_t trimmed = 0;  // last row without its padding
    const bool overflow = __builtin_mul_overflow(stride, height, &padded) ||
                          __builtin_mul_overflow(stride, height - 1, &trimmed) ||
                          __builtin_add_overflow(trimmed, row_bytes, &trimmed);
    if (overflow || (len != padded && len != trimmed)) {
        std::string expected = overflow ? std::string("more than 2^63") : std::to_string(padded);
        if (!overflow && padded != trimmed) expected += " (or " + std::to_string(trimmed) + " with an unpadded last row)";
        throw std::invalid_argument("wrong buffer length: expected " + expected + " bytes for a " +
                                    std::to_string(width) + "x" + std::to_string(height) + " " + fmt_name +
                                    " frame with stride " + std::to_string(stride) + ", got " + std::to_string(len));
    }

    py::array_t<std::uint16_t> out({height, width});
    const auto* src = static_cast<const std::uint8_t*>(info.ptr);
    std::uint16_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        const auto w = static_cast<std::size_t>(width);
        parallel_for(static_cast<std::size_t>(height), nthreads, std::max<std::size_t>(1, (1u << 18) / w),
                     [=](std::size_t y0, std::size_t y1) {
                         unpack_rows(src, static_cast<std::size_t>(stride), fmt, w, y0, y1, dst);
                     });
    }
    return out;
}

}  // namespace

PixelFormat parse_pixel_format(const std::string& name) {
    if (name == "raw10") return PixelFormat::Raw10;
    if (name == "raw12") return PixelFormat::Raw12;
    if (name == "raw14") return PixelFormat::Raw14;
    if (name == "u16le") return PixelFormat::U16LE;
    if (name == "u8") return PixelFormat::U8;
    throw std::invalid_argument("unknown fmt '" + name + "': expected one of raw10, raw12, raw14, u16le, u8");
}

int group_pixels(PixelFormat f) {
    switch (f) {
        case PixelFormat::Raw10: return 4;
        case PixelFormat::Raw12: return 2;
        case PixelFormat::Raw14: return 4;
        default: return 1;
    }
}

int group_bytes(PixelFormat f) {
    switch (f) {
        case PixelFormat::Raw10: return 5;
        case PixelFormat::Raw12: return 3;
        case PixelFormat::Raw14: return 7;
        case PixelFormat::U16LE: return 2;
        default: return 1;
    }
}

void unpack_rows(const std::uint8_t* src, std::size_t stride, PixelFormat fmt, std::size_t width,
                 std::size_t row_begin, std::size_t row_end, std::uint16_t* dst) {
    const std::size_t groups = width / static_cast<std::size_t>(group_pixels(fmt));
    for (std::size_t y = row_begin; y < row_end; ++y) {
        const std::uint8_t* s = src + y * stride;
        std::uint16_t* d = dst + y * width;
        switch (fmt) {
            case PixelFormat::Raw10: raw10_row(s, groups, d); break;
            case PixelFormat::Raw12: raw12_row(s, groups, d); break;
            case PixelFormat::Raw14: raw14_row(s, groups, d); break;
            case PixelFormat::U16LE: u16le_row(s, width, d); break;
            case PixelFormat::U8: u8_row(s, width, d); break;
        }
    }
}

void register_unpack(py::module_& m) {
    m.def("unpack", &unpack_py, py::arg("buf"), py::arg("width"), py::arg("height"), py::arg("fmt"),
          py::arg("stride") = 0, py::arg("threads") = 0,
          R"doc(Unpack a sensor dump into a uint16 H x W mosaic (DN, a new array).

fmt: "raw10" | "raw12" | "raw14" (MIPI CSI-2 packed), "u16le", "u8". stride: bytes per
row, 0 = minimal. len(buf) must be stride*height, or stride*(height-1) + the minimal
row size (last row unpadded). threads: 0 = all cores. See rawproof/_native.pyi.)doc");
}

}  // namespace rawproof
