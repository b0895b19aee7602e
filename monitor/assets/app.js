// tsforge monitor page: a minimal, working page over the JSON API and the event stream.
"use strict";
var tsforgeMonitor = (function () {
  function text(v) { return v === null || v === undefined ? "" : String(v); }
  function cell(tr, v, cls) {
    var td = document.createElement("td");
    if (v instanceof Node) { td.appendChild(v); } else { td.textContent = text(v); }
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function elapsed(s) {
    if (s === null || s === undefined) { return ""; }
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  function failure(f) {
    if (!f) { return ""; }
    return (f.step ? f.step + " " : "") + (f.number ? "(step " + f.number + ") " : "") +
      (f.exit_code !== null && f.exit_code !== undefined ? "exit code " + f.exit_code + " " : "") +
      text(f.message);
  }
  function row(d) {
    var tr = document.createElement("tr");
    tr.id = "run-" + d.run;
    var a = document.createElement("a");
    a.href = "/deployment.html?run=" + encodeURIComponent(d.run);
    a.textContent = d.computer_name || d.client_guid || d.run;
    cell(tr, a);
    cell(tr, d.sequence);
    cell(tr, (d.step ? d.step : "-") + " of " + text(d.steps) + (d.step_name ? ": " + d.step_name : ""));
    var p = document.createElement("progress");
    p.max = 100;
    p.value = d.percent !== null && d.percent !== undefined ? d.percent :
      (d.steps ? 100 * (d.step || 0) / d.steps : 0);
    cell(tr, p);
    cell(tr, d.state, "state-" + d.state);
    cell(tr, elapsed(d.seconds));
    cell(tr, failure(d.failure));
    return tr;
  }
  function filters() {
    var f = document.getElementById("filters");
    return { state: f.elements.state.value, sequence: f.elements.sequence.value };
  }
  function matches(d) {
    var f = filters();
    return (!f.state || d.state === f.state) && (!f.sequence || d.sequence === f.sequence);
  }
  function load() {
    var f = filters(), q = [];
    if (f.state) { q.push("state=" + encodeURIComponent(f.state)); }
    if (f.sequence) { q.push("sequence=" + encodeURIComponent(f.sequence)); }
    fetch("/api/v1/deployments" + (q.length ? "?" + q.join("&") : ""), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        var tbody = document.querySelector("#deployments tbody");
        tbody.innerHTML = "";
        j.deployments.forEach(function (d) { tbody.appendChild(row(d)); });
      });
  }
  function list() {
    document.getElementById("filters").addEventListener("change", load);
    load();
    var es = new EventSource("/api/v1/stream");
    es.addEventListener("deployment", function (e) {
      var d = JSON.parse(e.data);
      var old = document.getElementById("run-" + d.run);
      var tbody = document.querySelector("#deployments tbody");
      if (!matches(d)) { if (old) { old.remove(); } return; }
      if (old) { tbody.replaceChild(row(d), old); } else { tbody.insertBefore(row(d), tbody.firstChild); }
    });
  }
  function detail() {
    var run = new URLSearchParams(location.search).get("run");
    function refresh() {
      fetch("/api/v1/deployments/" + encodeURIComponent(run), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          var d = j.deployment;
          document.getElementById("title").textContent = (d.computer_name || d.run) + ": " + text(d.sequence);
          document.getElementById("summary").textContent = d.state + ", step " + text(d.step) + " of " +
            text(d.steps) + ", " + elapsed(d.seconds) + (d.failure ? ", " + failure(d.failure) : "");
          var tbody = document.querySelector("#steps tbody");
          tbody.innerHTML = "";
          j.steps.forEach(function (s) {
            var tr = document.createElement("tr");
            cell(tr, s.number); cell(tr, s.name); cell(tr, s.type);
            cell(tr, s.state, "state-" + s.state); cell(tr, s.exit_code); cell(tr, s.seconds);
            tbody.appendChild(tr);
          });
        });
      fetch("/api/v1/deployments/" + encodeURIComponent(run) + "/log", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (t) {
          var pre = document.getElementById("log");
          pre.innerHTML = "";
          t.split("\n").forEach(function (line) {
            var span = document.createElement("span");
            // CMTrace lines carry type="2" (warning) or type="3" (error).
            if (/type="3"/.test(line)) { span.className = "log-error"; }
            else if (/type="2"/.test(line)) { span.className = "log-warning"; }
            span.textContent = line + "\n";
            pre.appendChild(span);
          });
        });
    }
    refresh();
    var es = new EventSource("/api/v1/stream");
    es.addEventListener("deployment", function (e) {
      if (JSON.parse(e.data).run === run) { refresh(); }
    });
  }
  return { list: list, detail: detail };
})();
