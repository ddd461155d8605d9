// spanlytics dashboard: the auto-refresh toggle. It reads nothing from the page's data and
// writes no HTML (no innerHTML): the pages are rendered, and escaped, by the server.
"use strict";
(function () {
  var KEY = "spanlytics.autorefresh";
  var PERIOD_MS = 30000;
  var timer = null;
  function schedule(on) {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    if (on) { timer = window.setTimeout(function () { window.location.reload(); }, PERIOD_MS); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("autorefresh");
    if (!box) { return; }
    var stored = null;
    try { stored = window.localStorage.getItem(KEY); } catch (e) { stored = null; }
    box.checked = stored !== "off";
    schedule(box.checked);
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(KEY, box.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      schedule(box.checked);
    });
  });
})();
