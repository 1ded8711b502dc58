// rawproof native kernels, independent of Python. Callers validate arguments first
// (the bindings in native/src do); these functions assume valid sizes and pointers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include <pybind11/pybind11.h>

namespace rawproof {

// ---- unpack ---------------------------------------------------------------------

enum class PixelFormat { Raw10, Raw12, Raw14, U16LE, U8 };

// Parses "raw10" | "raw12" | "raw14" | "u16le" | "u8"; std::invalid_argument otherwise.
PixelFormat parse_pixel_format(const std::string& name);

// Pixels per packed group and bytes per group (1 pixel per group for u16le and u8).
int group_pixels(PixelFormat f);
int group_bytes(PixelFormat f);

// Unpacks rows [row_begin, row_end) of a packed frame. src points at row 0; dst at
// pixel (0, 0) of the H x W output. width is a multiple of group_pixels(fmt).
void unpack_rows(const std::uint8_t* src, std::size_t stride, PixelFormat fmt, std::size_t width,
                 std::size_t row_begin, std::size_t row_end, std::uint16_t* dst);

// ---- CFA ------------------------------------------------------------------------

// Canonical channel order of the RGGB stack.
enum Channel : int { kR = 0, kGr = 1, kGb = 2, kB = 3 };

// channel_at[dy][dx]: canonical channel of mosaic pixel (2y + dy, 2x + dx).
using CfaLayout = std::array<std::array<int, 2>, 2>;

// Parses "RGGB" | "BGGR" | "GRBG" | "GBRG" (exact, uppercase); std::invalid_argument otherwise.
CfaLayout parse_cfa(const std::string& name);

// out[c] = clip((v - black[c]) * scale[c], 0, 1) for output rows [y_begin, y_end) of the
// half-resolution stack; scale[c] = wb[c] / (white - black[c]).
void mosaic_to_rggb_rows(const std::uint16_t* mosaic, std::size_t height, std::size_t width, const CfaLayout& cfa,
                         const std::array<float, 4>& black, const std::array<float, 4>& scale,
                         std::size_t y_begin, std::size_t y_end, float* stack);

// v = round_half_away(clip(x / wb[c], 0, 1) * range[c] + black[c]) for output row
// pairs [y_begin, y_end).
void rggb_to_mosaic_rows(const float* stack, std::size_t height, std::size_t width, const CfaLayout& cfa,
                         const std::array<float, 4>& black, const std::array<float, 4>& range,
                         const std::array<float, 4>& wb, std::size_t y_begin, std::size_t y_end,
                         std::uint16_t* mosaic);

// ---- DCT ------------------------------------------------------------------------

// Blockwise 8x8 orthonormal DCT-II (inverse: DCT-III) of 8-row bands [band_begin, band_end)
// of an H x W x C float32 image (C = 1 for H x W); W is a multiple of 8.
void dct8x8_bands(const float* src, float* dst, std::size_t width, std::size_t channels, bool inverse,
                  std::size_t band_begin, std::size_t band_end);

// ---- bindings -------------------------------------------------------------------

void register_unpack(pybind11::module_& m);
void register_cfa(pybind11::module_& m);
void register_dct(pybind11::module_& m);

}  // namespace rawproof
