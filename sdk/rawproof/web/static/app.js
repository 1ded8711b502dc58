// rawproof verify page: send the image, follow the server's progress lines, show the reading.
// No framework and nothing loaded from elsewhere. All text from the server goes through textContent.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const maxBytes = Number(document.body.dataset.maxBytes);
  let photoUrl = null;

  function show(id) {
    for (const s of ["progress", "failure", "result"]) $(s).hidden = s !== id;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function facts(dl, rows) {
    dl.replaceChildren();
    for (const [label, value] of rows) {
      dl.append(el("dt", label), el("dd", value));
    }
  }

  function setStatus(text, fraction) {
    $("status").textContent = text;
    if (fraction === null) $("bar").removeAttribute("value");
    else $("bar").value = Math.max(0, Math.min(1, fraction));
  }

  function fail(message) {
    show("failure");
    $("failure-text").textContent = message;
    $("failure-title").focus();
  }

  function renderChain(chain) {
    const ol = $("chain");
    ol.replaceChildren();
    $("chain-empty").hidden = chain.length > 0;
    for (const step of chain) {  // an ordered list: the browser numbers the steps
      const li = el("li");
      li.dataset.kind = step.kind || "";
      li.append(el("h4", step.title));
      li.append(el("p", step.trust.text, `trust trust-${step.trust.state}`));
      const dl = el("dl", null, "facts");
      facts(dl, step.facts);
      li.append(dl);
      ol.append(li);
    }
  }

  function renderForensics(f, heatmap) {
    $("forensics-headline").textContent = f.headline;
    $("forensics-section").dataset.status = f.status;
    $("evidence-badge").hidden = f.status !== "not-evidence";
    $("forensics-note").textContent = f.note;
    $("heat-block").hidden = !heatmap;
    if (!heatmap) return;
    $("photo").src = photoUrl;
    $("photo").alt = "The checked image.";
    $("heatmap").src = heatmap;
    $("heat-caption").textContent = f.status === "not-evidence"
      ? "The network's map is crossed out and labelled: outside what it was trained on, it does not show edits."
      : "Tinted areas are patches where the network sees a manipulation; the stronger the tint, the higher its "
        + "probability. Grey areas look unedited.";
    const where = f.regions.length ? ` Most affected: ${f.regions.join(", ")}.` : " No region stands out.";
    $("heatmap").alt = "Forensic heatmap over a grey copy of the image: tinted patches are where the network sees a "
      + "manipulation." + where + (f.status === "not-evidence" ? " This reading is not evidence." : "");
    const legend = $("legend");
    legend.replaceChildren();
    for (const c of f.legend) {
      const li = el("li");
      const sw = el("span", null, "swatch");
      sw.style.background = c.colour;
      sw.setAttribute("aria-hidden", "true");
      li.append(sw, el("span", c.words));
      legend.append(li);
    }
    $("flagged-title").textContent = f.status === "not-evidence" ? "Flagged by the network (not evidence)" : "Flagged";
    const flagged = $("flagged");
    flagged.replaceChildren();
    for (const c of f.classes) flagged.append(el("li", `${c.words}: ${Math.round(c.share * 100)}% of the image`));
    for (const r of f.regions) flagged.append(el("li", `region: ${r}`));
    if (!flagged.children.length) flagged.append(el("li", "nothing flagged"));
  }

  function render(msg, startedAt) {
    const page = msg.page;
    show("result");
    $("verdict").className = `verdict tone-${page.tone}`;
    $("verdict").dataset.verdict = page.verdict;
    $("verdict-headline").textContent = page.headline;
    const because = $("because");
    because.replaceChildren(...page.because.map((t) => el("li", t)));
    renderChain(page.chain);
    $("recovery-section").hidden = !page.recovery;
    if (page.recovery) facts($("recovery"), page.recovery.facts);
    renderForensics(page.forensics, msg.heatmap);
    const json = JSON.stringify(msg.report, null, 1);
    $("json").textContent = json;
    const a = $("json-download");
    if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
    a.href = URL.createObjectURL(new Blob([json], { type: "application/json" }));
    const total = performance.now() - startedAt;
    const t = $("timing");
    t.dataset.totalMs = total.toFixed(1);
    t.dataset.verifyMs = msg.timings_ms.verify.toFixed(1);
    const sec = (ms) => (ms < 10000 ? (ms / 1000).toFixed(2) : (ms / 1000).toFixed(0));
    t.textContent = `Checked in ${sec(total)} s (analysis ${sec(msg.timings_ms.verify)} s).`;
    $("verdict-headline").focus();
  }

  function handleLine(line, state) {
    const msg = JSON.parse(line);
    if (msg.event === "received") setStatus("Received. Waiting for an analysis worker…", null);
    else if (msg.event === "queued") setStatus(`Waiting: ${msg.position} file(s) ahead of yours…`, null);
    else if (msg.event === "running") {
      if (msg.expected_s) state.expected = msg.expected_s;
      const s = msg.elapsed_s || 0;
      if (state.expected) setStatus(`Analysing: ${s.toFixed(1)} s of about ${state.expected.toFixed(1)} s…`, s / state.expected);
      else setStatus(`Analysing: ${s.toFixed(1)} s…`, null);
    } else if (msg.event === "result") { state.done = true; render(msg, state.startedAt); }
    else if (msg.event === "error") { state.done = true; fail(msg.message); }
  }

  function check(file) {
    if (!file) return;
    $("file-name").textContent = file.name;
    show("progress");
    if (file.size > maxBytes) { fail(`The file is larger than this server's limit of ${(maxBytes / 1048576).toFixed(0)} MiB.`); return; }
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(file);
    const state = { seen: 0, done: false, expected: null, startedAt: performance.now() };
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "api/verify");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/x-ndjson");
    xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setStatus(`Uploading: ${Math.round(100 * e.loaded / e.total)}%`, e.loaded / e.total);
    };
    const consume = () => {
      const text = xhr.responseText;
      let nl;
      while ((nl = text.indexOf("\n", state.seen)) >= 0) {
        const line = text.slice(state.seen, nl);
        state.seen = nl + 1;
        if (line.trim()) {
          try { handleLine(line, state); } catch (err) { state.done = true; fail("The server's answer could not be read."); }
        }
      }
    };
    xhr.onprogress = consume;
    xhr.onload = () => {
      if (xhr.getResponseHeader("Content-Type") === "application/json") {
        try { const m = JSON.parse(xhr.responseText); state.done = true; fail(m.message || `Error ${xhr.status}`); }
        catch (err) { state.done = true; fail(`The server answered ${xhr.status}.`); }
        return;
      }
      consume();
      if (!state.done) fail("The connection ended before a verdict.");
    };
    xhr.onerror = () => fail("The server could not be reached.");
    setStatus("Uploading…", 0);
    xhr.send(file);
  }

  const zone = $("dropzone");
  const input = $("file");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  // A file dropped anywhere on the page is checked (rather than opened by the browser in place of the page).
  document.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) zone.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) check(e.dataTransfer.files[0]);
  });
  input.addEventListener("change", () => check(input.files[0]));
  $("form").addEventListener("submit", (e) => { e.preventDefault(); check(input.files[0]); });
  $("heat-toggle").addEventListener("change", (e) => {
    document.querySelector(".stack").classList.toggle("plain", !e.target.checked);
  });
  $("again").addEventListener("click", () => {
    $("result").hidden = true;
    input.value = "";
    zone.focus();
  });
  $("repo-note").hidden = $("repo-note").dataset.show !== "on";
})();
