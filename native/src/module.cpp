// pybind11 bindings of the rawproof native kernels (rawproof._native).
#include <pybind11/pybind11.h>

#include "rawproof/kernels.hpp"

PYBIND11_MODULE(_native, m) {
    m.doc() = "rawproof native kernels: Bayer unpacking, CFA handling, blockwise 8x8 DCT";
    rawproof::register_unpack(m);
    rawproof::register_cfa(m);
    rawproof::register_dct(m);
}
