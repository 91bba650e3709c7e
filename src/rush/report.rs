//! What a rush measured: per endpoint, outcomes by status and latency from
//! HDR histograms, and the summary printed (or written as JSON) at the end.
//!
//! Latency is taken from the moment a request was *due* by the schedule, not
//! from when a connection was free to send it: time spent waiting behind a
//! slow answer counts (the coordinated-omission correction). The time from the
//! actual send is kept beside it as `service` latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::profile::Profile;

/// The endpoints a rush calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    PlaceOrder,
    GetOrder,
    Cancel,
    Pickup,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [Endpoint::PlaceOrder, Endpoint::GetOrder, Endpoint::Cancel, Endpoint::Pickup];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::PlaceOrder => "POST /orders",
            Endpoint::GetOrder => "GET /orders/{id}",
            Endpoint::Cancel => "POST /orders/{id}/cancel",
            Endpoint::Pickup => "POST /orders/{id}/pickup",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Status(u16),
    /// No answer within the client timeout.
    Timeout,
    /// Connection refused, reset or closed before an answer.
    Error,
    /// Never sent: the generator's own backlog was full.
    Dropped,
}

impl Outcome {
    pub fn label(self) -> String {
        match self {
            Outcome::Status(code) => code.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Error => "error".into(),
            Outcome::Dropped => "dropped".into(),
        }
    }

    /// Shed by the server: 429 or 503.
    pub fn is_shed(self) -> bool {
        matches!(self, Outcome::Status(429 | 503))
    }
}

const MAX_LATENCY_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

#[derive(Default)]
struct EndpointStats {
    by_outcome: BTreeMap<Outcome, Histogram<u64>>,
    service: Option<Histogram<u64>>,
    /// Answers (and 2xx answers) that arrived inside the measured window.
    answered_in_window: u64,
    ok_in_window: u64,
    /// What went wrong, by `STATUS problem_code` (from the problem document),
    /// `timeout`, `connection_error` or `dropped`.
    failures: BTreeMap<String, u64>,
}

/// Shared by every connection of a rush.
pub struct Recorder {
    endpoints: [Mutex<EndpointStats>; 4],
    /// `POST /orders` latency since the last progress line.
    interval: Mutex<Histogram<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { endpoints: Default::default(), interval: Mutex::new(histogram()) }
    }
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

impl Recorder {
    /// `latency` is from when the request was due; `service` from when it was
    /// sent; `in_window` whether the answer came before the schedule ended
    /// (throughput counts only those: a backlog drained afterwards is not).
    pub fn record(&self, endpoint: Endpoint, outcome: Outcome, latency: Duration, service: Option<Duration>, in_window: bool) {
        let latency = micros(latency);
        {
            let mut stats = self.endpoints[endpoint.index()].lock().unwrap_or_else(|e| e.into_inner());
            if in_window && outcome != Outcome::Dropped {
                stats.answered_in_window += 1;
                if matches!(outcome, Outcome::Status(200..=299)) {
                    stats.ok_in_window += 1;
                }
            }
            let _ = stats.by_outcome.entry(outcome).or_insert_with(histogram).record(latency);
            if let Some(service) = service {
                let _ = stats.service.get_or_insert_with(histogram).record(micros(service));
            }
        }
        if endpoint == Endpoint::PlaceOrder && outcome != Outcome::Dropped {
            let _ = self.interval.lock().unwrap_or_else(|e| e.into_inner()).record(latency);
        }
    }

    /// Counts one failed request under `label` (see [`failure_label`]).
    pub fn record_failure(&self, endpoint: Endpoint, label: String) {
        let mut stats = self.endpoints[endpoint.index()].lock().unwrap_or_else(|e| e.into_inner());
        *stats.failures.entry(label).or_default() += 1;
    }

    /// p99 of `POST /orders` since the last call, in ms; resets the interval.
    pub fn take_interval_p99_ms(&self) -> Option<f64> {
        let mut interval = self.interval.lock().unwrap_or_else(|e| e.into_inner());
        let p99 = (!interval.is_empty()).then(|| interval.value_at_quantile(0.99) as f64 / 1000.0);
        interval.reset();
        p99
    }

    pub fn summary(&self, measured: Duration) -> Vec<EndpointReport> {
        let seconds = measured.as_secs_f64().max(f64::EPSILON);
        Endpoint::ALL
            .iter()
            .filter_map(|endpoint| {
                let stats = self.endpoints[endpoint.index()].lock().unwrap_or_else(|e| e.into_inner());
                let mut all = histogram();
                let mut statuses = BTreeMap::new();
                let mut by_status = BTreeMap::new();
                let mut shed = histogram();
                for (outcome, hist) in &stats.by_outcome {
                    statuses.insert(outcome.label(), hist.len());
                    if *outcome == Outcome::Dropped {
                        continue;
                    }
                    all.add(hist).expect("same bounds");
                    if outcome.is_shed() {
                        shed.add(hist).expect("same bounds");
                    }
                    by_status.insert(outcome.label(), Latency::of(hist));
                }
                let requests: u64 = statuses.values().sum();
                if requests == 0 {
                    return None;
                }
                Some(EndpointReport {
                    endpoint: endpoint.name(),
                    requests,
                    statuses,
                    throughput_per_s: stats.answered_in_window as f64 / seconds,
                    ok_per_s: stats.ok_in_window as f64 / seconds,
                    latency_ms: Latency::of(&all),
                    shed_latency_ms: (!shed.is_empty()).then(|| Latency::of(&shed)),
                    service_latency_ms: stats.service.as_ref().map(Latency::of),
                    by_status_latency_ms: by_status,
                    failures: stats.failures.clone(),
                })
            })
            .collect()
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(hist: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: &'static str,
    /// Everything scheduled, answered or not (recorded after the warm-up).
    pub requests: u64,
    /// Count per status code, `timeout`, `error` or `dropped`.
    pub statuses: BTreeMap<String, u64>,
    /// Answers (any status, timeouts and errors) that arrived within the
    /// measured window, per second of it.
    pub throughput_per_s: f64,
    /// 2xx answers that arrived within the measured window, per second of it.
    pub ok_per_s: f64,
    /// From when each request was due (corrected for coordinated omission).
    pub latency_ms: Latency,
    /// The same, for 429 and 503 answers only.
    pub shed_latency_ms: Option<Latency>,
    /// From when each request was actually written (not corrected).
    pub service_latency_ms: Option<Latency>,
    pub by_status_latency_ms: BTreeMap<String, Latency>,
    /// Failed requests by `STATUS problem_code` (e.g. `429 overloaded`, `503
    /// payment_unavailable`), `timeout`, `connection_error` or `dropped`.
    pub failures: BTreeMap<String, u64>,
}

/// How a failed answer is counted: its status and, for a problem document,
/// its `code` (`503 payment_unavailable`); `None` for a 2xx or 3xx other than
/// 202, which crema answers when an order's outcome is not known in time.
pub fn failure_label(outcome: Outcome, body: &[u8]) -> Option<String> {
    match outcome {
        Outcome::Status(100..=201 | 203..=399) => None,
        Outcome::Status(status) => {
            #[derive(serde::Deserialize)]
            struct Problem {
                code: Option<String>,
            }
            let code = serde_json::from_slice::<Problem>(body).ok().and_then(|problem| problem.code);
            Some(match code {
                Some(code) => format!("{status} {code}"),
                None => status.to_string(),
            })
        }
        Outcome::Timeout => Some("timeout".into()),
        Outcome::Error => Some("connection_error".into()),
        Outcome::Dropped => Some("dropped".into()),
    }
}

/// A pass/fail limit on the run (k6-style), set with `--max-p99` and
/// `--min-success`; any failed one makes `crema rush` exit with 99.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdResult {
    pub name: &'static str,
    pub limit: f64,
    pub value: f64,
    pub passed: bool,
}

/// Resident memory of the engine's process, sampled once a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub pid: u32,
    pub start_mib: f64,
    pub peak_mib: f64,
    pub end_mib: f64,
    /// One sample a second from the start of the schedule.
    pub samples_mib: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub embedded: bool,
    pub profile: Profile,
    pub behaviour: super::mix::Behaviour,
    pub connections: usize,
    pub warmup_s: f64,
    /// The time after the warm-up over which rates are computed.
    pub measured_s: f64,
    pub orders_offered: u64,
    pub orders_accepted: u64,
    /// With `--retries`: attempts after the first, and orders whose customer
    /// ran out of attempts (or of time) without a final answer.
    pub retries_sent: u64,
    pub orders_given_up: u64,
    pub accepted_per_s: f64,
    pub endpoints: Vec<EndpointReport>,
    pub memory: Option<Memory>,
    /// The thresholds asked for, checked against `POST /orders`.
    pub thresholds: Vec<ThresholdResult>,
    /// The rush second by second (warm-up included), for charts.
    pub per_second: Vec<Second>,
}

/// One second of a rush: what the schedule offered, what happened to the
/// requests answered in that second, and the p99 of `POST /orders` in it.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the schedule started.
    pub t_s: f64,
    /// Orders per second the profile offered at that moment.
    pub offered_rate: f64,
    /// Requests of every kind sent.
    pub sent: u64,
    /// `POST /orders` answered 201.
    pub accepted: u64,
    /// Answers 429 or 503.
    pub shed: u64,
    /// Timeouts and connection errors.
    pub failed: u64,
    /// Requests dropped because the backlog was full.
    pub dropped: u64,
    pub orders_p99_ms: Option<f64>,
    /// The engine's RSS, when sampled.
    pub rss_mib: Option<f64>,
}

impl Report {
    /// Whether every threshold passed (true when none was set).
    pub fn thresholds_passed(&self) -> bool {
        self.thresholds.iter().all(|threshold| threshold.passed)
    }
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rush against {}{}: {:?} profile, peak {}/s, {:.0} s measured after {:.0} s warm-up, {} connections",
            self.target,
            if self.embedded { " (embedded)" } else { "" },
            self.profile.shape,
            self.profile.peak_rate,
            self.measured_s,
            self.warmup_s,
            self.connections
        );
        let _ = writeln!(
            out,
            "orders: {} offered, {} accepted ({:.1}/s)\n",
            self.orders_offered, self.orders_accepted, self.accepted_per_s
        );
        let _ = writeln!(
            out,
            "{:<26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  statuses",
            "endpoint", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for endpoint in &self.endpoints {
            let l = &endpoint.latency_ms;
            let statuses: Vec<String> = endpoint.statuses.iter().map(|(code, n)| format!("{code}×{n}")).collect();
            let _ = writeln!(
                out,
                "{:<26} {:>9} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
                endpoint.endpoint,
                endpoint.requests,
                endpoint.throughput_per_s,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                statuses.join(" ")
            );
            if let Some(shed) = &endpoint.shed_latency_ms {
                let _ = writeln!(
                    out,
                    "{:<26} {:>9} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    "  of which 429/503", "", "", shed.p50, shed.p90, shed.p99, shed.p999, shed.max
                );
            }
            if !endpoint.failures.is_empty() {
                let failures: Vec<String> = endpoint.failures.iter().map(|(label, n)| format!("{label} ×{n}")).collect();
                let _ = writeln!(out, "{:<26} {}", "  failures", failures.join(", "));
            }
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(
                out,
                "\nengine RSS (pid {}): {:.1} MiB at start, {:.1} MiB peak, {:.1} MiB at end",
                memory.pid, memory.start_mib, memory.peak_mib, memory.end_mib
            );
        }
        if self.retries_sent > 0 || self.orders_given_up > 0 {
            let _ = writeln!(
                out,
                "\nretrying customers: {} attempts after the first, {} orders given up",
                self.retries_sent, self.orders_given_up
            );
        }
        if !self.thresholds.is_empty() {
            let _ = writeln!(out);
            for threshold in &self.thresholds {
                let verdict = if threshold.passed { "passed" } else { "FAILED" };
                let _ = writeln!(
                    out,
                    "threshold {}: {:.3} against a limit of {}: {verdict}",
                    threshold.name, threshold.value, threshold.limit
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_labelled_by_status_and_problem_code() {
        let problem = br#"{"type":"/problems/overloaded","status":429,"code":"overloaded"}"#;
        assert_eq!(failure_label(Outcome::Status(429), problem).as_deref(), Some("429 overloaded"));
        assert_eq!(failure_label(Outcome::Status(502), b"<html>").as_deref(), Some("502"));
        assert_eq!(failure_label(Outcome::Status(201), b"{}"), None);
        let pending = br#"{"code":"placement_pending","order_id":"x"}"#;
        assert_eq!(failure_label(Outcome::Status(202), pending).as_deref(), Some("202 placement_pending"));
        assert_eq!(failure_label(Outcome::Error, b"").as_deref(), Some("connection_error"));
    }

    #[test]
    fn summary_splits_outcomes_and_keeps_dropped_out_of_latency() {
        let recorder = Recorder::default();
        for ms in 1..=100 {
            recorder.record(Endpoint::PlaceOrder, Outcome::Status(201), Duration::from_millis(ms), None, true);
        }
        recorder.record(Endpoint::PlaceOrder, Outcome::Status(201), Duration::from_millis(2), None, false);
        recorder.record(Endpoint::PlaceOrder, Outcome::Status(503), Duration::from_micros(300), None, true);
        recorder.record(Endpoint::PlaceOrder, Outcome::Dropped, Duration::from_secs(60), None, true);
        let summary = recorder.summary(Duration::from_secs(10));
        assert_eq!(summary.len(), 1, "endpoints never called are left out");
        let orders = &summary[0];
        assert_eq!(orders.requests, 103);
        assert_eq!(orders.statuses["201"], 101);
        assert_eq!(orders.statuses["dropped"], 1);
        assert!((orders.ok_per_s - 10.0).abs() < 1e-9, "an answer after the window is not throughput");
        assert!((orders.throughput_per_s - 10.1).abs() < 1e-9);
        assert!(orders.latency_ms.max < 101.0, "a dropped request is not an answer: {:?}", orders.latency_ms);
        assert!((orders.latency_ms.p50 - 50.0).abs() <= 1.5, "{:?}", orders.latency_ms);
        assert!(orders.shed_latency_ms.as_ref().unwrap().max < 0.31);
    }
}
