// Drives Debian's Chromium (headless) through a site that embeds Cairn's snippet; run by
// tests/api/snippet.rs, which then checks what reached Cairn. Prints one JSON line of what it
// saw in the browser.
//
//   node tests/browser/snippet.mjs <site base URL>
import { chromium } from 'playwright-core';

const site = process.argv[2];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});

const ready = (page) => page.waitForFunction(() => window.EnterCRM && window.EnterCRM.q === null, null, { timeout: 15000 });
const batches = (page) => {
  const seen = { requests: 0, ok: 0 };
  page.on('request', (r) => { if (r.url().includes('/v1/track/batch')) seen.requests++; });
  page.on('response', (r) => { if (r.url().includes('/v1/track/batch') && r.ok()) seen.ok++; });
  return seen;
};
const idle = async (page) => {
  // Until the tracker's queue (saved in localStorage) is empty.
  await page.waitForFunction(() => !localStorage.getItem('cairn_queue'), null, { timeout: 20000 });
};

try {
  // 1. The stub snippet with calls made before the script loaded; UTM parameters; identify;
  //    a custom event; a page that throws nothing whatever it is given.
  const ctx = await browser.newContext();
  let page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const sent = batches(page);
  await page.goto(site + '/?utm_source=news&utm_medium=email&utm_campaign=launch');
  await ready(page);
  await page.evaluate(() => {
    EnterCRM.identify({ email: 'ana@example.com', name: 'Ana Kovač', created_at: '2025-06-01' });
    EnterCRM.track('purchase', { amount: 149.99, currency: 'EUR', product_id: 'prod_abc123' });
    const circular = {}; circular.self = circular;
    EnterCRM.track('circular', circular);
    EnterCRM.track();
    EnterCRM.page(null);
  });
  // 2. Single-page navigation: pushState and popstate each make a pageview.
  await page.evaluate(() => history.pushState({}, '', '/pricing'));
  await page.evaluate(() => history.pushState({}, '', '/pricing#plans'));
  await page.evaluate(() => history.back());
  await sleep(300);
  await idle(page);
  out.batched_requests = sent.ok;
  out.anon1 = await page.evaluate(() => localStorage.getItem('cairn_anon'));
  out.cookie = (await ctx.cookies()).find((c) => c.name === 'cairn_anon')?.value || null;

  // 3. Offline: the event waits in localStorage across the page's end and is delivered once,
  //    from the next page, back online.
  await ctx.setOffline(true);
  await page.evaluate(() => EnterCRM.track('offline_1', { n: 1 }));
  await sleep(4500); // one failed attempt, then backing off
  out.saved_while_offline = await page.evaluate(() => (localStorage.getItem('cairn_queue') || '').includes('offline_1'));
  const next = await ctx.newPage();
  await page.close({ runBeforeUnload: true });
  await sleep(300);
  await ctx.setOffline(false);
  page = next;
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(site + '/second');
  await ready(page);
  await idle(page);

  // 4. Offline again, then the browser's `online` event sends at once.
  await ctx.setOffline(true);
  await page.evaluate(() => EnterCRM.track('offline_2'));
  await sleep(1500);
  await ctx.setOffline(false);
  await idle(page);

  // 5. Logout: a new anonymous visitor; 6. consent.
  await page.evaluate(() => { EnterCRM.reset(); EnterCRM.track('after_reset'); });
  out.anon2 = await page.evaluate(() => localStorage.getItem('cairn_anon'));
  await idle(page); // (opting out drops whatever is still queued)
  await page.evaluate(() => { EnterCRM.optOut(); EnterCRM.track('opted_out'); EnterCRM.identify({ email: 'nobody@example.com' }); });
  await sleep(3500);
  await page.evaluate(() => { EnterCRM.optIn(); EnterCRM.track('opted_in'); EnterCRM.flush(); });
  await idle(page);
  out.errors = errors;
  await ctx.close();

  // 7. Global Privacy Control honoured when the site asks for it: nothing is sent.
  const gpc = await browser.newContext();
  await gpc.addInitScript(() => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
  const gp = await gpc.newPage();
  const gpcSent = batches(gp);
  await gp.goto(site + '/gpc');
  await ready(gp);
  await gp.evaluate(() => EnterCRM.track('gpc_event'));
  await sleep(4000);
  out.gpc_requests = gpcSent.requests;
  await gpc.close();

  // 8. A site that requires consent: nothing is sent until optIn(), then only what follows.
  const cons = await browser.newContext();
  const cp = await cons.newPage();
  const consSent = batches(cp);
  await cp.goto(site + '/consent');
  await ready(cp);
  await cp.evaluate(() => EnterCRM.track('before_consent'));
  await sleep(3500);
  out.requests_before_consent = consSent.requests;
  await cp.evaluate(() => { EnterCRM.optIn(); EnterCRM.track('after_consent'); EnterCRM.flush(); });
  await idle(cp);
  out.anon4 = await cp.evaluate(() => localStorage.getItem('cairn_anon'));
  await cons.close();

  // 9. Seed 003's snippet exactly as documented (only the script's address changed).
  const seed = await browser.newContext();
  const sp = await seed.newPage();
  await sp.goto(site + '/seed');
  await ready(sp);
  await sp.evaluate(() => EnterCRM.track('seed_form', { ok: true }));
  await idle(sp);
  out.anon3 = await sp.evaluate(() => localStorage.getItem('cairn_anon'));
  await seed.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
