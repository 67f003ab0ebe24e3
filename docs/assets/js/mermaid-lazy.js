// Mermaid only on pages with a diagram, only once a diagram is close to the screen, and only
// the parts a diagram needs: its ES-module build (docs/assets/js/mermaid/, copied by `make`
// from the pinned npm package) loads about 0.9 MB for a sequence diagram, where the
// single-file build is 3.5 MB. Reading starts before any of it has loaded.
//
// Material draws the diagrams itself: it calls mermaid.initialize(), then
// mermaid.render(id, text) for each <pre class="mermaid">, and it loads Mermaid only when
// the `mermaid` global is missing. This script runs first (deferred scripts run before
// DOMContentLoaded, when Material starts) and provides that global: a stand-in that loads
// the site's own Mermaid when the first diagram comes near, then hands each render to it.
(function () {
  "use strict";
  var sources = document.querySelectorAll("pre.mermaid");
  if (!sources.length || typeof mermaid !== "undefined") return;

  var config = {};
  var loaded = null;
  var near = new Promise(function (resolve) {
    if (!("IntersectionObserver" in window)) return resolve();
    var observer = new IntersectionObserver(function (entries) {
      if (entries.some(function (entry) { return entry.isIntersecting; })) {
        observer.disconnect();
        resolve();
      }
    }, { rootMargin: "50% 0px" });  // half a screen ahead of the reader
    sources.forEach(function (source) { observer.observe(source); });
  });

  function load() {
    loaded = loaded || import(new URL("assets/js/mermaid/mermaid.esm.min.mjs", __md_scope).href)
      .then(function (module) {
        module.default.initialize(config);
        return module.default;
      });
    return loaded;
  }

  // Mermaid draws a diagram at 100% of its box, up to its natural width. On a phone that
  // shrinks 16 px text to 6 px; never below three quarters of the natural size, then: a
  // wider diagram scrolls sideways inside its box (site.css).
  function keepReadable(result) {
    result.svg = result.svg.replace(/max-width:\s*([\d.]+)px;?/, function (match, width) {
      return "max-width: " + width + "px; min-width: " + Math.round(width * 0.75) + "px;";
    });
    return result;
  }

  window.mermaid = {
    initialize: function (options) { config = options; },
    render: function (id, text) {
      return near.then(load).then(function (real) { return real.render(id, text); }).then(keepReadable);
    }
  };
})();
