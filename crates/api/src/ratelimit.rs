//! Per-credential rate limits over a sliding 60-second window (seed 004).
//!
//! The window is the sliding-window-counter approximation: the current minute's count plus
//! the previous minute's, weighted by how much of it still overlaps the last 60 seconds. It
//! needs two counters per bucket instead of a log of every request, and is exact when traffic
//! is even. Limits are kept per instance (a shared store would add a write to every request);
//! with N instances behind a balancer a credential may reach up to N × its limit.
//! Windows follow wall time, not the injected clock: they meter real traffic.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

const WINDOW: f64 = 60.0;
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Window {
    index: u64,
    count: u64,
    previous: u64,
}

/// The outcome of one check, with what the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Unix time (seconds) when the current window ends.
    pub reset: u64,
    /// Seconds to wait before a retry can succeed (when refused).
    pub retry_after: u64,
}

pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, Window>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl RateLimiter {
    pub fn check(&self, bucket: &str, limit: u64) -> Decision {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        self.check_at(bucket, limit, now)
    }

    pub fn check_at(&self, bucket: &str, limit: u64, now: f64) -> Decision {
        let index = (now / WINDOW).floor() as u64;
        let shard = &self.shards[shard_of(bucket)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 50_000 {
            // Forget buckets idle for two windows (they would count as empty anyway).
            map.retain(|_, w| w.index + 1 >= index);
        }
        let w = map.entry(bucket.to_string()).or_insert(Window { index, count: 0, previous: 0 });
        if w.index != index {
            w.previous = if w.index + 1 == index { w.count } else { 0 };
            w.count = 0;
            w.index = index;
        }
        let elapsed = (now - index as f64 * WINDOW) / WINDOW;
        let weight = 1.0 - elapsed;
        let estimate = w.previous as f64 * weight + w.count as f64;
        let reset = (index + 1) * WINDOW as u64;
        if estimate + 1.0 > limit as f64 {
            return Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset,
                retry_after: retry_after(w, limit, elapsed),
            };
        }
        w.count += 1;
        let used = (estimate + 1.0).ceil() as u64;
        Decision { allowed: true, limit, remaining: limit.saturating_sub(used), reset, retry_after: 0 }
    }
}

/// Seconds until one more request fits: the previous window's weight decays linearly; if the
/// current window alone is full, the wait is until the next window (where it becomes the
/// decaying "previous").
fn retry_after(w: &Window, limit: u64, elapsed: f64) -> u64 {
    let room = limit as f64 - 1.0 - w.count as f64;
    let secs = if room >= 0.0 && w.previous > 0 {
        // previous × (1 − e′) ≤ room  ⇒  e′ ≥ 1 − room / previous
        let target = 1.0 - room / w.previous as f64;
        (target - elapsed) * WINDOW
    } else {
        // Wait into the next window until the current count has decayed enough.
        let target = if w.count > 0 { 1.0 - (limit as f64 - 1.0) / w.count as f64 } else { 0.0 };
        (1.0 - elapsed + target.max(0.0)) * WINDOW
    };
    secs.ceil().max(1.0) as u64
}

fn shard_of(bucket: &str) -> usize {
    // FNV-1a: stable and cheap; the shard only spreads lock contention.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bucket.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % SHARDS as u64) as usize
}

/// The ingestion routes (seed 003's `/v1/track/*` and Segment's tracking API) have their own,
/// much higher limits: they must sustain tens of thousands of events per second.
pub fn is_ingest_path(path: &str) -> bool {
    const SEGMENT: &[&str] = &[
        "/v1/identify",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/group",
        "/v1/alias",
        "/v1/batch",
        "/v1/import",
        "/v1/t",
        "/v1/i",
        "/v1/p",
        "/v1/s",
        "/v1/g",
        "/v1/a",
        "/v1/b",
    ];
    path.starts_with("/v1/track/") || path.starts_with("/v1/projects/") || SEGMENT.contains(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_refuses_until_the_count_decays() {
        let rl = RateLimiter::default();
        let t0 = 6000.0; // the start of a window
        for i in 0..120 {
            let d = rl.check_at("k", 120, t0 + i as f64 * 0.1);
            assert!(d.allowed, "request {i} should pass");
        }
        let refused = rl.check_at("k", 120, t0 + 20.0);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.retry_after >= 1);
        // Half-way through the next window, half of the previous minute's 120 still counts.
        let d = rl.check_at("k", 120, t0 + 90.0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 120 - 61);
        // Buckets are independent.
        assert!(rl.check_at("other", 120, t0 + 20.0).allowed);
    }

    #[test]
    fn retry_after_points_at_when_a_request_fits_again() {
        let rl = RateLimiter::default();
        let t0 = 6000.0;
        for _ in 0..10 {
            rl.check_at("k", 10, t0);
        }
        let refused = rl.check_at("k", 10, t0 + 30.0);
        assert!(!refused.allowed);
        let wait = refused.retry_after as f64;
        assert!(!rl.check_at("k", 10, t0 + 30.0 + wait - 2.0).allowed, "too early");
        assert!(rl.check_at("k", 10, t0 + 30.0 + wait).allowed, "retry_after was {wait}");
    }

    #[test]
    fn ingestion_paths_are_recognised() {
        assert!(is_ingest_path("/v1/track/event"));
        assert!(is_ingest_path("/v1/batch"));
        assert!(is_ingest_path("/v1/t"));
        assert!(!is_ingest_path("/v1/customers"));
        assert!(!is_ingest_path("/v1/tracking"));
    }
}
