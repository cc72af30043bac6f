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

  // A form with per-kind fields (an alert channel) shows only the fields of the chosen kind. Without script
  // every field shows, each saying which kind it is for, and the server refuses what does not fit.
  function showKindFields(form) {
    var kind = form.querySelector("select[name=kind]");
    if (!kind) return;
    Array.prototype.forEach.call(form.querySelectorAll("[data-kinds]"), function (field) {
      field.hidden = field.dataset.kinds.split(" ").indexOf(kind.value) < 0;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-kind-form]"), showKindFields);
  });
  document.addEventListener("change", function (event) {
    var form = event.target.closest("form[data-kind-form]");
    if (form && event.target.name === "kind") showKindFields(form);
  });

  // A live region ([data-live], like #dashboard-live) polls every 2 s and is morphed by the idiomorph extension
  // (hx-swap="morph"): only the values that changed are written, so the focused element and the text around
  // a selection stay the same nodes, and keyboard focus and selections survive a refresh.
  function sizeOne(element) {
    if (element.nodeType === 1 && element.matches("[data-width], [data-left], [data-height]")) size(element);
  }

  if (window.Idiomorph) {
    var callbacks = window.Idiomorph.defaults.callbacks;
    callbacks.beforeNodeMorphed = function (oldNode) {
      // Text the user has selected holds still until the selection ends (the values around it still move).
      var selection = document.getSelection();
      return !(oldNode.nodeType === 3 && selection && !selection.isCollapsed && selection.containsNode(oldNode, true));
    };
    callbacks.beforeAttributeUpdated = function (name, element, action) {
      // The sizes app.js set (templates have no style attribute), and a <details> the user opened, stay.
      return !(name === "style" || (name === "open" && action === "remove" && element.localName === "details"));
    };
    callbacks.afterNodeMorphed = sizeOne;
    callbacks.afterNodeAdded = function (node) { if (node.nodeType === 1) size(node); };
  }

  // A poll is skipped while the user is in the middle of something inside the region: a pointer held down
  // (selecting text, pressing a button), the pointer over one of its controls (it must not move away under
  // the cursor), or a form control being used (a text field, an open select). A focused link or a finished
  // selection does not pause it: the morph keeps both, and a keyboard user would otherwise see no update.
  var HOVERED_CONTROLS = ["a[href]", "button", "input", "select", "textarea", "summary", "label", "[tabindex]"]
    .map(function (control) { return control + ":hover"; }).join(", ");
  var pressed = null;
  document.addEventListener("pointerdown", function (event) { pressed = event.target; }, true);
  ["pointerup", "pointercancel"].forEach(function (name) {
    document.addEventListener(name, function () { pressed = null; }, true);
  });

  function interaction(region) {
    if (pressed && region.contains(pressed)) return "pointer";
    if (region.querySelector(HOVERED_CONTROLS)) return "hover";
    var active = document.activeElement;
    if (active && region.contains(active) && active.matches("input, select, textarea")) return "editing";
    return "";
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail.elt;
    if (!region.matches || !region.matches("[data-live]")) return;
    var reason = interaction(region);
    if (reason) {
      region.dataset.paused = reason;
      event.preventDefault();
    } else {
      delete region.dataset.paused;
    }
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
