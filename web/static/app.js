// ajar pages: live countdowns and lists that refresh themselves. Every page works
// without this script; it only saves reloading. No inline script anywhere: the
// Content-Security-Policy allows scripts from this site's files only.
(function () {
  "use strict";

  // When each counter was first seen: its data-seconds-* value is the server's
  // figure at that moment, so the browser's own clock never matters.
  var seen = new WeakMap();

  function human(s) {
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (h >= 48) return Math.floor(h / 24) + "d " + (h % 24) + "h";
    if (h > 0) return h + "h " + two(m) + "m";
    if (m > 0) return m + "m " + two(sec) + "s";
    return sec + "s";
  }

  function elapsed(el, now) {
    if (!seen.has(el)) seen.set(el, now);
    return (now - seen.get(el)) / 1000;
  }

  var expiring = false;

  function tick() {
    var now = performance.now();
    document.querySelectorAll("[data-seconds-left]").forEach(function (el) {
      var left = parseFloat(el.getAttribute("data-seconds-left")) - elapsed(el, now);
      if (left > 0) {
        el.textContent = human(left) + " left";
      } else {
        el.textContent = "ending…";
        expiring = true;
      }
    });
    document.querySelectorAll("[data-seconds-ago]").forEach(function (el) {
      el.textContent = human(parseFloat(el.getAttribute("data-seconds-ago")) + elapsed(el, now));
    });
  }

  // busy reports whether the user is working in a region: replacing it would
  // lose their focus or what they typed.
  function busy(region) {
    var active = document.activeElement;
    if (region.contains(active) && active !== document.body && !active.matches("a.sort")) return true;
    var fields = region.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden") continue;
      if ((f.type === "checkbox" || f.type === "radio") ? f.checked !== f.defaultChecked : f.value !== f.defaultValue) return true;
    }
    return false;
  }

  // replace puts fresh's content in region, keeping the focus on a column
  // heading's link (the only thing in a list that may have it: see busy).
  function replace(region, fresh) {
    var active = document.activeElement, key = null;
    if (region.contains(active) && active.matches("a.sort")) key = active.getAttribute("data-key");
    region.innerHTML = fresh.innerHTML;
    if (key !== null) {
      var again = region.querySelector('a.sort[data-key="' + CSS.escape(key) + '"]');
      if (again) again.focus();
    }
  }

  var stopped = false, inflight = false;

  function refresh() {
    // The lists, and the count on "Inbox" in the navigation (data-live).
    var regions = document.querySelectorAll("[data-refresh][id], [data-live][id]");
    if (stopped || inflight || regions.length === 0 || document.hidden) return;
    inflight = true;
    // X-Ajar-Refresh: the server logs these polls at debug level.
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html", "X-Ajar-Refresh": "1" } })
      .then(function (res) {
        // Signed out or gone: keep what is on screen and stop asking.
        if (!res.ok || res.redirected) { stopped = true; return null; }
        return res.text();
      })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (region) {
          var fresh = doc.getElementById(region.id);
          if (fresh && !busy(region)) {
            replace(region, fresh);
            region.setAttribute("data-refreshed", String(Date.now()));
          }
        });
        tick();
      })
      .catch(function () { /* the server is unreachable for now: try again later */ })
      .then(function () { inflight = false; });
  }

  // A column heading's link sorts the list on the server; with this script
  // the list is fetched and replaced in place, without reloading the page.
  function sortInPlace(ev) {
    var a = ev.target.closest && ev.target.closest("a.sort");
    if (!a || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    var region = a.closest("[data-refresh][id]");
    if (!region) return;
    ev.preventDefault();
    fetch(a.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        if (!res.ok || res.redirected) throw new Error("status " + res.status);
        return res.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (!fresh) throw new Error("no list");
        a.focus();
        replace(region, fresh);
        history.replaceState(null, "", a.href);
        tick();
      })
      .catch(function () { location.href = a.href; });
  }

  function start() {
    document.addEventListener("click", sortInPlace);
    tick();
    setInterval(function () {
      tick();
      if (expiring) { expiring = false; setTimeout(refresh, 1500); }
    }, 1000);
    var region = document.querySelector("[data-refresh]");
    if (region) {
      var every = Math.max(1, parseInt(region.getAttribute("data-refresh"), 10) || 5);
      setInterval(refresh, every * 1000);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
    }
    var follow = document.querySelector("a[data-follow]");
    if (follow) location.replace(follow.href);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
