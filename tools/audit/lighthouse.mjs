// Runs Lighthouse on each URL, mobile and desktop presets, in one Chromium, and prints one
// JSON line per run. Called by audit.py, which serves the site and prints the table.
//
//   CHROME_PATH=/usr/bin/chromium node lighthouse.mjs URL...
import lighthouse from "lighthouse";
import desktopConfig from "lighthouse/core/config/desktop-config.js";
import * as chromeLauncher from "chrome-launcher";
import { writeFileSync } from "node:fs";

const CATEGORIES = ["performance", "accessibility", "best-practices", "seo"];
const chrome = await chromeLauncher.launch({
  chromePath: process.env.CHROME_PATH || "/usr/bin/chromium",
  chromeFlags: [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-dev-shm-usage",
    // Nothing leaves the machine: every name but 127.0.0.1 fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
  ],
});
try {
  for (const url of process.argv.slice(2)) {
    for (const preset of ["mobile", "desktop"]) {
      const flags = { port: chrome.port, output: "json", logLevel: "error", onlyCategories: CATEGORIES };
      const result = await lighthouse(url, flags, preset === "desktop" ? desktopConfig : undefined);
      const lhr = result.lhr;
      // AUDIT_LHR_DIR=/tmp/lhr keeps each full report, to read what a score blames.
      if (process.env.AUDIT_LHR_DIR) {
        const name = new URL(url).pathname.replace(/\//g, "_") + `${preset}.json`;
        writeFileSync(`${process.env.AUDIT_LHR_DIR}/${name}`, JSON.stringify(lhr));
      }
      const score = (id) => Math.round((lhr.categories[id]?.score ?? 0) * 100);
      // The failing audits of a category, each with the first few elements it names.
      const failing = (id) => lhr.categories[id].auditRefs
        .filter((ref) => ref.weight > 0 && (lhr.audits[ref.id].score ?? 1) < 1)
        .map((ref) => {
          const items = lhr.audits[ref.id].details?.items ?? [];
          const nodes = items.map((item) => item.node?.selector ?? item.source?.url ?? item.description)
            .filter(Boolean).slice(0, 3);
          return nodes.length ? `${ref.id} (${nodes.join(" | ")})` : ref.id;
        });
      console.log(JSON.stringify({
        url,
        preset,
        performance: score("performance"),
        accessibility: score("accessibility"),
        bestPractices: score("best-practices"),
        seo: score("seo"),
        bytes: lhr.audits["total-byte-weight"].numericValue,
        failing: {
          performance: failing("performance"),
          accessibility: failing("accessibility"),
          bestPractices: failing("best-practices"),
          seo: failing("seo"),
        },
        metrics: Object.fromEntries(
          ["first-contentful-paint", "largest-contentful-paint", "total-blocking-time",
           "cumulative-layout-shift", "speed-index"].map((id) => [id, lhr.audits[id].displayValue])),
        // What blocks the main thread: the longest tasks (ms, as measured, before any
        // simulated slow-down) and the scripts that cost most CPU.
        longTasks: (lhr.audits["long-tasks"]?.details?.items ?? []).slice(0, 6)
          .map((t) => `${Math.round(t.duration)} ms ${t.url ?? ""}`.trim()),
        bootup: (lhr.audits["bootup-time"]?.details?.items ?? []).slice(0, 4)
          .map((t) => `${t.url}: ${Math.round(t.scripting)} ms scripting`),
        runtimeError: lhr.runtimeError?.message,
      }));
    }
  }
} finally {
  await chrome.kill();
}
