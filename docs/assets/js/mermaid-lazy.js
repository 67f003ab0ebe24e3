// Mermaid only on pages with a diagram, only once a diagram is close to the screen, and only
// the parts a diagram needs: its ES-module build (docs/assets/js/mermaid/, copied by `make`
// from the pinned npm package) loads about 0.9 MB for a sequence diagram, where the
// single-file build is 3.5 MB. Reading starts before any of it has loaded.
//
// Material draws the diagrams itself: it calls mermaid.initialize(), then
// mermaid.render(id, text) for each <pre class="mermaid">, and it loads Mermaid only when
// the `mermaid` global is missing. This script runs first (deferred scripts run before
// DOMContentLoaded, when Material starts) and provides that global: a stand-in that holds
// each render until its own diagram comes near the screen, then hands it to the site's own
// Mermaid.
//
// The main thread stays free for the reader: no task covers more than one diagram.
// - A diagram is drawn when it comes within half a screen of the viewport. Once the reader
//   scrolls, the diagrams further away are drawn too, when the browser is idle, so they are
//   ready when the reader gets there.
// - One diagram at a time, yielding to the browser before each.
// - Mermaid's modules are evaluated one per task (leaves first, the order a static import
//   evaluates them), not all of them in one long task; so is the code of a diagram's type.
(function () {
  "use strict";
  var sources = Array.prototype.slice.call(document.querySelectorAll("pre.mermaid"));
  if (!sources.length || typeof mermaid !== "undefined") return;

  var entry = new URL("assets/js/mermaid/mermaid.esm.min.mjs", __md_scope).href;
  var config = {};
  var loaded = null;
  var jobs = [];           // renders asked for and not done, in the order Material asked
  var running = false;
  var readerMoved = false;

  // Give the browser a turn (paint, input) before the next piece of work.
  function pause() {
    if (window.scheduler && typeof window.scheduler.yield === "function") return window.scheduler.yield();
    return new Promise(function (resolve) { setTimeout(resolve, 0); });
  }

  function idle() {
    if (!("requestIdleCallback" in window)) return pause();
    return new Promise(function (resolve) { requestIdleCallback(function () { resolve(); }, { timeout: 2000 }); });
  }

  // --- Mermaid's code, one module per task ------------------------------------------------

  var texts = {};  // url -> promise of {text, deps}

  // The static imports of a module, read from its text: `from"./x.mjs"`, `import"./x.mjs"`
  // (not `import("./x.mjs")`, which Mermaid loads only for a diagram type that needs it).
  function discover(url) {
    if (!texts[url]) {
      texts[url] = fetch(url).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status + " for " + url);
        return response.text();
      }).then(function (text) {
        var deps = [];
        var pattern = /(?:\bfrom|\bimport)\s*["'](\.{1,2}\/[^"']+\.m?js)["']/g;
        for (var match; (match = pattern.exec(text));) deps.push(new URL(match[1], url).href);
        return Promise.all(deps.map(discover)).then(function () { return { text: text, deps: deps }; });
      });
    }
    return texts[url];
  }

  // Evaluate `url` and what it imports, one module per task, leaves first. Whatever the
  // reading of the imports misses, the last import() still evaluates: the order may differ
  // from a static import, never the result.
  function importInSteps(url) {
    return discover(url).then(function () {
      var order = [];
      return collect(url, {}, order).then(function () { return order; });
    }).then(function (order) {
      return order.reduce(function (done, u) {
        return done.then(pause).then(function () { return import(u); });
      }, Promise.resolve());
    }, function () {
      return import(url);  // could not read the graph: one import, as before
    });
  }

  function collect(url, seen, order) {
    if (seen[url]) return Promise.resolve();
    seen[url] = true;
    return texts[url].then(function (node) {
      return node.deps.reduce(function (done, dep) {
        return done.then(function () { return collect(dep, seen, order); });
      }, Promise.resolve());
    }).then(function () { order.push(url); });
  }

  function load() {
    loaded = loaded || importInSteps(entry).then(function (module) {
      module.default.initialize(config);
      return module.default;
    });
    return loaded;
  }

  // The code of a diagram's type ("sequenceDiagram" -> chunks/…/sequenceDiagram-XXXX.mjs),
  // evaluated in steps before the first diagram of that type is drawn. A type with no chunk
  // of its name is left to Mermaid.
  var types = {};
  function prepare(text) {
    var type = (text.match(/^\s*(?:%%.*\n\s*)*([A-Za-z][\w-]*)/) || [])[1];
    if (!type) return Promise.resolve();
    if (!types[type]) {
      types[type] = discover(entry).then(function (node) {
        var escaped = type.replace(/[^\w-]/g, "");
        var chunk = node.text.match(new RegExp('import\\("(\\./chunks/[^"]*/' + escaped + '-[\\w]+\\.mjs)"\\)'));
        return chunk ? importInSteps(new URL(chunk[1], entry).href) : null;
      }).catch(function () { return null; });
    }
    return types[type];
  }

  // --- which diagram next ------------------------------------------------------------------

  function nextJob() {
    for (var i = 0; i < jobs.length; i++) if (jobs[i].near) return jobs[i];
    return readerMoved ? jobs[0] : null;
  }

  function pump() {
    if (running || !nextJob()) return;
    running = true;
    var job;
    (nextJob().near ? pause() : idle()).then(function () {
      job = nextJob();
      jobs.splice(jobs.indexOf(job), 1);
      return load()
        .then(function (real) { return prepare(job.text).then(function () { return real; }); })
        .then(function (real) { return pause().then(function () { return real.render(job.id, job.text); }); })
        .then(keepReadable)
        .then(job.resolve, job.reject);
    }).then(function () {
      running = false;
      pump();
    });
  }

  // Each render belongs to the first source not yet claimed that holds the same text.
  var claimed = [];
  function sourceOf(text) {
    for (var i = 0; i < sources.length; i++) {
      if (claimed.indexOf(sources[i]) < 0 && sources[i].textContent === text) {
        claimed.push(sources[i]);
        return sources[i];
      }
    }
    return null;
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (!entry.isIntersecting) return;
      observer.unobserve(entry.target);
      jobs.forEach(function (job) { if (job.source === entry.target) job.near = true; });
    });
    pump();
  }, { rootMargin: "50% 0px" }) : null;  // half a screen ahead of the reader

  window.addEventListener("scroll", function () {
    readerMoved = true;
    pump();
  }, { once: true, passive: true });

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
      return new Promise(function (resolve, reject) {
        var source = sourceOf(text);
        var job = { id: id, text: text, source: source, near: !observer || !source, resolve: resolve, reject: reject };
        jobs.push(job);
        if (!job.near) observer.observe(source);
        pump();
      });
    }
  };
})();
