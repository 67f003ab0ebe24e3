// Mermaid (3.5 MB) only on pages with a diagram, and only once a diagram is close to the
// screen, so that reading starts before Mermaid has even loaded.
//
// Material draws the diagrams itself: it calls mermaid.initialize(), then
// mermaid.render(id, text) for each <pre class="mermaid">, and it loads Mermaid only when
// the `mermaid` global is missing. This script runs first (deferred scripts run before
// DOMContentLoaded, when Material starts) and provides that global: a stand-in that loads
// the site's own copy of Mermaid when the first diagram comes near, then hands each render
// to it.
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
    loaded = loaded || new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = new URL("assets/js/mermaid.min.js", __md_scope).href;
      script.onload = function () {
        window.mermaid.initialize(config);  // the real Mermaid has replaced this stand-in
        resolve(window.mermaid);
      };
      script.onerror = function () { reject(new Error("could not load " + script.src)); };
      document.head.appendChild(script);
    });
    return loaded;
  }

  window.mermaid = {
    initialize: function (options) { config = options; },
    render: function (id, text) {
      return near.then(load).then(function (real) { return real.render(id, text); });
    }
  };
})();
