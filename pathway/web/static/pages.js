// Coordinator pages: small progressive enhancements (everything works without them).
// Loaded from /static (the CSP forbids inline script).
(function () {
  "use strict";
  function init(root) {
    // An override needs a reason: make the reason input required once its box is ticked.
    root.querySelectorAll(".override").forEach(function (box) {
      var tick = box.querySelector("input[type=checkbox][name=override]");
      var reason = box.querySelector("input[type=text]");
      if (!tick || !reason) return;
      var sync = function () { reason.required = tick.checked; };
      tick.addEventListener("change", sync);
      sync();
    });
    // Open the form a link points at (#form-cycle_given).
    if (location.hash && location.hash.indexOf("#form-") === 0) {
      var target = document.getElementById(location.hash.slice(1));
      if (target && target.tagName === "DETAILS") target.open = true;
    }
    // Bring an inline result (refusal, errors) into view.
    var result = root.querySelector(".event-form.has-result");
    if (result) result.scrollIntoView({block: "start"});
  }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); });
})();
