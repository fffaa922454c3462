//! The plain-text part of an HTML email. Written by hand: the crates that do this parse full
//! HTML5 (html5ever) and would double the build for what a dozen rules cover — blocks become
//! line breaks, list items dashes, links "text (url)", entities decoded, head/style/script
//! dropped.

/// Plain text for an HTML body.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut link: Option<(String, usize)> = None;
    while let Some(lt) = rest.find('<') {
        out.push_str(&decode(&rest[..lt]));
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            out.push_str(&decode(&rest[lt..]));
            rest = "";
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match (name.as_str(), closing) {
            ("head" | "style" | "script" | "title", false) => {
                let end = format!("</{name}");
                match rest.to_ascii_lowercase().find(&end) {
                    Some(i) => rest = &rest[i..],
                    None => rest = "",
                }
            }
            ("br", _) => out.push('\n'),
            ("p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "ul" | "ol" | "blockquote", _) => {
                out.push_str("\n\n")
            }
            ("tr", true) => out.push('\n'),
            ("li", false) => out.push_str("\n- "),
            ("td" | "th", true) => out.push(' '),
            ("hr", _) => out.push_str("\n\n----\n\n"),
            ("a", false) => link = href(tag).map(|h| (h, out.len())),
            ("a", true) => {
                if let Some((h, start)) = link.take() {
                    let text = out[start..].trim().to_string();
                    if !text.is_empty() && text != h && !h.starts_with('#') {
                        out.push_str(&format!(" ({h})"));
                    } else if text.is_empty() {
                        out.push_str(&h);
                    }
                }
            }
            _ => {}
        }
    }
    out.push_str(&decode(rest));
    tidy(&out)
}

fn href(tag: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let i = lower.find("href")?;
    let v = tag[i + 4..].trim_start().strip_prefix('=')?.trim_start();
    let value = match v.chars().next()? {
        q @ ('"' | '\'') => v[1..].split(q).next()?,
        _ => v.split(|c: char| c.is_whitespace() || c == '>').next()?,
    };
    Some(decode(value))
}

fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &tail[1..e];
            let ch = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Collapses runs of spaces within lines and of blank lines, trims.
fn tidy(s: &str) -> String {
    let mut lines = Vec::new();
    let mut blank = 0;
    for line in s.lines() {
        let l = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if l.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        lines.push(l);
    }
    lines.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_links_and_entities() {
        let html = "<html><head><style>p{color:red}</style></head><body><p>Hi Ana,</p>\
            <p>Use code <b>BACK20</b> &amp; save&nbsp;20%.</p><ul><li>One</li><li>Two</li></ul>\
            <p><a href=\"https://shop.test/x?a=1&amp;b=2\">Shop now</a></p></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hi Ana,\n\nUse code BACK20 & save 20%.\n\n- One\n- Two\n\nShop now (https://shop.test/x?a=1&b=2)"
        );
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(html_to_text("just text, 3 < 4"), "just text, 3 < 4");
    }
}
