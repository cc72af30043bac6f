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

  // A table or a code block wider than the screen scrolls inside its card, or the card does (app.css); it takes
  // keyboard focus while it does, so the arrow keys can scroll it.
  function scrollable(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table, pre, .card"), function (table) {
      if (table.scrollWidth > table.clientWidth + 1) table.setAttribute("tabindex", "0");
      else if (table.getAttribute("tabindex") === "0") table.removeAttribute("tabindex");
    });
  }

  document.addEventListener("DOMContentLoaded", function () { size(document); scrollable(document); });
  document.addEventListener("htmx:load", function (event) { size(event.detail.elt); scrollable(event.detail.elt); });
  window.addEventListener("resize", function () { scrollable(document); });

  // A live region (polled and swapped whole, like #dashboard-live) must not take keyboard focus away: the
  // element focused inside it before a swap is found again in the new content (by id, else by href, else by
  // position among the focusable elements) and focused, without scrolling.
  var FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";
  var kept = null;

  function focusKey(region, element) {
    var position = Array.prototype.indexOf.call(region.querySelectorAll(FOCUSABLE), element);
    return { region: region.id, id: element.id, href: element.getAttribute("href"), position: position };
  }

  function focusTarget(region, key) {
    if (key.id) return document.getElementById(key.id);
    var focusable = Array.prototype.slice.call(region.querySelectorAll(FOCUSABLE));
    if (key.href !== null) {
      var same = focusable.filter(function (element) { return element.getAttribute("href") === key.href; });
      if (same.length) return same[0];
    }
    return focusable[Math.min(key.position, focusable.length - 1)] || null;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var region = event.detail.target;
    var focused = document.activeElement;
    kept = region && region.id && focused && focused !== region && region.contains(focused)
      ? focusKey(region, focused) : null;
  });

  document.addEventListener("htmx:load", function (event) {
    if (!kept) return;
    var region = event.detail.elt.id === kept.region ? event.detail.elt : document.getElementById(kept.region);
    if (!region || !region.contains(event.detail.elt) && region !== event.detail.elt) return;
    var target = focusTarget(region, kept);
    kept = null;
    if (target) target.focus({ preventScroll: true });
  });

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

// The navigation's menu button on narrow screens: shown only when this script runs (without it the navigation
// stays open), it opens and closes the navigation and says so through aria-expanded.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector(".menu-toggle");
    if (!toggle) return;
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      toggle.setAttribute("aria-expanded", toggle.getAttribute("aria-expanded") === "true" ? "false" : "true");
    });
  });
})();
