//! The circuit breaker the payment actor consults before every gateway call.
//!
//! Pure and clock-free: every method takes `now`, so tests drive it through
//! every transition without sleeping.
//!
//! - **Closed**: calls pass. Outcomes go into a sliding window of the last
//!   `window` calls. Once the window holds at least `min_calls` outcomes, a
//!   failure rate ≥ `failure_rate` or a slow-call rate ≥ `slow_call_rate`
//!   (calls taking ≥ `slow_call_ms`) opens the breaker.
//! - **Open**: calls are refused at once, with the time left until the breaker
//!   will try again. After `open_ms` the next call finds it half-open.
//! - **Half-open**: up to `half_open_probes` calls pass as probes; the rest are
//!   refused. A failed or slow probe opens the breaker again; once
//!   `half_open_probes` probes have succeeded it closes with an empty window.
//!
//! A declined payment is a success here: the gateway answered, and answered fast.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// How one gateway call ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    Failure,
}

/// Permission for one call; hand it back to [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    probe: bool,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: BreakerState,
    /// (failed, slow) of the most recent calls, oldest first.
    window: VecDeque<(bool, bool)>,
    opened_at: Option<Instant>,
    probes_in_flight: usize,
    probes_succeeded: usize,
    /// Transitions since start, for `/metrics` and tests.
    pub transitions: u64,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            window: VecDeque::with_capacity(settings.window),
            settings,
            state: BreakerState::Closed,
            opened_at: None,
            probes_in_flight: 0,
            probes_succeeded: 0,
            transitions: 0,
        }
    }

    /// The bulkhead's size (`payment.breaker.max_concurrent`).
    pub fn max_concurrent(&self) -> usize {
        self.settings.max_concurrent
    }

    /// The state as of `now` (an open breaker whose time is up reads half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) if now >= at + self.open_for() => BreakerState::HalfOpen,
            (state, _) => state,
        }
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.settings.open_ms)
    }

    /// Time until an open breaker lets a probe through.
    pub fn retry_after(&self, now: Instant) -> Duration {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) => (at + self.open_for()).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Asks to make a call now: a permit, or the time to wait before asking again.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Duration> {
        if self.state(now) == BreakerState::HalfOpen && self.state == BreakerState::Open {
            self.transition(BreakerState::HalfOpen, now);
        }
        match self.state {
            BreakerState::Closed => Ok(Permit { probe: false }),
            BreakerState::Open => Err(self.retry_after(now)),
            BreakerState::HalfOpen => {
                if self.probes_in_flight + self.probes_succeeded < self.settings.half_open_probes.max(1) {
                    self.probes_in_flight += 1;
                    Ok(Permit { probe: true })
                } else {
                    // Probes are out; the answer comes within one call timeout.
                    Err(Duration::from_secs(1))
                }
            }
        }
    }

    /// Records how a permitted call ended and how long it took.
    pub fn record(&mut self, permit: Permit, outcome: CallOutcome, took: Duration, now: Instant) {
        let failed = outcome == CallOutcome::Failure;
        let slow = took >= Duration::from_millis(self.settings.slow_call_ms);
        if permit.probe {
            if self.state != BreakerState::HalfOpen {
                return; // a probe that outlived its half-open period
            }
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
            if failed || slow {
                self.transition(BreakerState::Open, now);
            } else {
                self.probes_succeeded += 1;
                if self.probes_succeeded >= self.settings.half_open_probes.max(1) {
                    self.transition(BreakerState::Closed, now);
                }
            }
            return;
        }
        if self.state != BreakerState::Closed {
            return; // a call admitted before the breaker opened
        }
        if self.window.len() == self.settings.window.max(1) {
            self.window.pop_front();
        }
        self.window.push_back((failed, slow));
        if self.window.len() < self.settings.min_calls.max(1) {
            return;
        }
        let calls = self.window.len() as f64;
        let failures = self.window.iter().filter(|(failed, _)| *failed).count() as f64;
        let slows = self.window.iter().filter(|(_, slow)| *slow).count() as f64;
        if failures / calls >= self.settings.failure_rate || slows / calls >= self.settings.slow_call_rate {
            self.transition(BreakerState::Open, now);
        }
    }

    fn transition(&mut self, to: BreakerState, now: Instant) {
        let from = self.state;
        self.state = to;
        self.transitions += 1;
        self.probes_in_flight = 0;
        self.probes_succeeded = 0;
        match to {
            BreakerState::Open => self.opened_at = Some(now),
            BreakerState::Closed => {
                self.window.clear();
                self.opened_at = None;
            }
            BreakerState::HalfOpen => {}
        }
        tracing::warn!(from = from.as_str(), to = to.as_str(), "payment circuit breaker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            window: 10,
            min_calls: 4,
            failure_rate: 0.5,
            slow_call_ms: 100,
            slow_call_rate: 0.5,
            open_ms: 1_000,
            half_open_probes: 2,
            max_concurrent: 8,
        }
    }

    const FAST: Duration = Duration::from_millis(5);
    const SLOW: Duration = Duration::from_millis(150);

    fn call(breaker: &mut Breaker, outcome: CallOutcome, took: Duration, now: Instant) {
        let permit = breaker.try_acquire(now).expect("a permit");
        breaker.record(permit, outcome, took, now);
    }

    #[test]
    fn opens_on_failure_rate_only_after_min_calls() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(settings());
        for _ in 0..3 {
            call(&mut breaker, CallOutcome::Failure, FAST, t0);
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed, "3 calls are fewer than min_calls");
        call(&mut breaker, CallOutcome::Failure, FAST, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }

    #[test]
    fn stays_closed_below_the_failure_rate() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(settings());
        for n in 0..10 {
            let outcome = if n % 3 == 2 { CallOutcome::Failure } else { CallOutcome::Success };
            call(&mut breaker, outcome, FAST, t0);
            assert_eq!(breaker.state(t0), BreakerState::Closed, "at most 1 in 3 failed: under 50%");
        }
    }

    #[test]
    fn opens_on_slow_call_rate() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(settings());
        for _ in 0..2 {
            call(&mut breaker, CallOutcome::Success, FAST, t0);
        }
        call(&mut breaker, CallOutcome::Success, SLOW, t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        call(&mut breaker, CallOutcome::Success, SLOW, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open, "2 of 4 slow: 50%");
    }

    #[test]
    fn open_refuses_with_the_time_left_then_half_opens() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, CallOutcome::Failure, FAST, t0);
        }
        let wait = breaker.try_acquire(t0 + Duration::from_millis(300)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(700));
        assert_eq!(breaker.state(t0 + Duration::from_millis(999)), BreakerState::Open);
        assert_eq!(breaker.state(t0 + Duration::from_millis(1_000)), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_closes_after_successful_probes() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, CallOutcome::Failure, FAST, t0);
        }
        let t1 = t0 + Duration::from_millis(1_000);
        let first = breaker.try_acquire(t1).unwrap();
        let second = breaker.try_acquire(t1).unwrap();
        assert!(breaker.try_acquire(t1).is_err(), "only half_open_probes calls pass");
        breaker.record(first, CallOutcome::Success, FAST, t1);
        assert_eq!(breaker.state(t1), BreakerState::HalfOpen);
        breaker.record(second, CallOutcome::Success, FAST, t1);
        assert_eq!(breaker.state(t1), BreakerState::Closed);
        // The window starts empty: one failure does not reopen it.
        call(&mut breaker, CallOutcome::Failure, FAST, t1);
        assert_eq!(breaker.state(t1), BreakerState::Closed);
    }

    #[test]
    fn a_failed_or_slow_probe_opens_again() {
        for (outcome, took) in [(CallOutcome::Failure, FAST), (CallOutcome::Success, SLOW)] {
            let t0 = Instant::now();
            let mut breaker = Breaker::new(settings());
            for _ in 0..4 {
                call(&mut breaker, CallOutcome::Failure, FAST, t0);
            }
            let t1 = t0 + Duration::from_millis(1_000);
            let probe = breaker.try_acquire(t1).unwrap();
            breaker.record(probe, outcome, took, t1);
            assert_eq!(breaker.state(t1), BreakerState::Open);
            assert_eq!(breaker.retry_after(t1), Duration::from_millis(1_000), "a fresh open period");
        }
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(settings());
        for _ in 0..4 {
            call(&mut breaker, CallOutcome::Success, FAST, t0);
        }
        for _ in 0..10 {
            call(&mut breaker, CallOutcome::Success, FAST, t0);
        }
        // 4 failures in a window of 10: 40%, closed; the 5th makes it 50%.
        for _ in 0..4 {
            call(&mut breaker, CallOutcome::Failure, FAST, t0);
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        call(&mut breaker, CallOutcome::Failure, FAST, t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }
}
