// The operator page's only script, a file of its own so that the page's
// Content-Security-Policy allows no inline script. It refreshes the live part of
// the page (#live) every 10 s while the box is ticked (off by default: each
// refresh reads every dead-letter queue, holding its messages for a moment). It
// asks for the page without its trace: a trace is read once, when searched.
(function () {
  "use strict";
  var box = document.getElementById("auto-refresh");
  if (!box) return;
  var KEY = "mesh-ops-refresh";
  box.checked = window.localStorage.getItem(KEY) === "on";
  box.addEventListener("change", function () {
    window.localStorage.setItem(KEY, box.checked ? "on" : "off");
  });
  window.setInterval(function () {
    if (!box.checked || document.hidden) return;
    fetch(window.location.pathname,
          {credentials: "same-origin", headers: {Accept: "text/html"}})
      .then(function (response) { return response.text(); })
      .then(function (text) {
        // parsed, never executed: DOMParser runs no script
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (!fresh) { window.location.reload(); return; }  // logged out: the login form
        live.replaceWith(fresh);
      })
      .catch(function () { /* the gateway is away: try again at the next tick */ });
  }, 10000);
}());
