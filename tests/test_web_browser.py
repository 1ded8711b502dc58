"""The verify page in a real browser: Debian's headless Chromium driven by Playwright.

One test per verdict class (and one hostile file): pick the file as a person would, then
assert what the page shows: the verdict in words, the provenance steps, the forensic
reading ("not evidence" when inconclusive), the heatmap with its legend and alt text, the
JSON for experts. Further tests cover the keyboard path, drag and drop, progress,
contrast and the heatmap toggle. With ``RAWPROOF_WEB_SCREENSHOTS=DIR`` each case also
saves a screenshot there (docs/web.md shows them).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from _toy_fan import toy_fan_path  # noqa: E402
from _web_cases import Anchors, Case, build_cases, published_capture  # noqa: E402
from rawproof.verify import verify  # noqa: E402
from rawproof.web.app import WebConfig  # noqa: E402
from rawproof.web.measure import CHROMIUM, LocalServer, chromium_args, reserve_socket  # noqa: E402
from rawproof.web.pool import PoolConfig  # noqa: E402
from rawproof.web.serve import create_app  # noqa: E402

if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)", allow_module_level=True)

SHOTS = os.environ.get("RAWPROOF_WEB_SCREENSHOTS")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAWPROOF_MODELS", str(toy_fan_path().parent))
        cases, anchors = build_cases(tmp_path_factory.mktemp("cases"))
        yield cases, anchors


def _server(root: Anchors, **verify_kwargs) -> LocalServer:
    return LocalServer(create_app(WebConfig(pool=PoolConfig(workers=2, verify_kwargs={**root.kwargs, **verify_kwargs}))))


@pytest.fixture(scope="module")
def server(env):
    with _server(env[1]) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args())
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 900, "height": 900})
    # Nothing but the page's own origin may be contacted.
    foreign: list[str] = []
    context.on("request", lambda r: None if r.url.startswith(server.url) or r.url.startswith(("data:", "blob:")) else foreign.append(r.url))
    pg = context.new_page()
    pg.goto(server.url)
    yield pg
    context.close()
    assert not foreign, foreign


def _pick(page, case: Case) -> None:
    mime = "image/png" if case.filename.endswith(".png") else "image/jpeg"
    page.set_input_files("#file", files=[{"name": case.filename, "mimeType": mime, "buffer": case.data}])


def _wait_answer(page) -> str:
    page.wait_for_selector("#result:not([hidden]), #failure:not([hidden])", timeout=60_000)
    return "result" if page.is_visible("#result") else "failure"


def _shot(page, name: str) -> None:
    """Save the answer part of the page (verdict to forensic reading, or the error), 0.8x, 64 colours."""
    if not SHOTS:
        return
    from PIL import Image

    png = page.locator("#result" if page.is_visible("#result") else "#failure").screenshot()
    im = Image.open(io.BytesIO(png)).convert("RGB")
    im = im.resize((round(im.width * 0.8), round(im.height * 0.8)), Image.LANCZOS).quantize(colors=64)
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    im.save(Path(SHOTS) / f"{name}.png", optimize=True)


def _check_result(page, case: Case, root: Anchors) -> dict:
    assert _wait_answer(page) == "result"
    expected = verify(case.data, **root.kwargs).verdict.value
    assert expected == case.verdict
    assert page.get_attribute("#verdict", "data-verdict") == case.verdict
    assert page.inner_text("#verdict-headline")
    assert page.evaluate("document.activeElement.id") == "verdict-headline"  # focus moves to the answer
    assert page.locator("#because li").count() >= 1
    # the JSON for experts is the report itself
    report = json.loads(page.text_content("#json"))
    assert report["verdict"] == case.verdict
    return report


def _heatmap_shown(page) -> bool:
    return page.is_visible("#heat-block") and page.evaluate("document.getElementById('heatmap').naturalWidth") > 0


_TINT = """() => {  // mean max(R,G,B) - min(R,G,B) over the top-left 40 x 40 px of the heatmap's picture (0: grey)
  const img = document.getElementById('heatmap'), c = document.createElement('canvas'); c.width = c.height = 40;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0, 40, 40, 0, 0, 40, 40);
  const d = ctx.getImageData(0, 0, 40, 40).data; let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]);
  return sum / (d.length / 4);
}"""


def test_signed_original_reads_authentic(page, env) -> None:
    cases, root = env
    case = cases["signed_original"]
    _pick(page, case)
    _check_result(page, case, root)
    assert "Authentic camera capture" == page.inner_text("#verdict-headline")
    assert "tone-good" in page.get_attribute("#verdict", "class")
    steps = page.locator("#chain > li")
    assert steps.count() == 1
    step = steps.nth(0).inner_text()
    for fact in ("Camera", "Test Cam", "Captured", "2025-01-31T12:00:00+00:00", "Device", "dev-1", "Imaging model", "Signed by",
                 "valid signature by a trusted device"):
        assert fact in step, fact
    assert page.inner_text("#forensics-headline") == "No traces of manipulation found"
    assert not page.is_visible("#evidence-badge")
    assert _heatmap_shown(page)
    assert "heatmap" in page.get_attribute("#heatmap", "alt").lower()
    assert page.get_attribute("#photo", "alt")
    _shot(page, "authentic")


def test_edited_chain_lists_each_step(page, env) -> None:
    cases, root = env
    case = cases["edited_chain"]
    _pick(page, case)
    report = _check_result(page, case, root)
    assert page.inner_text("#verdict-headline") == "Edited by trusted signers, from an authentic capture"
    steps = page.locator("#chain > li")
    assert steps.count() == 2 == len(report["provenance"]["chain"])
    capture, edit = steps.nth(0).inner_text(), steps.nth(1).inner_text()
    assert [h.inner_text() for h in page.locator("#chain > li > h4").all()] == ["Capture", "Edit"]
    assert "valid signature by a trusted device" in capture and "Test Cam" in capture
    assert "valid signature by a trusted signer (not a device)" in edit
    for fact in ("Actions", "opened, cropped, color adjustments", "photo-desk", "Software", "photo-desk 2.1"):
        assert fact in edit, fact
    assert page.get_attribute("#chain > li:nth-child(2)", "data-kind") == "edit"
    _shot(page, "edited")


def test_generated_image_is_never_authentic(page, env) -> None:
    cases, root = env
    case = cases["generated"]
    _pick(page, case)
    _check_result(page, case, root)
    assert page.inner_text("#verdict-headline") == "Declared AI-generated or composite"
    assert "tone-warn" in page.get_attribute("#verdict", "class")
    step = page.inner_text("#chain > li")
    assert "Generated or composited content" in step and "trainedAlgorithmicMedia" in step
    _shot(page, "synthetic")


def test_manipulated_before_signing(page, env) -> None:
    cases, root = env
    case = cases["manipulated_before_signing"]
    _pick(page, case)
    _check_result(page, case, root)
    assert "tone-bad" in page.get_attribute("#verdict", "class")
    assert "blurring" in page.inner_text("#because")
    assert page.inner_text("#forensics-headline") == "Traces of manipulation"
    flagged = page.inner_text("#flagged")
    assert "blurring (Gaussian)" in flagged and "% of the image" in flagged
    assert page.locator("#legend li").count() == 1 and "blurring" in page.inner_text("#legend")
    _shot(page, "manipulated")


def test_tampered_signed_copy_reads_broken_signature(page, env) -> None:
    cases, root = env
    case = cases["tampered_signed_copy"]
    _pick(page, case)
    _check_result(page, case, root)
    assert page.inner_text("#verdict-headline") == "The signature is broken"
    assert "assertion.dataHash.mismatch" in page.inner_text("#because")
    assert "signature or content check failed" in page.inner_text("#chain")
    _shot(page, "invalid_signature")


def test_image_from_another_pipeline_reads_untrusted(page, env) -> None:
    cases, root = env
    case = cases["other_pipeline"]
    _pick(page, case)
    _check_result(page, case, root)
    assert "tone-warn" in page.get_attribute("#verdict", "class")
    assert "another-vendor" in page.inner_text("#because")
    assert "intact, but the signer is not trusted" in page.inner_text("#chain")
    _shot(page, "untrusted")


def test_stripped_copy_without_a_repository(page, env) -> None:
    cases, root = env
    case = cases["stripped_copy"]
    _pick(page, case)
    _check_result(page, case, root)
    assert page.inner_text("#verdict-headline") == "No Content Credentials; no traces of editing found"
    assert page.is_visible("#chain-empty") and page.locator("#chain > li").count() == 0
    assert not page.is_visible("#recovery-section") and not page.is_visible("#repo-note")
    _shot(page, "stripped_no_repository")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return published_capture(tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="module")
def repo_server(env, published, tmp_path_factory):
    """The page and the manifest repository in one app (as ``rawproof serve --repo-db``), the capture published."""
    from rawproof.repo.app import create_app as create_repo_app
    from rawproof.repo.client import RepoClient
    from rawproof.repo.store import open_store

    pub, anchors = published
    sock = reserve_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with open_store(tmp_path_factory.mktemp("repo") / "repo.sqlite") as store:
        key = store.add_key("dev-1")
        cfg = WebConfig(pool=PoolConfig(workers=1, verify_kwargs={**anchors.kwargs, "repo": url}), repository=url)
        with LocalServer(create_app(cfg, app=create_repo_app(store)), sock=sock) as srv:
            RepoClient(url, key).publish(pub.store)
            yield srv


def test_stripped_copy_with_a_repository_is_recovered(browser, repo_server, published) -> None:
    pub, anchors = published
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.goto(repo_server.url)
    assert page.is_visible("#repo-note")
    _pick(page, pub.copy)
    assert _wait_answer(page) == "result"
    ref = verify(pub.copy.data, **anchors.kwargs, repo=repo_server.url.rstrip("/"))
    assert ref.verdict.value == pub.copy.verdict == page.get_attribute("#verdict", "data-verdict")
    assert page.inner_text("#verdict-headline") == "Content Credentials recovered from the repository"
    assert "not a cryptographic proof" in page.inner_text("#because")
    assert page.is_visible("#recovery-section") and page.is_visible("#chain-empty")
    facts = page.inner_text("#recovery")
    for fact in ("Repository", repo_server.url.rstrip("/"), "Manifest", ref.recovery.manifest_id, "Match",
                 f"{ref.recovery.similarity}% similar", "Original signed by", "rawproof-test-device", "Signer trusted", "yes",
                 "Size", "original 320 x 240, this copy 240 x 180", "Scale", "0.75 x the original", "Test Cam"):
        assert fact in facts, fact
    _shot(page, "recovered")
    context.close()


def test_the_same_copy_without_a_repository(page, published) -> None:
    pub, _ = published
    _pick(page, pub.copy)
    assert _wait_answer(page) == "result"
    assert page.get_attribute("#verdict", "data-verdict").startswith("no_provenance")
    assert not page.is_visible("#recovery-section") and not page.is_visible("#repo-note")
    assert page.inner_text("#verdict-headline").startswith("No Content Credentials")


def test_manipulated_share(page, env) -> None:
    cases, root = env
    case = cases["manipulated_share"]
    _pick(page, case)
    _check_result(page, case, root)
    assert page.inner_text("#forensics-headline") == "Traces of manipulation"
    assert "left" in page.inner_text("#flagged")  # the left half was blurred
    assert "left" in page.get_attribute("#heatmap", "alt")
    assert page.evaluate(_TINT) > 20  # the blurred left half is tinted
    assert page.is_visible("#heatmap") and not page.is_visible("#photo")
    page.uncheck("#heat-toggle")
    assert not page.is_visible("#heatmap") and page.is_visible("#photo")
    page.check("#heat-toggle")
    assert page.is_visible("#heatmap") and not page.is_visible("#photo")
    _shot(page, "manipulated_share")


def test_too_small_to_analyse(page, env) -> None:
    cases, root = env
    case = cases["too_small"]
    _pick(page, case)
    _check_result(page, case, root)
    assert page.inner_text("#forensics-headline") == "Not analysed"
    assert "smaller than one FAN patch" in page.inner_text("#forensics-note")
    assert not page.is_visible("#heat-block")


def test_outside_the_trained_channel_is_marked_not_evidence(browser, env) -> None:
    from _web_cases import jpeg_channel_fan

    cases, root = env
    case = cases["outside_channel"]
    with _server(root, fan=jpeg_channel_fan()) as srv:
        context = browser.new_context(viewport={"width": 900, "height": 900})
        page = context.new_page()
        page.goto(srv.url)
        _pick(page, case)
        assert _wait_answer(page) == "result"
        assert page.get_attribute("#verdict", "data-verdict") == "no_provenance_inconclusive"
        assert verify(case.data, **root.kwargs, fan=jpeg_channel_fan()).verdict.value == "no_provenance_inconclusive"
        assert page.is_visible("#evidence-badge") and page.inner_text("#evidence-badge").lower() == "not evidence"
        assert "Inconclusive" in page.inner_text("#forensics-headline")
        assert "not evidence" in page.get_attribute("#heatmap", "alt") and "not evidence" in page.inner_text("#flagged-title")
        assert "does not show edits" in page.inner_text("#heat-caption")
        _shot(page, "inconclusive")
        context.close()


def test_remote_manifest_reads_unavailable(page, env) -> None:
    from _web_cases import REMOTE_URL

    cases, root = env
    case = cases["remote_manifest"]
    _pick(page, case)
    report = _check_result(page, case, root)
    assert report["provenance"]["remote_url"] == REMOTE_URL
    assert page.inner_text("#verdict-headline") == "Content Credentials stored elsewhere, not checked"
    assert "tone-neutral" in page.get_attribute("#verdict", "class")
    assert "Nothing is concluded either way" in page.inner_text("#because")
    step = page.inner_text("#chain")
    assert "stored elsewhere, not fetched" in step and "Stored at" in step and REMOTE_URL in step
    # the pixels are the toy FAN's own noise: its reading stands, as evidence
    assert page.inner_text("#forensics-headline") == "No traces of manipulation found"
    assert not page.is_visible("#evidence-badge")
    _shot(page, "manifest_unavailable")


def test_image_from_another_pipeline_without_a_manifest(browser, env) -> None:
    from _web_cases import origin_head_fan

    cases, root = env
    case = cases["foreign_share"]
    fan = origin_head_fan()
    # without the origin head the same bytes read as manipulated; with it, never
    assert verify(case.data, **root.kwargs).verdict.value == "no_provenance_manipulated"
    ref = verify(case.data, **root.kwargs, fan=fan)
    assert ref.verdict.value == case.verdict and ref.origin is not None and ref.origin.foreign
    with _server(root, fan=fan) as srv:
        context = browser.new_context(viewport={"width": 900, "height": 900})
        page = context.new_page()
        page.goto(srv.url)
        _pick(page, case)
        assert _wait_answer(page) == "result"
        assert page.get_attribute("#verdict", "data-verdict") == case.verdict
        report = json.loads(page.text_content("#json"))
        assert report["verdict"] == case.verdict and report["origin"] == ref.origin.to_dict()
        assert page.inner_text("#verdict-headline") == "No Content Credentials; not from a rawproof imaging pipeline"
        assert "tone-neutral" in page.get_attribute("#verdict", "class")
        assert "not a finding of manipulation" in page.inner_text("#because")
        assert page.is_visible("#chain-empty") and page.locator("#chain > li").count() == 0
        assert page.is_visible("#evidence-badge") and page.inner_text("#evidence-badge").lower() == "not evidence"
        assert page.inner_text("#forensics-headline") == "Not from a rawproof pipeline: not evidence"
        assert f"P = {ref.origin.p_foreign:.2f}" in page.inner_text("#forensics-note")
        assert "not evidence" in page.get_attribute("#heatmap", "alt") and "not evidence" in page.inner_text("#flagged-title")
        assert "does not show edits" in page.inner_text("#heat-caption")
        assert page.evaluate(_TINT) < 3  # drawn in grey and crossed out, not tinted as a finding
        _shot(page, "no_rawproof_traces")
        context.close()


def test_hostile_file_gets_a_message_and_the_next_file_works(page, env) -> None:
    cases, root = env
    _pick(page, cases["hostile"])
    assert _wait_answer(page) == "failure"
    assert "truncated" in page.inner_text("#failure-text")
    assert page.evaluate("document.activeElement.id") == "failure-title"
    _shot(page, "hostile")
    _pick(page, cases["signed_original"])
    assert _wait_answer(page) == "result"
    assert page.get_attribute("#verdict", "data-verdict") == "authentic"


def test_keyboard_only(page, env) -> None:
    cases, _ = env
    choosers: list = []
    page.on("filechooser", lambda fc: choosers.append(fc))  # intercept the dialog before any key is pressed
    page.wait_for_timeout(200)
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "dropzone"
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)
    if not choosers:  # a second press, as a person would, if the interception came late under load
        page.keyboard.press(" ")
        page.wait_for_timeout(2000)
    assert choosers, "Enter on the drop zone opens no file chooser"
    c = cases["stripped_copy"]
    choosers[0].set_files(files=[{"name": c.filename, "mimeType": "image/png", "buffer": c.data}])
    assert _wait_answer(page) == "result"
    assert page.evaluate("document.activeElement.id") == "verdict-headline"
    page.keyboard.press("Tab")  # the next stop is a control on the result, reachable without a mouse
    assert page.evaluate("document.activeElement.tagName") in ("INPUT", "SUMMARY", "A", "BUTTON", "PRE")


def test_drop_and_progress(page, env) -> None:
    cases, _ = env
    c = cases["manipulated_share"]
    page.evaluate("""() => { window.statuses = [];
        new MutationObserver(() => window.statuses.push(document.getElementById('status').textContent))
          .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true}); }""")
    page.evaluate("""([name, bytes]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
        document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", [c.filename, list(c.data)])
    assert _wait_answer(page) == "result"
    assert page.get_attribute("#verdict", "data-verdict") == c.verdict
    statuses = page.evaluate("window.statuses")
    assert any(s.startswith("Uploading") for s in statuses) and any(s.startswith("Analysing") for s in statuses), statuses
    assert c.filename in page.inner_text("#progress-title")


_CONTRAST = """(sel) => {
  const lum = (c) => { const v = c.match(/[0-9.]+/g).slice(0, 3).map(Number).map((x) => x / 255)
      .map((x) => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const e = document.querySelector(sel); let b = e, bg = 'rgba(0, 0, 0, 0)';
  while (b && (bg = getComputedStyle(b).backgroundColor) === 'rgba(0, 0, 0, 0)') b = b.parentElement;
  const [l1, l2] = [lum(getComputedStyle(e).color), lum(bg === 'rgba(0, 0, 0, 0)' ? 'rgb(255,255,255)' : bg)].sort((a, b) => b - a);
  return (l1 + 0.05) / (l2 + 0.05);
}"""


@pytest.mark.parametrize("name", ["signed_original", "tampered_signed_copy", "other_pipeline", "stripped_copy"])
def test_text_contrast_is_at_least_4_5(page, env, name: str) -> None:
    cases, _ = env
    _pick(page, cases[name])
    assert _wait_answer(page) == "result"
    for sel in ("#verdict-headline", "#because li", "#timing", ".kicker", "#forensics-note", "h1", ".hint"):
        if page.locator(sel).count():
            assert page.evaluate(_CONTRAST, sel) >= 4.5, sel
    for sel in ("#chain .trust", "#evidence-badge"):
        if page.locator(sel).count() and page.is_visible(sel):
            assert page.evaluate(_CONTRAST, sel) >= 4.5, sel
