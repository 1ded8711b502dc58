"""Plain words for a verify report: what the page shows, built from ``VerifyReport.to_dict()``.

Everything here reads the JSON form of the report, so fields a newer ``verify()`` adds
(an edit chain, a recovery through a repository) are shown even before this module
knows their names: a known verdict gets its own sentence, an unknown one its summary;
a ``chain`` list of steps is shown step by step; unknown mappings are flattened into
label/value facts.

The result (:func:`explain`) is a JSON-compatible dict the page renders as is::

    {"verdict": "authentic", "tone": "good", "headline": "...", "because": ["...", ...],
     "chain": [{"title": ..., "trust": {"state": ..., "text": ...}, "facts": [[label, value], ...]}],
     "recovery": {"facts": [...]} | None,
     "forensics": {"status": "evidence" | "not-evidence" | "unavailable", "headline": ..., "note": ...,
                   "score": float | None, "classes": [{"name", "words", "colour", "share"}],
                   "legend": [{"name", "words", "colour"}], "regions": [...]}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rawproof.forensics import _class_colour  # the heatmap's own palette, so the legend matches it

__all__ = ["explain", "CLASS_WORDS"]

CLASS_WORDS: Mapping[str, str] = {
    "native": "no manipulation", "sharpen": "sharpening", "gaussian": "blurring (Gaussian)",
    "jpeg": "recompression (JPEG)", "resample": "resizing (resampling)",
}
"""How the page names each FAN class."""

# verdict -> (tone, headline, first reason); {signer}, {why}, {traces} are filled in.
_VERDICT_WORDS: Mapping[str, tuple[str, str, str]] = {
    "authentic": ("good", "Authentic camera capture",
                  "The file carries a valid Content Credentials (C2PA) signature by {signer}, and that signer "
                  "chains to a certificate this server trusts. The pixels are exactly the ones that were signed."),
    "manipulated": ("bad", "Signed, but the pixels show traces of editing",
                    "The signature by {signer} is valid, yet the forensic network finds {traces}. Either the picture "
                    "was altered before it was signed (for example on a compromised device), or the network is wrong."),
    "invalid_signature": ("bad", "The signature is broken",
                          "The file carries Content Credentials, but they do not match it ({why}). The content was "
                          "changed after signing, or the signature is bad or expired. Do not trust this copy."),
    "untrusted": ("warn", "Signed by someone this server does not trust",
                  "The Content Credentials are intact, but their signer ({signer}) does not chain to a trusted "
                  "certificate. Anyone can make such credentials, so they say nothing about where the picture came from."),
    "no_provenance_consistent": ("neutral", "No Content Credentials; no traces of editing found",
                                 "The file carries no Content Credentials, so nothing says who made it. The forensic "
                                 "network finds no traces of editing; that is a hint, not proof."),
    "no_provenance_manipulated": ("warn", "No Content Credentials, and traces of editing",
                                  "The file carries no Content Credentials, so nothing says who made it. The forensic "
                                  "network finds {traces}."),
    "no_provenance_unanalyzed": ("neutral", "No Content Credentials; the pixels were not analysed",
                                 "The file carries no Content Credentials, so nothing says who made it, and the "
                                 "forensic analysis did not run ({why})."),
    "no_provenance_inconclusive": ("neutral", "No Content Credentials; the forensic reading is inconclusive",
                                   "The file carries no Content Credentials, so nothing says who made it. Its encoding "
                                   "({why}) lies outside what the forensic network was trained on, so the network's "
                                   "reading is not evidence either way."),
}

_TRUST_WORDS = {
    "valid": ("trusted", "valid signature, chains to a trusted certificate"),
    "untrusted_signer": ("untrusted", "intact, but the signer is not trusted"),
    "invalid": ("invalid", "signature or content check failed"),
    "no_manifest": ("none", "no Content Credentials"),
}

_CAPTURE_LABELS = {"camera": "Camera", "capture_time": "Captured", "device_id": "Device", "nip": "Imaging model",
                   "fan": "Forensic model", "develop": "Developed", "raw_sha256": "RAW file SHA-256",
                   "sdk_version": "rawproof version"}


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _words(name: str) -> str:
    return CLASS_WORDS.get(name, name)


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        if {"name", "sha256"} <= set(value):  # a model reference
            return f"{value['name']} (SHA-256 {str(value['sha256'])[:12]}…)"
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _facts(mapping: Mapping[str, Any], labels: Mapping[str, str], skip: frozenset[str] = frozenset()) -> list[list[str]]:
    """[[label, value], ...] for the non-empty entries, known labels first in their order."""
    keys = [k for k in labels if k in mapping] + [k for k in mapping if k not in labels]
    out = []
    for k in keys:
        v = mapping[k]
        if k in skip or v in (None, "", [], {}):
            continue
        if k == "camera" and isinstance(v, Mapping):
            v = " ".join(str(v[p]) for p in ("make", "model") if v.get(p)) or _text(v)
        out.append([labels.get(k, k.replace("_", " ").capitalize()), _text(v)])
    return out


def _trust(state: str | None, detail: str | None = None) -> dict[str, str]:
    key, text = _TRUST_WORDS.get(state or "", ("unknown", state or "unknown"))
    return {"state": key, "text": text + (f" ({detail})" if detail else "")}


def _chain(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Provenance steps, oldest first: the report's own ``chain`` when it has one, else the
    capture described by the active manifest."""
    steps = report.get("chain")
    if isinstance(steps, Sequence) and not isinstance(steps, str) and steps:
        out = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping):
                continue
            kind = str(step.get("kind") or ("capture" if i == 0 else "edit"))
            trust = step.get("trust") or step.get("state")
            out.append({"title": str(step.get("title") or kind.capitalize()), "kind": kind,
                        "trust": _trust(str(trust) if trust is not None else None),
                        "facts": _facts(step, {"actions": "Actions", "signer": "Signed by", "time": "Signed at",
                                               **_CAPTURE_LABELS}, frozenset({"kind", "title", "trust", "state"}))})
        return out
    prov = report.get("provenance") or {}
    state = prov.get("state")
    if state in (None, "no_manifest"):
        return []
    facts = [[label, str(prov[k])] for k, label in (("signer_subject", "Signed by"), ("signer_issuer", "Issued by"),
                                                     ("signing_time", "Signed at")) if prov.get(k)]
    capture = report.get("capture")
    if isinstance(capture, Mapping):
        facts = _facts(capture, _CAPTURE_LABELS) + facts
    why = ", ".join(prov.get("status_codes") or []) or prov.get("error")
    return [{"title": "Capture" if isinstance(capture, Mapping) else "Signed content", "kind": "capture",
             "trust": _trust(state, why if state == "invalid" else None), "facts": facts}]


def _forensics(fa: Mapping[str, Any], regions: Sequence[str]) -> dict[str, Any]:
    classes = [str(c) for c in fa.get("classes") or []]
    legend = [{"name": c, "words": _words(c), "colour": _hex(_class_colour(c, k))}
              for k, c in enumerate(classes) if c != "native"]
    colour = {d["name"]: d["colour"] for d in legend}
    shares = [{"name": c, "words": _words(c), "colour": colour.get(c), "share": float(f)}
              for c, f in (fa.get("class_fractions") or {}).items()]
    base = {"score": fa.get("score"), "classes": shares, "legend": legend, "regions": list(regions)}
    if fa.get("traces") == "unavailable":
        return {**base, "status": "unavailable", "headline": "Not analysed", "note": str(fa.get("reason") or "")}
    if fa.get("out_of_channel"):
        return {**base, "status": "not-evidence", "headline": "Inconclusive: not evidence",
                "note": f"This file's encoding ({fa['out_of_channel']}) lies outside the channel the forensic network "
                        "was trained behind. The map below shows what the network computed; it does not show edits."}
    if fa.get("traces") == "manipulated":
        what = ", ".join(f"{d['words']} in {d['share']:.0%} of the image" for d in shares[:2]) or "traces of editing"
        where = f" Most affected: {', '.join(regions)}." if regions else ""
        return {**base, "status": "evidence", "headline": "Traces of editing",
                "note": f"The network finds {what}.{where}"}
    return {**base, "status": "evidence", "headline": "No traces of editing",
            "note": "The network finds nothing that departs from an unedited capture from this imaging pipeline."}


def _traces_words(forensics: Mapping[str, Any]) -> str:
    shares = forensics["classes"]
    if shares:
        return "traces of " + " and ".join(f"{d['words']} in {d['share']:.0%} of the image" for d in shares[:2])
    return "traces of editing spread over the image"


def explain(report: Mapping[str, Any], regions: Sequence[str] = ()) -> dict[str, Any]:
    """The page's reading of ``report`` (``VerifyReport.to_dict()``; see the module docstring).

    Args:
        report: The JSON form of a report, possibly with fields this module does not know.
        regions: Names of the image sections with flagged patches
            (:func:`rawproof.forensics.describe_regions`), most affected first.
    """
    verdict = str(report.get("verdict", ""))
    prov = report.get("provenance") or {}
    forensics = _forensics(report.get("forensics") or {}, regions)
    fill = {"signer": prov.get("signer_subject") or "an unnamed signer",
            "why": ", ".join(prov.get("status_codes") or []) or prov.get("error")
            or (report.get("forensics") or {}).get("out_of_channel") or (report.get("forensics") or {}).get("reason")
            or "no details",
            "traces": _traces_words(forensics)}
    if verdict in _VERDICT_WORDS:
        tone, headline, because = _VERDICT_WORDS[verdict]
        reasons = [because.format(**fill)]
    else:
        tone, headline, reasons = "neutral", verdict.replace("_", " ").capitalize() or "No verdict", []
    summary = report.get("summary")
    if summary:
        reasons.append(f"In the verifier's words: {summary}.")
    recovery = report.get("recovery")
    return {
        "verdict": verdict, "tone": tone, "headline": headline, "because": reasons,
        "chain": _chain(report),
        "recovery": {"facts": _facts(recovery, {})} if isinstance(recovery, Mapping) else None,
        "forensics": forensics,
    }
