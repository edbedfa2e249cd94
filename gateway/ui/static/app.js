// The dashboard's only script: refresh marked regions in place, no build step, no library.
// An element with data-refresh="URL" is re-fetched every data-every ms and its content
// replaced, unless data-live="0" (the server says nothing will change) or the user is
// typing in it. Open <details> stay open across refreshes.
(function () {
  "use strict";

  function typingIn(element) {
    var active = document.activeElement;
    return active && element.contains(active) &&
      (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT");
  }

  function refresh(element) {
    if (element.dataset.live === "0" || typingIn(element) || document.hidden) {
      return;
    }
    fetch(element.dataset.refresh, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    }).then(function (response) {
      if (response.status === 401) {
        window.location.reload();
        return null;
      }
      if (!response.ok) {
        return null;
      }
      var live = response.headers.get("X-Live");
      if (live !== null) {
        element.dataset.live = live;
      }
      return response.text();
    }).then(function (html) {
      if (html === null || html === undefined || typingIn(element)) {
        return;
      }
      var open = {};
      element.querySelectorAll("details[open][id]").forEach(function (d) { open[d.id] = true; });
      var closed = {};
      element.querySelectorAll("details[id]:not([open])").forEach(function (d) { closed[d.id] = true; });
      // The server renders this HTML with autoescaping; it is the same markup as the page.
      element.innerHTML = html;
      element.querySelectorAll("details[id]").forEach(function (d) {
        if (open[d.id]) { d.open = true; }
        if (closed[d.id]) { d.open = false; }
      });
      element.dispatchEvent(new CustomEvent("refreshed", { bubbles: true }));
    }).catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (element) {
      var every = parseInt(element.dataset.every || "3000", 10);
      window.setInterval(function () { refresh(element); }, every);
    });
  });
})();
