//! Signed public links of a message (docs/campaigns.md): the open pixel, click redirects,
//! one-click unsubscribe, "view in browser" and SMS status callbacks. Each carries the send
//! record's id and an HMAC-SHA256 (truncated to 128 bits) under a server-wide secret, so none
//! can be forged or pointed at another recipient — and a click link only redirects to the URL it
//! was signed for (no open redirect).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a link does; part of what is signed, so a token of one kind is useless as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Open,
    Click,
    Unsubscribe,
    View,
    SmsStatus,
}

impl LinkKind {
    fn tag(self) -> &'static str {
        match self {
            LinkKind::Open => "o",
            LinkKind::Click => "c",
            LinkKind::Unsubscribe => "u",
            LinkKind::View => "v",
            LinkKind::SmsStatus => "s",
        }
    }
}

/// Builds and checks links under a public base URL.
#[derive(Clone)]
pub struct Links {
    base: String,
    secret: Vec<u8>,
}

impl Links {
    pub fn new(public_url: &str, secret: &[u8]) -> Links {
        Links { base: public_url.trim_end_matches('/').to_string(), secret: secret.to_vec() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn sig(&self, kind: LinkKind, send: i64, extra: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(format!("{}:{send}:{extra}", kind.tag()).as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// `{send}.{signature}`.
    pub fn token(&self, kind: LinkKind, send: i64, extra: &str) -> String {
        format!("{send}.{}", self.sig(kind, send, extra))
    }

    /// The send id a token stands for, if its signature holds.
    pub fn verify(&self, kind: LinkKind, token: &str, extra: &str) -> Option<i64> {
        let (id, sig) = token.split_once('.')?;
        let id: i64 = id.parse().ok()?;
        let want = self.sig(kind, id, extra);
        let ok = want.len() == sig.len() && want.bytes().zip(sig.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        ok.then_some(id)
    }

    pub fn open_url(&self, send: i64) -> String {
        format!("{}/t/o/{}.gif", self.base, self.token(LinkKind::Open, send, ""))
    }

    pub fn click_url(&self, send: i64, target: &str) -> String {
        let enc: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        format!("{}/t/c/{}?u={enc}", self.base, self.token(LinkKind::Click, send, target))
    }

    pub fn unsubscribe_url(&self, send: i64) -> String {
        format!("{}/u/{}", self.base, self.token(LinkKind::Unsubscribe, send, ""))
    }

    pub fn view_url(&self, send: i64) -> String {
        format!("{}/v/{}", self.base, self.token(LinkKind::View, send, ""))
    }

    pub fn sms_status_url(&self, send: i64) -> String {
        format!("{}/hooks/sms/status/{}", self.base, self.token(LinkKind::SmsStatus, send, ""))
    }
}

/// Rewrites every `href="http(s)://…"` of an HTML body through `rewrite`, except the
/// unsubscribe and view links (they are tracked on their own).
pub fn rewrite_links(html: &str, skip: &[&str], mut rewrite: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(html.len() + html.len() / 4);
    let mut rest = html;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(i) = lower.find("href=") else { break };
        let after = &rest[i + 5..];
        let Some(q @ ('"' | '\'')) = after.chars().next() else {
            out.push_str(&rest[..i + 5]);
            rest = after;
            continue;
        };
        let Some(end) = after[1..].find(q) else { break };
        let raw = &after[1..1 + end];
        let target = raw.replace("&amp;", "&");
        out.push_str(&rest[..i + 5]);
        out.push(q);
        let trackable = (target.starts_with("http://") || target.starts_with("https://"))
            && !skip.iter().any(|s| !s.is_empty() && target == *s);
        if trackable {
            out.push_str(&rewrite(&target).replace('&', "&amp;"));
        } else {
            out.push_str(raw);
        }
        out.push(q);
        rest = &after[2 + end..];
    }
    out.push_str(rest);
    out
}

/// Adds the open pixel before `</body>`, or at the end.
pub fn add_pixel(html: &str, pixel_url: &str) -> String {
    let img = format!(r#"<img src="{pixel_url}" width="1" height="1" alt="" style="display:none">"#);
    match html.to_ascii_lowercase().rfind("</body>") {
        Some(i) => format!("{}{img}{}", &html[..i], &html[i..]),
        None => format!("{html}{img}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_kind_send_and_target() {
        let l = Links::new("https://c.test/", b"secret");
        let t = l.token(LinkKind::Click, 42, "https://a.test");
        assert_eq!(l.verify(LinkKind::Click, &t, "https://a.test"), Some(42));
        assert_eq!(l.verify(LinkKind::Click, &t, "https://evil.test"), None);
        assert_eq!(l.verify(LinkKind::Open, &t, "https://a.test"), None);
        assert_eq!(l.verify(LinkKind::Click, &t.replacen("42", "43", 1), "https://a.test"), None);
        assert!(l.unsubscribe_url(7).starts_with("https://c.test/u/7."));
    }

    #[test]
    fn rewrites_links_but_not_unsubscribe() {
        let html = r#"<a href="https://shop.test/?a=1&amp;b=2">x</a> <a href="mailto:a@b">m</a> <a href='https://c.test/u/1.x'>u</a>"#;
        let out = rewrite_links(html, &["https://c.test/u/1.x"], |u| format!("T[{u}]"));
        assert_eq!(
            out,
            r#"<a href="T[https://shop.test/?a=1&amp;b=2]">x</a> <a href="mailto:a@b">m</a> <a href='https://c.test/u/1.x'>u</a>"#
        );
        assert!(add_pixel("<body>x</body>", "P").contains(r#"x<img src="P""#));
    }
}
