"""verify(): C2PA provenance plus learned forensic traces -> one verdict, a summary, a heatmap.

The last step of the data path::

    report = rawproof.verify("photo.jpg", device_anchors="camera_roots.pem", trust_anchors="editor_roots.pem")
    report.verdict        # Verdict.AUTHENTIC (or EDITED, SYNTHETIC, ... from the provenance graph)
    report.summary        # "authentic: device capture signed by CN=...; traces consistent ..."
    save_heatmap(report, "heat.png")

Low-level steps stay public: :func:`rawproof.provenance.check_provenance`,
:func:`rawproof.imageio.decode_rgb`, :func:`rawproof.forensics.analyze`. Command line:
``rawproof verify IMAGE`` (exit codes in :class:`Verdict` and ``docs/verify.md``).
"""

from __future__ import annotations

import argparse
import enum
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from rawproof.errors import ImageFormatError, VerificationError
from rawproof.forensics import (
    ForensicAnalysis, Traces, analyze, channel_mismatch, describe_regions, fan_config, render_heatmap, unavailable,
)
from rawproof.imageio import MAX_PIXELS, DecodedImage, ImageSource, decode_rgb, read_image_bytes
from rawproof.jpeg_trace import JpegEstimate, estimate_jpeg
from rawproof.models import ModelInfo, ModelKind
from rawproof.origin import OriginReading, find_origin_head
from rawproof.pairs import ModelDirs, find_in_dirs, installed_models, pairing_mismatch
from rawproof.provenance import (
    SYNTHETIC_SOURCE_TYPES, ManifestStep, PemSource, ProvenanceReport, ProvenanceState, TrustState, check_provenance,
)
from rawproof.untrusted import dumps_strict

if TYPE_CHECKING:
    from rawproof.fingerprint import DeviceMatch, Fingerprint
    from rawproof.recover import Recovery
    from rawproof.repo.client import RepoClient

__all__ = ["Verdict", "VerifyReport", "verify", "save_heatmap", "not_evidence_reason", "bench_verify", "register", "PREVIEW_SIDE"]

PREVIEW_SIDE = 1024
"""Long edge (pixels) of the preview kept in a report for :func:`save_heatmap`."""


class Verdict(enum.Enum):
    """Overall finding of :func:`verify`; :attr:`exit_code` is what ``rawproof verify`` returns.

    The provenance graph decides first (the active manifest and its ``parentOf`` chain,
    with each signer's trust); the traces refine a device capture. Errors are not
    verdicts: they raise (exit code 3). Exit 0 means exactly one thing: an unedited
    capture signed by a device; 1 means evidence of tampering; 2 covers everything in
    between, where :attr:`VerifyReport.verdict` and the chain say what is known.
    """

    AUTHENTIC = "authentic"
    """A valid capture claim (``c2pa.created`` with a capture source type and rawproof's
    capture assertion) signed by a certificate chaining to a device anchor, and traces
    consistent with an unedited capture (or no FAN available: the signature alone vouches). Exit 0."""
    EDITED = "edited"
    """Every step valid and trusted: edits signed by trusted signers back to a device
    capture. ``provenance.chain`` lists each step (actions, signer, time, trust) and the
    original capture assertion is ``capture``. Not the capture itself, not tampering. Exit 2."""
    SYNTHETIC = "synthetic"
    """Valid, trusted provenance that declares AI-generated, algorithmic or composite
    content (:data:`rawproof.provenance.SYNTHETIC_SOURCE_TYPES`) at some step. Exit 2."""
    ORIGIN_UNVERIFIED = "origin_unverified"
    """Valid, trusted manifests, but the history does not reach a capture signed by a
    device anchor (a capture claim by a non-device signer, no capture claim, or an edit
    of a parent without a manifest). Exit 2."""
    MANIPULATED = "manipulated"
    """A device capture, but the traces indicate a manipulation: the content was altered
    before it was signed (e.g. a compromised device), or the FAN is wrong. Exit 1."""
    INVALID_SIGNATURE = "invalid_signature"
    """A manifest in the history is present but broken: the content changed after
    signing, a bad or expired signature, a failed ingredient, or an undecodable
    manifest. Exit 1, whatever the traces say."""
    UNTRUSTED = "untrusted"
    """Manifests intact but a signer in the history chains to no anchor given; anyone can
    make such a manifest, so it counts as no provenance. The traces are in the summary. Exit 2."""
    MANIFEST_UNAVAILABLE = "manifest_unavailable"
    """The image refers to a remote manifest that offline validation does not fetch:
    neither vouched for nor shown tampered. Exit 2."""
    NO_PROVENANCE_CONSISTENT = "no_provenance_consistent"
    """No manifest; traces consistent with an unedited capture. Exit 2."""
    NO_PROVENANCE_MANIPULATED = "no_provenance_manipulated"
    """No manifest; traces indicate a manipulation. Exit 2."""
    NO_PROVENANCE_UNANALYZED = "no_provenance_unanalyzed"
    """No manifest and no forensic analysis (no FAN installed, or image smaller than a patch). Exit 2."""
    RECOVERED = "recovered"
    """No manifest in the file, but a repository (``verify(repo=)``) returned the original's
    manifest through the image's soft binding, signed by a trusted signer (``report.recovery``:
    chain, match distance, what differs). A fingerprint match is not a cryptographic binding of
    these pixels, and a locally edited copy can still match, so it counts as no trusted
    provenance; the traces are in the summary. Exit 2."""
    NO_RAWPROOF_TRACES = "no_rawproof_traces"
    """No manifest, and the origin head (:mod:`rawproof.origin`) reads the image as not developed
    by a rawproof NIP at all (another camera pipeline, an editor's export): the FAN has nothing
    to say about it, so it is never called manipulated. Exit 2."""
    NO_PROVENANCE_INCONCLUSIVE = "no_provenance_inconclusive"
    """No manifest, and the image was encoded outside the channel the FAN was trained behind
    (``forensics.out_of_channel`` says how), where its readings are not evidence. Exit 2."""

    @property
    def exit_code(self) -> int:
        """0 authentic capture, 1 manipulated or invalid signature, 2 anything else (no trusted provenance of an unedited capture)."""
        if self is Verdict.AUTHENTIC:
            return 0
        if self in (Verdict.MANIPULATED, Verdict.INVALID_SIGNATURE):
            return 1
        return 2


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`.

    Attributes:
        verdict: The overall finding.
        summary: One human-readable sentence saying why.
        provenance: The C2PA validation (:func:`rawproof.provenance.check_provenance`).
        capture: The ``org.rawproof.capture`` assertion of the history's first manifest
            (the original capture of an edited image; camera, device id, raw and model
            hashes, capture and develop time, develop settings), or ``None``. Only an
            ``AUTHENTIC``, ``MANIPULATED`` or ``EDITED`` verdict vouches for it.
        forensics: The FAN analysis (possibly unavailable; see its ``reason``).
        scale_mode: How the analysis scale was chosen: ``"camera-original"`` (auto,
            downscaled to the trained channel), ``"as-is"`` (auto, unknown scale),
            ``"none"`` or ``"explicit"``.
        image_format, source_mode, frames, jpeg_quality, jpeg_subsampling: From
            :class:`rawproof.imageio.DecodedImage`.
        width, height: Decoded size, pixels.
        jpeg_estimate: For a file that is not a JPEG or WebP (e.g. a JPEG re-saved as PNG), the
            last JPEG compression read from its pixels (:func:`rawproof.jpeg_trace.estimate_jpeg`:
            quality, grid offset), when a FAN ran and its channel check needed it; else ``None``.
        timings_ms: ``provenance``, ``decode``, ``forensics``, ``fingerprint`` (only with a
            fingerprint), ``total`` (wall, ms).
        preview: uint8, at most :data:`PREVIEW_SIDE` px on the long edge x 3, a downsized
            copy of the image for :func:`save_heatmap`; ``None`` with ``heatmap=False``.
        recovery: The manifest recovered through the soft binding when ``verify(..., repo=)``
            was given and the image had no valid manifest (:class:`rawproof.recover.Recovery`),
        origin: The origin head's reading (:class:`rawproof.origin.OriginReading`) when the
            FAN has a head and read the image inside its channels without a trusted manifest,
            else ``None``.
        device: Sensor-fingerprint test (:func:`rawproof.fingerprint.match`: PCE, threshold,
            decision) when ``verify(..., fingerprint=)`` was given, else ``None``. It does not
            change the verdict.
    """

    verdict: Verdict
    summary: str
    provenance: ProvenanceReport
    capture: Mapping[str, Any] | None
    forensics: ForensicAnalysis
    scale_mode: str
    image_format: str
    source_mode: str
    frames: int
    width: int
    height: int
    jpeg_quality: int | None = None
    jpeg_subsampling: str | None = None
    jpeg_estimate: JpegEstimate | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    preview: np.ndarray | None = field(default=None, repr=False, compare=False)
    device: DeviceMatch | None = None
    recovery: Recovery | None = None
    origin: OriginReading | None = None

    @property
    def exit_code(self) -> int:
        """``verdict.exit_code``."""
        return self.verdict.exit_code

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form: enums as their values, arrays as nested lists, no preview."""
        return {
            "verdict": self.verdict.value,
            "exit_code": self.exit_code,
            "summary": self.summary,
            "provenance": json.loads(json.dumps(self.provenance.to_dict(), default=str)),
            "capture": None if self.capture is None else json.loads(json.dumps(self.capture, default=str)),
            "image": {"format": self.image_format, "mode": self.source_mode, "frames": self.frames,
                      "width": self.width, "height": self.height, "jpeg_quality": self.jpeg_quality,
                      "jpeg_subsampling": self.jpeg_subsampling,
                      "jpeg_estimate": None if self.jpeg_estimate is None else {
                          "quality": self.jpeg_estimate.quality, "offset": list(self.jpeg_estimate.offset),
                          "strength": self.jpeg_estimate.strength}},
            "scale_mode": self.scale_mode,
            "forensics": self.forensics.to_dict(),
            "timings_ms": dict(self.timings_ms),
            "device": None if self.device is None else self.device.to_dict(),
            "recovery": None if self.recovery is None else self.recovery.to_dict(),
            "origin": None if self.origin is None else self.origin.to_dict(),
        }


def _resolve_fan(fan: str | os.PathLike[str] | ModelInfo | None, capture: Mapping[str, Any] | None,
                 models_dir: ModelDirs = None) -> tuple[ModelInfo | None, str, str | None]:
    """(model, source, note): explicit ``fan`` > the manifest's FAN (by sha256) > the FAN paired with the manifest's NIP > default.

    Looked up in ``models_dir`` first, then the shipped models. Whether the FAN found may read
    the image is decided afterwards (:func:`rawproof.pairs.pairing_mismatch`).
    """
    if fan is not None:
        return find_in_dirs(fan, ModelKind.FAN, models_dir), "explicit", None
    installed = installed_models(ModelKind.FAN, models_dir)
    cap = capture if isinstance(capture, Mapping) else {}
    ref, nip_ref = cap.get("fan"), cap.get("nip")
    note = None
    if isinstance(ref, Mapping) and ref.get("sha256"):
        match = [i for i in installed if i.sha256 == ref["sha256"]]
        if match:
            return match[0], "manifest", None
        note = f"the FAN named in the manifest ({ref.get('name')}, sha256 {str(ref['sha256'])[:12]}...) is not installed"
    if isinstance(nip_ref, Mapping) and nip_ref.get("sha256"):
        match = [i for i in installed if i.paired is not None and i.paired["sha256"] == nip_ref["sha256"]]
        if match:
            return match[0], "pair", note
    if not installed:
        return None, "", "no FAN model installed" + (f"; {note}" if note else "")
    return find_in_dirs(None, ModelKind.FAN, models_dir), "default", note


def _auto_scale(prov: ProvenanceReport, width: int, height: int, downscale: float) -> tuple[float, str]:
    capture = prov.origin.capture if prov.origin is not None else prov.capture
    if not isinstance(capture, Mapping):
        return 1.0, "as-is"
    dev = capture.get("develop") or {}
    if isinstance(dev, Mapping) and "width" in dev and "height" in dev:
        original = (dev["width"], dev["height"]) == (width, height)
    else:
        # The hard binding is intact and nothing but the capture (and updates) wrote content,
        # so the pixels are exactly those the camera developed.
        edits = [s for s in prov.chain if not s.is_update]
        original = prov.state in (ProvenanceState.VALID, ProvenanceState.UNTRUSTED_SIGNER) and len(edits) == 1
    return (1.0 / downscale, "camera-original") if original else (1.0, "as-is")


_CLASS_WORDS = {"sharpen": "sharpening", "gaussian": "Gaussian blur", "jpeg": "JPEG recompression",
                "resample": "resampling", "native": "no manipulation"}


def _traces_phrase(fa: ForensicAnalysis) -> str:
    if not fa.available:
        return f"forensic analysis unavailable: {fa.reason}"
    if fa.out_of_channel:
        return f"forensic analysis inconclusive: {fa.out_of_channel} (FAN P(manipulated) {fa.score:.2f}, not evidence here)"
    if fa.traces is Traces.CONSISTENT:
        return f"traces consistent with an unedited capture (P(manipulated) {fa.score:.2f} over {fa.argmax.size} patches)"
    fractions = fa.class_fractions()
    local = [g for g in fa.regions if g.significant]
    where = ""
    if local:
        boxes = "; ".join(f"{_CLASS_WORDS.get(g.dominant_class, g.dominant_class)} at x {g.box[0]}-{g.box[2]}, "
                          f"y {g.box[1]}-{g.box[3]} (mass {g.mass:.1f})" for g in local)
        where = f" ({len(local)} significant region{'s' if len(local) > 1 else ''}: {boxes})"
    else:
        sections = describe_regions(fa)
        where = f" (regions: {', '.join(sections)})" if sections else ""
    if fractions:
        what = ", ".join(f"{_CLASS_WORDS.get(c, c)} in {f:.0%}" for c, f in list(fractions.items())[:2])
        return f"traces of {what} of the image{where}; P(manipulated) {fa.score:.2f}"
    top = max((c for c in fa.classes if c != "native"), key=lambda c: fa.class_probabilities[c])
    return f"traces of {_CLASS_WORDS.get(top, top)} spread over the image; P(manipulated) {fa.score:.2f}"


def _step_phrase(step: ManifestStep) -> str:
    acts = ", ".join(str(a.get("action", "?")).removeprefix("c2pa.") for a in step.actions) or "no actions"
    if step.is_update:
        acts = f"update ({acts})"
    when = f" at {step.signing_time}" if step.signing_time else ""
    return f"{acts} by {step.signer_subject} ({step.trust.value}{when})"


def _decide(prov: ProvenanceReport, fa: ForensicAnalysis, recovery: Recovery | None = None,
            origin: OriginReading | None = None) -> tuple[Verdict, str]:
    traces = _traces_phrase(fa)
    if origin is not None and origin.foreign:
        traces = (f"no rawproof traces: not developed by the FAN's NIP, it seems (P(foreign) {origin.p_foreign:.2f} "
                  f">= {origin.threshold:.2f}); the FAN's reading says nothing about such an image")
    st = prov.state
    if recovery is not None and st is ProvenanceState.INVALID:
        # The embedded manifest proves the pixels changed after signing; the recovered original says from what.
        why = ", ".join(prov.status_codes) or prov.error or "unknown failure"
        return Verdict.INVALID_SIGNATURE, f"invalid signature ({why}); {recovery.describe()}; {traces}"
    if recovery is not None and recovery.trusted and st is ProvenanceState.NO_MANIFEST:
        return Verdict.RECOVERED, f"recovered: {recovery.describe()}; {traces}"
    if st is ProvenanceState.NO_MANIFEST:
        verdict = {Traces.CONSISTENT: Verdict.NO_PROVENANCE_CONSISTENT, Traces.MANIPULATED: Verdict.NO_PROVENANCE_MANIPULATED,
                   Traces.UNAVAILABLE: Verdict.NO_PROVENANCE_UNANALYZED}[fa.traces]
        if fa.available and fa.out_of_channel:
            verdict = Verdict.NO_PROVENANCE_INCONCLUSIVE
        elif origin is not None and origin.foreign:
            verdict = Verdict.NO_RAWPROOF_TRACES
        found = f"; an untrusted manifest was recovered ({recovery.describe()})" if recovery is not None else ""
        return verdict, f"no provenance (no C2PA manifest{found}); {traces}"
    if st is ProvenanceState.UNAVAILABLE:
        return Verdict.MANIFEST_UNAVAILABLE, f"manifest unavailable (remote manifest at {prov.remote_url}, not fetched offline); {traces}"
    broken = next((s for s in prov.chain if not s.valid), None)
    if broken is not None and broken is not prov.chain[0]:
        return Verdict.INVALID_SIGNATURE, (f"invalid signature in the history: {broken.label} by {broken.signer_subject} "
                                           f"({', '.join(broken.failure_codes)}); {traces}")
    if st is ProvenanceState.INVALID or broken is not None:
        why = ", ".join(prov.status_codes) or prov.error or "unknown failure"
        return Verdict.INVALID_SIGNATURE, f"invalid signature ({why}); {traces}"
    untrusted = next((s for s in prov.chain if s.trust is TrustState.UNTRUSTED), None)
    if st is ProvenanceState.UNTRUSTED_SIGNER or untrusted is not None:
        who = prov.signer_subject if untrusted is None else untrusted.signer_subject
        where = "" if untrusted is None or untrusted is prov.chain[0] else " in the history"
        return Verdict.UNTRUSTED, f"untrusted signer{where} ({who}, not chained to a trust anchor); {traces}"
    if not prov.chain:  # c2pa validated a store whose active manifest it did not list: nothing to read
        return Verdict.ORIGIN_UNVERIFIED, f"origin unverified: no readable active manifest; {traces}"
    steps = "; ".join(f"{i + 1}. {_step_phrase(s)}" for i, s in enumerate(reversed(prov.chain)))
    # Update manifests (e.g. a time stamp added later) change no content: they are not edits.
    history = [s for s in prov.chain if not s.is_update]
    synthetic = next((s for s in history if s.is_synthetic), None)
    if synthetic is not None:
        kinds = ", ".join(t.rsplit("/", 1)[-1] for t in synthetic.source_types if t in SYNTHETIC_SOURCE_TYPES)
        return Verdict.SYNTHETIC, f"synthetic: trusted provenance declares {kinds} content; history: {steps}"
    origin = prov.chain[-1]
    if not (origin.is_capture and origin.trust is TrustState.DEVICE):
        why = ("capture claim signed by a trusted non-device signer" if origin.is_capture
               else "the first manifest is not a capture" if origin.parent_title is None
               else f"the parent {origin.parent_title!r} carries no manifest")
        return Verdict.ORIGIN_UNVERIFIED, f"origin unverified: {why}; history: {steps}; {traces}"
    if len(history) > 1:
        return Verdict.EDITED, f"edited: trusted edits of a device capture; history: {steps}"
    who = f"device capture signed by {origin.signer_subject}"
    if len(prov.chain) > 1:
        who += f" (later updated: {steps})"
    if fa.traces is Traces.MANIPULATED and not fa.out_of_channel:
        return Verdict.MANIPULATED, f"manipulated: {who}, but {traces}: altered before signing, or a FAN false alarm"
    return Verdict.AUTHENTIC, f"authentic: {who}; {traces}"


def _preview(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    f = PREVIEW_SIDE / max(h, w)
    if f >= 1:
        return rgb
    im = Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR, reducing_gap=2.0)
    out = np.asarray(im)
    out.flags.writeable = False
    return out


def _strip_grid(fa: ForensicAnalysis) -> ForensicAnalysis:
    empty2, empty3 = np.zeros((0, 0)), np.zeros((0, 0, 0))
    return replace(fa, logits=empty3.astype(np.float32), probabilities=empty3, p_manipulated=empty2,
                   argmax=empty2.astype(np.int64))


def verify(
    image: ImageSource,
    *,
    device_anchors: PemSource | None = None,
    trust_anchors: PemSource | None = None,
    tsa_anchors: PemSource | None = None,
    fan: str | os.PathLike[str] | ModelInfo | None = None,
    stride: int | None = None,
    scale: str | float = "auto",
    providers: Sequence[str] | str | None = None,
    threads: int | None = None,
    heatmap: bool = True,
    max_pixels: int | None = MAX_PIXELS,
    fingerprint: Fingerprint | str | os.PathLike[str] | None = None,
    models_dir: ModelDirs = None,
    repo: str | RepoClient | None = None,
) -> VerifyReport:
    """Check an image's C2PA provenance and its forensic traces, and give one verdict.

    Steps: validate the manifests and read the history (offline); decode the pixels; choose the FAN and the
    analysis scale; run the FAN over patches; aggregate; decide (:class:`Verdict`).

    Args:
        image: Encoded JPEG/PNG/WebP: a path, bytes, or a binary file object.
        device_anchors: Roots (PEM text or path) of device certificates: only a capture
            claim signed under one of them can be ``AUTHENTIC`` or ``EDITED``.
        trust_anchors: Roots of other trusted signers (editors, services): believed
            about the edits they sign, never about captures.
        tsa_anchors: Roots of time-stamp authorities (a trusted time stamp keeps a
            signature valid after its certificate expires).
            All ``None``: c2pa's default trust configuration
            (:func:`rawproof.provenance.check_provenance`).
        fan: The FAN to use (path to ``.onnx`` with its JSON, model name, or
            ``ModelInfo``); ``None``: the FAN named in the capture assertion if one with
            that sha256 is installed, else an installed FAN paired with the capture's NIP,
            else the default shipped FAN, else none (the analysis is then reported
            unavailable; this is not an error). Whichever it is, a FAN of a model pair
            reads the traces only of images whose capture assertion names its own NIP:
            otherwise the analysis is unavailable with the reason (``traces not read
            (inconclusive): ...``), never a manipulation finding.
        models_dir: Folder(s) of exported model pairs searched before the shipped models.
        stride: Patch grid step in analysed pixels; ``None``: the FAN's patch size (no overlap).
        scale: ``"auto"``: a camera original (capture assertion present and the
            hard binding intact, or the recorded developed size equal to the image's) is
            downscaled by the FAN's ``trained_channel["downscale"]`` before analysis;
            anything else is analysed as-is because its scale is unknown.
            ``"none"``: always as-is. A float in (0, 1]: that resize factor.
        providers, threads: onnxruntime providers and intra-op threads for the FAN.
        heatmap: Keep the per-patch grids and a preview for :func:`save_heatmap`.
            ``False`` drops them after the summary is written (smaller reports).
        max_pixels: Decompression-bomb bound (:func:`rawproof.imageio.decode_rgb`).
        fingerprint: A camera's sensor fingerprint (:class:`rawproof.fingerprint.Fingerprint`
            or the path of a ``.fp`` file from ``rawproof enroll``): the report's ``device``
            says whether the image was taken by that sensor (PCE > 60). Size policy in
            :func:`rawproof.fingerprint.match`.
        repo: A manifest repository (URL or :class:`rawproof.repo.RepoClient`): an image with no
            manifest, or an invalid one, is looked up by its soft binding
            (:func:`rawproof.recover.recover`); a trusted match makes the verdict ``RECOVERED``
            (an invalid manifest stays ``INVALID_SIGNATURE``, with the original in the summary).

    Returns:
        :class:`VerifyReport`.

    A signed file whose pixels do not decode (e.g. a PNG with a flipped bit fails its
    CRC) still gets the verdict of its signature, with the forensic analysis unavailable.

    Raises:
        ImageFormatError: an unsigned file that is not a decodable JPEG/PNG/WebP, too
            large, or truncated.
        VerificationError: unreadable trust anchors, or an unknown c2pa state.
        ModelError, ProviderError: a FAN was found but cannot be loaded or run.
        ValueError: bad ``scale`` or ``stride``.
        TypeError, OSError: unsupported ``image`` type or an unreadable path.
        FingerprintError: a corrupt fingerprint file, or an image larger than the fingerprint.
        RepositoryError: ``repo`` was needed but is unreachable or answered with an error.
    """
    t0 = time.perf_counter()
    if not (scale in ("auto", "none") or (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale <= 1)):
        raise ValueError(f"scale must be 'auto', 'none' or a number in (0, 1], got {scale!r}")
    if stride is not None and int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    fp = None
    if fingerprint is not None:
        # Loaded (and its checksum checked) before any analysis, so a corrupt file fails fast.
        from rawproof.fingerprint import Fingerprint, match

        fp = fingerprint if isinstance(fingerprint, Fingerprint) else Fingerprint.load(fingerprint)
    data = read_image_bytes(image)
    prov = check_provenance(data, trust_anchors=trust_anchors, device_anchors=device_anchors, tsa_anchors=tsa_anchors)
    t1 = time.perf_counter()
    try:
        decoded: DecodedImage = decode_rgb(data, max_pixels=max_pixels)
    except ImageFormatError as e:
        if prov.state is ProvenanceState.NO_MANIFEST:
            raise
        return _undecodable_report(prov, data, e, t0, t1)
    del data
    t2 = time.perf_counter()
    origin = prov.origin
    capture = origin.capture if origin is not None else prov.capture
    info, source, note = _resolve_fan(fan, capture, models_dir)
    size = (decoded.height, decoded.width)
    jpeg_estimate = None
    origin = None
    mismatch = None if info is None else pairing_mismatch(info, (capture or {}).get("nip") if isinstance(capture, Mapping) else None)
    if info is None or mismatch:
        why = mismatch or note or "no FAN model installed"
        fa = unavailable(why if not (mismatch and note) else f"{why}; {note}", size,
                         fan_name=None if info is None else info.name, fan_sha256=None if info is None else info.sha256,
                         fan_source=source or None)
        scale_mode = "none" if scale == "none" else ("explicit" if scale != "auto" else "as-is")
    else:
        if scale == "auto":
            trained = fan_config(info).trained_channel
            factor, scale_mode = _auto_scale(prov, decoded.width, decoded.height, float(trained.get("downscale", 1)))
            # A camera original never went through the channel the FAN learned behind: replay all of it.
            replay_q = trained.get("jpeg_quality") if scale_mode == "camera-original" else None
        elif scale == "none":
            factor, scale_mode, replay_q = 1.0, "none", None
        else:
            factor, scale_mode, replay_q = float(scale), "explicit", None
        replay_sub = str(trained.get("nominal_subsampling", "444")) if scale == "auto" else "444"
        fa = analyze(decoded.rgb, info, scale=factor, jpeg_quality=replay_q, jpeg_subsampling=replay_sub, stride=stride, providers=providers, threads=threads, fan_source=source)
        if note:
            fa = replace(fa, reason=note)
        if scale_mode != "camera-original" and fa.available:
            # A camera original is replayed through the trained channel; anything else arrives
            # through whatever channel it went through, which the file's encoding partly tells.
            trained = fan_config(info).trained_channel
            if trained.get("jpeg_quality") is not None and decoded.format not in ("JPEG", "MPO", "WEBP") and min(size) >= 16:
                # The header may lie (a JPEG re-saved as PNG): read the last JPEG from the pixels.
                jpeg_estimate = estimate_jpeg(decoded.rgb)
            why = channel_mismatch(trained, decoded.format, decoded.jpeg_quality, decoded.jpeg_subsampling, jpeg_estimate)
            fa = replace(fa, out_of_channel=why)
            head = find_origin_head(info) if why is None and prov.state is not ProvenanceState.VALID else None
            origin = None if head is None else head.read(fa.logits)
    t3 = time.perf_counter()
    device = None if fp is None else match(decoded.rgb, fp)
    t4 = time.perf_counter()
    recovery = None
    if repo is not None and prov.state in (ProvenanceState.NO_MANIFEST, ProvenanceState.INVALID):
        from rawproof.recover import recover

        recovery = recover(decoded, repo, trust_anchors=trust_anchors, device_anchors=device_anchors, tsa_anchors=tsa_anchors)
    t5 = time.perf_counter()
    verdict, summary = _decide(prov, fa, recovery, origin)
    if not heatmap:
        fa = _strip_grid(fa)
    return VerifyReport(
        verdict=verdict, summary=summary, provenance=prov, capture=capture, forensics=fa, scale_mode=scale_mode,
        image_format=decoded.format, source_mode=decoded.source_mode, frames=decoded.frames,
        width=decoded.width, height=decoded.height, jpeg_quality=decoded.jpeg_quality, jpeg_subsampling=decoded.jpeg_subsampling,
        jpeg_estimate=jpeg_estimate, timings_ms={"provenance": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3, "forensics": (t3 - t2) * 1e3,
                    **({"fingerprint": (t4 - t3) * 1e3} if device is not None else {}),
                    **({"recovery": (t5 - t4) * 1e3} if repo is not None else {}),
                    "total": (time.perf_counter() - t0) * 1e3},
        preview=_preview(decoded.rgb) if heatmap else None,
        device=device, recovery=recovery, origin=origin,
    )


def _undecodable_report(prov: ProvenanceReport, data: bytes, error: ImageFormatError, t0: float, t1: float) -> VerifyReport:
    """The report of a signed file whose pixels do not decode: the signature's verdict, no analysis."""
    from rawproof.provenance import _sniff_mime

    fa = unavailable(f"the image does not decode: {error}", (0, 0))
    verdict, summary = _decide(prov, fa)
    return VerifyReport(
        verdict=verdict, summary=summary, provenance=prov, capture=prov.origin.capture if prov.origin else prov.capture,
        forensics=fa, scale_mode="none", image_format=_sniff_mime(data).split("/")[1].upper(), source_mode="",
        frames=0, width=0, height=0,
        timings_ms={"provenance": (t1 - t0) * 1e3, "total": (time.perf_counter() - t0) * 1e3},
    )


def save_heatmap(report: VerifyReport, path: str | os.PathLike[str], image: np.ndarray | None = None) -> Path:
    """Write the forensic heatmap as a PNG overlay (see :func:`rawproof.forensics.render_heatmap`).

    Args:
        report: From :func:`verify` with ``heatmap=True``.
        path: Output ``.png``.
        image: uint8 H x W x 3 to draw under the heatmap at full size (up to 2048 px);
            ``None``: the report's preview (at most :data:`PREVIEW_SIDE` px).

    Raises:
        VerificationError: the analysis is unavailable or was stripped (``heatmap=False``).
    """
    fa = report.forensics
    if not fa.available:
        raise VerificationError(f"no heatmap: forensic analysis unavailable ({fa.reason})")
    if fa.p_manipulated.size == 0:
        raise VerificationError("no heatmap: the report was made with heatmap=False")
    base = image if image is not None else report.preview
    p = Path(path)
    render_heatmap(fa, base, not_evidence=not_evidence_reason(report)).save(p, "PNG")
    return p


def not_evidence_reason(report: VerifyReport) -> str | None:
    """Why the report's FAN readings are not evidence, for :func:`rawproof.forensics.render_heatmap`'s
    ``not_evidence`` (the origin head reads the image as another pipeline's), else ``None``; an analysis
    outside the FAN's channel is marked by the renderer itself (``forensics.out_of_channel``)."""
    if report.origin is not None and report.origin.foreign:
        return f"no rawproof traces (origin head P(foreign) {report.origin.p_foreign:.2f})"
    return None


def bench_verify(width: int = 4000, height: int = 3000, *, fan: str | os.PathLike[str] | ModelInfo | None = None,
                 stride: int | None = None, repeats: int = 3, threads: int | None = None) -> list[dict[str, Any]]:
    """Time verify() on a signed synthetic ``width`` x ``height`` JPEG (q90, ES256 test PKI).

    Figures (median of ``repeats`` after one warm-up, ms): ``check_provenance``
    (signature validation), ``decode``, ``fan_camera_original`` (FAN over the image as
    verify analyses a signed original: 2x downscale then patches), ``fan_full_resolution``
    (FAN over every patch of the full-size image, ``scale="none"``), ``verify_total``
    (the whole call, signed original). Without a FAN only the first two are reported.

    Returns:
        One dict per figure: ``name``, ``median_ms``, ``best_ms``, ``repeats``, ``image``,
        ``fan``, ``patches``, ``stride``.
    """
    from PIL import Image

    from rawproof.keygen import generate_test_pki
    from rawproof.provenance import CaptureInfo, ModelRef, Signer, sign_image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (max(height // 10, 1), max(width // 10, 1), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buf, "JPEG", quality=90)
    info, _, _ = _resolve_fan(fan, None)
    # Name the FAN's own NIP: a paired FAN reads only images its NIP developed.
    nip_ref = ModelRef(info.paired["name"], info.paired["sha256"]) if info is not None and info.paired else ModelRef("bench-nip", "0" * 64)
    capture = CaptureInfo(camera_make="Bench", camera_model="Synthetic", device_id="bench-0", raw_sha256="0" * 64,
                          nip=nip_ref, capture_time="2025-01-01T00:00:00+00:00")
    with tempfile.TemporaryDirectory() as tmp:
        pki = generate_test_pki(tmp, alg="es256")
        with Signer.from_files(pki.device_chain, pki.device_key, alg="es256") as signer:
            signed = sign_image(buf.getvalue(), "image/jpeg", capture, signer)
        anchors = pki.root_cert.read_bytes()

    def timed(fn: Any) -> tuple[list[float], Any]:
        res = fn()
        ms = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            res = fn()
            ms.append((time.perf_counter() - t) * 1e3)
        return ms, res

    runs: dict[str, tuple[list[float], int | None]] = {
        "check_provenance": (timed(lambda: check_provenance(signed, device_anchors=anchors))[0], None),
        "decode": (timed(lambda: decode_rgb(signed))[0], None),
    }
    if info is not None:
        rgb = decode_rgb(signed).rgb
        down = 1.0 / float(fan_config(info).trained_channel.get("downscale", 1))
        ms, fa = timed(lambda: analyze(rgb, info, scale=down, stride=stride, threads=threads))
        runs["fan_camera_original"] = (ms, fa.argmax.size)
        ms, fa = timed(lambda: analyze(rgb, info, scale=1.0, stride=stride, threads=threads))
        runs["fan_full_resolution"] = (ms, fa.argmax.size)
        ms, rep = timed(lambda: verify(signed, device_anchors=anchors, fan=info, stride=stride, threads=threads))
        runs["verify_total"] = (ms, rep.forensics.argmax.size)
    return [
        {"name": name, "median_ms": float(np.median(ms)), "best_ms": float(min(ms)), "repeats": len(ms),
         "image": f"{width}x{height} jpeg {len(signed)} bytes", "fan": None if info is None else info.name,
         "patches": patches, "stride": stride}
        for name, (ms, patches) in runs.items()
    ]


def _usage_error(parser: argparse.ArgumentParser) -> Any:
    def error(message: str) -> NoReturn:
        # Exit 2 means "no provenance" for this command, so usage errors take 3.
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(3)

    return error


def _parse_scale(value: str) -> str | float:
    if value in ("auto", "none"):
        return value
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a number in (0, 1], got {value!r}") from None
    if not 0 < f <= 1:
        raise argparse.ArgumentTypeError(f"scale must be in (0, 1], got {f}")
    return f


def format_report(report: VerifyReport, name: str) -> str:
    """The short human-readable report that ``rawproof verify`` prints (one fact per line)."""
    lines: list[str] = []
    fa, p = report.forensics, report.provenance
    lines.append(f"{name}: {report.verdict.value.upper()} (exit {report.exit_code})")
    lines.append(f"  {report.summary}")
    lines.append(f"  provenance: {p.state.value}" + (f", signer {p.signer_subject} ({p.chain[0].trust.value})" if p.chain else "")
                 + (f", failures {', '.join(p.status_codes)}" if p.status_codes else ""))
    if len(p.chain) > 1:
        for i, step in enumerate(reversed(p.chain)):
            lines.append(f"  step {i + 1}: {_step_phrase(step)}")
    if isinstance(report.capture, Mapping):
        cam = report.capture.get("camera") or {}
        lines.append(f"  capture: {cam.get('make', '')} {cam.get('model', '')}, device {report.capture.get('device_id')}, "
                     f"{report.capture.get('capture_time')}")
    if fa.available:
        ny, nx = fa.grid_y.size, fa.grid_x.size  # the grids survive heatmap=False; the per-patch maps do not
        top = ", ".join(f"{c} {v:.2f}" for c, v in sorted(fa.class_probabilities.items(), key=lambda kv: -kv[1]))
        lines.append(f"  forensics: FAN {fa.fan_name} ({fa.fan_source}, {fa.provider}), {report.scale_mode} at scale {fa.scale:g}, "
                     f"{ny}x{nx} patches of {fa.patch_size} px stride {fa.stride}, {fa.fan_ms:.0f} ms")
        lines.append(f"  classes: {top}")
        if report.origin is not None:
            o = report.origin
            lines.append(f"  origin: {o.head} P(foreign) {o.p_foreign:.2f} (threshold {o.threshold:.2f}): "
                         + ("no rawproof traces" if o.foreign else "consistent with a rawproof development"))
        if fa.out_of_channel:
            lines.append(f"  outside the FAN's trained channel: {fa.out_of_channel}")
        elif fa.regions:
            lines.append(f"  regions of flagged patches: {len(fa.regions)} (box x0,y0-x1,y1 in pixels; significant ones decide)")
            for g in fa.regions:
                lines.append(f"    {'SIGNIFICANT ' if g.significant else ''}{g.box[0]},{g.box[1]}-{g.box[2]},{g.box[3]}: "
                             f"{g.patches} patches, mass {g.mass:.2f}, mean P {g.mean_p:.2f}, {g.dominant_class}")
    elif fa.fan_name:
        lines.append(f"  forensics: FAN {fa.fan_name} ({fa.fan_source}) not run: {fa.reason}")
    if report.recovery is not None:
        r = report.recovery
        cam = (r.capture or {}).get("camera") or {}
        lines.append(f"  recovered: manifest {r.manifest_id} ({'trusted' if r.trusted else 'untrusted'}), signer {r.provenance.signer_subject}, "
                     f"distance {r.distance}/64, capture {cam.get('make', '')} {cam.get('model', '')} device {(r.capture or {}).get('device_id')}")
        d = r.differences
        lines.append(f"  differences: original {d.get('original_size')} -> received {d.get('received_size')}, crop {d.get('crop')}, "
                     f"scale {d.get('scale')}, {d.get('original_encoding')} -> {d.get('received_encoding')}")
    if report.device is not None:
        d = report.device
        lines.append(f"  device: {'MATCH' if d.match else 'no match'}, PCE {d.pce:.1f} (threshold {d.threshold:g}), "
                     f"fingerprint of {d.fingerprint_frames} images, {d.alignment} at {d.width}x{d.height}")
    return "\n".join(lines)


def _run_cli(args: argparse.Namespace) -> int:
    try:
        data = read_image_bytes(args.image)
    except OSError as e:
        raise VerificationError(f"cannot read {args.image}: {e}") from e
    report = verify(data, device_anchors=args.trust_device, trust_anchors=args.trust, tsa_anchors=args.trust_tsa, fan=args.fan,
                    stride=args.stride, scale=args.scale, providers=args.providers, heatmap=args.json or args.heatmap is not None,
                    fingerprint=args.fingerprint, models_dir=args.models, repo=args.repo)
    heat_note = None
    if args.heatmap is not None:
        if report.forensics.available:
            save_heatmap(report, args.heatmap)
        else:
            heat_note = f"no heatmap written: {report.forensics.reason}"
            print(f"rawproof verify: {heat_note}", file=sys.stderr)
    if args.json:
        print(dumps_strict({"image": str(args.image), **report.to_dict()}, indent=2))
        return report.exit_code
    print(format_report(report, str(args.image)))
    if args.heatmap is not None and heat_note is None:
        print(f"  heatmap: {args.heatmap}")
    return report.exit_code


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rawproof verify IMAGE [--trust-device] [--trust] [--trust-tsa] [--json] [--heatmap] [--fan] [--stride] [--scale] [--providers] [--fingerprint]``."""
    p = subparsers.add_parser(
        "verify", help="check an image's C2PA provenance and forensic traces",
        description="Validate the C2PA manifest and run the forensic analysis network over the image. "
                    "Exit codes: 0 authentic (an unedited capture signed by a device), 1 manipulated or invalid "
                    "signature, 2 no trusted provenance of an unedited capture (edited, synthetic, origin "
                    "unverified, untrusted signer, manifest unavailable, no manifest), 3 error (including usage errors).",
    )
    p.error = _usage_error(p)  # type: ignore[method-assign]
    p.add_argument("image", help="JPEG/PNG/WebP file")
    p.add_argument("--trust-device", metavar="ROOT_PEM", help="device trust anchors, PEM: roots whose signers' capture claims count")
    p.add_argument("--trust", metavar="ROOT_PEM", help="other trusted signers' anchors, PEM (editors, services): believed about edits, not captures")
    p.add_argument("--trust-tsa", metavar="ROOT_PEM", help="time-stamp authority anchors, PEM")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON, including the provenance chain (arrays as lists)")
    p.add_argument("--heatmap", metavar="OUT_PNG", help="write the forensic heatmap overlay as PNG")
    p.add_argument("--fan", metavar="MODEL", help="FAN .onnx (with its .json) or model name; default: the FAN the manifest names (see docs)")
    p.add_argument("--models", metavar="DIR", action="append", help="folder of exported model pairs, searched before the shipped models")
    p.add_argument("--stride", type=int, metavar="N", help="patch grid step in analysed pixels (default: the FAN's patch size, no overlap; smaller = finer map, slower)")
    p.add_argument("--scale", type=_parse_scale, default="auto", help="auto (default), none, or a factor in (0, 1]")
    p.add_argument("--providers", help="onnxruntime providers, comma-separated (default: best available)")
    p.add_argument("--fingerprint", metavar="DEVICE_FP", help="sensor fingerprint from `rawproof enroll`: report whether the image matches it")
    p.add_argument("--repo", metavar="URL", help="manifest repository: recover a stripped image's manifest by its soft binding")
    p.set_defaults(func=_run_cli)
