//! When a store's owner renews its lease, and when it stops serving the
//! store on its own, from the monotonic time it is handed (`now`).
//!
//! The lease lives in JetStream (a KV entry that expires `lease` after its
//! last write, the bucket's `max_age`). The owner cannot see that clock, so
//! it counts from the moment it *sent* its last successful renewal: JetStream
//! received it no earlier, so the entry lives at least `lease` from then.
//! It renews every fifth of the lease (two renewals in a row may fail before
//! it must stop) and stops on its own at three fifths: a margin of two fifths of the
//! lease for a clock running fast, a scheduler late to notice, and the time a
//! request takes to fail. Stopping on time is liveness only: a paused owner
//! that wakes up late is stopped by the journal's fence, not by this.

use std::time::{Duration, Instant};

/// The rhythm of one lease of `lease` (`cluster.lease_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub lease: Duration,
}

impl LeaseTiming {
    pub fn new(lease: Duration) -> Self {
        LeaseTiming { lease }
    }

    /// How often the owner renews.
    pub fn renew_every(&self) -> Duration {
        self.lease / 5
    }

    /// How long after sending its last successful renewal the owner may
    /// still serve.
    pub fn serve_for(&self) -> Duration {
        self.lease * 3 / 5
    }
}

/// An owner's view of its lease on one store.
#[derive(Debug, Clone)]
pub struct Lease {
    timing: LeaseTiming,
    /// When the last renewal JetStream accepted was sent.
    sent: Instant,
}

impl Lease {
    /// A lease whose acquiring write, sent at `sent`, JetStream accepted.
    pub fn acquired(timing: LeaseTiming, sent: Instant) -> Self {
        Lease { timing, sent }
    }

    /// A renewal sent at `sent` was accepted. An answer that arrives after a
    /// later one (out of order) does not move the lease back.
    pub fn renewed(&mut self, sent: Instant) {
        self.sent = self.sent.max(sent);
    }

    /// Whether the owner may still serve the store at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        now < self.deadline()
    }

    /// When the owner stops serving unless a renewal succeeds first.
    pub fn deadline(&self) -> Instant {
        self.sent + self.timing.serve_for()
    }

    /// Whether a renewal is due at `now`.
    pub fn renewal_due(&self, now: Instant) -> bool {
        now >= self.sent + self.timing.renew_every()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(5_000);

    #[test]
    fn the_owner_stops_well_before_the_lease_ends_and_renews_twice_before_that() {
        let timing = LeaseTiming::new(LEASE);
        assert!(timing.serve_for() < LEASE);
        assert!(timing.renew_every() * 2 < timing.serve_for(), "two renewals may fail before the owner must stop");
        assert_eq!(timing.serve_for(), Duration::from_millis(3_000));
        assert_eq!(timing.renew_every(), Duration::from_millis(1_000));
    }

    #[test]
    fn a_lease_holds_until_its_deadline_and_a_renewal_moves_it() {
        let start = Instant::now();
        let mut lease = Lease::acquired(LeaseTiming::new(LEASE), start);
        assert!(lease.holds(start));
        assert!(!lease.renewal_due(start + Duration::from_millis(999)));
        assert!(lease.renewal_due(start + Duration::from_millis(1_000)));
        assert!(lease.holds(start + Duration::from_millis(2_999)));
        assert!(!lease.holds(start + Duration::from_millis(3_000)), "stopped at three fifths of the lease");
        lease.renewed(start + Duration::from_millis(1_700));
        assert!(lease.holds(start + Duration::from_millis(4_000)));
        assert!(!lease.holds(start + Duration::from_millis(4_700)));
    }

    #[test]
    fn a_late_answer_to_an_older_renewal_does_not_move_the_lease_back() {
        let start = Instant::now();
        let mut lease = Lease::acquired(LeaseTiming::new(LEASE), start);
        lease.renewed(start + Duration::from_millis(3_400));
        lease.renewed(start + Duration::from_millis(1_700));
        assert_eq!(lease.deadline(), start + Duration::from_millis(6_400));
    }

    #[test]
    fn the_deadline_counts_from_the_send_not_the_answer() {
        // Sent at 0, answered 2.5 s later (a slow JetStream): the lease in
        // JetStream may have started at 0, so the owner serves until 3 s.
        let start = Instant::now();
        let lease = Lease::acquired(LeaseTiming::new(LEASE), start);
        let answered = start + Duration::from_millis(2_500);
        assert!(lease.holds(answered));
        assert!(!lease.holds(answered + Duration::from_millis(500)));
    }
}
