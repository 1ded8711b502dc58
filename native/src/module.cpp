// pybind11 bindings of the rawproof native kernels (rawproof._native).
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
    m.doc() = "rawproof native kernels: Bayer unpacking, CFA handling, blockwise 8x8 DCT";
}
