// Drives Debian's Chromium (headless) through Cairn's dashboard against a real server; run by
// tests/api/dashboard.rs, which checks what the clicks did through the API and the SMTP sink.
// Prints one JSON line of what it saw. With a second argument, saves screenshots of the main
// pages into that directory (scripts/screenshots.sh keeps them in docs/screenshots/).
//
//   node tests/browser/dashboard.mjs <cairn base URL> [screenshot dir]
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const base = process.argv[2];
const shots = process.argv[3] || null;
if (shots) mkdirSync(shots, { recursive: true });
const out = { errors: [], steps: [], slow: [] };
const step = (s) => { out.steps.push(s); process.stderr.write(`step: ${s}\n`); };

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const page = await ctx.newPage();
page.setDefaultTimeout(20000);
page.on('pageerror', (e) => out.errors.push('pageerror: ' + String(e)));
page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) out.errors.push('console: ' + m.text()); });
page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept('Budget cut') : d.accept()));

const shot = async (name) => { if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: false }); };
const noErrorBox = async (where) => {
  const n = await page.locator('.error').count();
  if (n) out.errors.push(`${where}: ${await page.locator('.error').first().innerText()}`);
};
// Opens a view and waits until it has rendered (its heading), timing it.
const open = async (hash, heading) => {
  const t0 = Date.now();
  if (page.url() === `${base}/app#${hash}`) await page.reload(); else await page.goto(`${base}/app#${hash}`);
  await page.locator('main h1').filter({ hasText: heading }).first().waitFor();
  await page.waitForLoadState('networkidle');
  const ms = Date.now() - t0;
  if (ms > 1000) out.slow.push(`${hash}: ${ms} ms`);
  out.timings = Object.assign(out.timings || {}, { [hash]: ms });
};
const apiCall = (method, path, body, auth) => page.evaluate(async ([m, p, b, a]) => {
  const headers = { 'Content-Type': 'application/json' };
  if (a && a.startsWith('eck_')) headers['X-API-Key'] = a; else headers.Authorization = 'Bearer ' + (a || localStorage.getItem('cairn_session'));
  const r = await fetch(p, { method: m, headers, body: b ? JSON.stringify(b) : undefined });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
}, [method, path, body, auth]);

try {
  // 1. The server's address leads to the dashboard; registering signs in.
  await page.goto(base + '/');
  await page.locator('h1', { hasText: 'Sign in to Cairn' }).waitFor();
  await shot('01-sign-in');
  await page.click('text=Create a workspace');
  await page.fill('#f-name', 'Ana Owner');
  await page.fill('#f-email', 'ana@shop.test');
  await page.fill('#f-password', 'short');
  await page.fill('#f-workspace', 'Shop');
  await page.click('button[type=submit]');
  out.short_password_error = await page.locator('.error').innerText();
  await page.fill('#f-password', 'correct horse battery');
  await page.click('button[type=submit]');
  await page.locator('main h1', { hasText: 'Customers' }).waitFor();
  step('registered');

  // 2. A secret key, shown once.
  await open('/keys', 'API keys');
  await page.fill('#f-name', 'backend');
  await page.click('text=Create key');
  const key = (await page.locator('#new-key').innerText()).trim();
  out.key_prefix = key.slice(0, 4);
  await page.locator('td', { hasText: 'backend' }).first().waitFor();
  await shot('11-api-keys');
  // A second key, revoked at once.
  await page.fill('#f-name', 'old integration');
  await page.click('text=Create key');
  await page.locator('td', { hasText: 'old integration' }).waitFor();
  await page.locator('tr', { hasText: 'old integration' }).locator('button', { hasText: 'Revoke' }).click();
  await page.locator('td', { hasText: 'old integration' }).waitFor({ state: 'detached' }); // revoked keys leave the list
  step('key created');

  // 3. Events through the API with that key; the customer is found in the list and opened.
  for (const [event, props] of [['identify', null], ['purchase', { amount: 299.99, currency: 'EUR' }], ['page_view', { path: '/pricing' }]]) {
    const r = event === 'identify'
      ? await apiCall('POST', '/v1/track/identify', { email: 'marko@example.com', name: 'Marko Horvat', traits: { plan: 'pro' } }, key)
      : await apiCall('POST', '/v1/track/event', { customer_email: 'marko@example.com', event, properties: props }, key);
    if (r.status >= 300) throw new Error(`ingest ${event}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  await open('/customers', 'Customers');
  for (let i = 0; i < 60; i++) {
    await page.fill('input[type=search]', '');
    await page.fill('input[type=search]', 'marko');
    try { await page.locator('td', { hasText: 'marko@example.com' }).waitFor({ timeout: 1000 }); break; } catch (e) { /* not ingested yet */ }
  }
  await shot('02-customers');
  await page.locator('td', { hasText: 'marko@example.com' }).click();
  await page.locator('main h1', { hasText: 'Marko Horvat' }).waitFor();
  for (let i = 0; i < 40 && !(await page.locator('.timeline li', { hasText: 'purchase' }).count()); i++) { await page.waitForTimeout(500); await page.reload(); await page.locator('main h1').waitFor(); }
  out.profile_has_purchase = (await page.locator('.timeline li', { hasText: 'purchase' }).count()) > 0;
  out.profile_email = await page.locator('.kv div:nth-child(2)').first().innerText();
  await noErrorBox('profile');
  out.customer_id = Number(page.url().split('/').pop());
  step('customer found');

  // 4. A segment built visually, with its live count.
  await open('/segments/new', 'New segment');
  await page.fill('#f-name', 'Marko fans');
  const cond = page.locator('.cond').first();
  await cond.locator('select[aria-label=Field]').selectOption('email');
  await cond.locator('select[aria-label=Operator]').selectOption('contains');
  await page.locator('.cond').first().locator('input[aria-label=Value]').fill('marko');
  await page.locator('#preview-count', { hasText: /^1$/ }).waitFor();
  out.preview_count = await page.locator('#preview-count').innerText();
  // A behaviour condition: the last purchase within 30 days.
  await page.click('button:text-is("did event")');
  const ev = page.locator('.cond').nth(1);
  await ev.locator('input[aria-label=Event]').fill('purchase');
  await ev.locator('select[aria-label=Timing]').selectOption('last');
  await page.locator('.cond').nth(1).locator('select[aria-label=When]').selectOption('within_days');
  await page.locator('.cond').nth(1).locator('input[aria-label=Days]').fill('30');
  await page.waitForTimeout(800); // the preview waits for edits to pause
  await page.locator('#preview-count').waitFor();
  await page.waitForLoadState('networkidle');
  out.preview_with_purchase = await page.locator('#preview-count').innerText();
  await shot('04-segment-builder');
  await page.click('text=Create segment');
  await page.locator('main h1', { hasText: 'Marko fans' }).waitFor();
  await page.locator('td', { hasText: 'marko@example.com' }).waitFor({ timeout: 30000 }).catch(async () => { await page.reload(); await page.locator('td', { hasText: 'marko@example.com' }).waitFor({ timeout: 30000 }); });
  out.segment_id = Number(page.url().split('/').pop());
  step('segment built');
  await open(`/segments/${out.segment_id}/edit`, 'Edit Marko fans');
  out.edit_value = await page.locator('.cond input[aria-label=Value]').inputValue();
  await open('/segments/rfm', 'Recency × frequency');
  await shot('05-rfm-grid');
  // Click-through: the customer's R×F cell lists them.
  const cell = await apiCall('GET', `/v1/customers/${out.customer_id}`);
  const [r, f] = [cell.body.data.rfm_recency, cell.body.data.rfm_frequency];
  await page.locator(`.heat .cell[title^="R${r} F${f}:"]`).click();
  await page.locator('main h1', { hasText: `R = ${r}, F = ${f}` }).waitFor();
  out.rfm_cell_customers = await page.locator('main table td:nth-child(2)').allInnerTexts();
  await open('/segments/rfm', 'Recency × frequency');
  await page.click('text=Recompute scores now');
  await page.locator('main h1', { hasText: 'Score recompute' }).waitFor();
  await page.locator('main .pill', { hasText: /done|failed/ }).waitFor({ timeout: 60000 });
  out.recompute = await page.locator('main .pill').first().innerText();

  // 5. Seed 003's welcome automation, built by dragging and clicking.
  await open('/automations/new', 'New automation');
  await page.fill('#f-name', 'Welcome Series');
  await page.selectOption('#f-trigger_type', 'customer_created');
  await page.click('text=Create and open the builder');
  await page.locator('[data-testid=canvas]').waitFor();
  const automationId = Number(page.url().split('/').pop());
  out.automation_id = automationId;
  const stageBox = async () => page.locator('[data-testid=canvas] > div').first().boundingBox();
  const place = async (kind, label, x, y) => {
    const tool = await page.locator(`.tool[data-kind=${kind}]`).boundingBox();
    await page.mouse.move(tool.x + 20, tool.y + 10);
    await page.mouse.down();
    const s = await stageBox();
    await page.mouse.move(s.x + x / 2, s.y + y / 2 + 20, { steps: 4 });
    await page.mouse.move(s.x + x + 0.4, s.y + y + 0.4, { steps: 4 });
    await page.mouse.up();
    await page.locator('#node-label').fill(label);
  };
  const seed = [['trigger', 'New Customer', 250, 0], ['action', 'Send Welcome Email', 250, 120], ['delay', 'Wait 3 Days', 250, 240],
    ['condition', 'Made a Purchase?', 250, 360], ['action', 'Send Reminder', 80, 480], ['action', 'Send Thank You', 420, 480]];
  for (const [kind, label, x, y] of seed) await place(kind, label, x, y);
  const connect = async (from, to) => {
    const hd = await page.locator(`[data-handle=${from}]`).boundingBox();
    const tg = await page.locator(`[data-node=${to}]`).boundingBox();
    await page.mouse.move(hd.x + hd.width / 2, hd.y + hd.height / 2);
    await page.mouse.down();
    await page.mouse.move(tg.x + tg.width / 2, tg.y + 12, { steps: 6 });
    await page.mouse.up();
  };
  await connect('t1', 'a1');
  await connect('a1', 'd1');
  await connect('d1', 'c1');
  await connect('c1', 'a2');
  await page.selectOption('#edge-label', 'No'); // the first branch drawn was offered "Yes"
  await connect('c1', 'a3'); // and the other is offered the one left
  out.edge_label_offered = await page.locator('#edge-label').inputValue();
  // A node dragged away and back keeps the grid position it ends on.
  const a3 = await page.locator('[data-node=a3]').boundingBox();
  await page.mouse.move(a3.x + 60, a3.y + 20); await page.mouse.down();
  await page.mouse.move(a3.x + 160, a3.y + 120, { steps: 5 }); await page.mouse.move(a3.x + 60, a3.y + 20, { steps: 5 }); await page.mouse.up();
  await page.click('#save-design');
  // "Saved <time>" once the server has the design ("Unsaved changes" must not count).
  await page.locator('#save-status', { hasText: /^Saved / }).waitFor();
  await page.reload();
  await page.locator('[data-node=c1]').waitFor();
  out.design_after_reload = (await apiCall('GET', `/v1/automations/${automationId}/design`)).body;
  out.nodes_drawn_after_reload = await page.locator('.node').count();
  out.edges_drawn_after_reload = await page.locator('path.edge').count();
  step('automation saved and reloaded');

  // Activating the draft fails, and the problems are shown on the nodes.
  await page.click('#activate');
  await page.locator('.node.invalid').first().waitFor();
  out.invalid_nodes = await page.locator('.node.invalid').evaluateAll((els) => els.map((e) => e.dataset.node).sort());
  await shot('07-automation-validation');
  // Configure the actions and the condition in the side panel, then activate.
  for (const [id, subject] of [['a1', 'Welcome, {{ name }}'], ['a2', 'Still thinking?'], ['a3', 'Thank you!']]) {
    await page.click(`[data-node=${id}]`);
    await page.selectOption('#node-action', 'send_email');
    await page.fill('#node-subject', subject);
    await page.fill('#node-body', '<p>Hi {{ name }}</p>');
    await page.fill('#node-from_email', 'welcome@shop.test');
  }
  await page.click('[data-node=c1]');
  await page.fill('#node-filter', '{"event": "purchase"}');
  await page.click('#activate');
  await page.locator('main h1 .pill', { hasText: 'active' }).waitFor();
  out.automation_active = (await apiCall('GET', `/v1/automations/${automationId}`)).body.data.is_active;
  step('automation activated');
  // A new customer enters it: the builder shows the run on its steps (the welcome email sent,
  // the run waiting at the delay), and the run is listed.
  await apiCall('POST', '/v1/customers', { email: 'nina@example.com', name: 'Nina' });
  for (let i = 0; i < 60 && !(await page.locator('[data-node=d1] .counts', { hasText: '1 waiting' }).count()); i++) await page.waitForTimeout(500);
  out.counts_a1 = await page.locator('[data-node=a1] .counts').innerText();
  out.counts_d1 = await page.locator('[data-node=d1] .counts').innerText();
  await page.reload();
  await page.locator('main table td', { hasText: 'waiting' }).first().waitFor();
  await shot('06-automation-builder');
  await page.locator('main table tr.click', { hasText: 'waiting' }).first().click();
  await page.locator('main h1', { hasText: 'Run #' }).waitFor();
  out.run_steps = await page.locator('main table tbody tr td:nth-child(2)').allInnerTexts();
  step('automation ran');

  // 6. A campaign to the segment: preview for the customer, send, watch it finish.
  await open('/campaigns/new', 'New campaign');
  await page.fill('#f-name', 'Autumn sale');
  await page.selectOption('#f-segment_id', String(out.segment_id));
  await page.fill('#f-subject', 'Hello {{ name }}');
  await page.fill('#f-from_email', 'news@shop.test');
  await page.fill('#f-body', '<p>Hi {{ name }}, 20% off this week.</p><p><a href="https://shop.test/sale">Shop</a></p>');
  await page.click('#save-campaign');
  await page.locator('main h1', { hasText: 'Edit Autumn sale' }).waitFor();
  await page.fill('input[aria-label="Preview for customer…"]', 'marko');
  await page.locator('[data-customer]').first().click();
  await page.locator('#preview-subject', { hasText: 'Hello Marko Horvat' }).waitFor();
  out.preview_subject = await page.locator('#preview-subject').innerText();
  await page.fill('input[aria-label="Test recipients"]', 'qa@shop.test');
  await page.click('text=Send test');
  out.test_send = await page.locator('.notice, .error', { hasText: 'qa@shop.test' }).innerText();
  await shot('08-campaign-editor');
  await page.click('text=Done');
  await page.locator('#send-now').click();
  await page.locator('#campaign-status', { hasText: 'sent' }).waitFor({ timeout: 60000 });
  out.campaign_sent = await page.locator('[data-stat=sent] .stat').innerText();
  out.campaign_stats = await page.locator('[data-stat]').evaluateAll((els) => Object.fromEntries(els.map((e) => [e.dataset.stat, e.querySelector('.stat').textContent])));
  await shot('09-campaign-stats');
  // A second campaign, scheduled for tomorrow and then cancelled.
  await open('/campaigns/new', 'New campaign');
  await page.fill('#f-name', 'Winter teaser');
  await page.selectOption('#f-segment_id', String(out.segment_id));
  await page.fill('#f-subject', 'Soon');
  await page.fill('#f-from_email', 'news@shop.test');
  await page.click('#save-campaign');
  await page.locator('main h1', { hasText: 'Edit Winter teaser' }).waitFor();
  await page.click('text=Done');
  await page.locator('input[aria-label="Send at"]').fill(new Date(Date.now() + 86400000).toISOString().slice(0, 16));
  await page.click('button:text-is("Schedule")');
  await page.locator('#campaign-status', { hasText: 'scheduled' }).waitFor();
  await page.click('button:text-is("Cancel")');
  await page.locator('#campaign-status', { hasText: 'cancelled' }).waitFor();
  out.second_campaign = Number(page.url().split('/').pop());
  await open('/customers/' + out.customer_id, 'Marko Horvat');
  out.profile_messages = await page.locator('#messages td:first-child').allInnerTexts();
  await shot('03-customer-profile');
  step('campaign sent');

  // 7. Leads: add one, log a call, convert it with a deal.
  await open('/leads', 'Leads');
  await page.click('text=Add a lead');
  await page.fill('#f-first_name', 'Iva');
  await page.fill('#f-last_name', 'Novak');
  await page.fill('#f-email', 'iva@acme.test');
  await page.fill('#f-company_name', 'Acme');
  await page.fill('#f-source', 'website');
  await page.click('text=Add lead');
  await page.locator('main h1', { hasText: 'Iva Novak' }).waitFor();
  await page.selectOption('#f-type', 'call');
  await page.fill('#f-subject', 'Intro call');
  await page.click('button:text("Log")');
  await page.locator('.timeline li', { hasText: 'Intro call' }).waitFor();
  await page.fill('#f-opportunity_value', '5000');
  await page.click('text=Convert lead');
  await page.locator('select[aria-label="Lead status"]:disabled').waitFor();
  await shot('10-lead');
  step('lead converted');
  // A CSV import of two more leads, followed to the end.
  await open('/leads', 'Leads');
  await page.click('text=Import from CSV');
  await page.setInputFiles('input[aria-label="CSV file to import"]', { name: 'leads.csv', mimeType: 'text/csv',
    buffer: Buffer.from('First Name,Last Name,E-mail,Company\nLuka,Babić,luka@acme.test,Acme\nMia,Kos,not-an-email,Beta\n') });
  await page.click('button:text-is("Import")');
  await page.locator('.pill', { hasText: /completed|failed/ }).waitFor();
  out.import_status = await page.locator('details .pill').first().innerText();
  out.import_report = await page.locator('details .small', { hasText: 'created' }).innerText();
  step('leads imported');

  // 8. The deal on the Kanban: dragged from its stage to "Proposal".
  await open('/deals', 'Deals');
  const card = page.locator('.deal', { hasText: 'Acme deal' });
  await card.waitFor();
  out.deal_stage_before = await card.evaluate((el) => el.closest('.column').dataset.stage);
  const from = await card.boundingBox();
  const target = await page.locator('.column[data-stage=proposal]').boundingBox();
  await page.mouse.move(from.x + 30, from.y + 10);
  await page.mouse.down();
  await page.mouse.move(target.x + 60, target.y + 80, { steps: 8 });
  await page.mouse.up();
  await page.locator('.column[data-stage=proposal] .deal', { hasText: 'Acme deal' }).waitFor();
  await page.waitForLoadState('networkidle');
  out.deal_id = Number(await page.locator('.deal', { hasText: 'Acme deal' }).getAttribute('data-deal'));
  await shot('12-deals-kanban');
  await page.locator('.deal', { hasText: 'Acme deal' }).dblclick();
  await page.locator('main h1', { hasText: 'Acme deal' }).waitFor();
  await page.click('text=Mark won');
  await page.locator('main .pill', { hasText: 'won' }).waitFor();
  step('deal dragged');

  // 9. Every other page renders without an error.
  for (const [hash, heading, name] of [['/reports', 'Reports', '13-reports'], ['/webhooks', 'Webhooks', null], ['/team', 'Team', '15-team'],
    ['/settings', 'Settings', '16-settings'], ['/segments', 'Segments', null], ['/automations', 'Automations', null], ['/campaigns', 'Campaigns', null],
    [`/automations/${automationId}`, 'Welcome Series', null]]) {
    await open(hash, heading);
    await noErrorBox(hash);
    if (name) await shot(name);
  }
  // Webhooks: an endpoint with a picked event; its secret is shown once.
  await open('/webhooks', 'Webhooks');
  await page.fill('input[aria-label="Endpoint URL"]', 'https://example.com/hooks/cairn');
  await page.locator('label', { hasText: 'customer.created' }).first().locator('input').check();
  await page.click('text=Add endpoint');
  out.webhook_secret_shown = (await page.locator('.secret').innerText()).startsWith('whsec_');
  await page.locator('td', { hasText: 'https://example.com/hooks/cairn' }).click();
  await page.locator('main h1', { hasText: 'example.com' }).waitFor();
  await page.click('text=Send a test ping');
  await page.locator('.notice', { hasText: 'Ping queued' }).waitFor();
  await page.locator('main table td', { hasText: 'ping' }).first().waitFor();
  await page.locator('main table tr', { hasText: 'ping' }).first().locator('button', { hasText: 'Redeliver' }).click();
  await page.locator('.notice, .error').first().waitFor();
  out.redeliver = await page.locator('.notice, .error').first().innerText();
  await shot('14-webhook-deliveries');
  step('webhook pinged');

  // Settings: the workspace's time zone, a custom field; the team: an invitation.
  await open('/settings', 'Settings');
  await page.fill('#f-time_zone', 'Europe/Zagreb');
  await page.locator('.card[data-card=Workspace]').locator('button', { hasText: 'Save' }).click();
  await page.locator('.card[data-card=Workspace]').locator('.notice', { hasText: 'Saved' }).waitFor();
  await page.fill('#f-time_zone', 'Mars/Olympus');
  await page.locator('.card[data-card=Workspace]').locator('button', { hasText: 'Save' }).click();
  out.bad_time_zone = await page.locator('.card[data-card=Workspace]').locator('.error').innerText();
  await page.fill('#f-from_name', 'Shop News');
  await page.fill('#f-from_email', 'news@shop.test');
  await page.locator('.card[data-card="Email sending"]').locator('button', { hasText: 'Save' }).click();
  await page.locator('.card[data-card="Email sending"] .notice', { hasText: 'Saved' }).waitFor();
  await page.fill('#f-api_url', 'http://127.0.0.1:9/sms');
  await page.fill('#f-account_sid', 'AC123');
  await page.fill('#f-auth_token', 'secret-token');
  await page.fill('#f-from', '+15005550006');
  await page.locator('.card[data-card="SMS provider (Twilio-compatible)"]').locator('button', { hasText: 'Save' }).click();
  await page.locator('.card[data-card="SMS provider (Twilio-compatible)"] .notice, .card[data-card="SMS provider (Twilio-compatible)"] .error').first().waitFor();
  out.sms_saved = await page.locator('.card[data-card="SMS provider (Twilio-compatible)"] .notice, .card[data-card="SMS provider (Twilio-compatible)"] .error').first().innerText();
  await page.fill('input[aria-label="Pipeline name"]', 'Partnerships');
  await page.fill('input[aria-label="Stages"]', 'Intro 10, Pilot 50, Signed 90');
  await page.click('text=Add pipeline');
  await page.locator('strong', { hasText: 'Partnerships' }).waitFor();
  await page.selectOption('#f-entity_type', 'lead');
  await page.fill('#f-key', 'industry');
  await page.fill('#f-label', 'Industry');
  await page.click('text=Add field');
  await page.locator('li', { hasText: 'Industry (industry' }).waitFor();
  await open('/team', 'Team');
  await page.fill('#f-email', 'colleague@shop.test');
  await page.selectOption('#f-role', 'admin');
  await page.click('text=Send invitation');
  out.invite_link = await page.locator('.secret').innerText();
  await page.locator('td', { hasText: 'colleague@shop.test' }).waitFor().catch(() => {});
  // The invited colleague follows the link in a browser of their own and is signed in.
  const other = await (await browser.newContext()).newPage();
  other.on('pageerror', (e) => out.errors.push('pageerror (colleague): ' + String(e)));
  await other.goto(out.invite_link);
  await other.locator('h1', { hasText: 'Join the workspace' }).waitFor();
  await other.fill('#f-name', 'Colleague');
  await other.fill('#f-password', 'another long password');
  await other.click('button[type=submit]');
  await other.locator('main h1', { hasText: 'Customers' }).waitFor();
  out.colleague_nav = await other.locator('.nav .ws').innerText();
  step('settings and team');
} catch (e) {
  out.failure = String(e && e.stack || e);
  try { await page.screenshot({ path: (shots || '/tmp') + '/failure.png' }); } catch (_) { /* the page is gone */ }
}
await browser.close();
process.stdout.write(JSON.stringify(out) + '\n');
