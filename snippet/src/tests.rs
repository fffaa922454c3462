use super::*;

fn stamp<'a>(id: &'a str, now: u64) -> Stamp<'a> {
    Stamp { message_id: id, timestamp: "2026-11-27T10:00:00.000Z", context: r#"{"page":{"path":"/"}}"#, now_ms: now }
}

/// Every body the core produces is valid JSON (checked by a tiny validator: no JSON crate in
/// this crate, on purpose).
fn assert_json(s: &str) {
    fn value(b: &[u8], i: &mut usize) {
        ws(b, i);
        match b[*i] {
            b'{' => {
                *i += 1;
                ws(b, i);
                if b[*i] == b'}' {
                    *i += 1;
                    return;
                }
                loop {
                    ws(b, i);
                    string(b, i);
                    ws(b, i);
                    assert_eq!(b[*i], b':');
                    *i += 1;
                    value(b, i);
                    ws(b, i);
                    match b[*i] {
                        b',' => *i += 1,
                        b'}' => {
                            *i += 1;
                            return;
                        }
                        c => panic!("unexpected {}", c as char),
                    }
                }
            }
            b'[' => {
                *i += 1;
                ws(b, i);
                if b[*i] == b']' {
                    *i += 1;
                    return;
                }
                loop {
                    value(b, i);
                    ws(b, i);
                    match b[*i] {
                        b',' => *i += 1,
                        b']' => {
                            *i += 1;
                            return;
                        }
                        c => panic!("unexpected {}", c as char),
                    }
                }
            }
            b'"' => string(b, i),
            _ => {
                while *i < b.len() && !b",}] \n".contains(&b[*i]) {
                    *i += 1;
                }
            }
        }
    }
    fn string(b: &[u8], i: &mut usize) {
        assert_eq!(b[*i], b'"');
        *i += 1;
        while b[*i] != b'"' {
            assert!(b[*i] >= 0x20, "raw control character in a string");
            if b[*i] == b'\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    }
    fn ws(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    value(b, &mut i);
    assert_eq!(i, b.len(), "trailing text in {s}");
}

#[test]
fn messages_are_seed_003_batch_items() {
    let mut c = Core::new("pk_live_abc", "anon-1", "", false, "", 0);
    c.track("purchase", r#"{"amount":149.99,"currency":"EUR"}"#, &stamp("m1", 0));
    c.page("https://shop.test/a?x=1", "A \"quoted\" title", "", "/a", "", &stamp("m2", 1));
    c.identify("Ana@Example.com", "Ana Kovač", "", r#"{"created_at":"2025-06-01"}"#, &stamp("m3", 2));
    c.track("after", "not json", &stamp("m4", 3));
    let body = c.take(false);
    assert_json(&body);
    assert!(body.starts_with(r#"{"api_key":"pk_live_abc","batch":[{"type":"event","event":"purchase","properties":{"amount":149.99,"currency":"EUR"},"anonymous_id":"anon-1","message_id":"m1""#), "{body}");
    assert!(body.contains(r#""title":"A \"quoted\" title""#), "{body}");
    assert!(
        body.contains(
            r#"{"type":"identify","email":"ana@example.com","name":"Ana Kovač","traits":{"created_at":"2025-06-01"}"#
        ),
        "{body}"
    );
    // After identify, events carry the email; a bad fragment becomes {}.
    assert!(
        body.contains(r#""event":"after","properties":{},"anonymous_id":"anon-1","customer_email":"ana@example.com""#),
        "{body}"
    );
    assert_eq!(c.email(), "ana@example.com");
}

#[test]
fn strings_are_escaped() {
    let mut s = String::new();
    push_json_str(&mut s, "a\"b\\c\nd\u{1}e\u{2028}");
    assert_eq!(s, r#""a\"b\\c\nd\u0001e\u2028""#);
    let mut c = Core::new("k", "a", "", false, "", 0);
    c.track("line\nbreak \"x\"", "{}", &stamp("m\"1", 0));
    assert_json(&c.take(false));
}

#[test]
fn batches_go_when_full_or_after_the_flush_interval() {
    let mut c = Core::new("k", "a", "", false, "", 0);
    c.track("e", "{}", &stamp("m0", 100));
    assert!(!c.due(100 + FLUSH_MS - 1));
    assert!(c.due(100 + FLUSH_MS));
    for i in 1..BATCH {
        c.track("e", "{}", &stamp(&i.to_string(), 200));
    }
    assert!(c.due(201), "a full batch goes at once");
    let body = c.take(false);
    assert_eq!(body.matches("\"type\":\"event\"").count(), BATCH);
    assert!(!c.due(1_000_000_000), "one request at a time");
    assert_eq!(c.take(false), "");
    c.ack(300);
    assert!(c.is_empty());
}

#[test]
fn failures_back_off_and_keep_the_order() {
    let mut c = Core::new("k", "a", "", false, "", 0);
    c.track("first", "{}", &stamp("m1", 0));
    let first = c.take(false);
    c.track("second", "{}", &stamp("m2", 10));
    let waits: Vec<u64> = (0..8)
        .map(|_| {
            let w = c.nack(1000);
            c.take(false);
            w
        })
        .collect();
    assert_eq!(waits, vec![1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
    c.nack(1000);
    assert!(!c.due(1000 + 59_999), "backing off");
    assert!(c.due(1000 + 60_000));
    let again = c.take(false);
    assert!(again.starts_with(&first[..first.len() - 2]), "the failed messages go first, in order");
    assert!(again.contains("second"));
    c.ack(0);
    c.track("third", "{}", &stamp("m3", 0));
    assert!(c.due(FLUSH_MS), "success resets the backoff");
}

#[test]
fn the_queue_survives_a_reload_bounded() {
    let mut c = Core::new("k", "a", "", false, "", 0);
    for i in 0..(MAX_QUEUE + 30) {
        c.track(&format!("e{i}"), "{}", &stamp(&format!("m{i}"), 0));
    }
    assert_eq!(c.len(), MAX_QUEUE, "the oldest give way");
    let saved = c.saved();
    assert_eq!(saved.lines().count(), MAX_QUEUE);
    assert!(saved.lines().next().unwrap().contains("\"e30\""));
    let mut d = Core::new("k", "a", "", false, &(saved + "\ngarbage\n"), 5);
    assert_eq!(d.len(), MAX_QUEUE, "garbage lines are dropped");
    let body = d.take(true);
    assert_json(&body);
    assert_eq!(body.matches("\"type\":\"event\"").count(), BEACON_BATCH);
    // Opted out: a saved queue is not restored.
    assert!(Core::new("k", "a", "", true, &c.saved(), 0).is_empty());
}

#[test]
fn consent_and_reset() {
    let mut c = Core::new("k", "a", "", true, "", 0);
    c.track("e", "{}", &stamp("m", 0));
    c.identify("secret@example.com", "", "", "", &stamp("i0", 0));
    assert_eq!(c.email(), "", "an identify while opted out is not remembered either");
    assert!(c.is_empty() && !c.due(1_000_000_000) && c.take(true).is_empty(), "opted out: nothing queued or sent");
    c.set_opted_out(false);
    c.track("e", "{}", &stamp("m", 0));
    assert_eq!(c.len(), 1);
    c.identify("x@y.z", "", "", "", &stamp("i", 0));
    c.set_opted_out(true);
    assert!(c.is_empty(), "opting out drops the queue");
    c.reset("anon-2");
    assert_eq!((c.anon(), c.email()), ("anon-2", ""));
}

#[test]
fn sessions_renew_after_thirty_idle_minutes() {
    let mut c = Core::new("k", "a", "", false, "", 0);
    assert_eq!(c.session("", 0, "s1", 1000), "s1");
    assert_eq!(c.session("", 0, "s2", 1000 + SESSION_MS - 1), "s1");
    assert_eq!(c.session("", 0, "s3", 1000 + 2 * SESSION_MS), "s3");
    let mut d = Core::new("k", "a", "", false, "", 0);
    assert_eq!(d.session("old", 5000, "new", 6000), "old", "a recent session continues across pages");
    let mut e = Core::new("k", "a", "", false, "", 0);
    assert_eq!(e.session("old", 5000, "new", 5000 + SESSION_MS), "new");
}

#[test]
fn utm_parameters_become_the_campaign() {
    assert_eq!(
        campaign("?utm_source=news%20letter&utm_medium=email&utm_campaign=black+friday&x=1&utm_source=dup"),
        r#"{"source":"news letter","medium":"email","name":"black friday"}"#
    );
    assert_eq!(campaign("?a=1&utm_term="), "");
    assert_eq!(campaign(""), "");
    assert_eq!(url_decode("%E2%82%AC%zz%4"), "€%zz%4");
}
