// lighthouse.mjs — Lighthouse (npm, with the system Chromium) on the console.
//
//   CHROME_PATH=/usr/bin/chromium node scripts/lighthouse.mjs BASE_URL USER PASSWORD
//
// Audits two pages RUNS times each (default 3; Lighthouse's scores move
// with the machine's load, so the median run is reported), each as a phone (Lighthouse's default: Moto G Power,
// simulated slow 4G and 4× CPU slowdown) and as a desktop (desktop-config):
// — the login page (a first visit, storage cleared) and the fleet overview
// after logging in (the tab's session kept: Lighthouse reloads the page and
// the console resumes it with its refresh token, as a reload does). One
// JSON line per page and form factor on stdout, from its median run (by
// performance score): page, form factor, the performance and accessibility
// scores (0-100), every run's scores, the metrics behind the performance
// score and the audits that did not pass. The console benchmark (internal/console/e2e)
// runs it and prints the figures. Exits non-zero when a run fails. With
// LIGHTHOUSE_REPORTS=dir, each run's full report is saved there as JSON;
// PAGES=overview and FORM_FACTORS=mobile (comma-separated) audit only
// those, for looking into one result.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as chromeLauncher from 'chrome-launcher';
import lighthouse from 'lighthouse';
import desktopConfig from 'lighthouse/core/config/desktop-config.js';
import puppeteer from 'puppeteer-core';

const [base, user, password] = process.argv.slice(2);
if (!base || !user || !password) {
  console.error('usage: CHROME_PATH=/usr/bin/chromium node scripts/lighthouse.mjs BASE_URL USER PASSWORD');
  process.exit(2);
}
const chromePath = process.env.CHROME_PATH || '/usr/bin/chromium';
const RUNS = Math.max(1, Number(process.env.RUNS ?? 3) || 3);
const only = (v, all) => (v ? all.filter((x) => v.split(',').includes(x)) : all);
const PAGES = only(process.env.PAGES, ['login', 'overview']);
const FORM_FACTORS = only(process.env.FORM_FACTORS, ['mobile', 'desktop']);

const METRICS = {
  fcp_ms: 'first-contentful-paint',
  lcp_ms: 'largest-contentful-paint',
  tbt_ms: 'total-blocking-time',
  si_ms: 'speed-index',
  cls: 'cumulative-layout-shift',
};

/** failing lists the audits of a category that scored below 1 (with their weight), for fixing. */
function failing(lhr, category) {
  return lhr.categories[category].auditRefs
    .map((r) => ({ ref: r, audit: lhr.audits[r.id] }))
    .filter(({ audit }) => audit && audit.score !== null && audit.score < 1 && audit.scoreDisplayMode !== 'informative')
    .map(({ ref, audit }) => `${audit.id} (${audit.score}, weight ${ref.weight})${audit.displayValue ? ': ' + audit.displayValue : ''}`);
}

async function logIn(page) {
  await page.goto(base + '/', { waitUntil: 'networkidle0' });
  await page.type('#login-user', user);
  await page.type('#login-password', password);
  await Promise.all([page.waitForSelector('[data-testid=site-tiles] [data-site]', { timeout: 60_000 }), page.click('button[type=submit]')]);
}

const chrome = await chromeLauncher.launch({
  chromePath,
  chromeFlags: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions'],
});
let failed = false;
try {
  const browser = await puppeteer.connect({ browserURL: `http://127.0.0.1:${chrome.port}`, defaultViewport: null });
  for (const formFactor of FORM_FACTORS) {
    const config = formFactor === 'desktop' ? desktopConfig : undefined;
    for (const name of PAGES) {
      const runs = [];
      try {
        for (let i = 0; i < RUNS; i++) {
          const page = await browser.newPage();
          try {
            if (name === 'overview') await logIn(page);
            const flags = { output: 'json', logLevel: 'error', onlyCategories: ['performance', 'accessibility'], disableStorageReset: name === 'overview' };
            const res = await lighthouse(base + '/', flags, config, page);
            const lhr = res?.lhr;
            if (!lhr) throw new Error('no result');
            if (lhr.runtimeError) throw new Error(lhr.runtimeError.code + ': ' + lhr.runtimeError.message);
            if (process.env.LIGHTHOUSE_REPORTS) writeFileSync(join(process.env.LIGHTHOUSE_REPORTS, `${name}-${formFactor}-${i}.json`), JSON.stringify(lhr));
            runs.push(lhr);
          } finally {
            await page.close().catch(() => {});
          }
        }
        const score = (lhr, c) => Math.round((lhr.categories[c].score ?? 0) * 100);
        const sorted = [...runs].sort((a, b) => score(a, 'performance') - score(b, 'performance'));
        const lhr = sorted[Math.floor(sorted.length / 2)];
        const out = {
          page: name,
          form_factor: formFactor,
          final_url: lhr.finalDisplayedUrl,
          performance: score(lhr, 'performance'),
          accessibility: Math.min(...runs.map((r) => score(r, 'accessibility'))),
          runs: runs.map((r) => [score(r, 'performance'), score(r, 'accessibility')]),
          warnings: lhr.runWarnings,
        };
        for (const [k, id] of Object.entries(METRICS)) out[k] = Math.round((lhr.audits[id]?.numericValue ?? NaN) * (k === 'cls' ? 1000 : 1)) / (k === 'cls' ? 1000 : 1);
        out.performance_failing = failing(lhr, 'performance');
        out.accessibility_failing = [...new Set(runs.flatMap((r) => failing(r, 'accessibility')))];
        console.log(JSON.stringify(out));
      } catch (e) {
        failed = true;
        console.log(JSON.stringify({ page: name, form_factor: formFactor, error: String(e?.stack ?? e) }));
      }
    }
  }
  await browser.disconnect();
} finally {
  chrome.kill();
}
process.exit(failed ? 1 : 0);
