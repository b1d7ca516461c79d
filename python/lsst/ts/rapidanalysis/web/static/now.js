// Now: each followed CSC's state, pool, focal-plane mode, jobResults and log, as events arrive.
"use strict";

(function () {
  const RA = window.RA;
  const RECENT = 30;
  let states = {};
  let clockOffset = 0; // server clock - browser clock (s)

  function card(instrument) {
    let found = null;
    document.querySelectorAll("section.card").forEach(function (node) {
      if (node.dataset.instrument === instrument) found = node;
    });
    return found;
  }

  function field(node, name) {
    return node.querySelector('[data-field="' + name + '"]');
  }

  function setText(node, name, text) {
    const target = field(node, name);
    if (target) target.textContent = text;
  }

  function httpUrl(url) {
    return /^https?:\/\//i.test(url || "") ? url : "";
  }

  function num(value) {
    return value === null || value === undefined ? "" : Number(value).toFixed(1);
  }

  function render(s) {
    const node = card(s.instrument);
    if (!node) return;
    const state = s.summaryState ? s.summaryState.name : "unknown (no summaryState seen)";
    const stateNode = field(node, "state");
    stateNode.textContent = state;
    stateNode.className = "summary-state state-" + (s.summaryState ? s.summaryState.name.toLowerCase() : "unknown");
    field(node, "heartbeat").dataset.heartbeat = s.heartbeat === null ? "" : String(s.heartbeat);
    const e = s.errorCode;
    setText(node, "error", e && e.errorCode ? e.errorCode + ": " + e.errorReport : "none");
    const p = s.workerPool;
    let pool = "unknown";
    if (p) {
      pool = p.nWorkers + " workers, " + p.nBusy + " busy, " + p.nQueued + " queued";
      if (p.excludedWorkers) pool += ", excluded: " + p.excludedWorkers;
      if (!p.keepingUp) pool += ", behind by " + num(p.lagSeconds) + " s";
    }
    setText(node, "pool", pool);
    const dashboard = field(node, "dashboard");
    dashboard.replaceChildren();
    if (p && httpUrl(p.dashboardUrl)) {
      const a = RA.el("a", p.dashboardUrl);
      a.href = httpUrl(p.dashboardUrl);
      a.rel = "noopener noreferrer";
      dashboard.appendChild(a);
    } else {
      dashboard.textContent = p && p.dashboardUrl ? p.dashboardUrl : "none";
    }
    const f = s.focalPlaneMode;
    let mode = "unknown";
    if (f) {
      mode = f.pattern + " (" + f.nSelected + " detectors, " + (f.automatic ? "automatic" : "fixed") + "): " + f.reason;
      if (f.decidedBy) mode += " [" + f.decidedBy + "]";
    }
    setText(node, "focal-plane", mode);
    const v = s.visitGathered;
    const visit = field(node, "visit");
    visit.replaceChildren();
    if (v && v.imageName) {
      const a = RA.el("a", v.imageName);
      a.href = "/image/" + encodeURIComponent(s.instrument) + "/" + encodeURIComponent(v.imageName);
      visit.appendChild(a);
      let text = " gathered: " + v.nProcessed + " of " + v.nExpected + " detectors";
      if (v.partial) text += " (partial)";
      if (v.regather) text += " (regather)";
      visit.appendChild(document.createTextNode(text));
    } else {
      visit.textContent = "none gathered yet";
    }

    const jobs = field(node, "jobs");
    jobs.replaceChildren();
    s.jobResults.forEach(function (j) {
      const tr = RA.el("tr", null, j.success ? "ok" : "bad");
      tr.appendChild(RA.el("td", RA.utc(j.endTime)));
      const image = RA.el("td");
      if (j.imageName) {
        const a = RA.el("a", j.imageName);
        a.href = "/image/" + encodeURIComponent(s.instrument) + "/" + encodeURIComponent(j.imageName);
        image.appendChild(a);
      }
      tr.appendChild(image);
      tr.appendChild(RA.el("td", j.pipeline));
      tr.appendChild(RA.el("td", j.exitCode));
      tr.appendChild(RA.el("td", RA.seconds(j.duration)));
      tr.appendChild(RA.el("td", j.errorReport));
      jobs.appendChild(tr);
    });
    const log = field(node, "log");
    log.replaceChildren();
    s.logMessages.forEach(function (m) {
      const li = RA.el("li", null, "level-" + String(m.levelName).toLowerCase());
      li.appendChild(RA.el("span", m.levelName, "level"));
      li.appendChild(document.createTextNode(" " + m.message));
      log.appendChild(li);
    });
  }

  function tick() {
    const now = Date.now() / 1000 + clockOffset;
    document.querySelectorAll("[data-heartbeat]").forEach(function (node) {
      const t = parseFloat(node.dataset.heartbeat);
      if (!isFinite(t)) {
        node.textContent = "none seen";
        node.className = "stale";
        return;
      }
      const age = Math.max(0, now - t);
      node.textContent = age.toFixed(0) + " s ago";
      node.className = age > 5 ? "stale" : "fresh";
    });
  }

  function snapshot(data) {
    clockOffset = data.serverTime - Date.now() / 1000;
    states = data.instruments;
    Object.keys(states).forEach(function (name) {
      render(states[name]);
    });
    tick();
  }

  function apply(message) {
    const s = states[message.instrument];
    if (!s) return;
    const d = message.data;
    switch (message.topic) {
      case "heartbeat":
        s.heartbeat = d.sent || d.received;
        field(card(s.instrument), "heartbeat").dataset.heartbeat = String(s.heartbeat);
        tick();
        return; // nothing else changes: no redraw
      case "summaryState":
        s.summaryState = d;
        break;
      case "errorCode":
        s.errorCode = d;
        break;
      case "workerPool":
        s.workerPool = d;
        break;
      case "focalPlaneMode":
        s.focalPlaneMode = d;
        break;
      case "visitGathered":
        s.visitGathered = d;
        break;
      case "logMessage":
        s.logMessages.unshift(d);
        s.logMessages.length = Math.min(s.logMessages.length, RECENT);
        break;
      case "jobResult":
        s.jobResults.unshift(d);
        s.jobResults.length = Math.min(s.jobResults.length, RECENT);
        break;
      default:
        return;
    }
    scheduleRender(s.instrument);
  }

  // A visit's 189 jobResults come within a second: draw each card at most once a frame.
  const dirty = new Set();
  function scheduleRender(instrument) {
    if (dirty.size === 0) {
      window.requestAnimationFrame(function () {
        dirty.forEach((name) => render(states[name]));
        dirty.clear();
      });
    }
    dirty.add(instrument);
  }

  snapshot(RA.readJson("snapshot"));
  setInterval(tick, 1000);
  if (Object.keys(states).length) {
    RA.connect({ snapshot: snapshot, event: apply, overflow: function () {} });
  }
})();
