//! The WebAssembly interface: one function, `call(command) -> answer`, which the JavaScript
//! (snippet/js/runtime.js) drives. A command is an operation letter and its arguments joined by
//! U+001F (the unit separator, which JSON text never contains raw); times are integer
//! milliseconds. One entry point instead of a method per operation keeps wasm-bindgen's glue and
//! the module small (each `&str` argument costs an allocation and its handling code).
//!
//! | op | arguments | answer |
//! |---|---|---|
//! | `n` | key, anon, email, opted out (`1`), saved queue, now | |
//! | `s` | restored session, its last activity, a fresh id, now | the session id |
//! | `t` | event, properties, message id, timestamp, context, now | |
//! | `p` | url, title, referrer, path, properties, message id, timestamp, context, now | |
//! | `i` | email, name, phone, traits, message id, timestamp, context, now | the visitor's email |
//! | `d` | now | `1` when a request should go |
//! | `k` | beacon (`1`) | the request body, or nothing |
//! | `a` / `r` | now | (accepted / refused for good) |
//! | `x` | now | milliseconds until the retry |
//! | `v` | | the queue to save |
//! | `z` | new anonymous id | |
//! | `o` | `1` to opt out, else opt in | |
//! | `u` | a query string | `context.campaign` JSON, or nothing |

use alloc::string::{String, ToString};
use core::cell::RefCell;
use wasm_bindgen::prelude::*;

use crate::{campaign, Core, Stamp};

#[global_allocator]
static ALLOC: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    // SAFETY: WebAssembly in a page runs on one thread.
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

/// A panic (none is expected: the core indexes nothing it has not checked) stops the module
/// without formatting a message — which keeps the formatting machinery out of the binary. The
/// JavaScript catches the trap; the page never sees it.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

struct One(RefCell<Option<Core>>);
// SAFETY: WebAssembly in a page runs on one thread.
unsafe impl Sync for One {}
static TRACKER: One = One(RefCell::new(None));

fn ms(s: &str) -> u64 {
    s.bytes().take_while(u8::is_ascii_digit).fold(0u64, |n, d| n.wrapping_mul(10).wrapping_add(u64::from(d - b'0')))
}

#[wasm_bindgen]
pub fn call(command: &str) -> String {
    let mut a = command.split('\u{1f}');
    let op = a.next().unwrap_or("");
    let mut next = || a.next().unwrap_or("");
    if op == "u" {
        return campaign(next());
    }
    let mut slot = TRACKER.0.borrow_mut();
    if op == "n" {
        let (key, anon, email, out, saved) = (next(), next(), next(), next() == "1", next());
        *slot = Some(Core::new(key, anon, email, out, saved, ms(next())));
        return String::new();
    }
    let Some(t) = slot.as_mut() else { return String::new() };
    match op {
        "s" => {
            let (restored, seen, fresh) = (next(), ms(next()), next());
            t.session(restored, seen, fresh, ms(next())).to_string()
        }
        "t" => {
            let (event, props, id, ts, ctx) = (next(), next(), next(), next(), next());
            t.track(event, props, &Stamp { message_id: id, timestamp: ts, context: ctx, now_ms: ms(next()) });
            String::new()
        }
        "p" => {
            let (url, title, referrer, path, props) = (next(), next(), next(), next(), next());
            let (id, ts, ctx) = (next(), next(), next());
            t.page(
                url,
                title,
                referrer,
                path,
                props,
                &Stamp { message_id: id, timestamp: ts, context: ctx, now_ms: ms(next()) },
            );
            String::new()
        }
        "i" => {
            let (email, name, phone, traits) = (next(), next(), next(), next());
            let (id, ts, ctx) = (next(), next(), next());
            t.identify(
                email,
                name,
                phone,
                traits,
                &Stamp { message_id: id, timestamp: ts, context: ctx, now_ms: ms(next()) },
            );
            t.email().to_string()
        }
        "d" => if t.due(ms(next())) { "1" } else { "" }.to_string(),
        "k" => t.take(next() == "1"),
        "a" => {
            t.ack(ms(next()));
            String::new()
        }
        "r" => {
            t.drop_in_flight(ms(next()));
            String::new()
        }
        "x" => {
            let wait = t.nack(ms(next()));
            let mut s = String::new();
            let digits = [wait / 10000 % 10, wait / 1000 % 10, wait / 100 % 10, wait / 10 % 10, wait % 10];
            for d in digits {
                if !s.is_empty() || d > 0 {
                    s.push(char::from(b'0' + d as u8));
                }
            }
            s
        }
        "v" => t.saved(),
        "z" => {
            t.reset(next());
            String::new()
        }
        "o" => {
            t.set_opted_out(next() == "1");
            String::new()
        }
        _ => String::new(),
    }
}
