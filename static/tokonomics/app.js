// The web app's few behaviours, in a file rather than in the HTML: the Content-Security-Policy allows no
// inline script and no style attribute. Sizes come as data attributes (percentages) and are set here through
// the CSSOM, which the policy leaves alone; HTMX's swapped-in partials get the same treatment.
(function () {
  "use strict";
  var SIZES = { width: "width", left: "left", height: "height" };

  function size(root) {
    var elements = Array.prototype.slice.call(root.querySelectorAll("[data-width], [data-left], [data-height]"));
    if (root.matches && root.matches("[data-width], [data-left], [data-height]")) elements.push(root);
    elements.forEach(function (element) {
      Object.keys(SIZES).forEach(function (name) {
        var value = element.dataset[name];
        if (value !== undefined && /^\d+$/.test(value)) element.style[SIZES[name]] = value + "%";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { size(document); });
  document.addEventListener("htmx:load", function (event) { size(event.detail.elt); });

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.getElementById(copy.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText("value" in source ? source.value : source.textContent.trim());
      }
    }
    var select = event.target.closest("[data-select-on-click]");
    if (select) select.select();
  });
})();
