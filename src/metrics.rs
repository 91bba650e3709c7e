//! Prometheus metrics (`GET /metrics`, text format 0.0.4): counters and
//! fixed-bucket histograms on atomics, so recording never takes a lock or
//! allocates. Rendering reads them all once per scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram over fixed upper bounds (inclusive), plus `+Inf`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// Latency buckets in microseconds: 100 µs to 10 s.
pub const LATENCY_US: &[u64] =
    &[100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];
/// Café durations in milliseconds (lead time, queue wait, brew time): 1 s to 30 min.
pub const CAFE_MS: &[u64] = &[1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 1_800_000];
/// Group-size buckets for the store writer.
pub const GROUP_SIZES: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024];

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let index = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` series; `scale` divides
    /// values for display (1e6 turns microseconds into seconds).
    pub fn render(&self, out: &mut String, name: &str, labels: &str, scale: f64) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}", *bound as f64 / scale);
        }
        cumulative += self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum.load(Ordering::Relaxed) as f64 / scale);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count.load(Ordering::Relaxed));
    }
}

/// Which part of the API a request was for, as a bounded label.
pub const ROUTES: &[&str] = &["place_order", "get_order", "order_command", "list_orders", "events", "stations", "operations", "pages", "other"];

/// A path's first segments, without allocating: every route has at most
/// five, so a sixth only says "longer". Returns them and how many there are.
pub fn path_segments(path: &str) -> ([&str; 6], usize) {
    let mut parts = path.trim_matches('/').split('/');
    let mut segments = [""; 6];
    let mut len = 0;
    while len < segments.len() {
        match parts.next() {
            Some(segment) => segments[len] = segment,
            None => break,
        }
        len += 1;
    }
    (segments, len)
}

/// The [`ROUTES`] index of `name`, which must be one of them.
pub fn route_index(name: &str) -> usize {
    ROUTES.iter().position(|route| *route == name).expect("a route named in ROUTES")
}

pub fn route_of(method: &http::Method, path: &str) -> usize {
    let (segments, len) = path_segments(path);
    let name = match (method.as_str(), &segments[..len]) {
        ("POST", ["orders"]) => "place_order",
        ("GET", ["orders"]) => "list_orders",
        ("GET", ["orders", _]) => "get_order",
        ("POST", ["orders", _, _]) => "order_command",
        ("GET", ["orders", _, "events"]) | ("GET", ["events"]) => "events",
        (_, ["stations", ..]) | (_, ["queue"]) | (_, ["stores", ..]) => "stations",
        (_, ["stats" | "metrics" | "healthz" | "readyz" | "menu" | "openapi.json"]) => "operations",
        ("GET", [""] | ["barista"] | ["dashboard"] | ["static", ..]) => "pages",
        _ => "other",
    };
    ROUTES.iter().position(|route| *route == name).unwrap_or(ROUTES.len() - 1)
}


/// What the HTTP edge records.
#[derive(Debug)]
pub struct HttpMetrics {
    /// Request latency (µs, to the response head) by [`ROUTES`] index.
    pub latency: Vec<Histogram>,
    /// `POST /orders` answers by status code: 201, 4xx and 5xx kept apart.
    pub order_outcomes: Vec<(u16, AtomicU64)>,
}

const OUTCOMES: &[u16] = &[201, 202, 400, 402, 404, 408, 409, 413, 415, 422, 429, 500, 503];

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            latency: ROUTES.iter().map(|_| Histogram::new(LATENCY_US)).collect(),
            order_outcomes: OUTCOMES.iter().map(|code| (*code, AtomicU64::new(0))).collect(),
        }
    }
}

impl HttpMetrics {
    pub fn order_outcome(&self, status: u16) {
        if let Some((_, count)) = self.order_outcomes.iter().find(|(code, _)| *code == status) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP crema_orders_total POST /orders answers by HTTP status code.\n# TYPE crema_orders_total counter\n");
        for (code, count) in &self.order_outcomes {
            let _ = writeln!(out, "crema_orders_total{{code=\"{code}\"}} {}", count.load(Ordering::Relaxed));
        }
        out.push_str("# HELP crema_http_request_duration_seconds Time to the response head.\n# TYPE crema_http_request_duration_seconds histogram\n");
        for (route, histogram) in ROUTES.iter().zip(&self.latency) {
            histogram.render(out, "crema_http_request_duration_seconds", &format!("route=\"{route}\""), 1e6);
        }
    }
}

/// `process_*` (as the Prometheus client libraries name them, from
/// `/proc/self`) and `crema_build_info`.
pub fn render_process(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP crema_build_info The running build; always 1.\n# TYPE crema_build_info gauge\ncrema_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let page = 4096.0;
    let ticks = 100.0; // CLK_TCK on Linux
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let field = |n: usize| fields.get(n).and_then(|value| value.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            let _ = writeln!(out, "# HELP process_cpu_seconds_total User and system CPU time spent.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}", (user + system) / ticks);
        }
        if let (Some(start), Ok(uptime)) = (field(19), std::fs::read_to_string("/proc/uptime")) {
            let since_boot = uptime.split_whitespace().next().and_then(|value| value.parse::<f64>().ok()).unwrap_or(0.0);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let _ = writeln!(out, "# HELP process_start_time_seconds Start time of the process since the epoch.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {:.0}", now - since_boot + start / ticks);
        }
        if let (Some(virtual_bytes), Some(resident_pages)) = (field(20), field(21)) {
            let _ = writeln!(out, "# HELP process_virtual_memory_bytes Virtual memory size.\n# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes {virtual_bytes}");
            let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory size.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}", resident_pages * page);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}", entries.count());
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let max = limits.lines().find(|line| line.starts_with("Max open files")).and_then(|line| line.split_whitespace().nth(3));
        if let Some(max) = max.and_then(|max| max.parse::<u64>().ok()) {
            let _ = writeln!(out, "# HELP process_max_fds Most open file descriptors allowed.\n# TYPE process_max_fds gauge\nprocess_max_fds {max}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let histogram = Histogram::new(&[10, 100]);
        for value in [5, 10, 11, 1_000] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.render(&mut out, "x", "", 1.0);
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"100\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum 1026\n") && out.contains("x_count 4\n"), "{out}");
    }

    #[test]
    fn routes_are_classified() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert_eq!(ROUTES[route_of(&post, "/orders")], "place_order");
        assert_eq!(ROUTES[route_of(&get, "/orders/abc")], "get_order");
        assert_eq!(ROUTES[route_of(&post, "/orders/abc/cancel")], "order_command");
        assert_eq!(ROUTES[route_of(&get, "/orders/abc/events")], "events");
        assert_eq!(ROUTES[route_of(&get, "/")], "pages");
        assert_eq!(ROUTES[route_of(&get, "/nope/x/y/z")], "other");
    }
}
