"""The job a web worker runs on one upload: ``verify()``, the heatmap, the plain-words reading.

Runs inside a :class:`rawproof.web.pool.VerifyPool` worker process, never in the server.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from typing import Any

from rawproof.forensics import describe_regions, render_heatmap
from rawproof.verify import not_evidence_reason, verify
from rawproof.web.explain import explain

__all__ = ["analyse_upload", "HEATMAP_SIDE"]

HEATMAP_SIDE = 1024
"""Long edge (pixels) of the heatmap PNG the page overlays on the image."""


def analyse_upload(data: bytes, verify_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Verify ``data`` and return what the page needs.

    Returns:
        ``{"report": VerifyReport.to_dict(), "page": explain(...), "heatmap_jpeg": bytes | None,
        "verify_ms": float}``: ``heatmap_jpeg`` is the forensic heatmap drawn over a grey copy
        of the image (:func:`rawproof.forensics.render_heatmap`, crossed out where the readings are
        not evidence (:func:`rawproof.verify.not_evidence_reason`), at most
        :data:`HEATMAP_SIDE` px; JPEG q90, which encodes ~10x faster than PNG and the
        page only shows it), ``None`` when no analysis ran; ``verify_ms`` is the wall time
        of the ``verify()`` call alone.

    Raises:
        RawproofError: as :func:`rawproof.verify` raises it (e.g. ImageFormatError).
    """
    t0 = time.perf_counter()
    report = verify(data, heatmap=True, **verify_kwargs)
    verify_ms = (time.perf_counter() - t0) * 1e3
    fa = report.forensics
    heatmap = None
    if fa.available and fa.p_manipulated.size and report.preview is not None:
        buf = io.BytesIO()
        render_heatmap(fa, report.preview, max_side=HEATMAP_SIDE, not_evidence=not_evidence_reason(report)).save(
            buf, "JPEG", quality=90)
        heatmap = buf.getvalue()
    as_dict = report.to_dict()
    return {"report": as_dict, "page": explain(as_dict, describe_regions(fa)), "heatmap_jpeg": heatmap,
            "verify_ms": verify_ms}
