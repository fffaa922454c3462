//! Request counters and latency histograms by route, rendered with the stores' histograms
//! and queue depths as Prometheus text at `GET /metrics`.

use std::{
    collections::HashMap,
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
    /// route → method → counts by status and latency. Looked up by `&str`, so a request
    /// whose route and method were seen before allocates nothing here.
    routes: Mutex<HashMap<String, HashMap<String, RouteStats>>>,
    pub api_logs_dropped: AtomicU64,
}

#[derive(Default)]
struct RouteStats {
    statuses: HashMap<u16, u64>,
    latency: Histogram,
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), HashMap::new());
        }
        let methods = routes.get_mut(route).expect("inserted above");
        if !methods.contains_key(method) {
            methods.insert(method.to_string(), RouteStats::default());
        }
        let stats = methods.get_mut(method).expect("inserted above");
        *stats.statuses.entry(status).or_default() += 1;
        stats.latency.observe(elapsed);
    }

    pub fn render(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut sorted: Vec<(&String, &String, &RouteStats)> =
            routes.iter().flat_map(|(r, ms)| ms.iter().map(move |(m, s)| (r, m, s))).collect();
        sorted.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out.push_str("# HELP cairn_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        for (r, m, stats) in &sorted {
            let mut statuses: Vec<_> = stats.statuses.iter().collect();
            statuses.sort();
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "cairn_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{status}\"}} {n}",
                    esc(r)
                );
            }
        }
        out.push_str("# HELP cairn_http_request_duration_seconds HTTP request latency by method and route.\n");
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        for (r, m, stats) in &sorted {
            let labels = format!("method=\"{m}\",route=\"{}\"", esc(r));
            render_histogram(out, "cairn_http_request_duration_seconds", &labels, &stats.latency);
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
