"""Shared argument checks for the torch ops: one declarative shape check and its error.

Every op in :mod:`rawproof_train` validates its tensor inputs through :func:`check_shape`
so that a wrong layout fails early with the expected and the actual shape, instead of
deep inside a convolution with an unrelated message.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["ShapeError", "check_shape", "check_min_size", "check_choice"]


class ShapeError(ValueError):
    """A tensor does not have the layout an op expects.

    Attributes:
        name: what the tensor is called in the op's signature (e.g. ``"rggb"``).
        expected_shape: the pattern it should match, e.g. ``("N", "4", "H", "W")``.
        actual_shape: the shape it has.
    """

    def __init__(self, message: str, *, name: str, expected_shape: Sequence[str], actual_shape: Sequence[int]) -> None:
        super().__init__(f"{name}: {message} (expected {list(expected_shape)}, got {list(actual_shape)})")
        self.name = name
        self.expected_shape = tuple(expected_shape)
        self.actual_shape = tuple(actual_shape)


def check_shape(x: torch.Tensor, pattern: Sequence[str], name: str = "input") -> dict[str, int]:
    """Check ``x`` against a shape pattern and return the sizes bound to its letters.

    Pattern items: a decimal number fixes that dimension; a name (``"N"``, ``"H"``) matches any
    size, and the same name used twice must match the same size; ``"*"`` as the first item
    matches any number (zero or more) of leading dimensions.

    Args:
        x: tensor to check.
        pattern: e.g. ``["N", "3", "H", "W"]`` or ``["*", "H", "W"]``.
        name: the argument's name, used in the error message.

    Returns:
        ``{letter: size}`` for every named dimension (empty while tracing for ONNX export, when only
        the number of dimensions is checked).

    Raises:
        ShapeError: wrong number of dimensions, a fixed size differs, or a repeated name binds
            two different sizes.
        TypeError: ``x`` is not a tensor.

    Example:
        >>> check_shape(torch.zeros(2, 4, 8, 6), ["N", "4", "H", "W"], "rggb")
        {'N': 2, 'H': 8, 'W': 6}
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    pattern = list(pattern)
    if torch.jit.is_tracing():
        # Under tracing (ONNX export) sizes are symbolic; comparing them would bake the example's
        # sizes into the graph. The rank is still static, so check only that.
        if len(x.shape) != len(pattern) and not (pattern and pattern[0] == "*"):
            raise ShapeError(f"expected {len(pattern)} dimensions", name=name, expected_shape=pattern, actual_shape=x.shape)
        return {}
    shape = tuple(x.shape)
    if pattern and pattern[0] == "*":
        pattern = pattern[1:]
        if len(shape) < len(pattern):
            raise ShapeError("too few dimensions", name=name, expected_shape=["*", *pattern], actual_shape=shape)
        shape = shape[len(shape) - len(pattern):]
    elif len(shape) != len(pattern):
        raise ShapeError(f"expected {len(pattern)} dimensions", name=name, expected_shape=pattern, actual_shape=x.shape)
    bound: dict[str, int] = {}
    for token, size in zip(pattern, shape):
        if token.isdigit():
            if int(token) != size:
                raise ShapeError(f"dimension {token!r} has size {size}", name=name, expected_shape=pattern, actual_shape=x.shape)
        elif token in bound and bound[token] != size:
            raise ShapeError(f"dimension {token!r} is {bound[token]} and {size}", name=name, expected_shape=pattern, actual_shape=x.shape)
        else:
            bound[token] = size
    return bound


def check_min_size(x: torch.Tensor, min_hw: int, name: str = "input") -> None:
    """Raise :class:`ShapeError` unless the last two dimensions of ``x`` are both ``>= min_hw`` (skipped while tracing)."""
    if not torch.jit.is_tracing() and (x.shape[-2] < min_hw or x.shape[-1] < min_hw):
        raise ShapeError(
            f"height and width must be >= {min_hw}", name=name, expected_shape=["*", f">={min_hw}", f">={min_hw}"], actual_shape=x.shape
        )


def check_choice(value: object, choices: Sequence[object], name: str) -> None:
    """Raise ``ValueError`` naming the allowed values unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
