/* The tracker's browser side (docs/snippet.md), appended to wasm-bindgen's glue for the Rust
 * core (snippet/src): storage, cookies, history, fetch and sendBeacon. Every public method is
 * guarded: nothing here throws into the host page. */
const K = 'cairn_', YEAR = 31536e3;
const rid = () => (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));
const ls = (k, v) => { try { if (v === undefined) return localStorage.getItem(K + k) || ''; if (v === null) localStorage.removeItem(K + k); else localStorage.setItem(K + k, v); } catch (e) {} return ''; };
const cookie = (k, v) => {
  try {
    if (v === undefined) { const m = document.cookie.match('(?:^|; )' + K + k + '=([^;]*)'); return m ? decodeURIComponent(m[1]) : ''; }
    document.cookie = K + k + '=' + encodeURIComponent(v) + '; path=/; max-age=' + (v ? YEAR : 0) + '; samesite=lax' + (location.protocol == 'https:' ? '; secure' : '');
  } catch (e) {}
  return '';
};
const iso = () => new Date().toISOString();
// The core's one entry point (snippet/src/wasm.rs): an operation and its arguments.
const C = (...a) => call(a.join('\x1f'));

export async function start(w, base, wasmUrl) {
  const E = w.EnterCRM;
  await __wbg_init({ module_or_path: wasmUrl });
  const url = base + '/v1/track/batch', now = () => Date.now();
  let anon = cookie('anon') || ls('anon');
  if (!anon) anon = rid();
  const keep = () => { cookie('anon', anon); ls('anon', anon); };
  keep();
  const gpc = E.honorGPC && navigator.globalPrivacyControl;
  const consent = ls('consent');
  const out = consent ? consent == 'out' : !!(gpc || E.requireConsent);
  C('n', E.apiKey || '', anon, ls('email'), out ? 1 : 0, ls('queue'), now());
  const [sid, seen] = ls('session').split('|');
  let sending = false, last = '';
  const save = () => ls('queue', C('v'));
  const ctx = () => {
    const s = C('s', sid || '', seen || 0, rid(), now());
    ls('session', s + '|' + now());
    const c = {
      page: { url: location.href, path: location.pathname, search: location.search, title: document.title, referrer: document.referrer },
      referrer: document.referrer ? { url: document.referrer } : undefined,
      userAgent: navigator.userAgent, locale: navigator.language,
      screen: { width: screen.width, height: screen.height },
      session_id: s, library: { name: 'cairn-snippet', version: '1' },
    };
    const u = C('u', location.search);
    if (u) c.campaign = JSON.parse(u);
    return JSON.stringify(c);
  };
  const send = (beacon) => {
    if (sending) return;
    const body = C('k', beacon ? 1 : 0);
    if (!body) return;
    if (beacon) {
      // Offline, the messages stay saved for the next page instead.
      C(navigator.onLine !== false && navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: 'text/plain' })) ? 'a' : 'x', now());
      return;
    }
    sending = true;
    fetch(url, { method: 'POST', body, keepalive: body.length < 6e4, headers: { 'Content-Type': 'text/plain' } })
      .then((r) => {
        C(r.ok ? 'a' : r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429 ? 'r' : 'x', now());
      }, () => C('x', now()))
      .then(() => { sending = false; save(); if (C('d', now())) send(); });
  };
  const tick = () => { if (C('d', now())) send(); };
  const after = () => { save(); tick(); };
  const guard = (f) => function () { try { return f.apply(null, arguments); } catch (e) {} };
  const page = (p) => {
    p = Object.assign({}, p);
    const u = p.url || location.href, title = p.title || document.title, ref = p.referrer || document.referrer, path = p.path || location.pathname;
    delete p.url; delete p.title; delete p.referrer; delete p.path;
    last = location.href;
    C('p', u, title, ref, path, JSON.stringify(p), rid(), iso(), ctx(), now());
    after();
  };
  const api = {
    identify: (x) => {
      x = Object.assign({}, x);
      const email = String(x.email || ''), name = String(x.name || ''), phone = String(x.phone || '');
      delete x.email; delete x.name; delete x.phone;
      ls('email', C('i', email, name, phone, JSON.stringify(x), rid(), iso(), ctx(), now()));
      after();
    },
    track: (name, props) => { if (name) { C('t', String(name), JSON.stringify(props || {}), rid(), iso(), ctx(), now()); after(); } },
    page,
    reset: () => { anon = rid(); keep(); C('z', anon); ls('email', null); ls('session', null); },
    optOut: () => { ls('consent', 'out'); C('o', 1); ls('queue', null); },
    optIn: () => { ls('consent', 'in'); C('o', 0); },
    flush: () => send(),
  };
  const q = E.q || [];
  for (const k in api) E[k] = guard(api[k]);
  E.q = null;
  // Calls made before the tracker was ready, in order; then the automatic pageview.
  q.forEach((c) => E[c[0]] && E[c[0]].apply(null, c[1]));
  // Campaign attribution on the profile: first touch kept, last touch replaced.
  const u = C('u', location.search);
  if (u) {
    const touch = Object.assign(JSON.parse(u), { url: location.href, referrer: document.referrer, at: iso() });
    const first = ls('first_touch') || JSON.stringify(touch);
    ls('first_touch', first);
    C('i', '', '', '', '{"first_touch":' + first + ',"last_touch":' + JSON.stringify(touch) + '}', rid(), iso(), ctx(), now());
  }
  if (E.autoPageview !== false) {
    E.page();
    const nav = () => setTimeout(guard(() => { if (location.href != last) page(); }), 0);
    for (const m of ['pushState', 'replaceState']) {
      const orig = history[m];
      history[m] = function () { const r = orig.apply(this, arguments); nav(); return r; };
    }
    w.addEventListener('popstate', nav);
  }
  setInterval(guard(tick), 1000);
  w.addEventListener('online', guard(() => send()));
  const leave = guard(() => { save(); send(true); save(); });
  w.addEventListener('pagehide', leave);
  document.addEventListener('visibilitychange', () => { if (document.visibilityState == 'hidden') leave(); });
  tick();
}
