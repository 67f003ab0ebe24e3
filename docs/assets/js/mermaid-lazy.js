// The build draws the site's diagrams in Chromium (hooks/diagrams.py), through this
// script's build mode below. Where it could not (no Chromium at build), the reader's browser
// draws them, and this is how: Mermaid only on pages with a diagram, only once a diagram is
// close to the screen, and only the parts a diagram needs: its ES-module build
// (docs/assets/js/mermaid/, copied by `make` from the pinned npm package) loads about 0.9 MB
// for a sequence diagram, where the single-file build is 3.5 MB. Reading starts before any
// of it has loaded.
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
// - One diagram at a time, yielding to the browser before each, and parsed in a task of its
//   own before it is drawn. (Mermaid's own modules still evaluate in one task: splitting
//   them would mean reading the entry module's imports, a second request for it.)
(function () {
  "use strict";
  // The build draws the diagrams (hooks/diagrams.py); only those it could not draw are left
  // here as sources.
  var sources = Array.prototype.slice.call(document.querySelectorAll("pre.mermaid"));
  if (!sources.length || typeof mermaid !== "undefined") return;

  // At build time, hooks/diagrams.py opens a page with __mermaidBuild set: the page's own
  // diagrams are drawn at once, each SVG handed back by the index of its source, and then
  // build.draw() draws the diagrams of every other page with the same Mermaid and settings.
  var build = window.__mermaidBuild || null;
  if (build) build.draw = function (id, text) {
    return load().then(function (real) { return real.render(id, text); }).then(keepReadable)
      .then(function (result) { return result.svg; });
  };

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

  function load() {
    loaded = loaded || import(entry).then(function (module) {
      module.default.initialize(config);
      return module.default;
    });
    return loaded;
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
        // Parsing first, in a task of its own, takes the loading of the diagram type's code
        // and the parser's warm-up out of the drawing task. A syntax error is left for
        // render() to draw, as Mermaid does.
        .then(function (real) {
          return pause().then(function () { return real.parse(job.text); })
            .catch(function () { return null; }).then(function () { return real; });
        })
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
        var job = { id: id, text: text, source: source, near: !observer || !source || !!build,
                    resolve: resolve, reject: reject };
        if (build) job.resolve = function (result) {
          build.drawn.push({ index: sources.indexOf(source), svg: result.svg, id: id });
          resolve(result);
        };
        if (build) job.reject = function (error) {
          build.drawn.push({ index: sources.indexOf(source), error: String(error), id: id });
          reject(error);
        };
        jobs.push(job);
        if (!job.near) observer.observe(source);
        pump();
      });
    }
  };
})();
