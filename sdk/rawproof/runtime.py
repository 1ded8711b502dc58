"""ONNX Runtime sessions: the only place the SDK creates them.

:func:`get_session` opens a model described by a :class:`~rawproof.models.ModelInfo`,
checks it against the DESIGN.md contract and caches the session; :func:`rawproof.develop`
and the verifier call it for you. Providers are chosen explicitly: the caller's list, or
the best available in the order TensorRT > CUDA > CPU. :attr:`Session.provider` reports
the one that actually runs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rawproof.errors import ModelError, ProviderError
from rawproof.models import ModelInfo, ModelKind, encode_metadata, find_model
from rawproof.untrusted import read_regular

__all__ = [
    "PROVIDER_PREFERENCE",
    "available_providers",
    "resolve_providers",
    "Session",
    "get_session",
    "clear_session_cache",
]

PROVIDER_PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
"""Automatic choice order; anything else onnxruntime offers must be asked for by name."""

_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_CACHE_SIZE = 8
_cache: OrderedDict[tuple, Session] = OrderedDict()
_cache_lock = threading.Lock()


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers, in its own order."""
    return list(ort.get_available_providers())


def resolve_providers(providers: Sequence[str] | str | None = None) -> tuple[str, ...]:
    """Turn a provider request into the explicit list passed to onnxruntime.

    Args:
        providers: ``None`` for automatic (TensorRT > CUDA > CPU among those available),
            or provider names in priority order. Full names (``"CUDAExecutionProvider"``)
            and the short forms ``cpu``, ``cuda``, ``tensorrt``/``trt`` are accepted; a
            comma-separated string is split.

    Raises:
        ProviderError: a name is unknown to onnxruntime or not available in this build.
    """
    available = available_providers()
    if providers is None:
        return tuple(p for p in PROVIDER_PREFERENCE if p in available)
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    resolved: list[str] = []
    for p in providers:
        name = _ALIASES.get(p.strip().lower(), p.strip())
        if name not in available:
            raise ProviderError(f"execution provider {p!r} is not available; this onnxruntime offers {available}")
        if name not in resolved:
            resolved.append(name)
    if not resolved:
        raise ProviderError("empty provider list")
    return tuple(resolved)


class Session:
    """One checked onnxruntime session for a rawproof model. A context manager.

    Create through :func:`get_session` (cached) rather than directly. ``close()`` is
    idempotent; a closed session raises :class:`ModelError` on :meth:`run`.

    Attributes:
        info: The model's validated metadata.
        providers: Providers requested, in priority order.
        provider: The provider onnxruntime actually put first for this session.
        threads: intra-op thread count (0 = onnxruntime's default, one per core).
    """

    def __init__(self, info: ModelInfo, providers: Sequence[str] | str | None = None, threads: int | None = None) -> None:
        self.info = info
        self.providers = resolve_providers(providers)
        self.threads = int(threads or 0)
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        try:
            # A single ONNX protobuf cannot exceed 2 GiB; a FIFO or device is refused unread.
            data = read_regular(Path(info.path), 2 << 30)
        except OSError as e:
            raise ModelError(f"cannot read model: {e}", path=info.path) from e
        # Hash the bytes we load, not the file again, so nothing can change in between.
        digest = hashlib.sha256(data).hexdigest()
        if digest != info.sha256:
            raise ModelError(
                f"sha256 mismatch: file has {digest}, metadata says {info.sha256}; the model was modified or corrupted",
                path=info.path,
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self._sess: ort.InferenceSession | None = ort.InferenceSession(data, sess_options=opts, providers=list(self.providers))
        except Exception as e:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, ...)
            raise ModelError(f"onnxruntime cannot load the model: {e}", path=info.path) from e
        self.provider = self._sess.get_providers()[0]
        self._check_contract(self._sess)

    def _check_contract(self, sess: ort.InferenceSession) -> None:
        info, kind = self.info, self.info.kind
        props = sess.get_modelmeta().custom_metadata_map
        expected = encode_metadata(info.metadata)
        diff = sorted(k for k, v in expected.items() if props.get(k) != v)
        if diff:
            raise ModelError(f"ONNX metadata_props disagree with the JSON on {diff}", path=info.path)
        inputs, outputs = sess.get_inputs(), sess.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}", path=info.path)
        i, o = inputs[0], outputs[0]
        if i.name != kind.input_name or i.type != "tensor(float)" or len(i.shape) != 4 or i.shape[1] != kind.input_channels:
            raise ModelError(
                f"input must be {kind.input_name!r} float32 N x {kind.input_channels} x h x w, "
                f"got {i.name!r} {i.type} {i.shape}", path=info.path,
            )
        want_rank = 4 if kind is ModelKind.NIP else 2
        if o.name != kind.output_name or o.type != "tensor(float)" or len(o.shape) != want_rank:
            raise ModelError(
                f"output must be {kind.output_name!r} float32 of rank {want_rank}, got {o.name!r} {o.type} {o.shape}", path=info.path
            )
        if kind is ModelKind.NIP and (isinstance(i.shape[2], int) or isinstance(i.shape[3], int)):
            raise ModelError(f"NIP input h and w must be dynamic, got {i.shape}", path=info.path)
        if kind is ModelKind.FAN and isinstance(o.shape[1], int) and o.shape[1] != len(info.classes):
            raise ModelError(f"FAN has {o.shape[1]} logits but {len(info.classes)} classes", path=info.path)
        self._fixed_hw = tuple(d if isinstance(d, int) else None for d in i.shape[2:])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the model on one batch.

        Args:
            x: NIP: ``rggb`` float32 N x 4 x h x w, linear [0, 1] (h, w multiples of
                ``info.size_multiple``). FAN: ``rgb`` float32 N x 3 x H x W, sRGB [0, 1].
                Must be float32 and C-contiguous; nothing is converted silently.

        Returns:
            NIP: float32 N x 3 x 2h x 2w, sRGB, nominally [0, 1] (not clipped).
            FAN: float32 N x C logits. A new array.

        Raises:
            ValueError: ``x`` has the wrong dtype, rank, channel count or size (the
                caller's mistake; onnxruntime would run some wrong shapes silently).
            ModelError: the session is closed or onnxruntime fails while running.
        """
        if self._sess is None:
            raise ModelError("session is closed", path=self.info.path)
        kind = self.info.kind
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or x.shape[1] != kind.input_channels:
            raise ValueError(
                f"{kind.value} input must be a float32 N x {kind.input_channels} x h x w array, got "
                f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', None)}"
            )
        if not x.flags.c_contiguous:
            raise ValueError("input must be C-contiguous (use np.ascontiguousarray)")
        n, _, h, w = x.shape
        m = self.info.size_multiple
        if n < 1 or h < 1 or w < 1 or h % m or w % m:
            raise ValueError(f"input size {n}x{h}x{w} must be non-empty with h, w multiples of {m}")
        for got, fixed in zip((h, w), self._fixed_hw):
            if fixed is not None and got != fixed:
                raise ValueError(f"this model takes fixed h x w {self._fixed_hw}, got {h}x{w}")
        try:
            (y,) = self._sess.run([kind.output_name], {kind.input_name: x})
        except Exception as e:  # onnxruntime's own pybind exception classes
            raise ModelError(f"onnxruntime failed: {e}", path=self.info.path) from e
        return y

    def close(self) -> None:
        """Release the onnxruntime session. Idempotent, never raises."""
        self._sess = None

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._sess is None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get_session(
    model: ModelInfo | str | os.PathLike[str] | None,
    kind: ModelKind | str = ModelKind.NIP,
    *,
    providers: Sequence[str] | str | None = None,
    threads: int | None = None,
) -> Session:
    """A checked, cached session for ``model``. Thread-safe.

    Sessions are cached per (model path, sha256, resolved providers, threads); the cache
    holds the last 8. A cached session is shared: do not close it, call
    :func:`clear_session_cache` instead.

    Args:
        model: As for :func:`rawproof.models.find_model` (``None`` = default shipped model).
        kind: The model kind the caller needs.
        providers: See :func:`resolve_providers`.
        threads: onnxruntime intra-op threads; ``None``/0 = one per core.

    Raises:
        ModelError: missing, corrupt or tampered model, or one that breaks the contract.
        ProviderError: an unavailable provider was asked for.
    """
    info = find_model(model, kind)
    resolved = resolve_providers(providers)
    key = (str(info.path), info.sha256, resolved, int(threads or 0))
    with _cache_lock:
        sess = _cache.get(key)
        if sess is not None and not sess.closed:
            _cache.move_to_end(key)
            return sess
        # Loading under the lock keeps two threads from building the same session twice.
        sess = Session(info, resolved, threads)
        _cache[key] = sess
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)[1].close()
        return sess


def clear_session_cache() -> None:
    """Close and forget every cached session."""
    with _cache_lock:
        for sess in _cache.values():
            sess.close()
        _cache.clear()
