// Times the dashboard's pages in headless Chromium against a server holding a large workspace
// (benches/dashboard.sh seeds it): each page is opened RUNS times and timed inside the page, from
// setting its address until its content is drawn (every API call it waits for answered). Also
// times a search typed into the customer list: from the last keystroke until the results are
// drawn, less the 300 ms the list waits for typing to pause.
//
//   node benches/dashboard.mjs <base URL> <session token> <customer id>
import { createRequire } from 'node:module';
const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, token, customer] = process.argv.slice(2);
const RUNS = Number(process.env.RUNS || 5);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
page.setDefaultTimeout(60000);
await page.goto(base + '/app#/login');
await page.evaluate((t) => localStorage.setItem('cairn_session', t), token);

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const rows = [];
// Measured inside the page: from setting the address until the view's content (`selector`,
// whose text includes `text`) is in the document — every API call the view waits for answered
// and drawn. (Playwright's own waits add tens to hundreds of milliseconds of polling.)
const time = async (name, hash, selector, text) => {
  const ms = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto(base + '/app#/keys'); await page.locator('main h1').waitFor(); await page.waitForLoadState('networkidle');
    ms.push(await page.evaluate(([h, sel, txt]) => new Promise((resolve) => {
      const t0 = performance.now();
      const done = () => { const el = document.querySelector(sel); return el && el.textContent.includes(txt) && !location.hash.endsWith('/keys'); };
      const obs = new MutationObserver(() => { if (done()) { obs.disconnect(); resolve(Math.round(performance.now() - t0)); } });
      obs.observe(document.body, { childList: true, subtree: true, characterData: true });
      location.hash = h;
    }), [hash, selector, text]));
  }
  rows.push({ page: name, median_ms: pct(ms, 0.5), max_ms: Math.max(...ms) });
};
const listed = 'main .pager';

await time('customers (newest first, page 1 of 40,000)', '/customers', listed, 'in all');
await time('customers, highest spend first', '/customers?sort=-clv_total', listed, 'in all');
await time('customers in RFM segment Champions', '/customers?rfm_segment=Champions', listed, 'in all');
await time('customers in segment Loyal Customers (picker)', '/customers?segment_id=2', listed, 'in all');
await time('customer profile', '/customers/' + customer, 'main h1', 'User');
await time('segments', '/segments', 'main table', 'Champions');
await time('R×F grid', '/segments/rfm', 'main .heat', 'R5');
await time('segment Loyal Customers (members)', '/segments/2', listed, 'in all');
await time('automations', '/automations', listed, 'Page');
await time('campaigns', '/campaigns', listed, 'Page');
await time('leads', '/leads', listed, 'Page');
await time('deals (Kanban)', '/deals', 'main .kanban', 'Discovery');
await time('reports', '/reports', 'main', 'Deals');
await time('settings', '/settings', 'main', 'Custom fields');

// A search as typed: from the input event of the last keystroke until the results are drawn,
// less the 300 ms the list waits for typing to pause. The matches are not counted (count=none).
const typed = [];
for (const q of ['user777777', 'User 123456', 'nobody-at-all', 'user5']) {
  const ms = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto(base + '/app#/keys'); await page.locator('main h1').waitFor();
    await page.goto(base + '/app#/customers'); await page.locator('main .pager').waitFor(); await page.waitForLoadState('networkidle');
    ms.push(await page.evaluate((query) => new Promise((resolve) => {
      const input = document.querySelector('main input[type=search]');
      const old = document.querySelector('main .pager');
      const obs = new MutationObserver(() => { const p = document.querySelector('main .pager'); if (p && p !== old) { obs.disconnect(); resolve(Math.round(performance.now() - t0 - 300)); } });
      obs.observe(document.querySelector('main'), { childList: true, subtree: true });
      input.value = query;
      const t0 = performance.now();
      input.dispatchEvent(new Event('input'));
    }), q));
  }
  typed.push({ query: q, median_ms: pct(ms, 0.5), max_ms: Math.max(...ms) });
}
await browser.close();
process.stdout.write(JSON.stringify({ runs: RUNS, pages: rows, search: typed }, null, 1) + '\n');
