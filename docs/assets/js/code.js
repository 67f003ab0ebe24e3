// Two things Material's code blocks lack.
//
// 1. What the copy button copies from a `>>>` (pycon) block: the code a reader can paste
// into Python, without the `>>> ` and `... ` prompts and without the printed output.
//
// Material copies the `data-copy` attribute of the code element when it has one, and its
// visible text otherwise. Pygments marks each prompt as a `.gp` span at the start of its
// line, so a line is input exactly when it starts with one; every other line (output, a
// traceback) is dropped. The attribute is written when a copy button is clicked, just before
// Material reads it: no work at load for the blocks nobody copies.
(function () {
  "use strict";

  function inputLines(code) {
    var lines = [];
    var line = { input: false, text: "", started: false };
    code.childNodes.forEach(function (node) {
      if (!line.started && node.nodeType === 1 && node.classList.contains("gp")) {
        line.input = true;
        line.started = true;
        return;
      }
      node.textContent.split("\n").forEach(function (part, index) {
        if (index > 0) {
          lines.push(line);
          line = { input: false, text: "", started: false };
        }
        line.text += part;
        if (part) line.started = true;
      });
    });
    lines.push(line);
    return lines.filter(function (l) { return l.input; }).map(function (l) { return l.text; });
  }

  // Material's copy handler (Clipboard.js) listens on the body; this one, on the document
  // in the capture phase, runs before it.
  function markOnCopy(event) {
    var button = event.target.closest && event.target.closest("[data-clipboard-target]");
    var code = button && document.querySelector(button.getAttribute("data-clipboard-target"));
    if (code && code.closest(".language-pycon")) {
      code.setAttribute("data-copy", inputLines(code).join("\n"));
    }
  }

  // 2. A code annotation's marker is a link whose number only CSS draws, so it has no name a
  // screen reader can say (WCAG 2.4.4, Lighthouse's link-name audit): it gets one. Material
  // mounts a block's annotations when the block comes into view (content.lazy), so markers
  // are named as they appear.
  function name(root) {
    root.querySelectorAll("a.md-annotation__index").forEach(function (link) {
      var number = link.querySelector("[data-md-annotation-id]");
      link.setAttribute("aria-label", "Annotation " + (number ? number.getAttribute("data-md-annotation-id") : ""));
    });
  }

  function start() {
    document.addEventListener("click", markOnCopy, true);
    name(document);
    var content = document.querySelector(".md-content");
    if (!content) return;
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        record.addedNodes.forEach(function (node) {
          if (node.nodeType === 1 && node.classList.contains("md-annotation")) name(node);
        });
      });
    }).observe(content, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
