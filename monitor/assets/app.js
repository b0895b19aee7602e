// tsforge monitor page: the deployment list and one deployment's page, updated live from the
// server-sent events of /api/v1/stream. No framework, no build step: this file is compiled
// into the tsforge binary. Every value from a runner is put into the page as text
// (textContent), never as HTML: a computer name is not trusted markup.
"use strict";

const tsforge = (() => {
  const STATES = ["running", "restarting", "succeeded", "failed"];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  async function getJson(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  // Seconds as "1 h 02 min", "3 min 05 s", "42 s".
  function duration(s) {
    if (s === null || s === undefined || isNaN(s)) return "";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (h) return `${h} h ${two(m)} min`;
    if (m) return `${m} min ${two(sec)} s`;
    return `${sec} s`;
  }

  // Elapsed seconds of a deployment: to its end, else to now (ticks while it runs).
  function elapsed(d) {
    const start = Date.parse(d.started);
    if (isNaN(start)) return d.seconds;
    const end = d.ended ? Date.parse(d.ended) : Date.now();
    return (end - start) / 1000;
  }

  function localTime(t) {
    if (!t) return "";
    const d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString();
  }

  function stateBadge(state) {
    return el("span", { class: "state " + (STATES.includes(state) ? state : "unknown") }, state || "unknown");
  }

  function stepCell(d) {
    const total = d.steps || 0;
    const n = d.step || 0;
    // The bar: finished steps, plus the current step's reported progress.
    let done = d.state === "succeeded" ? total : Math.max(0, n - 1) + (d.percent ? d.percent / 100 : 0);
    const pct = total ? Math.min(100, (100 * done) / total) : 0;
    const label = total ? `${n} of ${total}` : (n ? String(n) : "");
    const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": pct.toFixed(0) },
      el("div", { class: "fill " + (d.state || ""), style: `width: ${pct.toFixed(1)}%` }));
    return el("td", { class: "step" },
      el("div", { class: "step-label" }, el("span", { class: "step-count" }, label), " ", el("span", { class: "step-name" }, d.step_name || "")),
      bar,
      d.percent && d.state === "running" ? el("span", { class: "percent" }, `${d.percent}% of this step`) : null);
  }

  function failureText(f) {
    if (!f) return "";
    let s = f.step ? `${f.step}` : "";
    if (f.exit_code !== null && f.exit_code !== undefined) s += ` (exit code ${f.exit_code})`;
    if (f.message) s += (s ? ": " : "") + f.message;
    return s;
  }

  function machineCell(d) {
    const name = d.computer_name || d.client_guid || d.run;
    const a = el("a", { href: "/deployments/" + encodeURIComponent(d.run), class: "machine" }, name);
    const facts = [(d.macs || [])[0], (d.ips || [])[0], [d.make, d.model].filter(Boolean).join(" ")].filter(Boolean).join(" · ");
    return el("td", {}, a, el("div", { class: "facts" }, facts));
  }

  function row(d) {
    return el("tr", { dataset: { run: d.run, state: d.state || "", sequence: d.sequence || "" }, class: "deployment " + (d.state || "") },
      machineCell(d),
      el("td", { class: "sequence" }, d.sequence || ""),
      stepCell(d),
      el("td", {}, stateBadge(d.state)),
      el("td", { class: "elapsed", dataset: { started: d.started || "", ended: d.ended || "" } }, duration(elapsed(d))),
      el("td", { class: "failure" }, failureText(d.failure)));
  }

  function tickElapsed() {
    for (const td of document.querySelectorAll("td.elapsed")) {
      if (td.dataset.ended || !td.dataset.started) continue;
      td.textContent = duration((Date.now() - Date.parse(td.dataset.started)) / 1000);
    }
  }

  // The live stream; `onDeployment` gets every changed deployment. The browser's EventSource
  // reconnects by itself; the badge says whether the page is live.
  function stream(onDeployment, onOpen) {
    const live = document.getElementById("live");
    const es = new EventSource("/api/v1/stream");
    es.onopen = () => { live.textContent = "live"; live.className = "live on"; if (onOpen) onOpen(); };
    es.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
    es.addEventListener("deployment", (ev) => {
      try { onDeployment(JSON.parse(ev.data)); } catch (e) { console.error("bad event", e); }
    });
    return es;
  }

  function listPage() {
    const byRun = new Map();
    const tbody = document.querySelector("#deployments tbody");
    const stateSel = document.getElementById("state");
    const seqSel = document.getElementById("sequence");
    const params = new URLSearchParams(location.search);
    stateSel.value = params.get("state") || "";

    function visible(d) {
      return (!stateSel.value || d.state === stateSel.value) && (!seqSel.value || d.sequence === seqSel.value);
    }

    function render() {
      const all = [...byRun.values()].sort((a, b) => String(b.started).localeCompare(String(a.started)));
      const shown = all.filter(visible);
      tbody.replaceChildren(...shown.map(row));
      document.getElementById("empty").hidden = all.length > 0;
      const counts = STATES.map((s) => `${all.filter((d) => d.state === s).length} ${s}`).join(" · ");
      document.getElementById("counts").textContent = counts;
      const seqs = [...new Set(all.map((d) => d.sequence).filter(Boolean))].sort();
      const cur = seqSel.value || params.get("sequence") || "";
      seqSel.replaceChildren(el("option", { value: "" }, "all"), ...seqs.map((s) => el("option", { value: s }, s)));
      seqSel.value = seqs.includes(cur) ? cur : "";
    }

    function filtersChanged() {
      const p = new URLSearchParams();
      if (stateSel.value) p.set("state", stateSel.value);
      if (seqSel.value) p.set("sequence", seqSel.value);
      history.replaceState(null, "", p.toString() ? "?" + p : location.pathname);
      render();
    }
    stateSel.addEventListener("change", filtersChanged);
    seqSel.addEventListener("change", filtersChanged);

    async function load() {
      const data = await getJson("/api/v1/deployments");
      for (const d of data.deployments) byRun.set(d.run, d);
      render();
    }
    // Load after the stream is open, so no change falls between the two.
    stream((d) => { byRun.set(d.run, d); render(); }, () => load().catch(console.error));
    setInterval(tickElapsed, 1000);
  }

  // CMTrace's format: <![LOG[message]LOG]!><time="…" date="…" component="…" context="" type="1|2|3" thread="…" file="…">
  const CMTRACE = /<!\[LOG\[([\s\S]*?)\]LOG\]!><time="([^"]*)" date="([^"]*)" component="([^"]*)" context="[^"]*" type="(\d)" thread="([^"]*)"[^>]*>/g;

  function parseCmtrace(text) {
    const out = [];
    for (const m of text.matchAll(CMTRACE)) {
      out.push({ message: m[1], time: m[2].replace(/\+\d+$/, ""), date: m[3], component: m[4], type: Number(m[5]), thread: m[6] });
    }
    return out;
  }

  function renderLog(text) {
    const entries = parseCmtrace(text);
    const table = document.getElementById("log");
    const tbody = table.querySelector("tbody");
    const cls = (t) => (t === 3 ? "error" : t === 2 ? "warning" : "info");
    if (entries.length === 0 && text.trim()) {
      tbody.replaceChildren(...text.split("\n").map((l) => el("tr", {}, el("td", { colspan: "4" }, l))));
    } else {
      tbody.replaceChildren(...entries.map((e) => el("tr", { class: cls(e.type) },
        el("td", { class: "msg" }, e.message), el("td", {}, e.component), el("td", {}, `${e.date} ${e.time}`), el("td", {}, e.thread))));
    }
    table.hidden = false;
    document.getElementById("log-note").hidden = true;
    const errors = entries.filter((e) => e.type === 3).length, warnings = entries.filter((e) => e.type === 2).length;
    document.getElementById("log-note").textContent = `${entries.length} entries, ${warnings} warnings, ${errors} errors`;
    document.getElementById("log-note").hidden = false;
  }

  function deploymentPage() {
    const run = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
    let current = null;

    function renderSummary(d) {
      current = d;
      document.getElementById("title").textContent = d.computer_name || d.run;
      document.title = `${d.computer_name || d.run} · tsforge monitor`;
      const facts = [
        ["State", stateBadge(d.state)],
        ["Sequence", d.sequence],
        ["Step", d.steps ? `${d.step} of ${d.steps}${d.step_name ? ": " + d.step_name : ""}` : d.step_name],
        ["Phase", d.phase],
        ["Started", localTime(d.started)],
        ["Ended", localTime(d.ended)],
        ["Elapsed", el("span", { class: "elapsed-one" }, duration(elapsed(d)))],
        ["Failure", failureText(d.failure)],
        ["Machine", [d.make, d.model, d.serial && "serial " + d.serial].filter(Boolean).join(" · ")],
        ["Addresses", [...(d.macs || []), ...(d.ips || [])].join(" · ")],
        ["Client GUID", d.client_guid],
        ["Run", d.run],
      ].filter(([, v]) => v !== undefined && v !== null && v !== "");
      const dl = el("dl", { class: "facts " + (d.state || "") }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
      const summary = document.getElementById("summary");
      summary.replaceChildren(dl);
    }

    function renderSteps(steps) {
      const tbody = document.querySelector("#steps tbody");
      tbody.replaceChildren(...steps.map((s) => el("tr", { class: "step-row " + (s.state || "") },
        el("td", {}, s.number), el("td", {}, s.name), el("td", {}, s.type || ""), el("td", {}, stateBadge(s.state)),
        el("td", {}, s.exit_code === null || s.exit_code === undefined ? "" : s.exit_code),
        el("td", {}, s.seconds === null || s.seconds === undefined ? "" : duration(s.seconds)),
        el("td", {}, localTime(s.started)))));
    }

    async function load() {
      const data = await getJson("/api/v1/deployments/" + encodeURIComponent(run));
      renderSummary(data.deployment);
      renderSteps(data.steps || []);
      const r = await fetch("/api/v1/deployments/" + encodeURIComponent(run) + "/log", { credentials: "same-origin" });
      if (r.ok) renderLog(await r.text());
    }
    stream((d) => { if (d.run === run) load().catch(console.error); }, () => load().catch(console.error));
    setInterval(() => {
      const e = document.querySelector(".elapsed-one");
      if (e && current && !current.ended) e.textContent = duration(elapsed(current));
    }, 1000);
  }

  return { listPage, deploymentPage, parseCmtrace, duration };
})();
