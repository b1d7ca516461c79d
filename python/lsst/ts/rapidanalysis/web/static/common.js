// Shared by the pages: the live feed (server-sent events) and small DOM helpers. No framework.
"use strict";

window.RA = (function () {
  // TAI - UTC since 2017-01-01 (no leap second since): event times are TAI unix seconds.
  const TAI_MINUS_UTC = 37;

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // "HH:MM:SS" (UTC) of a TAI unix time; "" for none.
  function utc(tai) {
    if (tai === null || tai === undefined || !isFinite(tai) || tai <= 0) return "";
    const d = new Date((tai - TAI_MINUS_UTC) * 1000);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  function seconds(value) {
    return value === null || value === undefined || !isFinite(value) ? "" : value.toFixed(1) + " s";
  }

  // An element with text content (never HTML: every string stays text).
  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  }

  // Follow /events (only: "row" or "event" for one kind; all by default): handlers by event name
  // get the parsed data. Shows the feed's state in the header.
  function connect(handlers, only) {
    const status = document.getElementById("live-status");
    const source = new EventSource(only ? "/events?only=" + encodeURIComponent(only) : "/events");
    const show = function (text, cls) {
      if (status) {
        status.textContent = text;
        status.className = "live-status " + cls;
      }
    };
    show("connecting…", "connecting");
    source.addEventListener("open", function () {
      show("● live", "on");
    });
    source.addEventListener("error", function () {
      show("○ reconnecting…", "off");
    });
    Object.keys(handlers).forEach(function (name) {
      source.addEventListener(name, function (event) {
        handlers[name](JSON.parse(event.data));
      });
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
    return source;
  }

  function readJson(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  return { utc: utc, seconds: seconds, el: el, connect: connect, readJson: readJson };
})();
