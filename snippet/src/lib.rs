//! The tracker's core (docs/snippet.md): who the visitor is, their session, consent, the queue of
//! messages with its batching, retry backoff and offline persistence, and campaign (UTM)
//! parameters. The JavaScript around it (snippet/js/) only touches the browser: storage,
//! cookies, history, `fetch` and `sendBeacon`.
//!
//! Written for size: messages are built as JSON text directly (no serde, no `format!`), so the
//! WebAssembly module stays a few kilobytes. JSON fragments handed in by the JavaScript
//! (`properties`, `context`, `traits`) come from `JSON.stringify` and are embedded as they are.

// In the browser: no_std, so that nothing links the formatting machinery that std's panics
// bring (the panic handler in wasm.rs aborts without a message). Natively (tests): std.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{
    string::{String, ToString},
    vec::Vec,
};

#[cfg(target_arch = "wasm32")]
mod wasm;

/// Messages sent per request.
pub const BATCH: usize = 20;
/// Messages a `pagehide` beacon carries at most (sendBeacon bodies are limited to 64 KB).
pub const BEACON_BATCH: usize = 50;
/// A queue not full is sent this long after its oldest message arrived.
pub const FLUSH_MS: u64 = 3_000;
/// Messages kept while the network is down (the oldest give way); also what is saved.
pub const MAX_QUEUE: usize = 200;
/// A session ends after this long without activity.
pub const SESSION_MS: u64 = 30 * 60 * 1000;
/// Longest wait between retries.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// Appends `s` as a JSON string literal.
#[inline(never)]
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let n = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(char::from_digit((n >> shift) & 0xf, 16).unwrap_or('0'));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON fragment handed in by the page's JavaScript, or `fallback` when it is empty or not
/// an object (a message must stay valid JSON whatever the page passed).
#[inline(never)]
fn object_or<'a>(fragment: &'a str, fallback: &'a str) -> &'a str {
    let t = trim(fragment);
    if t.starts_with('{') && t.ends_with('}') && !t.contains('\n') {
        t
    } else {
        fallback
    }
}

#[inline(never)]
fn field(out: &mut String, name: &str, value: &str) {
    out.push(',');
    push_json_str(out, name);
    out.push(':');
    push_json_str(out, value);
}

#[inline(never)]
fn raw_field(out: &mut String, name: &str, json: &str) {
    out.push(',');
    push_json_str(out, name);
    out.push(':');
    out.push_str(json);
}

/// ASCII whitespace trimmed (`str::trim` would bring Unicode's tables into the module).
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_whitespace())
}

/// Decodes `%XX` escapes and `+` (application/x-www-form-urlencoded). Invalid escapes stay.
#[inline(never)]
pub fn url_decode(s: &str) -> String {
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.as_bytes().iter();
    while let Some(&c) = it.next() {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let rest = it.as_slice();
                match (hex(rest.first()), hex(rest.get(1))) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        it.nth(1);
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
    }
    // Not UTF-8 once decoded: kept as it came.
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// The campaign parameters of a query string (`?utm_source=news&utm_medium=email`) as
/// `context.campaign` (Segment's names: `name` for utm_campaign, `source`, `medium`, `term`,
/// `content`); empty when there are none.
pub fn campaign(query: &str) -> String {
    const NAMES: [(&str, &str); 5] = [
        ("utm_campaign", "name"),
        ("utm_source", "source"),
        ("utm_medium", "medium"),
        ("utm_term", "term"),
        ("utm_content", "content"),
    ];
    let mut seen = [false; 5];
    let mut out = String::new();
    for pair in query.trim_start_matches('?').split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(((_, name), seen)) = NAMES.iter().zip(seen.iter_mut()).find(|((q, _), _)| *q == k) else {
            continue;
        };
        let v = url_decode(v);
        if v.is_empty() || *seen {
            continue;
        }
        *seen = true;
        out.push(if out.is_empty() { '{' } else { ',' });
        push_json_str(&mut out, name);
        out.push(':');
        push_json_str(&mut out, &v);
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

/// What a message says about who and when.
pub struct Stamp<'a> {
    pub message_id: &'a str,
    /// ISO 8601, from the page's clock.
    pub timestamp: &'a str,
    /// The `context` object (page, referrer, campaign, user agent, session).
    pub context: &'a str,
    pub now_ms: u64,
}

/// The tracker's state. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Core {
    key: String,
    anon: String,
    email: String,
    session: String,
    session_seen: u64,
    opted_out: bool,
    /// Messages as JSON text; the first `in_flight` are being sent.
    queue: Vec<String>,
    in_flight: usize,
    failures: u32,
    retry_at: u64,
    /// When the oldest message not yet sent was queued.
    oldest: u64,
}

impl Core {
    /// `saved`: the queue a previous page left (see [`Core::saved`]).
    pub fn new(key: &str, anon: &str, email: &str, opted_out: bool, saved: &str, now_ms: u64) -> Core {
        let mut c = Core {
            key: key.into(),
            anon: anon.into(),
            email: email.into(),
            session: String::new(),
            session_seen: 0,
            opted_out,
            queue: Vec::new(),
            in_flight: 0,
            failures: 0,
            retry_at: 0,
            oldest: now_ms,
        };
        if !opted_out {
            c.queue = saved.lines().filter(|l| l.starts_with('{') && l.ends_with('}')).map(str::to_string).collect();
            c.trim();
        }
        c
    }

    pub fn anon(&self) -> &str {
        &self.anon
    }

    pub fn email(&self) -> &str {
        &self.email
    }

    pub fn opted_out(&self) -> bool {
        self.opted_out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The session id, renewed (to `fresh`) after [`SESSION_MS`] without activity; a restored
    /// session (`seen` > 0) continues when recent enough.
    pub fn session(&mut self, restored: &str, seen: u64, fresh: &str, now_ms: u64) -> &str {
        if self.session.is_empty() && !restored.is_empty() && now_ms.saturating_sub(seen) < SESSION_MS {
            self.session = restored.into();
            self.session_seen = seen;
        }
        if self.session.is_empty() || now_ms.saturating_sub(self.session_seen) >= SESSION_MS {
            self.session = fresh.into();
        }
        self.session_seen = now_ms;
        &self.session
    }

    #[inline(never)]
    fn push(&mut self, kind: &str, body: &str, s: &Stamp) {
        if self.opted_out {
            return;
        }
        let mut m = String::with_capacity(body.len() + s.context.len() + 160);
        m.push_str("{\"type\":");
        push_json_str(&mut m, kind);
        m.push_str(body);
        field(&mut m, "anonymous_id", &self.anon);
        if !self.email.is_empty() && kind != "identify" {
            field(&mut m, "customer_email", &self.email);
        }
        field(&mut m, "message_id", s.message_id);
        field(&mut m, "timestamp", s.timestamp);
        raw_field(&mut m, "context", object_or(s.context, "{}"));
        m.push('}');
        if self.queue.len() == self.in_flight {
            self.oldest = s.now_ms;
        }
        self.queue.push(m);
        self.trim();
    }

    /// Drops the oldest messages not in flight beyond [`MAX_QUEUE`].
    #[inline(never)]
    fn trim(&mut self) {
        let excess = self.queue.len().saturating_sub(MAX_QUEUE).min(self.queue.len() - self.in_flight);
        if excess > 0 {
            let keep = self.in_flight;
            let mut i = 0;
            self.queue.retain(|_| {
                i += 1;
                i <= keep || i > keep + excess
            });
        }
    }

    pub fn track(&mut self, event: &str, properties: &str, s: &Stamp) {
        let mut b = String::new();
        field(&mut b, "event", event);
        raw_field(&mut b, "properties", object_or(properties, "{}"));
        self.push("event", &b, s);
    }

    pub fn page(&mut self, url: &str, title: &str, referrer: &str, path: &str, properties: &str, s: &Stamp) {
        let mut b = String::new();
        for (k, v) in [("url", url), ("title", title), ("referrer", referrer), ("path", path)] {
            if !v.is_empty() {
                field(&mut b, k, v);
            }
        }
        raw_field(&mut b, "properties", object_or(properties, "{}"));
        self.push("page", &b, s);
    }

    /// `email` becomes the visitor's: later events carry it until [`Core::reset`].
    pub fn identify(&mut self, email: &str, name: &str, phone: &str, traits: &str, s: &Stamp) {
        if self.opted_out {
            return; // not even remembered: later events must not carry it
        }
        if !email.is_empty() {
            self.email = trim(email).to_ascii_lowercase();
        }
        let mut b = String::new();
        for (k, v) in [("email", self.email.as_str()), ("name", name), ("phone", phone)] {
            if !v.is_empty() {
                field(&mut b, k, v);
            }
        }
        raw_field(&mut b, "traits", object_or(traits, "{}"));
        self.push("identify", &b, s);
    }

    /// Whether a request should go now: nothing in flight, not backing off, and a full batch
    /// or a message waiting [`FLUSH_MS`].
    pub fn due(&self, now_ms: u64) -> bool {
        !self.opted_out
            && self.in_flight == 0
            && !self.queue.is_empty()
            && now_ms >= self.retry_at
            && (self.queue.len() >= BATCH || now_ms.saturating_sub(self.oldest) >= FLUSH_MS)
    }

    /// The next request's body (`{"api_key", "batch"}`), marking its messages in flight; empty
    /// when there is nothing to send or a request is already out. `beacon`: the page is going
    /// away — take more, and ignore any backoff.
    pub fn take(&mut self, beacon: bool) -> String {
        if self.opted_out || self.in_flight > 0 || self.queue.is_empty() {
            return String::new();
        }
        let n = self.queue.len().min(if beacon { BEACON_BATCH } else { BATCH });
        let mut body = String::from("{\"api_key\":");
        push_json_str(&mut body, &self.key);
        body.push_str(",\"batch\":[");
        for (i, m) in self.queue.iter().take(n).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(m);
        }
        body.push_str("]}");
        self.in_flight = n;
        body
    }

    /// The request in flight was accepted.
    pub fn ack(&mut self, now_ms: u64) {
        let sent = self.in_flight;
        let mut i = 0;
        self.queue.retain(|_| {
            i += 1;
            i > sent
        });
        self.in_flight = 0;
        self.failures = 0;
        self.retry_at = 0;
        self.oldest = now_ms;
    }

    /// The request in flight failed (network, 5xx, 429): its messages go back to the head of
    /// the queue; returns how long to wait before trying again (1 s, 2 s, 4 s … 60 s).
    pub fn nack(&mut self, now_ms: u64) -> u64 {
        self.in_flight = 0;
        self.failures = self.failures.saturating_add(1);
        let wait = (1000u64 << (self.failures.min(7) - 1)).min(MAX_BACKOFF_MS);
        self.retry_at = now_ms + wait;
        wait
    }

    /// The request in flight was refused for good (400: a message the server will never take):
    /// dropped, so that one bad message cannot block the queue.
    pub fn drop_in_flight(&mut self, now_ms: u64) {
        self.ack(now_ms);
    }

    /// The queue as saved between pages (one message per line; in-flight messages included, so
    /// a page closed mid-request loses nothing — the server drops repeats by message id).
    pub fn saved(&self) -> String {
        let mut out = String::new();
        for m in self.queue.iter().skip(self.queue.len().saturating_sub(MAX_QUEUE)) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(m);
        }
        out
    }

    /// Logout: forget the email, start as a new anonymous visitor.
    pub fn reset(&mut self, anon: &str) {
        self.email.clear();
        self.anon = anon.into();
        self.session.clear();
    }

    /// Opting out drops everything queued and sends nothing until opting in again.
    pub fn set_opted_out(&mut self, out: bool) {
        self.opted_out = out;
        if out {
            self.queue.clear();
            self.in_flight = 0;
        }
    }
}

#[cfg(test)]
mod tests;
