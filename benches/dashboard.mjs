// Times the dashboard's pages in headless Chromium against a server holding a large workspace
// (benches/dashboard.sh seeds it): each page is opened RUNS times, from navigation until its
// heading is drawn and the network is idle (every API call of the page answered and rendered).
// Also times a search typed into the customer list: from the last keystroke until the results
// are drawn, less the 300 ms the list waits for typing to pause.
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
const time = async (name, hash, ready) => {
  const ms = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto(base + '/app#/keys'); await page.locator('main h1').waitFor(); await page.waitForLoadState('networkidle');
    const t0 = Date.now();
    await page.evaluate((h) => { location.hash = h; }, hash);
    await ready();
    await page.waitForLoadState('networkidle');
    ms.push(Date.now() - t0);
  }
  rows.push({ page: name, median_ms: pct(ms, 0.5), max_ms: Math.max(...ms) });
};
const heading = (text) => () => page.locator('main h1', { hasText: text }).waitFor();
const table = (text) => async () => { await page.locator('main h1', { hasText: text }).waitFor(); await page.locator('main .pager').first().waitFor(); };

await time('customers (newest first, page 1 of 40,000)', '/customers', table('Customers'));
await time('customers, highest spend first', '/customers?sort=-clv_total', table('Customers'));
await time('customers in segment Champions', '/customers?rfm_segment=Champions', table('Customers'));
await time('customer profile', '/customers/' + customer, heading('User'));
await time('segments', '/segments', heading('Segments'));
await time('R×F grid', '/segments/rfm', heading('Recency'));
await time('segment Loyal Customers (members)', '/segments/2', table('Loyal'));
await time('automations', '/automations', table('Automations'));
await time('campaigns', '/campaigns', table('Campaigns'));
await time('leads', '/leads', table('Leads'));
await time('deals (Kanban)', '/deals', heading('Deals'));
await time('reports', '/reports', heading('Reports'));
await time('settings', '/settings', heading('Settings'));

// Typing a search: one request after the pause, answered and drawn.
const typed = [];
for (const q of ['user777777', 'User 123456', 'nobody-at-all', 'user5']) {
  await page.goto(base + '/app#/customers'); await page.locator('main .pager').waitFor(); await page.waitForLoadState('networkidle');
  let requests = 0;
  const count = (r) => { if (r.url().includes('/v1/customers?')) requests++; };
  page.on('request', count);
  await page.locator('input[type=search]').pressSequentially(q, { delay: 60 });
  const t0 = Date.now();
  await page.waitForResponse((r) => r.url().includes('search='));
  await page.waitForLoadState('networkidle');
  typed.push({ query: q, after_last_key_ms: Date.now() - t0, requests });
  page.off('request', count);
}
await browser.close();
process.stdout.write(JSON.stringify({ runs: RUNS, pages: rows, search: typed }, null, 1) + '\n');
