// The report's only script: switch the heatmap (and per-class table) shown by the epsilon selector.
// Everything else is static inline SVG, so the report reads the same without it.
// A link may pick the heatmap: report.html#heatmap=linf|0.03 (the option's value).
(function () {
  "use strict";
  var select = document.getElementById("heatmap-epsilon");
  // the heatmap and the per-class table of the selected epsilon
  var figures = document.querySelectorAll("figure.heatmap, div.per-class");
  function show(key) {
    for (var i = 0; i < figures.length; i++) {
      figures[i].hidden = figures[i].getAttribute("data-key") !== key;
    }
  }
  if (select) {
    var wanted = decodeURIComponent(window.location.hash.replace(/^#heatmap=/, ""));
    for (var j = 0; j < select.options.length; j++) {
      if (select.options[j].value === wanted) { select.value = wanted; }
    }
    select.addEventListener("change", function () { show(select.value); });
    show(select.value);
  }
  var heatmaps = document.querySelectorAll("figure.heatmap").length;
  document.documentElement.setAttribute("data-report-ready", String(heatmaps));
})();
