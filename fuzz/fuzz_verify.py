"""Coverage-guided fuzzing (atheris) of ``rawproof.verify()`` on malformed JPEG/PNG/WebP/C2PA data.

Each input is the encoded image itself. It goes through the whole of ``verify()``:
C2PA validation against the test root (c2pa, Rust), Pillow decoding under
:mod:`rawproof.imageio`'s rules, and the FAN patch analysis with a tiny FAN (patch 16),
plus ``VerifyReport.to_dict()`` and the heatmap rendering of ``save_heatmap``.

Contract checked: ``verify()`` either returns a report whose verdict agrees with its
provenance state, or raises a :class:`rawproof.errors.RawproofError` subclass (in
practice :class:`~rawproof.errors.ImageFormatError`). Anything else (a bare
``ValueError``/``OSError``/``KeyError`` from a decoder or from c2pa, a hang past
``-timeout``, an RSS past ``-rss_limit_mb``) is a finding.

Coverage is of ``rawproof`` and Pillow's Python plugins (instrumented on import);
libjpeg/libpng/zlib and c2pa's Rust code run uninstrumented.

Usage: ``python fuzz/fuzz_verify.py [corpus_dir ...] [libFuzzer flags]``. Needs the
fixtures of ``python fuzz/make_corpus.py`` (test PKI, tiny FAN) under ``cache/fuzz``
or ``$RAWPROOF_FUZZ_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["rawproof", "PIL"]):
    from PIL import Image
    from rawproof.errors import RawproofError
    from rawproof.forensics import render_heatmap
    from rawproof.models import ModelKind, find_model
    from rawproof.provenance import ProvenanceState
    from rawproof.untrusted import dumps_strict
    from rawproof.verify import Verdict, verify

import make_corpus

MAX_PIXELS = 1 << 18
"""Decode bound for fuzzing (512 x 512): keeps one execution under ~0.1 s."""

_FUZZ_DIR = Path(os.environ.get("RAWPROOF_FUZZ_DIR", make_corpus.DEFAULT_OUT))
_ROOT_PEM = b""
_FAN = None

_EXPECTED = {
    # A valid active manifest can still have a broken or untrusted step in its history.
    ProvenanceState.VALID: {Verdict.AUTHENTIC, Verdict.MANIPULATED, Verdict.EDITED, Verdict.SYNTHETIC,
                            Verdict.ORIGIN_UNVERIFIED, Verdict.INVALID_SIGNATURE, Verdict.UNTRUSTED},
    ProvenanceState.INVALID: {Verdict.INVALID_SIGNATURE},
    ProvenanceState.UNTRUSTED_SIGNER: {Verdict.UNTRUSTED},
    ProvenanceState.UNAVAILABLE: {Verdict.MANIFEST_UNAVAILABLE},
    ProvenanceState.NO_MANIFEST: {Verdict.NO_PROVENANCE_CONSISTENT, Verdict.NO_PROVENANCE_MANIPULATED,
                                  Verdict.NO_PROVENANCE_UNANALYZED, Verdict.NO_PROVENANCE_INCONCLUSIVE},
}


def test_one_input(data: bytes) -> None:
    """atheris entry: verify ``data`` as an image; only RawproofError may escape."""
    try:
        report = verify(data, device_anchors=_ROOT_PEM, fan=_FAN, max_pixels=MAX_PIXELS, threads=1)
    except RawproofError:
        return
    assert report.verdict in _EXPECTED[report.provenance.state], (report.verdict, report.provenance.state)
    assert report.width * report.height <= MAX_PIXELS
    as_dict = report.to_dict()
    dumps_strict({k: v for k, v in as_dict.items() if k != "forensics"})  # as `verify --json`; the grids only cost time
    if report.forensics.available:
        render_heatmap(report.forensics, report.preview)


def main() -> None:
    """Load the fixtures, then run atheris with the command-line libFuzzer flags."""
    global _ROOT_PEM, _FAN
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    fan_path = _FUZZ_DIR / "models" / "fuzz_fan.onnx"
    root = _FUZZ_DIR / "pki" / "root.pem"
    if not (fan_path.is_file() and root.is_file()):
        sys.exit(f"fixtures missing under {_FUZZ_DIR}; run python fuzz/make_corpus.py first")
    _ROOT_PEM = root.read_bytes()
    _FAN = find_model(fan_path, ModelKind.FAN)
    atheris.Setup(sys.argv, atheris.instrument_func(test_one_input))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
