// Argument checks shared by the pybind11 bindings: wrong dtype or layout is a
// TypeError (never a silent copy), wrong values or shapes are a ValueError.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace rawproof {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << '(';
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

// Requires a C-contiguous array of dtype T (native byte order); TypeError otherwise.
template <class T>
void require_dtype_c_contiguous(const py::array& a, const char* name, const char* dtype_name) {
    if (!py::isinstance<py::array_t<T>>(a)) {
        throw py::type_error(std::string(name) + " must be a " + dtype_name + " numpy array, got dtype " +
                             std::string(py::str(a.dtype())));
    }
    if (!(a.flags() & py::array::c_style)) {
        throw py::type_error(std::string(name) +
                             " must be C-contiguous (use numpy.ascontiguousarray), got a strided view of shape " +
                             shape_str(a));
    }
}

// Per-channel parameters (black levels, WB gains): any sequence or array of 4 real
// numbers, in canonical (R, Gr, Gb, B) order.
inline std::array<float, 4> channel_params(const py::handle& obj, const char* name) {
    // ensure() converts like numpy.asarray(obj, float64) and clears the error on failure.
    auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!a) {
        throw py::type_error(std::string(name) + " must be 4 real numbers (R, Gr, Gb, B), got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    }
    if (a.ndim() != 1 || a.shape(0) != 4) {
        throw std::invalid_argument(std::string(name) + " must have 4 values (R, Gr, Gb, B), got shape " +
                                    shape_str(a));
    }
    std::array<float, 4> out{};
    for (int c = 0; c < 4; ++c) {
        const double v = a.at(c);
        // Beyond FLT_MAX the cast to float is undefined behaviour (and would give inf).
        if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
            throw std::invalid_argument(std::string(name) + "[" + std::to_string(c) +
                                        "] must be finite and within float32 range, got " + std::to_string(v));
        }
        out[c] = static_cast<float>(v);
    }
    return out;
}

}  // namespace rawproof
