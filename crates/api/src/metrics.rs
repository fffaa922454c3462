//! Request counters and latency histograms by route, rendered with the stores' histograms
//! and queue depths as Prometheus text at `GET /metrics`.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use cairn_domain::metrics::Histogram;

#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route) → latency.
    latency: Mutex<BTreeMap<(String, String), std::sync::Arc<Histogram>>>,
    pub api_logs_dropped: AtomicU64,
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        {
            let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *r.entry((method.to_string(), route.to_string(), status)).or_default() += 1;
        }
        let h = {
            let mut l = self.latency.lock().unwrap_or_else(|p| p.into_inner());
            l.entry((method.to_string(), route.to_string())).or_default().clone()
        };
        h.observe(elapsed);
    }

    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP cairn_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        for ((m, r, s), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ =
                writeln!(out, "cairn_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {n}", esc(r));
        }
        out.push_str("# HELP cairn_http_request_duration_seconds HTTP request latency by method and route.\n");
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        for ((m, r), h) in self.latency.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let labels = format!("method=\"{m}\",route=\"{}\"", esc(r));
            render_histogram(out, "cairn_http_request_duration_seconds", &labels, h);
        }
        let dropped = self.api_logs_dropped.load(Ordering::Relaxed);
        out.push_str("# HELP cairn_api_logs_dropped_total API log lines dropped because the writer fell behind.\n");
        out.push_str("# TYPE cairn_api_logs_dropped_total counter\n");
        let _ = writeln!(out, "cairn_api_logs_dropped_total {dropped}");
    }
}

pub fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (buckets, count, sum) = h.snapshot();
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
