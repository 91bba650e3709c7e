//! The offered load over time, and the open-loop arrival schedule it gives.
//!
//! Arrivals are fixed in advance by the profile alone: the n-th order is due
//! when the integral of the rate reaches n, whatever the server answered
//! before. That is what keeps the generator open-loop.

use std::time::Duration;

/// The shape of a rush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Ramp up from the base rate to the peak, hold the peak, ramp down.
    Cafe,
    /// The peak rate the whole time (for measuring).
    Constant,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Profile {
    pub shape: Shape,
    /// Orders per second at the peak.
    pub peak_rate: f64,
    /// Orders per second at the start and the end of a café rush.
    pub base_rate: f64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Share of the duration spent on each ramp (café shape only).
    pub ramp: f64,
}

fn secs<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl Profile {
    /// Orders per second offered `elapsed` into the rush; 0 once it is over.
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        let total = self.duration.as_secs_f64();
        let t = elapsed.as_secs_f64();
        if t >= total {
            return 0.0;
        }
        match self.shape {
            Shape::Constant => self.peak_rate,
            Shape::Cafe => {
                let ramp = (total * self.ramp).max(f64::EPSILON);
                let climb = |fraction: f64| self.base_rate + (self.peak_rate - self.base_rate) * fraction.clamp(0.0, 1.0);
                if t < ramp {
                    climb(t / ramp)
                } else if t > total - ramp {
                    climb((total - t) / ramp)
                } else {
                    self.peak_rate
                }
            }
        }
    }

    /// The schedule of order arrivals, as offsets from the start.
    pub fn arrivals(&self) -> Arrivals {
        Arrivals { profile: *self, next: Duration::ZERO }
    }

    /// How many orders the whole profile offers (the integral of the rate).
    pub fn expected_orders(&self) -> u64 {
        self.arrivals().count() as u64
    }
}

/// Arrival offsets; ends with the profile.
pub struct Arrivals {
    profile: Profile,
    next: Duration,
}

/// Below this rate the schedule steps forward instead of waiting for ever.
const MIN_RATE: f64 = 0.1;

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        loop {
            if self.next >= self.profile.duration {
                return None;
            }
            let rate = self.profile.rate_at(self.next);
            if rate < MIN_RATE {
                self.next += Duration::from_secs_f64(1.0 / MIN_RATE);
                continue;
            }
            let at = self.next;
            self.next += Duration::from_secs_f64(1.0 / rate);
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(shape: Shape) -> Profile {
        Profile { shape, peak_rate: 100.0, base_rate: 10.0, duration: Duration::from_secs(10), ramp: 0.2 }
    }

    #[test]
    fn constant_offers_rate_times_duration_evenly_spaced() {
        let arrivals: Vec<_> = profile(Shape::Constant).arrivals().collect();
        assert_eq!(arrivals.len(), 1_000);
        assert_eq!(arrivals[1] - arrivals[0], Duration::from_millis(10));
        assert!(*arrivals.last().unwrap() < Duration::from_secs(10));
    }

    #[test]
    fn cafe_ramps_up_holds_the_peak_and_ramps_down() {
        let cafe = profile(Shape::Cafe);
        assert_eq!(cafe.rate_at(Duration::ZERO), 10.0);
        assert_eq!(cafe.rate_at(Duration::from_secs(1)), 55.0);
        assert_eq!(cafe.rate_at(Duration::from_secs(5)), 100.0);
        assert_eq!(cafe.rate_at(Duration::from_secs(9)), 55.0);
        assert_eq!(cafe.rate_at(Duration::from_secs(10)), 0.0);
        // Two 2 s ramps averaging 55/s and a 6 s peak at 100/s.
        let expected = 2.0 * 2.0 * 55.0 + 6.0 * 100.0;
        let offered = cafe.expected_orders() as f64;
        assert!((offered - expected).abs() / expected < 0.02, "{offered} vs {expected}");
    }

    #[test]
    fn a_zero_rate_profile_still_ends() {
        let idle = Profile { peak_rate: 0.0, base_rate: 0.0, ..profile(Shape::Cafe) };
        assert_eq!(idle.expected_orders(), 0);
    }
}
