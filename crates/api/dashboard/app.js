// Cairn's dashboard: one page, no build step, no dependencies. Each view is a function that
// renders into the main area from the /v1 API (the same API every client uses). The session token
// lives in localStorage; views are addressed after '#' (e.g. /app#/customers/42).
'use strict';

// ---- DOM helpers ------------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
function mount(el, ...kids) { el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false)); return el; }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const esc = encodeURIComponent;
function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }
function fmtTime(s) { if (!s) return '—'; const d = new Date(s); return isNaN(d) ? s : d.toLocaleString(); }
function fmtDate(s) { if (!s) return '—'; const d = new Date(s); return isNaN(d) ? s : d.toLocaleDateString(); }
function fmtNum(n, digits = 0) { if (n === null || n === undefined || n === '') return '—'; return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits }); }
function fmtMoney(n) { return n === null || n === undefined ? '—' : fmtNum(n, 2); }
function pill(text, kind) { return h('span', { class: 'pill ' + (kind || '') }, text); }
function statusPill(s) {
  const kind = { active: 'ok', sent: 'ok', completed: 'ok', done: 'ok', delivered: 'ok', won: 'ok', converted: 'ok', success: 'ok',
    failed: 'bad', bounced: 'bad', lost: 'bad', cancelled: 'bad', revoked: 'bad', error: 'bad',
    sending: 'warn', scheduled: 'warn', waiting: 'warn', running: 'warn', pending: 'warn', draft: '' }[s];
  return pill(s || '—', kind);
}

// ---- The API ----------------------------------------------------------------------------------

const session = {
  get token() { return localStorage.getItem('cairn_session'); },
  set token(t) { if (t) localStorage.setItem('cairn_session', t); else localStorage.removeItem('cairn_session'); },
  me: null,
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || 'HTTP ' + status);
    this.status = status; this.code = body && body.code; this.field = body && body.field;
    this.errors = (body && body.errors) || [];
  }
}

async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (session.token) headers.Authorization = 'Bearer ' + session.token;
  let payload;
  if (body !== undefined && body !== null) {
    if (opts.raw) { payload = body; headers['Content-Type'] = opts.contentType || 'text/plain'; } else { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, { error: 'Cairn cannot be reached. Check your connection and try again.', code: 'NETWORK' });
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = opts.text ? text : null; }
  if (!resp.ok) {
    if (resp.status === 401 && !path.startsWith('/v1/auth/login') && !path.startsWith('/v1/auth/register')) {
      session.token = null; session.me = null; go('/login');
    }
    throw new ApiError(resp.status, json);
  }
  return opts.text ? text : json;
}
const get = (p) => api('GET', p);
const post = (p, b) => api('POST', p, b === undefined ? {} : b);
const put = (p, b) => api('PUT', p, b);
const del = (p, b) => api('DELETE', p, b);

// Field names as a marketer reads them.
function humanField(f) {
  if (!f) return '';
  return f.replace(/^filters\.?/, 'filter ').replace(/_/g, ' ').replace(/\./g, ' › ').trim();
}

// An error in words a marketer understands, shown where the work happened.
function explain(err) {
  if (!(err instanceof ApiError)) return String(err && err.message || err);
  switch (err.code) {
    case 'NETWORK': return err.message;
    case 'VALIDATION_ERROR': {
      if (!err.field) return err.message;
      const msg = err.message.startsWith(err.field + ': ') ? err.message.slice(err.field.length + 2) : err.message;
      return `Please check “${humanField(err.field)}”: ${msg}`;
    }
    case 'UNAUTHENTICATED': return 'Your session has ended. Please sign in again.';
    case 'FORBIDDEN': return 'Your role in this workspace does not allow this. Ask an owner or admin.';
    case 'NOT_FOUND': return 'This item no longer exists — it may have been deleted.';
    case 'CONFLICT': return err.message;
    case 'AUTOMATION_INVALID': return err.message;
    case 'RATE_LIMITED': return 'Too many requests just now. Wait a moment and try again.';
    case 'PAYLOAD_TOO_LARGE': return 'That is too large to send in one go.';
    default: return err.status >= 500 ? 'Something went wrong on the server. Try again; if it persists, tell your administrator.' : err.message;
  }
}
function errorBox(err) {
  const box = h('div', { class: 'error', role: 'alert' }, explain(err));
  if (err.errors && err.errors.length) box.append(h('ul', {}, err.errors.map((p) => h('li', {}, (p.node ? `Node ${p.node}: ` : p.edge ? `Edge ${p.edge}: ` : '') + p.message))));
  return box;
}
function notice(text) { return h('div', { class: 'notice', role: 'status' }, text); }

// Runs `work`; shows its error in `slot` (an element) instead of throwing.
async function attempt(slot, work) {
  if (slot) slot.replaceChildren();
  try { return await work(); } catch (e) { if (slot) slot.replaceChildren(errorBox(e)); else alert(explain(e)); return undefined; }
}

// A submit button that disables itself while its work runs.
function action(label, work, attrs = {}) {
  const b = h('button', Object.assign({ type: 'button' }, attrs), label);
  b.addEventListener('click', async () => { b.disabled = true; try { await work(b); } finally { b.disabled = false; } });
  return b;
}

// ---- Forms ------------------------------------------------------------------------------------

let usedIds = new Set();

// fields: [{name, label, type (text|email|password|number|select|textarea|checkbox|json), options, value, placeholder}]
function formFields(fields) {
  const inputs = {};
  const els = fields.map((f) => {
    let input;
    if (f.type === 'select') {
      input = h('select', { name: f.name }, (f.options || []).map((o) => {
        const [v, t] = Array.isArray(o) ? o : [o, o];
        return h('option', { value: v, selected: String(f.value ?? '') === String(v) ? true : null }, t);
      }));
    } else if (f.type === 'textarea' || f.type === 'json') {
      input = h('textarea', { name: f.name, placeholder: f.placeholder || '', rows: f.rows || 5 });
      input.value = f.type === 'json' && f.value !== undefined && typeof f.value !== 'string' ? JSON.stringify(f.value, null, 2) : (f.value ?? '');
    } else if (f.type === 'checkbox') {
      input = h('input', { type: 'checkbox', name: f.name, checked: !!f.value });
      inputs[f.name] = { el: input, f };
      return h('div', { class: 'field' }, h('label', { class: 'inline' }, input, f.label));
    } else {
      input = h('input', { name: f.name, type: f.type || 'text', placeholder: f.placeholder || '', value: f.value ?? '', step: f.type === 'number' ? 'any' : null, autocomplete: f.autocomplete || null });
    }
    inputs[f.name] = { el: input, f };
    return h('div', { class: 'field' }, h('label', { for: 'f-' + f.name }, f.label), input);
  });
  // Ids are unique on the page (two forms may both have a "rate_limit"): the first keeps f-<name>.
  for (const { el, f } of Object.values(inputs)) { let id = 'f-' + f.name; for (let i = 2; usedIds.has(id); i++) id = `f-${f.name}-${i}`; usedIds.add(id); el.id = id; }
  for (const lab of els.map((e) => e.querySelector('label[for]')).filter(Boolean)) { const name = lab.getAttribute('for').slice(2); if (inputs[name]) lab.setAttribute('for', inputs[name].el.id); }
  const values = () => {
    const out = {};
    for (const [name, { el, f }] of Object.entries(inputs)) {
      if (f.type === 'checkbox') out[name] = el.checked;
      else if (f.type === 'number') { if (el.value !== '') out[name] = Number(el.value); else if (f.nullable) out[name] = null; }
      else if (f.type === 'json') { if (el.value.trim()) { try { out[name] = JSON.parse(el.value); } catch (e) { throw new ApiError(400, { error: 'is not valid JSON: ' + e.message, code: 'VALIDATION_ERROR', field: name }); } } }
      else if (el.value !== '' || f.keepEmpty) out[name] = el.value;
      else if (f.nullable) out[name] = null;
    }
    return out;
  };
  return { els, values, inputs };
}

// ---- Routing and layout ------------------------------------------------------------------------

const routes = [];
function route(pattern, view, opts = {}) {
  const keys = [];
  const re = new RegExp('^' + pattern.replace(/:(\w+)/g, (_, k) => { keys.push(k); return '([^/]+)'; }) + '$');
  routes.push({ re, keys, view, opts });
}
function go(path) { if (location.hash !== '#' + path) location.hash = '#' + path; else render(); }
function currentPath() { return (location.hash || '#/customers').slice(1) || '/customers'; }
function query() { const p = currentPath(); const i = p.indexOf('?'); return new URLSearchParams(i < 0 ? '' : p.slice(i + 1)); }
function withQuery(base, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${base}?${s}` : base;
}

const NAV = [
  ['/customers', 'Customers'], ['/segments', 'Segments'], ['/automations', 'Automations'], ['/campaigns', 'Campaigns'],
  null, ['/leads', 'Leads'], ['/deals', 'Deals'], ['/reports', 'Reports'],
  null, ['/webhooks', 'Webhooks'], ['/keys', 'API keys'], ['/team', 'Team'], ['/settings', 'Settings'],
];

// Shown once at the top of the next view (what a save wants to say after re-drawing the page).
let flashed = [];
function flash(...nodes) { flashed = nodes; }

let renderSeq = 0;
let cleanup = [];
function onLeave(fn) { cleanup.push(fn); }
// True while the view that called it is still the one shown (a debounced handler firing after
// the user moved on must not touch the address bar or the page).
function liveGuard() { const mine = renderSeq; return () => mine === renderSeq; }

async function render() {
  const seq = ++renderSeq;
  for (const fn of cleanup.splice(0)) { try { fn(); } catch (e) { /* a view's timer */ } }
  usedIds = new Set();
  const path = currentPath().split('?')[0];
  const root = $('#root');
  const found = routes.map((r) => ({ r, m: path.match(r.re) })).find((x) => x.m);
  if (!found) { go('/customers'); return; }
  const params = {};
  found.r.keys.forEach((k, i) => { params[k] = decodeURIComponent(found.m[i + 1]); });
  if (found.r.opts.public) { mount(root, found.r.view(params)); return; }
  if (!session.token) { go('/login'); return; }
  if (!session.me) {
    try { session.me = await get('/v1/auth/me'); } catch (e) { if (!session.token) return; mount(root, h('div', { class: 'main' }, errorBox(e))); return; }
  }
  if (seq !== renderSeq) return;
  const main = h('main', { class: 'main' });
  const me = session.me.data || session.me;
  const tenant = me.tenant || {};
  const user = me.user || me;
  mount(root, h('div', { class: 'shell' },
    h('nav', { class: 'nav' },
      h('div', { class: 'brand' }, 'Cairn'),
      h('div', { class: 'ws' }, tenant.name || '', h('br'), user.email || ''),
      NAV.map((n) => n ? h('a', { href: '#' + n[0], class: path.startsWith(n[0]) ? 'on' : null }, n[1]) : h('div', { class: 'sep' })),
      h('div', { class: 'sep' }),
      h('a', { href: '#', onclick: async (e) => { e.preventDefault(); try { await post('/v1/auth/logout'); } catch (_) { /* signed out anyway */ } session.token = null; session.me = null; go('/login'); } }, 'Sign out')),
    main));
  const said = flashed; flashed = [];
  try {
    const out = await found.r.view(params, main);
    if (said.length && seq === renderSeq) main.prepend(...said);
    if (out instanceof Node && seq === renderSeq) main.append(out);
  } catch (e) {
    if (seq === renderSeq) main.append(errorBox(e));
  }
}
window.addEventListener('hashchange', render);
window.addEventListener('DOMContentLoaded', render);

// A paged table over a list endpoint. cols: [{title, value: row => node|text}]
function pagedTable(main, { path, params = {}, cols, onRow, perPage = 25, empty = 'Nothing here yet.' }) {
  const holder = h('div');
  let page = 1;
  const load = async () => {
    const url = withQuery(path, Object.assign({}, params, { page, per_page: perPage }));
    const res = await attempt(holder, () => get(url));
    if (!res) return;
    const rows = res.data || [];
    const pg = res.pagination || { page, total_pages: 1, total: rows.length };
    mount(holder,
      rows.length === 0 ? h('p', { class: 'muted' }, empty) : h('table', {},
        h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c.title)))),
        h('tbody', {}, rows.map((r) => h('tr', { class: onRow ? 'click' : null, onclick: onRow ? () => onRow(r) : null }, cols.map((c) => h('td', {}, c.value(r))))))),
      h('div', { class: 'pager' },
        h('button', { disabled: page <= 1 ? true : null, onclick: () => { page--; load(); } }, '‹ Previous'),
        h('span', { class: 'muted small' }, params.count === 'none' ? `Page ${pg.page}` : `Page ${pg.page} of ${Math.max(pg.total_pages, 1)} · ${fmtNum(pg.total)} in all`),
        h('button', { disabled: page >= pg.total_pages ? true : null, onclick: () => { page++; load(); } }, 'Next ›')));
  };
  holder.reload = (newParams) => { if (newParams) params = newParams; page = 1; return load(); };
  load();
  return holder;
}

// Polls `fn` every `ms` while the view is shown.
function every(ms, fn) {
  let stop = false;
  const loop = async () => { while (!stop) { await sleep(ms); if (stop) break; try { await fn(); } catch (e) { /* shown by fn */ } } };
  loop();
  onLeave(() => { stop = true; });
}

// ---- Sign in, registration, invitations --------------------------------------------------------

function authPage(title, fields, submitLabel, submit, footer) {
  const form = formFields(fields);
  const slot = h('div');
  const el = h('form', { class: 'auth', onsubmit: async (e) => {
    e.preventDefault();
    const btn = $('button[type=submit]', el); btn.disabled = true;
    await attempt(slot, async () => {
      const res = await submit(form.values());
      session.token = res.token; session.me = null; go('/customers');
    });
    btn.disabled = false;
  } },
  h('div', { class: 'card' }, h('h1', {}, title), form.els, slot, h('div', { style: { marginTop: '14px' } }, h('button', { type: 'submit', class: 'primary' }, submitLabel)), h('p', { class: 'small muted' }, footer)));
  return el;
}

route('/login', () => authPage('Sign in to Cairn', [
  { name: 'email', label: 'Email', type: 'email', autocomplete: 'username' },
  { name: 'password', label: 'Password', type: 'password', autocomplete: 'current-password' },
  { name: 'workspace', label: 'Workspace (optional)', placeholder: 'only if you belong to several' },
], 'Sign in', (v) => api('POST', '/v1/auth/login', v), h('span', {}, 'New here? ', h('a', { href: '#/register' }, 'Create a workspace'))), { public: true });

route('/register', () => authPage('Create your workspace', [
  { name: 'name', label: 'Your name', autocomplete: 'name' },
  { name: 'email', label: 'Work email', type: 'email', autocomplete: 'username' },
  { name: 'password', label: 'Password (at least 8 characters)', type: 'password', autocomplete: 'new-password' },
  { name: 'workspace', label: 'Workspace name', placeholder: 'Acme' },
], 'Create workspace', (v) => api('POST', '/v1/auth/register', v), h('span', {}, 'Already have an account? ', h('a', { href: '#/login' }, 'Sign in'))), { public: true });

route('/invite/:token', (p) => authPage('Join the workspace', [
  { name: 'name', label: 'Your name' },
  { name: 'password', label: 'Choose a password', type: 'password', autocomplete: 'new-password' },
], 'Join', (v) => api('POST', '/v1/auth/accept-invitation', Object.assign({ token: p.token }, v)), ''), { public: true });

// ---- Customers ---------------------------------------------------------------------------------

const RFM_SEGMENTS = ['Champions', 'Loyal Customers', 'At Risk', 'Lost'];

route('/customers', async (_, main) => {
  const q = query();
  const segments = (await get('/v1/segments?per_page=100')).data || [];
  const state = { search: q.get('search') || '', segment_id: q.get('segment_id') || '', rfm_segment: q.get('rfm_segment') || '', sort: q.get('sort') || '-created_at' };
  if (q.get('r') && q.get('f')) return rfmCell(main, Number(q.get('r')), Number(q.get('f')));
  const table = pagedTable(main, {
    path: '/v1/customers', params: Object.assign({ count: state.search ? 'none' : undefined }, state),
    cols: [
      { title: 'Name', value: (c) => c.name || h('span', { class: 'muted' }, '(no name)') },
      { title: 'Email', value: (c) => c.email || '—' },
      { title: 'RFM', value: (c) => c.rfm_segment ? pill(c.rfm_segment) : h('span', { class: 'muted' }, '—') },
      { title: 'Net spend', value: (c) => fmtMoney(c.clv_total) },
      { title: 'Orders', value: (c) => fmtNum(c.clv_order_count) },
      { title: 'Last seen', value: (c) => fmtTime(c.last_seen_at) },
    ],
    onRow: (c) => go('/customers/' + c.id),
    empty: 'No customers match. Events sent with an API key or the snippet create them.',
  });
  // While searching, matches are not counted (a count would scan every profile again on each
  // pause in typing); the pager then only knows whether another page follows.
  const alive = liveGuard();
  const refresh = () => {
    if (!alive()) return;
    history.replaceState(null, '', '#' + withQuery('/customers', state));
    table.reload(Object.assign({ count: state.search ? 'none' : undefined }, state));
  };
  // The list is searched on the server, after the typing pauses (no request per keystroke).
  const search = h('input', { type: 'search', placeholder: 'Search name or email…', value: state.search, 'aria-label': 'Search customers', oninput: debounce((e) => { state.search = e.target.value.trim(); refresh(); }, 300) });
  const seg = h('select', { 'aria-label': 'Segment', onchange: (e) => { state.segment_id = e.target.value; refresh(); } },
    h('option', { value: '' }, 'All customers'), segments.map((s) => h('option', { value: s.id, selected: String(s.id) === state.segment_id ? true : null }, s.name)));
  const rfm = h('select', { 'aria-label': 'RFM segment', onchange: (e) => { state.rfm_segment = e.target.value; refresh(); } },
    h('option', { value: '' }, 'Any RFM segment'), RFM_SEGMENTS.map((s) => h('option', { value: s, selected: s === state.rfm_segment ? true : null }, s)));
  const sort = h('select', { 'aria-label': 'Sort', onchange: (e) => { state.sort = e.target.value; refresh(); } },
    [['-created_at', 'Newest'], ['-last_seen_at', 'Recently seen'], ['-clv_total', 'Highest spend'], ['-rfm_score', 'Best RFM'], ['name', 'Name A–Z']].map(([v, t]) => h('option', { value: v, selected: v === state.sort ? true : null }, t)));
  mount(main, h('h1', {}, 'Customers'), h('div', { class: 'row', style: { marginBottom: '12px' } }, search, seg, rfm, sort), table);
});

// One cell of the R×F grid: its customers, counted and listed now by the segment engine.
async function rfmCell(main, r, f) {
  const res = await post('/v1/segments/preview', { filters: { all: [{ field: 'rfm_recency', op: 'eq', value: r }, { field: 'rfm_frequency', op: 'eq', value: f }] } });
  const d = res.data || res;
  mount(main, h('h1', {}, `Customers with R = ${r}, F = ${f}`),
    h('p', { class: 'muted' }, `${fmtNum(d.count)} customers (evaluated in ${d.took_ms} ms); the first ${(d.customers || []).length} by id:`),
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Email'), h('th', {}, 'RFM'))),
      h('tbody', {}, (d.customers || []).map((c) => h('tr', { class: 'click', onclick: () => go('/customers/' + c.id) }, h('td', {}, c.name || '—'), h('td', {}, c.email || '—'), h('td', {}, c.rfm_segment || '—'))))),
    h('p', {}, h('a', { href: '#/segments/rfm' }, '‹ Back to the grid')));
}

route('/customers/:id', async (p, main) => {
  const id = p.id;
  const [c, messages, explainRes, events, runs] = await Promise.all([
    get(`/v1/customers/${id}`),
    get(`/v1/customers/${id}/messages?per_page=20`).catch(() => ({ data: [] })),
    get(`/v1/customers/${id}/scores/explain`).catch(() => null),
    get(`/v1/customers/${id}/events?per_page=50`).catch(() => ({ data: [] })),
    get(`/v1/customers/${id}/automation-runs?per_page=20`).catch(() => ({ data: [] })),
  ]);
  const cu = c.data || c;
  const ex = explainRes && (explainRes.data || explainRes);
  const traits = cu.traits || {};
  const consent = (ch) => traits[ch + '_consent'] === false ? pill('opted out', 'bad') : traits[ch + '_consent'] === true ? pill('consented', 'ok') : pill('not stated');
  const slot = h('div');
  mount(main,
    h('div', { class: 'row' }, h('h1', { class: 'grow' }, cu.name || cu.email || `Customer ${cu.id}`), h('a', { href: '#/customers' }, '‹ All customers')),
    slot,
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', {}, 'Profile'), h('div', { class: 'kv' },
        h('div', {}, 'Email'), h('div', {}, cu.email || '—'), h('div', {}, 'Phone'), h('div', {}, cu.phone || '—'),
        h('div', {}, 'User id'), h('div', {}, cu.user_id || '—'), h('div', {}, 'Location'), h('div', {}, [cu.city, cu.country].filter(Boolean).join(', ') || '—'),
        h('div', {}, 'First seen'), h('div', {}, fmtTime(cu.first_seen_at || cu.created_at)), h('div', {}, 'Last seen'), h('div', {}, fmtTime(cu.last_seen_at)),
        h('div', {}, 'Email consent'), h('div', {}, consent('email')), h('div', {}, 'SMS consent'), h('div', {}, consent('sms'))),
      h('h3', {}, 'Traits'), Object.keys(traits).length ? h('pre', {}, JSON.stringify(traits, null, 2)) : h('p', { class: 'muted' }, 'No traits.')),
      h('div', { class: 'card' }, h('h2', {}, 'Value'), h('div', { class: 'grid3' },
        stat('RFM cell', cu.rfm_recency ? `R${cu.rfm_recency} F${cu.rfm_frequency} M${cu.rfm_monetary}` : '—'),
        stat('RFM segment', cu.rfm_segment || '—'), stat('RFM score', cu.rfm_score ?? '—'),
        stat('Net spend', fmtMoney(cu.clv_total)), stat('Orders', fmtNum(cu.clv_order_count)), stat('Average order', fmtMoney(cu.clv_average_order)),
        stat('Predicted 12-month value', fmtMoney(cu.clv_predicted)), stat('Probability active', cu.p_alive === null || cu.p_alive === undefined ? '—' : fmtNum(cu.p_alive * 100, 1) + ' %'), stat('Method', (ex && (ex.method || (ex.clv && ex.clv.method))) || '—')),
      h('details', {}, h('summary', {}, 'How these were worked out'), ex ? h('pre', {}, JSON.stringify(ex, null, 2)) : h('p', { class: 'muted' }, 'Not scored yet.')))),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', {}, 'Segments'), (cu.segments || []).length ? h('ul', {}, cu.segments.map((s) => h('li', {}, h('a', { href: '#/segments/' + s.segment_id }, s.segment_name), ' ', h('span', { class: 'muted small' }, 'since ' + fmtTime(s.since))))) : h('p', { class: 'muted' }, 'In no segment.'),
        h('h2', {}, 'Automation runs'), (runs.data || []).length ? h('table', {}, h('tbody', {}, runs.data.map((r) => h('tr', { class: 'click', onclick: () => go(`/automations/${r.automation_id}/runs/${r.id}`) }, h('td', {}, r.automation_name || `Automation ${r.automation_id}`), h('td', {}, statusPill(r.status)), h('td', {}, fmtTime(r.started_at || r.created_at)))))) : h('p', { class: 'muted' }, 'None.'),
        h('h2', {}, 'Campaigns received'), campaignsReceived(messages.data || [])),
      h('div', { class: 'card' }, h('h2', {}, 'Timeline'), (events.data || []).length ? h('ul', { class: 'timeline' }, events.data.map((e) => h('li', {}, h('strong', {}, e.event || e.type), ' ', h('span', { class: 'muted small' }, fmtTime(e.timestamp || e.received_at)), Object.keys(e.properties || {}).length ? h('pre', {}, JSON.stringify(e.properties)) : null))) : h('p', { class: 'muted' }, 'No events yet.'))));
});

function stat(label, value) { return h('div', {}, h('div', { class: 'stat' }, value), h('div', { class: 'stat-label' }, label)); }

// The messages the customer was sent, and what became of each.
function campaignsReceived(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'No messages sent yet.');
  return h('table', { id: 'messages' }, h('tbody', {}, list.map((m) => h('tr', {},
    h('td', {}, h('a', { href: '#/campaigns/' + m.campaign_id }, m.campaign_name)), h('td', {}, m.campaign_type),
    h('td', {}, statusPill(m.status)), h('td', { class: 'small muted' }, [m.opened_at ? 'opened' : null, m.clicked_at ? 'clicked' : null, m.unsubscribed_at ? 'unsubscribed' : null].filter(Boolean).join(', ')),
    h('td', { class: 'small' }, fmtTime(m.sent_at || m.created_at))))));
}

// ---- Segments ----------------------------------------------------------------------------------

route('/segments', async (_, main) => {
  const res = await get('/v1/segments?per_page=100');
  const rows = res.data || [];
  mount(main,
    h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Segments'), h('a', { href: '#/segments/rfm' }, 'R×F grid'), h('button', { class: 'primary', onclick: () => go('/segments/new') }, 'New segment')),
    h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Type', 'Members', 'Evaluation'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((s) => h('tr', { class: 'click', onclick: () => go('/segments/' + s.id) },
        h('td', {}, s.color ? h('span', { style: { color: s.color } }, '● ') : null, s.name, s.builtin ? h('span', { class: 'muted small' }, ' built-in') : null),
        h('td', {}, s.type), h('td', {}, fmtNum(s.member_count)), h('td', {}, s.evaluation ? evaluationView(s.evaluation) : '—'))))));
});

function evaluationView(ev) {
  if (!ev) return h('span', { class: 'muted' }, '—');
  if (ev.status === 'done') return h('span', {}, statusPill('done'), ' ', h('span', { class: 'muted small' }, `${fmtNum(ev.members)} members, ${fmtNum(ev.took_ms)} ms`));
  if (ev.status === 'failed') return h('span', {}, statusPill('failed'), ' ', ev.error || '');
  const pct = ev.members ? Math.min(100, Math.round(100 * (ev.written || 0) / Math.max(ev.changes || ev.members, 1))) : 0;
  return h('span', { class: 'row' }, statusPill(ev.status), h('span', { class: 'small' }, ev.phase || ''), h('div', { class: 'progress', title: `${pct}%` }, h('div', { style: { width: pct + '%' } })));
}

route('/segments/rfm', async (_, main) => {
  const res = await get('/v1/analytics/rfm');
  const d = res.data || res;
  const cellsIn = d.cells || [];
  const count = (r, f) => { const c = cellsIn.find((g) => g.recency === r && g.frequency === f); return c ? c.customers : 0; };
  const max = Math.max(1, ...cellsIn.map((g) => g.customers || 0));
  const cells = [];
  for (let r = 5; r >= 1; r--) {
    cells.push(h('div', { class: 'axis' }, 'R' + r));
    for (let f = 1; f <= 5; f++) {
      const n = count(r, f);
      const a = 0.08 + 0.85 * (n / max);
      cells.push(h('div', { class: 'cell', title: `R${r} F${f}: ${n} customers`, style: { background: `rgba(47,111,222,${a.toFixed(2)})`, color: a > 0.55 ? '#fff' : '#102a43' }, onclick: () => go(`/customers?r=${r}&f=${f}`) }, fmtNum(n)));
    }
  }
  cells.push(h('div'));
  for (let f = 1; f <= 5; f++) cells.push(h('div', { class: 'axis' }, 'F' + f));
  const segs = d.segments || [];
  mount(main, h('h1', {}, 'Recency × frequency'),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('p', { class: 'muted small' }, 'Rows: recency score (5 = bought most recently). Columns: frequency score. Click a cell for its customers.'), h('div', { class: 'heat' }, cells)),
      h('div', { class: 'card' }, h('h2', {}, 'Named segments'), h('table', {}, h('tbody', {},
        segs.map((s) => h('tr', { class: 'click', onclick: () => go(withQuery('/customers', { rfm_segment: s.segment })) }, h('td', {}, s.segment), h('td', {}, fmtNum(s.customers)))))),
      h('p', { class: 'small muted' }, `${fmtNum(d.scored)} customers scored; boundaries from ${fmtTime(d.boundaries_at)}.`),
      h('p', {}, action('Recompute scores now', async () => { await attempt(null, async () => { const j = await post('/v1/scoring/recompute'); go('/scoring/jobs/' + (j.data || j).id); }); })))));
});

route('/scoring/jobs/:id', async (p, main) => {
  const box = h('div', { class: 'card' });
  let finished = false;
  const load = async () => {
    if (finished) return;
    const j = await get('/v1/scoring/jobs/' + p.id); const d = j.data || j;
    const pct = d.status === 'done' ? 100 : d.customers ? Math.round(100 * d.scored / d.customers) : 0;
    finished = d.status === 'done' || d.status === 'failed';
    mount(box, h('div', { class: 'row' }, statusPill(d.status), h('span', {}, d.phase || ''), h('div', { class: 'progress grow' }, h('div', { style: { width: pct + '%' } })), `${pct}%`),
      h('div', { class: 'kv', style: { marginTop: '10px' } }, h('div', {}, 'Customers scored'), h('div', {}, `${fmtNum(d.scored)} of ${fmtNum(d.customers)}`), h('div', {}, 'Scores that changed'), h('div', {}, fmtNum(d.changed)),
        h('div', {}, 'Model'), h('div', {}, d.method || '—'), h('div', {}, 'Took'), h('div', {}, d.took_ms === null || d.took_ms === undefined ? '—' : `${fmtNum(d.took_ms / 1000, 1)} s`)),
      d.error ? h('div', { class: 'error' }, 'The recompute failed: ', d.error) : null);
  };
  mount(main, h('h1', {}, 'Score recompute'), box, h('a', { href: '#/segments/rfm' }, '‹ R×F grid'));
  await load();
  every(1000, load);
});

// --- The filter builder: the whole segment language, as nested groups of conditions. ---

const FIELD_KINDS = {
  email: 'text', name: 'text', phone: 'text', city: 'text', country: 'text', user_id: 'text',
  created_at: 'time', first_seen_at: 'time', last_seen_at: 'time', last_purchase_at: 'time',
  rfm_recency: 'number', rfm_frequency: 'number', rfm_monetary: 'number', rfm_score: 'number', rfm_segment: 'text',
  clv_total: 'number', clv_order_count: 'number', clv_average_order: 'number', clv_predicted: 'number', p_alive: 'number', last_purchase_days: 'number',
};
const OPS = ['eq', 'neq', 'in', 'contains', 'starts_with', 'exists', 'gt', 'gte', 'lt', 'lte', 'between'];
const OP_WORDS = { eq: 'is', neq: 'is not', in: 'is one of', contains: 'contains', starts_with: 'starts with', exists: 'exists', gt: '>', gte: '≥', lt: '<', lte: '≤', between: 'between' };

function parseValue(text) {
  const t = text.trim();
  if (t === '') return '';
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t === 'true' || t === 'false') return t === 'true';
  return t;
}
function valueText(v) { return Array.isArray(v) ? v.join(', ') : v === undefined || v === null ? '' : String(v); }

// Turns seed 003's flat shorthand into the general form's `all`, so the builder can show it.
function toGeneral(filters) {
  if (!filters || typeof filters !== 'object') return { all: [] };
  if (filters.all || filters.any || filters.not) return filters;
  const known = ['field', 'event', 'not_performed', 'segment', 'consent'];
  if (known.some((k) => k in filters)) return { all: [filters] };
  return null; // shorthand: edited as JSON
}

function filterBuilder(initial, onChange, segments) {
  let model = toGeneral(initial);
  const el = h('div');
  const jsonArea = h('textarea', { rows: 8, 'aria-label': 'Filter as JSON' });
  let asJson = model === null;
  const changed = () => onChange(current());
  const current = () => {
    if (asJson) { try { return JSON.parse(jsonArea.value || '{}'); } catch (e) { return undefined; } }
    return model;
  };
  jsonArea.addEventListener('input', debounce(changed, 400));

  const conditionEditor = (c, parent, idx) => {
    const remove = h('button', { type: 'button', title: 'Remove', onclick: () => { parent.splice(idx, 1); draw(); changed(); } }, '×');
    const kindOf = (c) => c.all || c.any ? 'group' : c.not ? 'not' : 'field' in c ? 'field' : 'event' in c ? 'event' : 'not_performed' in c ? 'not_performed' : 'segment' in c ? 'segment' : 'consent' in c ? 'consent' : 'field';
    const kind = kindOf(c);
    if (kind === 'group') return h('div', { class: 'cond' }, groupEditor(c), remove);
    if (kind === 'not') return h('div', { class: 'cond' }, h('strong', {}, 'NOT '), conditionEditor(c.not, { splice: () => { parent.splice(idx, 1); } }, 0), remove);
    const bind = (obj, key, parse = (x) => x) => (e) => { obj[key] = parse(e.target.value); changed(); };
    let body;
    if (kind === 'field') {
      const known = Object.keys(FIELD_KINDS);
      const fieldSel = h('select', { 'aria-label': 'Field', onchange: (e) => { if (e.target.value === 'traits.') { c.field = 'traits.'; } else c.field = e.target.value; draw(); changed(); } },
        known.map((f) => h('option', { value: f, selected: c.field === f ? true : null }, f.replace(/_/g, ' '))),
        h('option', { value: 'traits.', selected: c.field && c.field.startsWith('traits.') ? true : null }, 'trait…'));
      const traitName = c.field && c.field.startsWith('traits.') ? h('input', { placeholder: 'trait name', value: c.field.slice(7), 'aria-label': 'Trait', oninput: (e) => { c.field = 'traits.' + e.target.value.trim(); changed(); } }) : null;
      const opSel = h('select', { 'aria-label': 'Operator', onchange: (e) => { c.op = e.target.value; if (c.op === 'exists') c.value = true; draw(); changed(); } }, OPS.map((o) => h('option', { value: o, selected: c.op === o ? true : null }, OP_WORDS[o])));
      let value;
      if (c.op === 'exists') value = h('select', { 'aria-label': 'Value', onchange: (e) => { c.value = e.target.value === 'true'; changed(); } }, h('option', { value: 'true', selected: c.value !== false ? true : null }, 'yes'), h('option', { value: 'false', selected: c.value === false ? true : null }, 'no'));
      else if (c.op === 'in' || c.op === 'between') value = h('input', { placeholder: c.op === 'between' ? 'low, high' : 'a, b, c', value: valueText(c.value), 'aria-label': 'Value', oninput: (e) => { c.value = e.target.value.split(',').map(parseValue).filter((x) => x !== ''); changed(); } });
      else value = h('input', { placeholder: 'value', value: valueText(c.value), 'aria-label': 'Value', oninput: (e) => { c.value = FIELD_KINDS[c.field] === 'text' || FIELD_KINDS[c.field] === 'time' ? e.target.value : parseValue(e.target.value); changed(); } });
      body = h('div', { class: 'row' }, fieldSel, traitName, opSel, value);
    } else if (kind === 'event' || kind === 'not_performed') {
      const name = h('input', { placeholder: 'event name', value: c[kind] || '', 'aria-label': 'Event', oninput: bind(c, kind) });
      // The window: ever, the last N days, or between two dates.
      const windowEditor = () => {
        const mode = Array.isArray(c.between) ? 'between' : c.within_days !== undefined ? 'days' : 'ever';
        const sel = h('select', { 'aria-label': 'Window', onchange: (e) => {
          delete c.within_days; delete c.between;
          if (e.target.value === 'days') c.within_days = 30;
          if (e.target.value === 'between') c.between = ['', ''];
          draw(); changed();
        } }, [['ever', 'ever'], ['days', 'in the last … days'], ['between', 'between dates']].map(([v, t]) => h('option', { value: v, selected: v === mode ? true : null }, t)));
        if (mode === 'days') return [sel, h('input', { type: 'number', min: 1, style: { width: '80px' }, value: c.within_days, 'aria-label': 'Within days', oninput: (e) => { c.within_days = Number(e.target.value || 1); changed(); } })];
        if (mode === 'between') return [sel, [0, 1].map((k) => h('input', { type: 'date', value: c.between[k] || '', 'aria-label': k ? 'Until' : 'From', oninput: (e) => { c.between[k] = e.target.value; changed(); } }))];
        return [sel];
      };
      let how;
      if (kind === 'event') {
        // Counted (at least / at most / exactly N times in a window) or timed (first / last time).
        const timing = c.first ? 'first' : c.last ? 'last' : 'count';
        const timingSel = h('select', { 'aria-label': 'Timing', onchange: (e) => {
          delete c.first; delete c.last; delete c.count; delete c.within_days; delete c.between;
          if (e.target.value !== 'count') c[e.target.value] = { within_days: 7 };
          draw(); changed();
        } }, [['count', 'how often'], ['first', 'the first time'], ['last', 'the last time']].map(([v, t]) => h('option', { value: v, selected: v === timing ? true : null }, t)));
        if (timing === 'count') {
          const mode = c.count ? Object.keys(c.count)[0] : 'at_least';
          const n = c.count ? c.count[mode] : 1;
          const modeSel = h('select', { 'aria-label': 'How often', onchange: (e) => { c.count = { [e.target.value]: Number(nIn.value || 1) }; changed(); } }, ['at_least', 'at_most', 'exactly'].map((m) => h('option', { value: m, selected: m === mode ? true : null }, m.replace('_', ' '))));
          const nIn = h('input', { type: 'number', min: 0, style: { width: '70px' }, value: n, 'aria-label': 'Times', oninput: (e) => { c.count = { [modeSel.value]: Number(e.target.value || 0) }; changed(); } });
          how = [timingSel, modeSel, nIn, 'times,', windowEditor()];
        } else {
          const t = c[timing];
          const cmp = 'before' in t ? 'before' : 'after' in t ? 'after' : 'within_days';
          const cmpSel = h('select', { 'aria-label': 'When', onchange: (e) => { c[timing] = { [e.target.value]: e.target.value === 'within_days' ? 7 : '' }; draw(); changed(); } },
            [['before', 'was before'], ['after', 'was after'], ['within_days', 'was in the last … days']].map(([v, x]) => h('option', { value: v, selected: v === cmp ? true : null }, x)));
          const val = cmp === 'within_days'
            ? h('input', { type: 'number', min: 1, style: { width: '80px' }, value: t.within_days, 'aria-label': 'Days', oninput: (e) => { c[timing] = { within_days: Number(e.target.value || 1) }; changed(); } })
            : h('input', { type: 'date', value: t[cmp] || '', 'aria-label': 'Date', oninput: (e) => { c[timing] = { [cmp]: e.target.value }; changed(); } });
          how = [timingSel, cmpSel, val];
        }
      } else {
        how = windowEditor();
      }
      const where = c.where || [];
      const whereRows = where.map((w, i) => h('div', { class: 'row' }, 'where', h('input', { placeholder: 'property', value: w.property || '', 'aria-label': 'Property', oninput: bind(w, 'property') }),
        h('select', { 'aria-label': 'Property operator', onchange: (e) => { w.op = e.target.value; changed(); } }, OPS.map((o) => h('option', { value: o, selected: w.op === o ? true : null }, OP_WORDS[o]))),
        h('input', { placeholder: 'value', value: valueText(w.value), 'aria-label': 'Property value', oninput: (e) => { w.value = w.op === 'in' || w.op === 'between' ? e.target.value.split(',').map(parseValue) : parseValue(e.target.value); changed(); } }),
        h('button', { type: 'button', onclick: () => { where.splice(i, 1); if (!where.length) delete c.where; draw(); changed(); } }, '×')));
      body = h('div', {}, h('div', { class: 'row' }, kind === 'event' ? 'performed' : 'has not performed', name, how),
        whereRows, h('button', { type: 'button', class: 'small', onclick: () => { c.where = c.where || []; c.where.push({ property: '', op: 'eq', value: '' }); draw(); } }, '+ property condition'));
    } else if (kind === 'segment') {
      body = h('div', { class: 'row' }, 'member of', h('select', { 'aria-label': 'Segment', onchange: (e) => { c.segment = Number(e.target.value); changed(); } }, segments.map((s) => h('option', { value: s.id, selected: c.segment === s.id ? true : null }, s.name))));
    } else {
      body = h('div', { class: 'row' }, 'has consented to', h('select', { 'aria-label': 'Channel', onchange: (e) => { c.consent = e.target.value; changed(); } }, ['email', 'sms'].map((x) => h('option', { value: x, selected: c.consent === x ? true : null }, x))));
    }
    return h('div', { class: 'cond row top' }, h('div', { class: 'grow' }, body), remove);
  };

  const groupEditor = (g) => {
    const mode = g.any ? 'any' : 'all';
    const list = g[mode];
    const modeSel = h('select', { 'aria-label': 'Match', onchange: (e) => { const l = g[mode]; delete g[mode]; g[e.target.value] = l; draw(); changed(); } },
      h('option', { value: 'all', selected: mode === 'all' ? true : null }, 'all of'), h('option', { value: 'any', selected: mode === 'any' ? true : null }, 'any of'));
    const add = (c) => () => { list.push(c()); draw(); changed(); };
    return h('div', {}, h('div', { class: 'row' }, 'Customers matching', modeSel, 'these conditions:'),
      list.map((c, i) => conditionEditor(c, list, i)),
      h('div', { class: 'row small' }, 'Add:',
        h('button', { type: 'button', onclick: add(() => ({ field: 'clv_total', op: 'gte', value: 0 })) }, 'profile field'),
        h('button', { type: 'button', onclick: add(() => ({ event: 'purchase', within_days: 30 })) }, 'did event'),
        h('button', { type: 'button', onclick: add(() => ({ not_performed: 'login', within_days: 14 })) }, 'did not do event'),
        h('button', { type: 'button', onclick: add(() => ({ segment: segments[0] && segments[0].id })) }, 'in segment'),
        h('button', { type: 'button', onclick: add(() => ({ consent: 'email' })) }, 'consent'),
        h('button', { type: 'button', onclick: add(() => ({ any: [] })) }, 'group'),
        h('button', { type: 'button', onclick: add(() => ({ not: { field: 'country', op: 'eq', value: '' } })) }, 'NOT')));
  };

  const draw = () => {
    const toggle = h('label', { class: 'inline small' }, h('input', { type: 'checkbox', checked: asJson, onchange: (e) => {
      if (e.target.checked) { jsonArea.value = JSON.stringify(model || {}, null, 2); asJson = true; } else {
        const parsed = toGeneral(current()); if (!parsed) { e.target.checked = true; alert('This filter uses the shorthand form; edit it as JSON.'); return; }
        model = parsed; asJson = false;
      }
      draw();
    } }), 'Edit as JSON');
    mount(el, toggle, asJson ? jsonArea : groupEditor(model));
  };
  if (asJson) jsonArea.value = JSON.stringify(initial || {}, null, 2);
  draw();
  el.value = current;
  return el;
}

async function segmentEditor(main, seg) {
  const segments = ((await get('/v1/segments?per_page=100')).data || []).filter((s) => !seg || s.id !== seg.id);
  const isNew = !seg;
  seg = seg || { name: '', description: '', color: '#2f6fde', type: 'dynamic', filters: { all: [{ field: 'clv_total', op: 'gte', value: 100 }] } };
  const form = formFields([
    { name: 'name', label: 'Name', value: seg.name },
    { name: 'description', label: 'Description', value: seg.description || '' },
    { name: 'color', label: 'Colour', value: seg.color || '', placeholder: '#2f6fde' },
  ].concat(isNew ? [{ name: 'type', label: 'Type', type: 'select', options: [['dynamic', 'Dynamic (a filter keeps it current)'], ['static', 'Static (members added by hand or CSV)']], value: seg.type }] : []));
  const countBox = h('div', { class: 'card', 'aria-live': 'polite' }, h('span', { class: 'muted' }, 'Live count appears here.'));
  let seq = 0;
  const preview = debounce(async (filters) => {
    const mine = ++seq;
    if (filters === undefined) { mount(countBox, h('span', { class: 'error' }, 'The JSON is not valid yet.')); return; }
    mount(countBox, h('span', { class: 'muted' }, 'Counting…'));
    try {
      const r = await post('/v1/segments/preview', { filters }); const d = r.data || r;
      if (mine !== seq) return;
      mount(countBox, h('div', { class: 'stat', id: 'preview-count' }, fmtNum(d.count)), h('div', { class: 'stat-label' }, `customers match now (counted in ${d.took_ms} ms)`),
        (d.customers || []).length ? h('div', { class: 'small muted' }, 'For example: ', d.customers.slice(0, 5).map((c) => c.email || c.name || '#' + c.id).join(', ')) : null);
    } catch (e) { if (mine === seq) mount(countBox, errorBox(e)); }
  }, 500);
  const builder = seg.type === 'static' && !isNew ? null : filterBuilder(seg.filters, preview, segments);
  const slot = h('div');
  const save = action(isNew ? 'Create segment' : 'Save segment', () => attempt(slot, async () => {
    const body = form.values();
    if (builder && body.type !== 'static') body.filters = builder.value();
    if (body.type === 'static') delete body.filters;
    const r = isNew ? await post('/v1/segments', body) : await put('/v1/segments/' + seg.id, body);
    go('/segments/' + (r.data || r).id);
  }), { class: 'primary' });
  mount(main, h('h1', {}, isNew ? 'New segment' : 'Edit ' + seg.name),
    h('div', { class: 'grid2' }, h('div', { class: 'card' }, form.els), countBox),
    builder ? h('div', { class: 'card' }, h('h2', {}, 'Who belongs'), builder) : null, slot, save);
  if (builder) preview(builder.value());
}

route('/segments/new', (_, main) => segmentEditor(main, null));
route('/segments/:id/edit', async (p, main) => { const s = await get('/v1/segments/' + p.id); return segmentEditor(main, s.data || s); });

route('/segments/:id', async (p, main) => {
  const s = (await get('/v1/segments/' + p.id)); const seg = s.data || s;
  const evalBox = h('span', {}, evaluationView(seg.evaluation));
  const slot = h('div');
  const members = pagedTable(main, { path: `/v1/segments/${seg.id}/customers`, cols: [
    { title: 'Name', value: (c) => c.name || '—' }, { title: 'Email', value: (c) => c.email || '—' }, { title: 'Member since', value: (c) => fmtTime(c.member_since) }],
  onRow: (c) => go('/customers/' + c.id), empty: 'No members yet.' });
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, seg.name), seg.builtin ? null : h('button', { onclick: () => go(`/segments/${seg.id}/edit`) }, 'Edit'),
    seg.builtin ? null : action('Delete', async () => { if (!confirm(`Delete the segment “${seg.name}”?`)) return; await attempt(slot, async () => { await del('/v1/segments/' + seg.id); go('/segments'); }); }, { class: 'danger' })),
  slot,
  h('div', { class: 'card' }, h('div', { class: 'row' }, h('strong', {}, fmtNum(seg.member_count)), 'members ·', seg.type, seg.builtin ? '(built-in)' : '', '· evaluation:', evalBox),
    seg.description ? h('p', {}, seg.description) : null, seg.filters ? h('details', {}, h('summary', {}, 'Filter'), h('pre', {}, JSON.stringify(seg.filters, null, 2))) : null,
    seg.type === 'static' ? staticImport(seg, slot) : null),
  h('h2', {}, 'Members'), members);
  if (seg.evaluation && seg.evaluation.status !== 'done' && seg.evaluation.status !== 'failed') {
    every(1000, async () => { const r = await get('/v1/segments/' + seg.id); const now = (r.data || r).evaluation; mount(evalBox, evaluationView(now)); if (now && (now.status === 'done' || now.status === 'failed')) { members.reload(); } });
  }
});

function staticImport(seg, slot) {
  const file = h('input', { type: 'file', accept: '.csv,text/csv', 'aria-label': 'CSV file' });
  return h('div', { class: 'row' }, 'Import members from CSV (a customer_id or email column):', file, action('Import', () => attempt(slot, async () => {
    if (!file.files[0]) throw new Error('Choose a CSV file first.');
    const text = await file.files[0].text();
    const r = await api('POST', `/v1/segments/${seg.id}/members/import`, text, { raw: true, contentType: 'text/csv' });
    const d = r.data || r; slot.replaceChildren(notice(`${d.rows} rows read: ${d.added} added, ${d.already_members} already members, ${(d.not_found_lines || []).length} not found.`));
  })));
}

// ---- Automations -------------------------------------------------------------------------------

const TRIGGERS = [['customer_created', 'A customer is created'], ['event', 'A customer does an event'], ['segment_entered', 'A customer enters a segment'],
  ['segment_exited', 'A customer leaves a segment'], ['rfm_changed', 'RFM scores change'], ['schedule', 'On a schedule'], ['date_property', 'A date trait comes round'],
  ['manual', 'Enrolled by hand'], ['webhook', 'An inbound webhook']];

route('/automations', async (_, main) => {
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Automations'), h('button', { class: 'primary', onclick: () => go('/automations/new') }, 'New automation')),
    pagedTable(main, { path: '/v1/automations', cols: [
      { title: 'Name', value: (a) => a.name }, { title: 'Trigger', value: (a) => (TRIGGERS.find((t) => t[0] === a.trigger_type) || [0, a.trigger_type])[1] },
      { title: 'Status', value: (a) => statusPill(a.is_active ? 'active' : 'draft') }, { title: 'Version', value: (a) => a.version },
      { title: 'Runs', value: (a) => Object.entries(a.runs || {}).map(([k, v]) => `${k} ${v}`).join(' · ') || '—' }],
    onRow: (a) => go('/automations/' + a.id), empty: 'No automations yet. Create one to welcome new customers.' }));
});

function triggerConfigFields(type, cfg, segments) {
  const segOpts = segments.map((s) => [s.id, s.name]);
  switch (type) {
    case 'event': return [{ name: 'event', label: 'Event name', value: cfg.event || '' }, { name: 'where', label: 'Property conditions (JSON, optional)', type: 'json', value: cfg.where, rows: 3 }];
    case 'segment_entered': case 'segment_exited': return [{ name: 'segment_id', label: 'Segment', type: 'select', options: segOpts, value: cfg.segment_id }];
    case 'rfm_changed': return [{ name: 'to_segment', label: 'Only moves into (optional)', type: 'select', options: [['', 'any change']].concat(RFM_SEGMENTS.map((s) => [s, s])), value: cfg.to_segment || '' }];
    case 'schedule': return [{ name: 'cron', label: 'Cron expression', value: cfg.cron || '0 9 * * mon', placeholder: '0 9 * * mon' }, { name: 'timezone', label: 'Time zone', value: cfg.timezone || 'UTC' }, { name: 'segment_id', label: 'Segment to enroll', type: 'select', options: segOpts, value: cfg.segment_id }];
    case 'date_property': return [{ name: 'trait', label: 'Date trait', value: cfg.trait || '', placeholder: 'renewal_date' }, { name: 'offset_days', label: 'Days after (negative: before)', type: 'number', value: cfg.offset_days ?? -7 }];
    default: return [];
  }
}

function automationSettings(a, segments, onSaved) {
  const isNew = !a;
  a = a || { name: '', trigger_type: 'customer_created', trigger_config: {}, reentry: 'once_at_a_time' };
  const box = h('div');
  const slot = h('div');
  let type = a.trigger_type;
  const draw = () => {
    const basics = formFields([
      { name: 'name', label: 'Name', value: a.name },
      { name: 'trigger_type', label: 'Starts when', type: 'select', options: TRIGGERS, value: type },
      { name: 'reentry', label: 'A customer may enter', type: 'select', options: [['once', 'once ever'], ['once_at_a_time', 'once at a time'], ['every_time', 'every time']], value: a.reentry },
    ]);
    basics.inputs.trigger_type.el.addEventListener('change', (e) => { a.name = basics.inputs.name.el.value; type = e.target.value; a.trigger_config = {}; draw(); });
    const cfg = formFields(triggerConfigFields(type, a.trigger_config || {}, segments));
    const exit = formFields([{ name: 'exit_filter', label: 'Leave the automation when (segment filter JSON, optional)', type: 'json', value: a.exit_filter || undefined, rows: 3 }]);
    mount(box, basics.els, cfg.els, exit.els, slot, action(isNew ? 'Create and open the builder' : 'Save settings', () => attempt(slot, async () => {
      const body = basics.values();
      const tc = cfg.values();
      for (const k of ['segment_id']) if (tc[k] !== undefined) tc[k] = Number(tc[k]);
      if (tc.to_segment === '') delete tc.to_segment;
      body.trigger_config = tc;
      const ex = exit.values();
      body.exit_filter = ex.exit_filter === undefined ? null : ex.exit_filter;
      const r = isNew ? await post('/v1/automations', body) : await put('/v1/automations/' + a.id, body);
      onSaved(r.data || r);
    }), { class: 'primary' }));
  };
  draw();
  return box;
}

route('/automations/new', async (_, main) => {
  const segments = (await get('/v1/segments?per_page=100')).data || [];
  mount(main, h('h1', {}, 'New automation'), h('div', { class: 'card' }, automationSettings(null, segments, (a) => go('/automations/' + a.id))));
});

const NODE_KINDS = [['trigger', 'Trigger'], ['action', 'Action'], ['delay', 'Delay'], ['condition', 'Condition'], ['wait_for_event', 'Wait for event'], ['split', 'A/B split'], ['exit', 'Exit']];
const NODE_PREFIX = { trigger: 't', action: 'a', delay: 'd', condition: 'c', wait_for_event: 'w', wait: 'w', split: 's', exit: 'x' };
const ACTIONS = ['send_email', 'send_sms', 'webhook', 'update_traits', 'add_tag', 'remove_tag', 'add_to_static_segment', 'remove_from_static_segment', 'enroll', 'create_activity'];
const NODE_W = 170;
const NODE_H = 56;
const SNAP = 10;

// The builder: nodes dragged from the palette onto the canvas, moved, and joined by dragging
// from a node's handle (the dot at its foot) onto another node. It saves seed 003's JSON.
function automationBuilder(a, design, segments, automations) {
  const nodes = (design.nodes || []).map((n) => ({ id: n.id, type: n.type, data: Object.assign({}, n.data || {}), position: { x: n.position ? n.position.x : 0, y: n.position ? n.position.y : 0 } }));
  const edges = (design.edges || []).map((e) => Object.assign({}, e));
  let selected = null; // {node: id} | {edge: id}
  let problems = {}; // node id -> [messages]
  let counts = {}; // node id -> counts
  let dirty = false;
  const stage = h('div', { style: { position: 'relative', width: '1600px', height: '1200px' } });
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('width', '1600'); svg.setAttribute('height', '1200');
  const canvas = h('div', { class: 'canvas', 'data-testid': 'canvas' }, stage);
  const side = h('div', { class: 'side card' });
  const status = h('span', { class: 'small muted', id: 'save-status', 'aria-live': 'polite' });
  const slot = h('div');

  const nextId = (prefix, list) => { let n = 1; const ids = new Set(list.map((x) => x.id)); while (ids.has(prefix + n)) n++; return prefix + n; };
  const snap = (v) => Math.max(0, Math.round(v / SNAP) * SNAP);
  const stagePoint = (ev) => { const r = stage.getBoundingClientRect(); return { x: ev.clientX - r.left, y: ev.clientY - r.top }; };
  const markDirty = () => { dirty = true; status.textContent = 'Unsaved changes'; };
  const byId = (id) => nodes.find((n) => n.id === id);
  // Edges leave from a step's foot: its drawn height (counts and problems make it taller).
  const nodeHeight = (id) => { const el = stage.querySelector(`[data-node="${id}"]`); return el && el.offsetHeight ? el.offsetHeight : NODE_H; };

  const design_ = () => ({ nodes: nodes.map((n) => ({ id: n.id, type: n.type, data: n.data, position: { x: n.position.x, y: n.position.y } })),
    edges: edges.map((e) => { const o = { id: e.id, source: e.source, target: e.target }; if (e.label) o.label = e.label; return o; }) });

  const branchLabels = (n) => n.type === 'condition' || n.type === 'wait_for_event' || n.type === 'wait' ? ['Yes', 'No'] : n.type === 'split' ? (n.data.branches || []).map((b) => b.label) : [];

  function drawEdges() {
    svg.replaceChildren();
    for (const e of edges) {
      const s = byId(e.source); const t = byId(e.target);
      if (!s || !t) continue;
      const x1 = s.position.x + NODE_W / 2; const y1 = s.position.y + nodeHeight(s.id);
      const x2 = t.position.x + NODE_W / 2; const y2 = t.position.y;
      const dy = Math.max(30, Math.abs(y2 - y1) / 2);
      const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
      p.setAttribute('d', `M${x1},${y1} C${x1},${y1 + dy} ${x2},${y2 - dy} ${x2},${y2}`);
      p.setAttribute('class', 'edge' + (selected && selected.edge === e.id ? ' sel' : ''));
      p.setAttribute('data-edge', e.id);
      p.setAttribute('marker-end', 'url(#arrow)');
      p.addEventListener('pointerdown', (ev) => { ev.stopPropagation(); selected = { edge: e.id }; drawAll(); });
      svg.append(p);
      if (e.label) {
        const tx = document.createElementNS('http://www.w3.org/2000/svg', 'text');
        tx.setAttribute('x', (x1 + x2) / 2 + 4); tx.setAttribute('y', (y1 + y2) / 2);
        tx.textContent = e.label; svg.append(tx);
      }
    }
    const defs = document.createElementNS('http://www.w3.org/2000/svg', 'defs');
    defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7b8794"/></marker>';
    svg.prepend(defs);
  }

  function nodeEl(n) {
    const c = counts[n.id];
    const el = h('div', { class: `node ${n.type}` + (selected && selected.node === n.id ? ' sel' : '') + (problems[n.id] ? ' invalid' : ''), 'data-node': n.id, style: { left: n.position.x + 'px', top: n.position.y + 'px' } },
      h('div', { class: 'kind' }, (NODE_KINDS.find((k) => k[0] === n.type) || [0, n.type])[1] + ' · ' + n.id),
      h('div', {}, n.data.label || h('span', { class: 'muted' }, '(no label)')),
      c ? h('div', { class: 'counts', title: 'entered · waiting · completed · failed' }, `${c.entered} in · ${c.waiting} waiting · ${c.completed} done` + (c.failed ? ` · ${c.failed} failed` : '')) : null,
      problems[n.id] ? h('div', { class: 'problems', title: problems[n.id].join('\n') }, `⚠ ${problems[n.id].length === 1 ? 'needs attention' : problems[n.id].length + ' problems'} — click to see`) : null,
      n.type === 'exit' ? null : h('div', { class: 'handle', 'data-handle': n.id, title: 'Drag to another node to connect' }));
    el.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault(); ev.stopPropagation();
      if (ev.target.dataset.handle) return connectFrom(n, ev);
      selected = { node: n.id };
      const start = stagePoint(ev); const orig = { x: n.position.x, y: n.position.y };
      let moved = false;
      const move = (mv) => {
        const p = stagePoint(mv);
        const nx = snap(orig.x + p.x - start.x); const ny = snap(orig.y + p.y - start.y);
        if (nx !== n.position.x || ny !== n.position.y) { n.position.x = nx; n.position.y = ny; moved = true; el.style.left = nx + 'px'; el.style.top = ny + 'px'; drawEdges(); }
      };
      const up = () => { window.removeEventListener('pointermove', move); window.removeEventListener('pointerup', up); if (moved) markDirty(); drawAll(); };
      window.addEventListener('pointermove', move); window.addEventListener('pointerup', up);
    });
    return el;
  }

  function connectFrom(n, ev) {
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    line.setAttribute('class', 'edge sel');
    svg.append(line);
    const x1 = n.position.x + NODE_W / 2; const y1 = n.position.y + nodeHeight(n.id);
    const move = (mv) => { const p = stagePoint(mv); line.setAttribute('d', `M${x1},${y1} L${p.x},${p.y}`); };
    const up = (upEv) => {
      window.removeEventListener('pointermove', move); window.removeEventListener('pointerup', up);
      line.remove();
      const over = document.elementsFromPoint(upEv.clientX, upEv.clientY).map((x) => x.closest && x.closest('.node')).find((x) => x && x.dataset.node !== n.id);
      if (!over) return;
      const target = over.dataset.node;
      if (edges.some((e) => e.source === n.id && e.target === target)) return;
      const used = edges.filter((e) => e.source === n.id).map((e) => e.label);
      const label = branchLabels(n).find((l) => !used.includes(l));
      const e = { id: nextId('e', edges), source: n.id, target };
      if (label) e.label = label;
      edges.push(e); selected = { edge: e.id }; markDirty(); drawAll();
    };
    move(ev);
    window.addEventListener('pointermove', move); window.addEventListener('pointerup', up);
  }

  function panel() {
    if (selected && selected.edge) {
      const e = edges.find((x) => x.id === selected.edge);
      if (!e) { selected = null; return panel(); }
      const s = byId(e.source);
      const labels = s ? branchLabels(s) : [];
      const labelIn = labels.length ? h('select', { id: 'edge-label', onchange: (ev) => { e.label = ev.target.value || undefined; markDirty(); drawAll(); } }, h('option', { value: '' }, '(none)'), labels.map((l) => h('option', { value: l, selected: e.label === l ? true : null }, l)))
        : h('input', { id: 'edge-label', value: e.label || '', oninput: (ev) => { e.label = ev.target.value || undefined; markDirty(); drawEdges(); } });
      return [h('h3', {}, `Edge ${e.id}`), h('p', { class: 'small' }, `${e.source} → ${e.target}`), h('label', { for: 'edge-label' }, 'Branch'), labelIn,
        h('p', {}, h('button', { class: 'danger', onclick: () => { edges.splice(edges.indexOf(e), 1); selected = null; markDirty(); drawAll(); } }, 'Delete edge'))];
    }
    const n = selected && selected.node && byId(selected.node);
    if (!n) return [h('h3', {}, 'Building'), h('p', { class: 'small muted' }, 'Drag a step from the palette onto the canvas. Drag from the dot at the foot of a step onto another step to connect them. Click a step to configure it.')];
    const d = n.data;
    const text = (key, label, opts = {}) => {
      const id = 'node-' + key;
      const input = opts.area ? h('textarea', { id, rows: opts.rows || 4 }) : h('input', { id, type: opts.type || 'text', placeholder: opts.placeholder || '' });
      input.value = d[key] === undefined ? '' : (typeof d[key] === 'object' ? JSON.stringify(d[key]) : d[key]);
      input.addEventListener('input', () => {
        const v = input.value;
        if (v === '') delete d[key];
        else if (opts.json) { try { d[key] = JSON.parse(v); input.style.borderColor = ''; } catch (e) { input.style.borderColor = '#c53030'; return; } }
        else d[key] = opts.type === 'number' ? Number(v) : v;
        markDirty();
        if (key === 'label') { const el = $(`[data-node="${n.id}"] div:nth-child(2)`, stage); if (el) el.textContent = v; }
      });
      return [h('label', { for: id }, label), input];
    };
    const select = (key, label, options, after) => {
      const s = h('select', { id: 'node-' + key, onchange: (ev) => { if (ev.target.value === '') delete d[key]; else d[key] = /^\d+$/.test(ev.target.value) && key.endsWith('_id') ? Number(ev.target.value) : ev.target.value; markDirty(); if (after) after(); } },
        h('option', { value: '' }, '—'), options.map((o) => { const [v, t] = Array.isArray(o) ? o : [o, o]; return h('option', { value: v, selected: String(d[key]) === String(v) ? true : null }, t); }));
      return [h('label', { for: 'node-' + key }, label), s];
    };
    let fields = [];
    if (n.type === 'action') {
      fields.push(select('action', 'Does', ACTIONS.map((x) => [x, x.replace(/_/g, ' ')]), () => drawAll()));
      const act = d.action;
      if (act === 'send_email') {
        fields.push(text('subject', 'Subject'), text('body', 'Body (HTML; {{ name }} and other fields)', { area: true }), text('template_id', 'Or: a campaign to copy (id)', { type: 'number' }),
          text('from_name', 'From name (default: the workspace’s)'), text('from_email', 'From address (default: the workspace’s)'), text('reply_to', 'Reply-to'));
      }
      else if (act === 'send_sms') fields.push(text('message', 'Message', { area: true, rows: 3 }));
      else if (act === 'webhook') fields.push(text('url', 'URL', { placeholder: 'https://…' }));
      else if (act === 'update_traits') fields.push(text('traits', 'Traits (JSON object)', { area: true, json: true, rows: 3 }));
      else if (act === 'add_tag' || act === 'remove_tag') fields.push(text('tag', 'Tag'));
      else if (act === 'add_to_static_segment' || act === 'remove_from_static_segment') fields.push(select('segment_id', 'Static segment', segments.filter((s) => s.type === 'static').map((s) => [s.id, s.name])));
      else if (act === 'enroll') fields.push(select('automation_id', 'Automation', automations.filter((x) => x.id !== a.id).map((x) => [x.id, x.name])));
      else if (act === 'create_activity') fields.push(text('subject', 'Subject'), select('type', 'Type', ['task', 'call', 'email', 'meeting', 'note']), text('due_in', 'Due in', { placeholder: '2d' }));
      fields.push(select('on_failure', 'If it fails', [['stop', 'stop the run'], ['continue', 'carry on']]));
    } else if (n.type === 'delay') {
      fields.push(text('duration', 'Wait for', { placeholder: '3d, 2h, 90s or P3D' }), h('p', { class: 'small muted' }, 'Or until a time: set “until” as JSON, e.g. {"time": "09:00", "weekdays": ["mon"]}'), text('until', 'Until (JSON)', { json: true }));
    } else if (n.type === 'condition') {
      fields.push(text('filter', 'Filter (segment language JSON)', { area: true, json: true, rows: 5 }), select('since', 'Count behaviour', [['run_start', 'since the run started'], ['ever', 'ever']]),
        h('p', { class: 'small muted' }, 'Connect a “Yes” and a “No” edge.'));
    } else if (n.type === 'wait_for_event' || n.type === 'wait') {
      fields.push(text('event', 'Event'), text('timeout', 'Timeout', { placeholder: '7d' }));
    } else if (n.type === 'split') {
      fields.push(text('branches', 'Branches (JSON)', { area: true, json: true, rows: 3 }));
    } else if (n.type === 'trigger') {
      fields.push(h('p', { class: 'small muted' }, 'What starts the automation is set in its settings above.'));
    }
    const pos = ['x', 'y'].map((k) => h('input', { id: 'node-pos-' + k, type: 'number', style: { width: '80px' }, value: n.position[k], oninput: (ev) => { n.position[k] = Number(ev.target.value) || 0; markDirty(); drawAll(); } }));
    return [h('h3', {}, `${(NODE_KINDS.find((k) => k[0] === n.type) || [0, n.type])[1]} ${n.id}`), text('label', 'Label'), fields,
      h('label', {}, 'Position'), h('div', { class: 'row' }, 'x', pos[0], 'y', pos[1]),
      problems[n.id] ? h('div', { class: 'error' }, problems[n.id].map((p) => h('div', {}, p))) : null,
      h('p', {}, h('button', { class: 'danger', onclick: () => { nodes.splice(nodes.indexOf(n), 1); for (let i = edges.length - 1; i >= 0; i--) if (edges[i].source === n.id || edges[i].target === n.id) edges.splice(i, 1); selected = null; markDirty(); drawAll(); } }, 'Delete step'))];
  }

  function drawAll() {
    mount(stage, svg, nodes.map(nodeEl));
    drawEdges();
    mount(side, panel());
  }

  // Palette: drag a kind onto the canvas.
  const palette = h('div', { class: 'palette' }, h('div', { class: 'small muted' }, 'Steps'), NODE_KINDS.map(([kind, label]) => {
    const tool = h('div', { class: 'tool', 'data-kind': kind }, label);
    tool.addEventListener('pointerdown', (ev) => {
      ev.preventDefault();
      const ghost = h('div', { class: `node ${kind}`, style: { position: 'fixed', pointerEvents: 'none', opacity: '0.7', left: ev.clientX + 'px', top: ev.clientY + 'px' } }, label);
      document.body.append(ghost);
      const move = (mv) => { ghost.style.left = mv.clientX + 'px'; ghost.style.top = mv.clientY + 'px'; };
      const up = (upEv) => {
        window.removeEventListener('pointermove', move); window.removeEventListener('pointerup', up); ghost.remove();
        const r = canvas.getBoundingClientRect();
        if (upEv.clientX < r.left || upEv.clientX > r.right || upEv.clientY < r.top || upEv.clientY > r.bottom) return;
        const p = stagePoint(upEv);
        const n = { id: nextId(NODE_PREFIX[kind] || 'n', nodes), type: kind, data: { label }, position: { x: snap(p.x), y: snap(p.y) } };
        nodes.push(n); selected = { node: n.id }; markDirty(); drawAll();
        const lab = $('#node-label', side); if (lab) { lab.focus(); lab.select(); }
      };
      window.addEventListener('pointermove', move); window.addEventListener('pointerup', up);
    });
    return tool;
  }));
  canvas.addEventListener('pointerdown', (ev) => { if (ev.target === canvas || ev.target === stage) { selected = null; drawAll(); } });
  document.addEventListener('keydown', (ev) => {
    if ((ev.key === 'Delete' || ev.key === 'Backspace') && selected && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
      const btn = $('button.danger', side); if (btn) btn.click();
    }
  });

  // The problems go on their nodes; the message above the canvas says so in a sentence.
  const showProblems = (err) => {
    problems = {};
    const general = [];
    for (const p of err.errors || []) { if (p.node) (problems[p.node] = problems[p.node] || []).push(p.message); else general.push(p); }
    drawAll();
    const n = Object.keys(problems).length;
    if (n) {
      err.message = `This automation cannot be activated yet: ${n} step${n === 1 ? '' : 's'} need${n === 1 ? 's' : ''} attention (marked in red). Click a step to see what it needs.`;
      err.code = 'AUTOMATION_INVALID'; err.errors = general;
    }
  };
  const save = async () => {
    problems = {};
    const r = await post(`/v1/automations/${a.id}/design`, design_());
    dirty = false; status.textContent = 'Saved ' + new Date().toLocaleTimeString(); drawAll();
    return r;
  };
  const toolbar = h('div', { class: 'row', style: { marginBottom: '8px' } },
    action('Save', () => attempt(slot, save), { class: 'primary', id: 'save-design' }),
    action('Check', () => attempt(slot, async () => {
      try { await post('/v1/automations/validate', Object.assign(design_(), { trigger_type: a.trigger_type, trigger_config: a.trigger_config })); problems = {}; drawAll(); slot.replaceChildren(notice('Everything is in order: this automation can be activated.')); } catch (e) { showProblems(e); throw e; }
    })),
    a.is_active ? action('Deactivate', () => attempt(slot, async () => { await post(`/v1/automations/${a.id}/deactivate`); render(); }))
      : action('Activate', () => attempt(slot, async () => { try { if (dirty) await save(); await post(`/v1/automations/${a.id}/activate`); render(); } catch (e) { showProblems(e); throw e; } }), { id: 'activate' }),
    status);
  window.addEventListener('beforeunload', (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ''; } });

  const loadCounts = async () => {
    if (!a.active_version && !a.is_active) return;
    const r = await get(`/v1/automations/${a.id}/nodes`);
    const next = {}; for (const c of (r.data || [])) next[c.node] = c;
    if (JSON.stringify(next) !== JSON.stringify(counts)) { counts = next; for (const n of nodes) { const el = $(`[data-node="${n.id}"]`, stage); if (el) el.replaceWith(nodeEl(n)); } drawEdges(); }
  };
  loadCounts();
  every(3000, loadCounts);
  drawAll();
  const root = h('div', {}, toolbar, slot, h('div', { class: 'builder' }, palette, canvas, side));
  root.designJson = design_;
  return root;
}

route('/automations/:id', async (p, main) => {
  const [ar, dr, segs, autos] = await Promise.all([get('/v1/automations/' + p.id), get(`/v1/automations/${p.id}/design`), get('/v1/segments?per_page=100'), get('/v1/automations?per_page=100')]);
  const a = ar.data || ar; const design = dr.data || dr;
  const segments = segs.data || []; const automations = autos.data || [];
  const runs = pagedTable(main, { path: `/v1/automations/${a.id}/runs`, perPage: 10, cols: [
    { title: 'Run', value: (r) => '#' + r.id }, { title: 'Customer', value: (r) => h('a', { href: '#/customers/' + r.customer_id, onclick: (e) => e.stopPropagation() }, 'Customer ' + r.customer_id) },
    { title: 'Status', value: (r) => statusPill(r.status) }, { title: 'At step', value: (r) => r.node }, { title: 'Next', value: (r) => fmtTime(r.due_at) }, { title: 'Started', value: (r) => fmtTime(r.started_at) }],
  onRow: (r) => go(`/automations/${a.id}/runs/${r.id}`), empty: 'No runs yet.' });
  mount(main,
    h('div', { class: 'row' }, h('h1', { class: 'grow' }, a.name, ' ', statusPill(a.is_active ? 'active' : 'draft')), h('span', { class: 'muted small' }, `version ${a.version}`), h('a', { href: '#/automations' }, '‹ All automations')),
    h('details', { class: 'card' }, h('summary', {}, 'Settings: ', (TRIGGERS.find((t) => t[0] === a.trigger_type) || [0, a.trigger_type])[1]), automationSettings(a, segments, () => render()),
      a.webhook_url ? h('p', {}, 'Inbound URL: ', h('code', {}, a.webhook_url)) : null),
    automationBuilder(a, design, segments, automations),
    h('h2', {}, 'Runs'), runs);
});

route('/automations/:id/runs/:run', async (p, main) => {
  const r = await get('/v1/automations/runs/' + p.run); const run = r.data || r;
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, `Run #${run.id}`), h('a', { href: '#/automations/' + run.automation_id }, '‹ The automation')),
    h('div', { class: 'card kv' }, h('div', {}, 'Customer'), h('div', {}, h('a', { href: '#/customers/' + run.customer_id }, 'Customer ' + run.customer_id)), h('div', {}, 'Status'), h('div', {}, statusPill(run.status)),
      h('div', {}, 'At step'), h('div', {}, run.node), h('div', {}, 'Version'), h('div', {}, run.version), h('div', {}, 'Next wake-up'), h('div', {}, fmtTime(run.due_at)), run.error ? [h('div', {}, 'Error'), h('div', {}, run.error)] : null),
    h('h2', {}, 'Steps'), h('table', {}, h('thead', {}, h('tr', {}, ['When', 'Step', 'Kind', 'Outcome', 'Why'].map((t) => h('th', {}, t)))),
      h('tbody', {}, (run.steps || []).map((s) => h('tr', {}, h('td', {}, fmtTime(s.at)), h('td', {}, s.node), h('td', {}, s.kind), h('td', {}, s.outcome), h('td', {}, h('code', { class: 'small' }, JSON.stringify(s.detail))))))));
});

// ---- Campaigns ---------------------------------------------------------------------------------

route('/campaigns', async (_, main) => {
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Campaigns'), h('button', { class: 'primary', onclick: () => go('/campaigns/new') }, 'New campaign')),
    pagedTable(main, { path: '/v1/campaigns', cols: [
      { title: 'Name', value: (c) => c.name }, { title: 'Type', value: (c) => c.type }, { title: 'Status', value: (c) => statusPill(c.status) },
      { title: 'Sent', value: (c) => c.stats ? fmtNum(c.stats.sent) : (c.sent_count ?? '—') }, { title: 'Created', value: (c) => fmtDate(c.created_at) }],
    onRow: (c) => go('/campaigns/' + c.id), empty: 'No campaigns yet.' }));
});

// A customer picker: type to search on the server, pick one.
function customerPicker(onPick, placeholder = 'Search a customer…') {
  const list = h('div', { class: 'small' });
  const input = h('input', { type: 'search', placeholder, 'aria-label': placeholder, oninput: debounce(async () => {
    const q = input.value.trim();
    if (!q) { list.replaceChildren(); return; }
    const r = await get(withQuery('/v1/customers', { search: q, per_page: 6 })).catch(() => ({ data: [] }));
    mount(list, (r.data || []).map((c) => h('div', {}, h('a', { href: '#', 'data-customer': c.id, onclick: (e) => { e.preventDefault(); input.value = c.email || c.name; list.replaceChildren(); onPick(c); } }, `${c.name || ''} <${c.email || c.id}>`))));
  }, 250) });
  return h('div', {}, input, list);
}

async function campaignEditor(main, camp) {
  const isNew = !camp;
  const segments = (await get('/v1/segments?per_page=100')).data || [];
  camp = camp || { name: '', type: 'email', segment_id: segments[0] && segments[0].id, subject: '', body: '<p>Hi {{ name | default("there") }},</p>\n<p></p>', from_name: '', from_email: '', track_opens: true, track_clicks: true };
  const form = formFields([
    { name: 'name', label: 'Name', value: camp.name },
    { name: 'type', label: 'Channel', type: 'select', options: [['email', 'Email'], ['sms', 'SMS'], ['ad', 'Ad audience (hashed export)']], value: camp.type },
    { name: 'segment_id', label: 'Send to segment', type: 'select', options: segments.map((s) => [s.id, `${s.name} (${fmtNum(s.member_count)})`]), value: camp.segment_id },
    { name: 'subject', label: 'Subject (email)', value: camp.subject || '' },
    { name: 'from_name', label: 'From name', value: camp.from_name || '', nullable: true },
    { name: 'from_email', label: 'From address', type: 'email', value: camp.from_email || '', nullable: true },
    { name: 'body', label: 'Message (HTML for email, text for SMS; {{ name }}, {{ traits.plan }}, {{ unsubscribe_url }}…)', type: 'textarea', value: camp.body || '', rows: 10 },
    { name: 'track_opens', label: 'Track opens', type: 'checkbox', value: camp.track_opens !== false },
    { name: 'track_clicks', label: 'Track clicks', type: 'checkbox', value: camp.track_clicks !== false },
    { name: 'rate_limit', label: 'At most this many messages per second (optional)', type: 'number', value: camp.rate_limit ?? '', nullable: true },
  ]);
  const slot = h('div');
  const previewBox = h('div', { class: 'card' }, h('h3', {}, 'Preview'), h('p', { class: 'muted small' }, 'Save, then pick a customer to see the message as they will.'));
  const values = () => { const v = form.values(); v.segment_id = v.segment_id ? Number(v.segment_id) : null; return v; };
  const saveBtn = action(isNew ? 'Save draft' : 'Save changes', () => attempt(slot, async () => {
    const r = isNew ? await post('/v1/campaigns', values()) : await put('/v1/campaigns/' + camp.id, values());
    go('/campaigns/' + (r.data || r).id + (isNew ? '/edit' : ''));
    if (!isNew) slot.replaceChildren(notice('Saved.'));
  }), { class: 'primary', id: 'save-campaign' });
  const tools = [];
  if (!isNew) {
    const pvSlot = h('div');
    tools.push(previewBox);
    previewBox.append(customerPicker(async (c) => attempt(pvSlot, async () => {
      await put('/v1/campaigns/' + camp.id, values());
      const r = await post(`/v1/campaigns/${camp.id}/preview`, { customer_id: c.id }); const d = r.data || r;
      const frame = h('iframe', { sandbox: '', style: { width: '100%', height: '260px', border: '1px solid #dfe3e8', background: '#fff' }, title: 'Rendered message' });
      frame.srcdoc = d.html || d.body || '';
      mount(pvSlot, h('div', { class: 'small' }, h('strong', {}, 'Subject: '), h('span', { id: 'preview-subject' }, d.subject || '')), frame);
    }), 'Preview for customer…'), pvSlot);
    const to = h('input', { placeholder: 'you@example.com, +385911234567', 'aria-label': 'Test recipients', style: { width: '100%' } });
    const testSlot = h('div');
    tools.push(h('div', { class: 'card' }, h('h3', {}, 'Send a test'), to, h('div', { style: { marginTop: '6px' } }, action('Send test', () => attempt(testSlot, async () => {
      await put('/v1/campaigns/' + camp.id, values());
      const r = await post(`/v1/campaigns/${camp.id}/test`, { to: to.value.split(',').map((x) => x.trim()).filter(Boolean) });
      const results = r.data || [];
      const failed = results.filter((x) => !x.sent);
      testSlot.replaceChildren(failed.length
        ? errorBox(new Error(`The test did not reach ${failed.map((x) => `${x.to} (${x.error || 'refused'})`).join(', ')}.`))
        : notice(`Test sent to ${results.map((x) => x.to).join(', ')}.`));
    }))), testSlot));
  }
  mount(main, h('h1', {}, isNew ? 'New campaign' : 'Edit ' + camp.name), h('div', { class: 'grid2' }, h('div', { class: 'card' }, form.els, slot, saveBtn, isNew ? null : [' ', h('a', { href: '#/campaigns/' + camp.id }, 'Done')]), h('div', {}, tools)));
}

route('/campaigns/new', (_, main) => campaignEditor(main, null));
route('/campaigns/:id/edit', async (p, main) => { const r = await get('/v1/campaigns/' + p.id); return campaignEditor(main, r.data || r); });

route('/campaigns/:id', async (p, main) => {
  const r = await get('/v1/campaigns/' + p.id); const c = r.data || r;
  const statsBox = h('div', { class: 'card' });
  const slot = h('div');
  const drawStats = async () => {
    // The status first: once it reads "sent", the counts read after it are final.
    const cur = await get('/v1/campaigns/' + c.id); const now = cur.data || cur;
    const s = await get(`/v1/campaigns/${c.id}/stats`); const d = s.data || s;
    const settled = (d.sent || 0) + (d.failed || 0) + (d.bounced || 0) + (d.skipped || 0);
    const pct = d.recipients ? Math.min(100, Math.round(100 * settled / d.recipients)) : (now.status === 'sent' ? 100 : 0);
    mount(statsBox, h('div', { class: 'row' }, h('strong', {}, 'Status:'), h('span', { id: 'campaign-status' }, statusPill(now.status)), h('div', { class: 'progress grow' }, h('div', { style: { width: pct + '%' } })), `${pct}%`),
      h('div', { class: 'grid3', style: { marginTop: '12px' } }, ['recipients', 'sent', 'delivered', 'failed', 'bounced', 'opened', 'clicked', 'unsubscribed', 'skipped'].filter((k) => k in d).map((k) => h('div', { 'data-stat': k }, h('div', { class: 'stat' }, fmtNum(d[k])), h('div', { class: 'stat-label' }, k)))));
    return now.status;
  };
  const when = h('input', { type: 'datetime-local', 'aria-label': 'Send at' });
  const editable = c.status === 'draft' || c.status === 'scheduled';
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, c.name), h('a', { href: '#/campaigns' }, '‹ All campaigns')), slot,
    h('div', { class: 'card row' },
      editable ? h('button', { onclick: () => go(`/campaigns/${c.id}/edit`) }, 'Edit') : null,
      c.status === 'draft' || c.status === 'scheduled' ? action('Send now', async () => { if (!confirm(`Send “${c.name}” to the segment now?`)) return; await attempt(slot, async () => { await post(`/v1/campaigns/${c.id}/send`); render(); }); }, { class: 'primary', id: 'send-now' }) : null,
      c.status === 'draft' ? [when, action('Schedule', () => attempt(slot, async () => { if (!when.value) throw new Error('Pick a date and time first.'); await post(`/v1/campaigns/${c.id}/schedule`, { send_at: new Date(when.value).toISOString() }); render(); }))] : null,
      c.status === 'scheduled' || c.status === 'sending' ? action('Cancel', () => attempt(slot, async () => { await post(`/v1/campaigns/${c.id}/cancel`); render(); }), { class: 'danger' }) : null,
      c.type === 'ad' ? h('a', { href: '#', onclick: async (e) => { e.preventDefault(); await attempt(slot, async () => { const csv = await api('GET', `/v1/campaigns/${c.id}/audience.csv`, null, { text: true }); const a = h('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: `audience-${c.id}.csv` }); a.click(); }); } }, 'Download hashed audience') : null,
      c.status === 'draft' ? action('Delete', async () => { if (!confirm('Delete this campaign?')) return; await attempt(slot, async () => { await del('/v1/campaigns/' + c.id); go('/campaigns'); }); }, { class: 'danger' }) : null),
    c.scheduled_at || c.send_at ? h('p', {}, 'Scheduled for ', fmtTime(c.scheduled_at || c.send_at)) : null,
    statsBox,
    h('details', { class: 'card' }, h('summary', {}, 'Message'), h('div', { class: 'small' }, h('strong', {}, 'Subject: '), c.subject || '—'), h('pre', {}, c.body || '')),
    h('h2', {}, 'Recipients'),
    pagedTable(main, { path: `/v1/campaigns/${c.id}/recipients`, cols: [
      { title: 'Customer', value: (x) => h('a', { href: '#/customers/' + x.customer_id, onclick: (e) => e.stopPropagation() }, x.email || x.address || x.phone || 'Customer ' + x.customer_id) },
      { title: 'Status', value: (x) => statusPill(x.status) }, { title: 'Updated', value: (x) => fmtTime(x.updated_at || x.sent_at) }, { title: 'Detail', value: (x) => x.error || x.reason || '' }],
    empty: 'Recipients appear once sending starts.' }));
  const status = await drawStats();
  if (status === 'sending' || status === 'scheduled') every(1000, async () => { const s = await drawStats(); if (s !== 'sending' && s !== 'scheduled') render(); });
});

// ---- Leads -------------------------------------------------------------------------------------

const LEAD_STATUSES = ['new', 'contacted', 'qualified', 'unqualified', 'converted'];

route('/leads', async (_, main) => {
  const state = { status: 'all', search: '', source: '', sort: 'created_at', order: 'desc' };
  const table = pagedTable(main, { path: '/v1/leads', params: state, cols: [
    { title: 'Name', value: (l) => [l.first_name, l.last_name].filter(Boolean).join(' ') || l.email || '—' }, { title: 'Company', value: (l) => l.company_name || '—' },
    { title: 'Email', value: (l) => l.email || '—' }, { title: 'Source', value: (l) => l.source || '—' }, { title: 'Status', value: (l) => statusPill(l.status) },
    { title: 'Score', value: (l) => l.score ?? '—' }, { title: 'Created', value: (l) => fmtDate(l.created_at) }],
  onRow: (l) => go('/leads/' + l.id), empty: 'No leads match.' });
  const refresh = () => table.reload(Object.assign({}, state));
  const slot = h('div');
  const create = formFields([{ name: 'first_name', label: 'First name' }, { name: 'last_name', label: 'Last name' }, { name: 'email', label: 'Email', type: 'email' }, { name: 'company_name', label: 'Company' }, { name: 'source', label: 'Source', placeholder: 'website' }]);
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Leads')),
    h('div', { class: 'row', style: { marginBottom: '12px' } },
      h('input', { type: 'search', placeholder: 'Search name, email, company…', 'aria-label': 'Search leads', oninput: debounce((e) => { state.search = e.target.value.trim(); refresh(); }, 300) }),
      h('select', { 'aria-label': 'Status', onchange: (e) => { state.status = e.target.value; refresh(); } }, ['all'].concat(LEAD_STATUSES).map((s) => h('option', { value: s }, s === 'all' ? 'Any status' : s))),
      h('input', { placeholder: 'Source', 'aria-label': 'Source', style: { width: '120px' }, oninput: debounce((e) => { state.source = e.target.value.trim(); refresh(); }, 300) }),
      h('select', { 'aria-label': 'Sort', onchange: (e) => { const [s, o] = e.target.value.split(':'); state.sort = s; state.order = o; refresh(); } }, [['created_at:desc', 'Newest'], ['score:desc', 'Highest score'], ['value:desc', 'Highest value'], ['last_name:asc', 'Name']].map(([v, t]) => h('option', { value: v }, t)))),
    table,
    importPanel(() => refresh()),
    h('details', { class: 'card', style: { marginTop: '16px' } }, h('summary', {}, 'Add a lead'), h('div', { class: 'grid3' }, create.els), slot,
      action('Add lead', () => attempt(slot, async () => { const r = await post('/v1/leads', create.values()); go('/leads/' + (r.data || r).id); }), { class: 'primary' })));
});

// A CSV import of leads or people, with its progress while it runs.
function importPanel(done) {
  const slot = h('div');
  const progress = h('div');
  const file = h('input', { type: 'file', accept: '.csv,text/csv', 'aria-label': 'CSV file to import' });
  const kind = h('select', { 'aria-label': 'Import as' }, h('option', { value: 'leads' }, 'leads'), h('option', { value: 'people' }, 'people (customer profiles)'));
  const source = h('input', { placeholder: 'source (optional)', 'aria-label': 'Source' });
  return h('details', { class: 'card', style: { marginTop: '16px' } }, h('summary', {}, 'Import from CSV'),
    h('p', { class: 'small muted' }, 'Columns are matched by name (First Name, E-mail, Company, …). Existing emails are updated, not duplicated.'),
    h('div', { class: 'row' }, file, kind, source, action('Import', () => attempt(slot, async () => {
      if (!file.files[0]) throw new Error('Choose a CSV file first.');
      const body = { kind: kind.value, csv: await file.files[0].text() };
      if (source.value.trim()) body.source = source.value.trim();
      const r = await post('/v1/imports', body); const imp = r.data || r;
      for (;;) {
        const cur = await get('/v1/imports/' + imp.id); const d = cur.data || cur;
        const pct = d.total_rows ? Math.round(100 * d.processed / d.total_rows) : 0;
        mount(progress, h('div', { class: 'row' }, statusPill(d.status), h('div', { class: 'progress grow' }, h('div', { style: { width: pct + '%' } })), `${fmtNum(d.processed)} of ${fmtNum(d.total_rows)} rows`),
          h('div', { class: 'small' }, `${fmtNum(d.created)} created, ${fmtNum(d.updated)} updated, ${fmtNum(d.failed)} skipped`),
          (d.errors || []).length ? h('ul', { class: 'small' }, d.errors.slice(0, 20).map((e) => h('li', {}, `Row ${e.row}${e.field ? ` (${e.field})` : ''}: ${e.message}`))) : null);
        if (d.status !== 'running') break;
        await sleep(700);
      }
      done();
    }))), slot, progress);
}

route('/leads/:id', async (p, main) => {
  const r = await get('/v1/leads/' + p.id); const l = r.data || r;
  const slot = h('div');
  const name = [l.first_name, l.last_name].filter(Boolean).join(' ') || l.email || `Lead ${l.id}`;
  const statusSel = h('select', { 'aria-label': 'Lead status', disabled: l.status === 'converted' ? true : null, onchange: (e) => attempt(slot, async () => { await put('/v1/leads/' + l.id, { status: e.target.value }); slot.replaceChildren(notice('Status changed.')); }) },
    LEAD_STATUSES.filter((s) => s !== 'converted' || l.status === 'converted').map((s) => h('option', { value: s, selected: s === l.status ? true : null }, s)));
  const act = formFields([{ name: 'type', label: 'Type', type: 'select', options: ['call', 'email', 'meeting', 'task', 'note'] }, { name: 'subject', label: 'Subject' }, { name: 'description', label: 'Details', type: 'textarea', rows: 2 }]);
  const note = formFields([{ name: 'content', label: 'Note', type: 'textarea', rows: 3 }]);
  const conv = formFields([{ name: 'create_opportunity', label: 'Also open a deal', type: 'checkbox', value: true }, { name: 'opportunity_name', label: 'Deal name', value: l.company_name ? `${l.company_name} deal` : `${name} deal` }, { name: 'opportunity_value', label: 'Deal value', type: 'number', value: l.value ?? '' }]);
  const linked = l.linked || {};
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, name), statusSel, h('a', { href: '#/leads' }, '‹ All leads')), slot,
    h('div', { class: 'grid2' },
      h('div', {},
        h('div', { class: 'card kv' }, ['email', 'phone', 'company_name', 'title', 'source', 'score', 'value', 'assigned_to', 'crm_lead_id'].map((k) => [h('div', {}, k.replace(/_/g, ' ')), h('div', {}, l[k] ?? '—')]),
          h('div', {}, 'created'), h('div', {}, fmtTime(l.created_at)),
          linked.customer ? [h('div', {}, 'customer profile'), h('div', {}, h('a', { href: '#/customers/' + linked.customer.id }, linked.customer.email || 'profile'), linked.customer.rfm_segment ? [' · ', linked.customer.rfm_segment] : null)] : null,
          linked.opportunity ? [h('div', {}, 'deal'), h('div', {}, h('a', { href: '#/deals' }, linked.opportunity.name || 'deal'))] : null),
        l.status !== 'converted' ? h('div', { class: 'card' }, h('h2', {}, 'Convert'), conv.els, action('Convert lead', () => attempt(slot, async () => {
          const v = conv.values(); const body = { create_contact: true, create_opportunity: v.create_opportunity };
          if (v.create_opportunity) { body.opportunity_name = v.opportunity_name; if (v.opportunity_value !== undefined) body.opportunity_value = v.opportunity_value; }
          await post(`/v1/leads/${l.id}/convert`, body); render();
        }), { class: 'primary' })) : null,
        h('div', { class: 'card' }, h('h2', {}, 'Log activity'), act.els, action('Log', () => attempt(slot, async () => { await post(`/v1/leads/${l.id}/activities`, act.values()); render(); }))),
        h('div', { class: 'card' }, h('h2', {}, 'Add a note'), note.els, action('Add note', () => attempt(slot, async () => { await post('/v1/notes', Object.assign({ entity_type: 'lead', entity_id: l.id }, note.values())); render(); })))),
      h('div', {},
        h('div', { class: 'card' }, h('h2', {}, 'Activities'), (l.activities || []).length ? h('ul', { class: 'timeline' }, l.activities.map((a) => h('li', {}, pill(a.type), ' ', a.subject, ' ', h('span', { class: 'muted small' }, fmtTime(a.created_at)), a.description ? h('div', { class: 'small' }, a.description) : null))) : h('p', { class: 'muted' }, 'None yet.')),
        h('div', { class: 'card' }, h('h2', {}, 'Notes'), (l.notes || []).length ? h('ul', {}, l.notes.map((n) => h('li', {}, n.pinned ? '📌 ' : '', n.content, ' ', h('span', { class: 'muted small' }, fmtTime(n.created_at))))) : h('p', { class: 'muted' }, 'None yet.')),
        h('div', { class: 'card' }, h('h2', {}, 'CRM activity'), (l.crm_activity || []).length ? h('ul', {}, l.crm_activity.map((c) => h('li', {}, h('strong', {}, c.event_type), ' ', h('span', { class: 'muted small' }, fmtTime(c.occurred_at || c.created_at || c.timestamp))))) : h('p', { class: 'muted' }, 'Nothing from an external CRM.')),
        h('div', { class: 'card' }, h('h2', {}, 'Website activity'), (l.recent_events || []).length ? h('ul', {}, l.recent_events.map((e) => h('li', {}, e.event || e.type, ' ', h('span', { class: 'muted small' }, fmtTime(e.timestamp))))) : h('p', { class: 'muted' }, 'No tracked events.')))));
});

// ---- Deals: the pipeline as a Kanban board -----------------------------------------------------

route('/deals', async (_, main) => {
  const pipes = ((await get('/v1/pipelines')).data || []).filter((p) => (p.kind || 'deals') === 'deals');
  const q = query();
  const pid = Number(q.get('pipeline')) || (pipes.find((p) => p.is_default) || pipes[0] || {}).id;
  const board = h('div', { class: 'kanban' });
  const slot = h('div');
  const drawBoard = async () => {
    const r = await get(`/v1/pipelines/${pid}/board`); const b = r.data || r;
    mount(board, (b.stages || []).map((s) => {
      const st = s.stage || {};
      const col = h('div', { class: 'column', 'data-stage': st.key },
        h('h3', {}, h('span', {}, st.name), h('span', { class: 'muted small', title: `weighted ${fmtMoney(s.weighted_value)}` }, `${s.count} · ${fmtMoney(s.total_value)}`)),
        (s.opportunities || s.deals || []).map((d) => dealCard(d)));
      return col;
    }));
  };
  const dealCard = (d) => {
    const card = h('div', { class: 'deal', 'data-deal': d.id }, h('div', {}, h('strong', {}, d.name || d.title)), h('div', { class: 'small muted' }, fmtMoney(d.value), d.expected_close_date ? ' · closes ' + fmtDate(d.expected_close_date) : ''));
    card.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault();
      const rect = card.getBoundingClientRect(); const dx = ev.clientX - rect.left; const dy = ev.clientY - rect.top;
      const ghost = card.cloneNode(true); ghost.classList.add('dragging'); ghost.style.left = rect.left + 'px'; ghost.style.top = rect.top + 'px';
      document.body.append(ghost); card.style.opacity = '0.4';
      let over = null;
      const colAt = (x, y) => document.elementsFromPoint(x, y).map((e) => e.closest && e.closest('.column')).find(Boolean);
      const move = (mv) => { ghost.style.left = (mv.clientX - dx) + 'px'; ghost.style.top = (mv.clientY - dy) + 'px'; const c = colAt(mv.clientX, mv.clientY); if (c !== over) { if (over) over.classList.remove('over'); over = c; if (c) c.classList.add('over'); } };
      const up = async (upEv) => {
        window.removeEventListener('pointermove', move); window.removeEventListener('pointerup', up);
        ghost.remove(); card.style.opacity = ''; if (over) over.classList.remove('over');
        const col = colAt(upEv.clientX, upEv.clientY);
        if (!col || col.contains(card)) return;
        $('h3', col).after(card); // at once; the board reloads from the server after
        await attempt(slot, async () => { await put('/v1/deals/' + d.id, { stage: col.dataset.stage }); });
        await drawBoard();
        relist();
      };
      window.addEventListener('pointermove', move); window.addEventListener('pointerup', up);
    });
    card.addEventListener('dblclick', () => go('/deals/' + d.id));
    return card;
  };
  const create = formFields([{ name: 'name', label: 'Deal name' }, { name: 'value', label: 'Value', type: 'number' }, { name: 'expected_close_date', label: 'Expected close', type: 'date' }]);
  // Every deal of the pipeline, won and lost included, as a filtered list.
  const listState = { pipeline_id: pid, status: 'all', search: '' };
  const list = pagedTable(main, { path: '/v1/deals', params: listState, perPage: 20, cols: [
    { title: 'Deal', value: (d) => d.name }, { title: 'Stage', value: (d) => d.stage }, { title: 'Status', value: (d) => statusPill(d.status) },
    { title: 'Value', value: (d) => fmtMoney(d.value) }, { title: 'Expected close', value: (d) => fmtDate(d.expected_close_date) }],
  onRow: (d) => go('/deals/' + d.id), empty: 'No deals match.' });
  const relist = () => list.reload(Object.assign({}, listState));
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Deals'),
    pipes.length > 1 ? h('select', { 'aria-label': 'Pipeline', onchange: (e) => go('/deals?pipeline=' + e.target.value) }, pipes.map((p) => h('option', { value: p.id, selected: p.id === pid ? true : null }, p.name))) : null),
  h('p', { class: 'muted small' }, 'Drag a deal to another stage to move it; double-click to open it.'), slot, board,
  h('details', { class: 'card', style: { marginTop: '16px' } }, h('summary', {}, 'Add a deal'), h('div', { class: 'grid3' }, create.els),
    action('Add deal', () => attempt(slot, async () => { await post('/v1/deals', Object.assign({ pipeline_id: pid }, create.values())); await drawBoard(); relist(); }), { class: 'primary' })),
  h('h2', {}, 'All deals'),
  h('div', { class: 'row', style: { marginBottom: '8px' } },
    h('input', { type: 'search', placeholder: 'Search deals…', 'aria-label': 'Search deals', oninput: debounce((e) => { listState.search = e.target.value.trim(); relist(); }, 300) }),
    h('select', { 'aria-label': 'Deal status', onchange: (e) => { listState.status = e.target.value; relist(); } }, ['all', 'open', 'won', 'lost'].map((x) => h('option', { value: x }, x === 'all' ? 'Any status' : x)))),
  list);
  await drawBoard();
});

route('/deals/:id', async (p, main) => {
  const r = await get('/v1/deals/' + p.id); const d = r.data || r;
  const slot = h('div');
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, d.name), statusPill(d.status), h('a', { href: '#/deals' }, '‹ Board')), slot,
    h('div', { class: 'card kv' }, ['stage', 'value', 'currency', 'probability', 'expected_close_date', 'priority', 'source', 'number'].map((k) => [h('div', {}, k.replace(/_/g, ' ')), h('div', {}, d[k] ?? '—')])),
    d.status === 'open' ? h('div', { class: 'row' }, action('Advance stage', () => attempt(slot, async () => { await post(`/v1/deals/${d.id}/advance-stage`); render(); })),
      action('Mark won', () => attempt(slot, async () => { await put('/v1/deals/' + d.id, { status: 'won' }); render(); }), { class: 'primary' }),
      action('Mark lost', () => attempt(slot, async () => { const reason = prompt('Why was it lost?') || undefined; await put('/v1/deals/' + d.id, { status: 'lost', close_reason: reason }); render(); }), { class: 'danger' })) : null,
    h('h2', {}, 'Activities'), (d.activities || []).length ? h('ul', {}, d.activities.map((a) => h('li', {}, pill(a.type), ' ', a.subject))) : h('p', { class: 'muted' }, 'None.'));
});

// ---- Reports -----------------------------------------------------------------------------------

function barChart(rows, valueKey, fmt = fmtNum) {
  const max = Math.max(1, ...rows.map((r) => Number(r[valueKey]) || 0));
  return h('div', { class: 'bars' }, rows.map((r) => h('div', { class: 'bar' }, h('span', { title: r.label || r.key }, r.label || r.key || '(none)'),
    h('div', { class: 'track' }, h('div', { class: 'fill', style: { width: (100 * (Number(r[valueKey]) || 0) / max).toFixed(1) + '%' } })), h('span', {}, fmt(r[valueKey])))));
}

route('/reports', async (_, main) => {
  const q = query();
  const leadsBy = q.get('leads') || 'source';
  const dealsBy = q.get('deals') || 'stage';
  const [lr, dr] = await Promise.all([get('/v1/reports/leads?group_by=' + leadsBy), get('/v1/reports/opportunities?group_by=' + dealsBy)]);
  const L = lr.data || lr; const D = dr.data || dr;
  const lrows = L.groups || L.rows || (Array.isArray(L) ? L : []);
  const drows = D.groups || D.rows || (Array.isArray(D) ? D : []);
  const picker = (which, cur, opts) => h('select', { 'aria-label': 'Group ' + which, onchange: (e) => go(withQuery('/reports', { leads: which === 'leads' ? e.target.value : leadsBy, deals: which === 'deals' ? e.target.value : dealsBy })) }, opts.map((o) => h('option', { value: o, selected: o === cur ? true : null }, 'by ' + o)));
  mount(main, h('h1', {}, 'Reports'),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('div', { class: 'row' }, h('h2', { class: 'grow' }, 'Leads'), picker('leads', leadsBy, ['source', 'stage', 'owner', 'month'])),
        lrows.length ? barChart(lrows, 'count') : h('p', { class: 'muted' }, 'No leads yet.'),
        h('table', {}, h('thead', {}, h('tr', {}, ['Group', 'Leads', 'Converted', 'Rate', 'Value'].map((t) => h('th', {}, t)))), h('tbody', {}, lrows.map((r) => h('tr', {}, h('td', {}, r.label || r.key || '(none)'), h('td', {}, r.count), h('td', {}, r.converted), h('td', {}, r.conversion_rate === null ? '—' : fmtNum(100 * r.conversion_rate, 1) + ' %'), h('td', {}, fmtMoney(r.value))))))),
      h('div', { class: 'card' }, h('div', { class: 'row' }, h('h2', { class: 'grow' }, 'Deals'), picker('deals', dealsBy, ['stage', 'source', 'owner', 'month', 'pipeline'])),
        drows.length ? barChart(drows, 'value', fmtMoney) : h('p', { class: 'muted' }, 'No deals yet.'),
        h('table', {}, h('thead', {}, h('tr', {}, ['Group', 'Deals', 'Open', 'Won', 'Win rate', 'Value'].map((t) => h('th', {}, t)))), h('tbody', {}, drows.map((r) => h('tr', {}, h('td', {}, r.label || r.key || '(none)'), h('td', {}, r.count), h('td', {}, r.open), h('td', {}, r.won), h('td', {}, r.win_rate === null ? '—' : fmtNum(100 * r.win_rate, 1) + ' %'), h('td', {}, fmtMoney(r.value)))))))));
});

// ---- Webhooks ----------------------------------------------------------------------------------

route('/webhooks', async (_, main) => {
  const [list, cat] = await Promise.all([get('/v1/webhooks?per_page=100'), get('/v1/webhooks/events')]);
  const events = (cat.data || []).map((e) => e.event);
  const slot = h('div');
  const url = h('input', { type: 'url', placeholder: 'https://example.com/hooks/cairn', style: { width: '100%' }, 'aria-label': 'Endpoint URL' });
  const picks = events.map((e) => h('label', { class: 'inline small', style: { width: '260px' } }, h('input', { type: 'checkbox', value: e }), e));
  mount(main, h('h1', {}, 'Webhooks'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Endpoint', 'Events', 'Status'].map((t) => h('th', {}, t)))),
      h('tbody', {}, (list.data || []).map((w) => h('tr', { class: 'click', onclick: () => go('/webhooks/' + w.id) }, h('td', {}, w.url), h('td', { class: 'small' }, w.events.join(', ')), h('td', {}, statusPill(w.status), w.disabled_reason ? h('div', { class: 'small muted' }, w.disabled_reason) : null))))),
    h('div', { class: 'card', style: { marginTop: '16px' } }, h('h2', {}, 'Add an endpoint'), url, h('h3', {}, 'Send these events'), h('div', { class: 'row' }, picks), slot,
      action('Add endpoint', () => attempt(slot, async () => {
        const chosen = picks.map((p) => $('input', p)).filter((i) => i.checked).map((i) => i.value);
        const r = await post('/v1/webhooks', { url: url.value.trim(), events: chosen }); const d = r.data || r;
        flash(notice('Endpoint added. Its signing secret is shown this once — store it now:'), h('div', { class: 'secret' }, d.secret));
        render();
      }), { class: 'primary' })));
});

route('/webhooks/:id', async (p, main) => {
  const r = await get('/v1/webhooks/' + p.id); const w = r.data || r;
  const slot = h('div');
  const log = pagedTable(main, { path: `/v1/webhooks/${w.id}/deliveries`, perPage: 20, cols: [
    { title: 'Event', value: (d) => d.event || d.event_type }, { title: 'Status', value: (d) => statusPill(d.status) }, { title: 'HTTP', value: (d) => d.response_status ?? d.last_status ?? '—' },
    { title: 'Attempts', value: (d) => d.attempts ?? '—' }, { title: 'When', value: (d) => fmtTime(d.created_at) },
    { title: '', value: (d) => action('Redeliver', () => attempt(slot, async () => { await post(`/v1/webhooks/deliveries/${d.id}/redeliver`); slot.replaceChildren(notice('Queued for redelivery.')); log.reload(); })) }],
  empty: 'No deliveries yet.' });
  mount(main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, w.url), h('a', { href: '#/webhooks' }, '‹ All webhooks')), slot,
    h('div', { class: 'card' }, h('div', {}, 'Events: ', w.events.join(', ')), h('div', {}, 'Status: ', statusPill(w.status)),
      h('div', { class: 'row', style: { marginTop: '8px' } },
        action('Send a test ping', () => attempt(slot, async () => { await post(`/v1/webhooks/${w.id}/ping`); slot.replaceChildren(notice('Ping queued.')); log.reload(); })),
        action(w.status === 'active' ? 'Pause' : 'Resume', () => attempt(slot, async () => { await put('/v1/webhooks/' + w.id, { status: w.status === 'active' ? 'paused' : 'active' }); render(); })),
        action('Rotate secret', () => attempt(slot, async () => { const x = await post(`/v1/webhooks/${w.id}/rotate-secret`); mount(slot, notice('New secret (shown once):'), h('div', { class: 'secret' }, (x.data || x).secret)); })),
        action('Delete', async () => { if (!confirm('Delete this endpoint?')) return; await attempt(slot, async () => { await del('/v1/webhooks/' + w.id); go('/webhooks'); }); }, { class: 'danger' }))),
    h('h2', {}, 'Delivery log'), log);
});

// ---- API keys ----------------------------------------------------------------------------------

route('/keys', async (_, main) => {
  const slot = h('div');
  const form = formFields([{ name: 'name', label: 'Name', placeholder: 'backend server' },
    { name: 'type', label: 'Kind', type: 'select', options: [['secret', 'Secret (servers: full API)'], ['public', 'Public (the website snippet: tracking only)']] },
    { name: 'environment', label: 'Environment', type: 'select', options: ['live', 'test'] }]);
  const table = pagedTable(main, { path: '/v1/api-keys', cols: [
    { title: 'Name', value: (k) => k.name }, { title: 'Key', value: (k) => h('code', {}, (k.prefix || k.key_prefix || '') + '…') }, { title: 'Kind', value: (k) => k.type || k.kind },
    { title: 'Last used', value: (k) => fmtTime(k.last_used_at) }, { title: 'Status', value: (k) => statusPill(k.status || (k.revoked_at ? 'revoked' : 'active')) },
    { title: '', value: (k) => k.revoked_at ? '' : action('Revoke', async () => { if (!confirm(`Revoke “${k.name}”? Anything using it stops working at once.`)) return; await attempt(slot, async () => { await del('/v1/api-keys/' + k.id); table.reload(); }); }, { class: 'danger' }) }],
  empty: 'No keys yet.' });
  mount(main, h('h1', {}, 'API keys'), slot, table,
    h('div', { class: 'card', style: { marginTop: '16px' } }, h('h2', {}, 'Create a key'), h('div', { class: 'grid3' }, form.els),
      action('Create key', () => attempt(slot, async () => {
        const v = form.values();
        if (v.type !== 'public') delete v.environment; // environments are a public-key notion
        const r = await post('/v1/api-keys', v); const k = r.data || r;
        mount(slot, notice('Key created. Copy it now — it is shown only this once:'), h('div', { class: 'secret', id: 'new-key' }, k.key));
        table.reload();
      }), { class: 'primary' })));
});

// ---- Team --------------------------------------------------------------------------------------

const ROLES = ['owner', 'admin', 'member'];
route('/team', async (_, main) => {
  const slot = h('div');
  const [users, invites] = await Promise.all([get('/v1/users?per_page=100'), get('/v1/invitations?per_page=100').catch(() => ({ data: [] }))]);
  const form = formFields([{ name: 'email', label: 'Email', type: 'email' }, { name: 'role', label: 'Role', type: 'select', options: ROLES, value: 'member' }]);
  mount(main, h('h1', {}, 'Team'), slot,
    h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Email', 'Role', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, (users.data || []).map((u) => h('tr', {}, h('td', {}, u.name), h('td', {}, u.email),
        h('td', {}, h('select', { 'aria-label': 'Role of ' + u.email, onchange: (e) => attempt(slot, async () => { await put('/v1/users/' + u.id, { role: e.target.value }); slot.replaceChildren(notice('Role changed.')); }) }, ROLES.map((r) => h('option', { value: r, selected: r === u.role ? true : null }, r)))),
        h('td', {}, action('Remove', async () => { if (!confirm(`Remove ${u.email} from the workspace?`)) return; await attempt(slot, async () => { await del('/v1/users/' + u.id); render(); }); }, { class: 'danger' })))))),
    h('h2', {}, 'Invitations'),
    (invites.data || []).length ? h('table', {}, h('tbody', {}, invites.data.map((i) => h('tr', {}, h('td', {}, i.email), h('td', {}, i.role), h('td', {}, statusPill(i.status)), h('td', {}, 'expires ' + fmtDate(i.expires_at)),
      h('td', {}, i.status === 'pending' ? action('Withdraw', () => attempt(slot, async () => { await del('/v1/invitations/' + i.id); render(); })) : ''))))) : h('p', { class: 'muted' }, 'No invitations.'),
    h('div', { class: 'card', style: { marginTop: '16px' } }, h('h2', {}, 'Invite someone'), h('div', { class: 'grid2' }, form.els),
      action('Send invitation', () => attempt(slot, async () => {
        const r = await post('/v1/invitations', form.values()); const d = r.data || r;
        const link = d.token ? `${location.origin}/app#/invite/${d.token}` : null;
        mount(slot, notice(`Invitation created for ${d.email}.` + (link ? ' Send them this link:' : '')), link ? h('div', { class: 'secret' }, link) : null);
      }), { class: 'primary' })));
});

// ---- Settings ----------------------------------------------------------------------------------

function settingsCard(title, path, fields, transform = (v) => v) {
  const slot = h('div');
  const f = formFields(fields);
  return h('div', { class: 'card', 'data-card': title }, h('h2', {}, title), f.els, slot, action('Save', () => attempt(slot, async () => { await put(path, transform(f.values())); slot.replaceChildren(notice('Saved.')); }), { class: 'primary' }));
}

route('/settings', async (_, main) => {
  const [ws, email, sms, pipes, cf] = await Promise.all([get('/v1/workspace'), get('/v1/settings/email').catch(() => ({ data: {} })), get('/v1/settings/sms').catch(() => ({ data: {} })), get('/v1/pipelines'), get('/v1/custom-fields').catch(() => ({ data: [] }))]);
  const w = ws.data || ws; const e = email.data || {}; const s = sms.data || {};
  const slot = h('div');
  const cfForm = formFields([{ name: 'entity_type', label: 'For', type: 'select', options: ['lead', 'contact', 'prospect', 'opportunity'] }, { name: 'key', label: 'Key', placeholder: 'industry' }, { name: 'label', label: 'Label', placeholder: 'Industry' },
    { name: 'field_type', label: 'Type', type: 'select', options: ['text', 'number', 'date', 'boolean', 'select'] }]);
  mount(main, h('h1', {}, 'Settings'),
    h('div', { class: 'grid2' },
      settingsCard('Workspace', '/v1/workspace', [{ name: 'name', label: 'Name', value: w.name }, { name: 'time_zone', label: 'Time zone (IANA, e.g. Europe/Zagreb)', value: w.time_zone }]),
      settingsCard('Email sending', '/v1/settings/email', [
        { name: 'from_name', label: 'From name', value: e.from_name || '', nullable: true }, { name: 'from_email', label: 'From address', value: e.from_email || '', nullable: true },
        { name: 'reply_to', label: 'Reply-to', value: e.reply_to || '', nullable: true },
        { name: 'smtp_url', label: 'SMTP server (smtp://user:pass@host:port?tls=starttls); empty: the server default', value: e.smtp_url || '', nullable: true, placeholder: e.smtp_url ? '' : 'server default' },
        { name: 'rate_limit', label: 'Messages per second (workspace)', type: 'number', value: e.rate_limit ?? '', nullable: true },
        { name: 'dkim_domain', label: 'DKIM domain', value: e.dkim_domain || '', nullable: true }, { name: 'dkim_selector', label: 'DKIM selector', value: e.dkim_selector || '', nullable: true }]),
      settingsCard('SMS provider (Twilio-compatible)', '/v1/settings/sms', [
        { name: 'api_url', label: 'API URL', value: s.api_url || '', nullable: true }, { name: 'account_sid', label: 'Account SID', value: s.account_sid || '', nullable: true },
        { name: 'auth_token', label: s.auth_token_set ? 'Auth token (set; type to replace)' : 'Auth token' }, { name: 'from', label: 'From number', value: s.from || '', nullable: true },
        { name: 'rate_limit', label: 'Messages per second', type: 'number', value: s.rate_limit ?? '', nullable: true }]),
      h('div', { class: 'card' }, h('h2', {}, 'Pipelines'), (pipes.data || []).map((p) => h('div', { style: { marginBottom: '10px' } }, h('strong', {}, p.name), ' ', h('span', { class: 'muted small' }, p.kind), h('div', { class: 'small' }, (p.stages || []).map((st) => `${st.name}${st.probability !== undefined && st.probability !== null ? ` (${Math.round(st.probability <= 1 ? st.probability * 100 : st.probability)} %)` : ''}`).join(' → ')))),
        pipelineForm(slot)),
      h('div', { class: 'card' }, h('h2', {}, 'Custom fields'), h('ul', {}, (cf.data || []).map((c) => h('li', {}, `${c.entity_type}: ${c.label || c.name} (${c.key || c.name}, ${c.field_type || c.type})`))), cfForm.els,
        action('Add field', () => attempt(slot, async () => { await post('/v1/custom-fields', cfForm.values()); render(); })))),
    slot);
});

function pipelineForm(slot) {
  const name = h('input', { placeholder: 'New pipeline name', 'aria-label': 'Pipeline name' });
  const stages = h('input', { placeholder: 'Stages: Lead in 10, Demo 40, Won 100', 'aria-label': 'Stages', style: { width: '100%' } });
  return h('div', {}, h('h3', {}, 'Add a pipeline'), name, stages, action('Add pipeline', () => attempt(slot, async () => {
    const st = stages.value.split(',').map((x) => x.trim()).filter(Boolean).map((x) => { const m = x.match(/^(.*?)\s+(\d+(?:\.\d+)?)\s*%?$/); return m ? { name: m[1], probability: Number(m[2]) } : { name: x }; });
    await post('/v1/pipelines', { name: name.value.trim(), kind: 'deals', stages: st }); render();
  })));
}
