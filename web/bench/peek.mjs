// The peeking benchmark: how soon a signed-out visitor who opens a public room sees its
// messages. Starts `weft serve` on loopback over data seeded by `weft bench --seed-only`,
// opens the room in headless Chromium again and again, and prints the median and 99th
// percentile of the time from navigation start to the room's last message being painted.
//
//   weft --data-dir DIR bench --seed-only          # prints the room, e.g. bench…/big
//   node web/bench/peek.mjs --bin path/to/weft --data-dir DIR --room bench…/big
//
// Options: --runs N (navigations per mode, default 50), --warmup N (default 3). "cold" opens
// each navigation in a new browser context (empty cache, no connection to reuse); "warm"
// navigates one tab again and again (style sheet, script and avatars cached). Times are taken
// inside the page, from navigation start: the Navigation Timing API gives the response times,
// a script that runs before the page is parsed notes when the last message element is present
// and when the next frame after that has been drawn, and "painted" is the later of that frame
// and the first contentful paint (the browser paints nothing before it).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../tests/support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
// playwright-core is installed for the browser tests; the benchmark borrows it.
const require = createRequire(path.join(here, '..', 'tests', 'package.json'));
const { chromium } = require('playwright-core');

function option(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  if (i > 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) {
    console.error(`missing --${name}; see the comment at the top of ${path.basename(fileURLToPath(import.meta.url))}`);
    process.exit(2);
  }
  return fallback;
}

const bin = option('bin', process.env.WEFT_BIN || path.join(here, '..', '..', 'target', 'release', 'weft'));
const dataDir = option('data-dir');
const room = option('room');
const runs = Number(option('runs', '50'));
const warmup = Number(option('warmup', '3'));
const chromiumBin = process.env.CHROMIUM || '/usr/bin/chromium';


async function startWeft() {
  const port = await freePort();
  const child = spawn(bin, ['--data-dir', dataDir, 'serve', '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, WEFT_RATE_LIMIT_PER_MINUTE: '0', WEFT_LOG: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(base + '/healthz')).ok) return { child, base };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill();
  throw new Error('weft did not start');
}

// Runs in the page before any of it is parsed: watches for the message list to be complete
// (the parser has gone past it), then waits for the next frame to be painted.
function probe() {
  const t = { present: -1, painted: -1, count: 0 };
  window.__peek = t;
  const check = () => {
    const list = document.getElementById('messages');
    if (!list || !(list.nextElementSibling || document.readyState !== 'loading')) return false;
    const last = list.querySelector('.msg:last-child');
    if (!last) return false;
    t.present = performance.now();
    t.count = list.querySelectorAll('.msg').length;
    // A rAF callback runs just before the frame is painted; a task queued from it runs after.
    requestAnimationFrame(() => setTimeout(() => { t.painted = performance.now(); }, 0));
    return true;
  };
  const observer = new MutationObserver(() => { if (check()) observer.disconnect(); });
  observer.observe(document, { childList: true, subtree: true });
  document.addEventListener('DOMContentLoaded', () => { if (t.present < 0 && check()) observer.disconnect(); });
}

async function measure(page, url) {
  await page.goto(url, { waitUntil: 'commit' });
  await page.waitForFunction(
    () => window.__peek && window.__peek.painted >= 0 && performance.getEntriesByName('first-contentful-paint').length > 0,
    null,
    { timeout: 30000 },
  );
  return page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const p = window.__peek;
    return {
      ...p,
      frame: p.painted,
      painted: Math.max(p.painted, fcp ? fcp.startTime : -1),
      responseStart: nav.responseStart - nav.startTime,
      responseEnd: nav.responseEnd - nav.startTime,
      domInteractive: nav.domInteractive - nav.startTime,
      domContentLoaded: nav.domContentLoadedEventEnd - nav.startTime,
      fcp: fcp ? fcp.startTime : -1,
      // performance.now() counts from the time origin, which for a page is its navigation start.
      origin: nav.startTime,
    };
  });
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))];
}

function summary(name, samples) {
  const line = [`${name}: ${samples.length} navigations`];
  for (const key of ['responseStart', 'responseEnd', 'present', 'domInteractive', 'domContentLoaded', 'frame', 'fcp', 'painted']) {
    const values = samples.map((s) => s[key] - s.origin).filter((v) => v >= 0).sort((a, b) => a - b);
    if (!values.length) continue;
    line.push(`  ${key.padEnd(14)} p50 ${percentile(values, 0.5).toFixed(1).padStart(7)} ms   p99 ${percentile(values, 0.99).toFixed(1).padStart(7)} ms   max ${values[values.length - 1].toFixed(1).padStart(7)} ms`);
  }
  const counts = new Set(samples.map((s) => s.count));
  line.push(`  messages on the page: ${[...counts].join(', ')}`);
  console.log(line.join('\n'));
}

const { child, base } = await startWeft();
const browser = await chromium.launch({
  executablePath: chromiumBin,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const url = base + '/' + room.split('/').map(encodeURIComponent).join('/');
  const check = await fetch(url, { headers: { Accept: 'text/html' } });
  if (check.status !== 200) throw new Error(`${url} answered ${check.status}`);
  console.log(`peeking at ${url} (${runs} navigations per mode after ${warmup} unmeasured)`);

  const cold = [];
  for (let i = 0; i < warmup + runs; i++) {
    const context = await browser.newContext();
    await context.addInitScript(probe);
    const page = await context.newPage();
    const sample = await measure(page, url);
    if (i >= warmup) cold.push(sample);
    await context.close();
  }
  summary('cold (new browser context each time)', cold);

  const warm = [];
  const context = await browser.newContext();
  await context.addInitScript(probe);
  const page = await context.newPage();
  for (let i = 0; i < warmup + runs; i++) {
    const sample = await measure(page, url);
    if (i >= warmup) warm.push(sample);
  }
  await context.close();
  summary('warm (same tab, cached assets)', warm);
} finally {
  await browser.close();
  child.kill();
}
