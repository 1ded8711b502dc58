"""Plain words for a verify report: what the page shows, built from ``VerifyReport.to_dict()``.

Everything here reads the JSON form of the report, so fields a newer ``verify()`` adds
(an edit chain, a recovery through a repository) are shown even before this module
knows their names: a known verdict gets its own sentence, an unknown one its summary; the
history (``provenance.chain``, newest first in the report) is shown step by step, oldest
first; a ``recovery`` through a manifest repository is shown as facts; unknown mappings are
flattened into label/value facts.

The result (:func:`explain`) is a JSON-compatible dict the page renders as is::

    {"verdict": "authentic", "tone": "good", "headline": "...", "because": ["...", ...],
     "chain": [{"title": ..., "trust": {"state": ..., "text": ...}, "facts": [[label, value], ...]}],
     "recovery": {"trusted": bool, "facts": [...]} | None,
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
    "edited": ("neutral", "Edited by trusted signers, from an authentic capture",
               "Every step of the history is signed and trusted, back to a capture signed by a trusted device. "
               "The picture is not the capture itself: the steps below say what was changed, by whom and when."),
    "synthetic": ("warn", "Declared AI-generated or composite",
                  "The Content Credentials are valid and trusted, and they declare that at some step the content was "
                  "generated or composited by software. This is not a camera capture."),
    "origin_unverified": ("warn", "Signed, but its origin is not a verified capture",
                          "The Content Credentials are valid and their signers are trusted, but the history does not "
                          "reach a capture signed by a trusted device ({why})."),
    "manifest_unavailable": ("neutral", "Content Credentials stored elsewhere, not checked",
                             "The file points to Content Credentials kept on another server, which this server does not "
                             "fetch. Nothing is concluded either way."),
    "recovered": ("neutral", "Content Credentials recovered from the repository",
                  "The file carries no Content Credentials, but the manifest repository holds a trusted original that "
                  "matches this picture by its soft binding (a fingerprint of the pixels). A match is not a "
                  "cryptographic proof: a slightly edited copy can match too, so read the differences and the forensic "
                  "reading below."),
    "no_rawproof_traces": ("neutral", "No Content Credentials; not from a rawproof imaging pipeline",
                           "The file carries no Content Credentials, so nothing says who made it. The network reads "
                           "it as coming from another camera or editing pipeline, which it was not trained on, so "
                           "it can say nothing about edits: this is not a finding of manipulation."),
    "no_provenance_inconclusive": ("neutral", "No Content Credentials; the forensic reading is inconclusive",
                                   "The file carries no Content Credentials, so nothing says who made it. Its encoding "
                                   "({why}) lies outside what the forensic network was trained on, so the network's "
                                   "reading is not evidence either way."),
}

_TRUST_WORDS = {
    # provenance states (the active manifest)
    "valid": ("trusted", "valid signature, chains to a trusted certificate"),
    "untrusted_signer": ("untrusted", "intact, but the signer is not trusted"),
    "invalid": ("invalid", "signature or content check failed"),
    "no_manifest": ("none", "no Content Credentials"),
    "manifest_unavailable": ("unknown", "stored elsewhere, not fetched"),
    # trust of one step of the history
    "device": ("trusted", "valid signature by a trusted device"),
    "trusted": ("trusted", "valid signature by a trusted signer (not a device)"),
    "untrusted": ("untrusted", "intact, but the signer is not trusted"),
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


def _actions(actions: Sequence[Any]) -> str:
    names = []
    for a in actions:
        if isinstance(a, Mapping):
            name = str(a.get("action", "?")).removeprefix("c2pa.").replace("_", " ")
            agent = a.get("softwareAgent")
            agent = agent.get("name") if isinstance(agent, Mapping) else agent
            names.append(name + (f" ({agent})" if agent else ""))
    return ", ".join(names)


def _step(step: Mapping[str, Any], first: bool) -> dict[str, Any]:
    """One manifest of the history (``provenance.chain[i]``) as a page step."""
    if step.get("is_capture"):
        title = "Capture"
    elif step.get("is_synthetic"):
        title = "Generated or composited content"
    else:
        title = "Created" if first and not step.get("parent") else "Edit"
    facts = []
    capture = step.get("capture")
    if isinstance(capture, Mapping):
        facts += _facts(capture, _CAPTURE_LABELS)
    if step.get("actions"):
        facts.append(["Actions", _actions(step["actions"])])
    types = [str(t).rsplit("/", 1)[-1] for t in step.get("source_types") or []]
    if types:
        facts.append(["Source type", ", ".join(dict.fromkeys(types))])
    for key, label in (("signer_subject", "Signed by"), ("signer_issuer", "Issued by"), ("claim_generator", "Software")):
        if step.get(key):
            facts.append([label, str(step[key])])
    if step.get("signing_time"):
        facts.append(["Signed at", str(step["signing_time"]) + (" (trusted time stamp)" if step.get("time_stamp_trusted") else "")])
    if step.get("parent_title") and not step.get("parent"):
        facts.append(["Edited from", f"{step['parent_title']} (which carries no Content Credentials)"])
    if step.get("valid") is False:
        trust = _trust("invalid", ", ".join(step.get("failure_codes") or []) or None)
    else:
        trust = _trust(str(step.get("trust")))
    return {"title": title, "kind": "capture" if step.get("is_capture") else "edit", "trust": trust, "facts": facts}


def _chain(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Provenance steps, oldest first: the history ``provenance.chain`` (newest first in the
    report) when the verifier gives one, else the capture described by the active manifest."""
    prov = report.get("provenance") or {}
    steps = prov.get("chain")
    if isinstance(steps, Sequence) and not isinstance(steps, str) and steps:
        ordered = [s for s in reversed(steps) if isinstance(s, Mapping)]
        return [_step(s, i == 0) for i, s in enumerate(ordered)]
    state = prov.get("state")
    if state in (None, "no_manifest"):
        return []
    facts = [[label, str(prov[k])] for k, label in (("signer_subject", "Signed by"), ("signer_issuer", "Issued by"),
                                                     ("signing_time", "Signed at"), ("remote_url", "Stored at")) if prov.get(k)]
    capture = report.get("capture")
    if isinstance(capture, Mapping):
        facts = _facts(capture, _CAPTURE_LABELS) + facts
    why = ", ".join(prov.get("status_codes") or []) or prov.get("error")
    return [{"title": "Capture" if isinstance(capture, Mapping) else "Signed content", "kind": "capture",
             "trust": _trust(state, why if state == "invalid" else None), "facts": facts}]


def _size(v: Any) -> str:
    return f"{v[0]} x {v[1]}" if isinstance(v, Sequence) and len(v) == 2 and all(isinstance(x, int) for x in v) else _text(v)


def _recovery(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The repository's match (``report.recovery``) as facts: where, how close, who signed, what differs."""
    facts = []
    if rec.get("repository"):
        facts.append(["Repository", str(rec["repository"])])
    if rec.get("manifest_id"):
        facts.append(["Manifest", str(rec["manifest_id"])])
    if rec.get("similarity") is not None:
        dist = f", {rec['distance']} of 64 bits differ" if rec.get("distance") is not None else ""
        facts.append(["Match", f"{rec['similarity']}% similar{dist}"])
    prov = rec.get("provenance") if isinstance(rec.get("provenance"), Mapping) else {}
    if prov.get("signer_subject"):
        facts.append(["Original signed by", str(prov["signer_subject"])])
    if prov.get("signing_time"):
        facts.append(["Signed at", str(prov["signing_time"])])
    if "trusted" in rec:
        facts.append(["Signer trusted", "yes" if rec["trusted"] else "no"])
    if isinstance(rec.get("capture"), Mapping):
        facts += _facts(rec["capture"], _CAPTURE_LABELS)
    diff = rec.get("differences") if isinstance(rec.get("differences"), Mapping) else {}
    if diff.get("original_size") or diff.get("received_size"):
        facts.append(["Size", f"original {_size(diff.get('original_size'))}, this copy {_size(diff.get('received_size'))}"])
    if diff.get("crop"):
        x, y, w, h = diff["crop"]
        facts.append(["Cropped", f"{w} x {h} at ({x}, {y}) of the original"])
    if diff.get("scale") is not None:
        facts.append(["Scale", f"{diff['scale']:g} x the original"])
    for key, label in (("original_encoding", "Original encoding"), ("received_encoding", "This copy's encoding")):
        if isinstance(diff.get(key), Mapping):
            facts.append([label, _text(diff[key])])
    known = {"repository", "manifest_id", "similarity", "distance", "provenance", "trusted", "capture", "differences", "region"}
    facts += _facts({k: v for k, v in rec.items() if k not in known}, {})
    return {"trusted": bool(rec.get("trusted")), "facts": facts}


def _forensics(fa: Mapping[str, Any], regions: Sequence[str], origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    classes = [str(c) for c in fa.get("classes") or []]
    legend = [{"name": c, "words": _words(c), "colour": _hex(_class_colour(c, k))}
              for k, c in enumerate(classes) if c != "native"]
    colour = {d["name"]: d["colour"] for d in legend}
    shares = [{"name": c, "words": _words(c), "colour": colour.get(c), "share": float(f)}
              for c, f in (fa.get("class_fractions") or {}).items()]
    base = {"score": fa.get("score"), "classes": shares, "legend": legend, "regions": list(regions)}
    if fa.get("traces") == "unavailable":
        return {**base, "status": "unavailable", "headline": "Not analysed", "note": str(fa.get("reason") or "")}
    if isinstance(origin, Mapping) and origin.get("foreign"):
        p = origin.get("p_foreign")
        return {**base, "status": "not-evidence", "headline": "Not from a rawproof pipeline: not evidence",
                "note": "The network reads this image as coming from another camera or editing pipeline"
                        + (f" (P = {p:.2f})" if isinstance(p, (int, float)) else "")
                        + ". The heatmap below is crossed out: it does not show edits."}
    if fa.get("out_of_channel"):
        return {**base, "status": "not-evidence", "headline": "Inconclusive: not evidence",
                "note": f"This file's encoding ({fa['out_of_channel']}) lies outside the channel the forensic network "
                        "was trained behind. The heatmap below is crossed out: it does not show edits."}
    if fa.get("traces") == "manipulated":
        what = ", ".join(f"{d['words']} in {d['share']:.0%} of the image" for d in shares[:2]) or "traces of manipulation"
        where = f" Most affected: {', '.join(regions)}." if regions else ""
        return {**base, "status": "evidence", "headline": "Traces of manipulation",
                "note": f"The network finds {what}.{where}"}
    return {**base, "status": "evidence", "headline": "No traces of manipulation found",
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
    forensics = _forensics(report.get("forensics") or {}, regions, report.get("origin"))
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
        "recovery": _recovery(recovery) if isinstance(recovery, Mapping) else None,
        "forensics": forensics,
    }
