//! Bay status as the street reports it, and counts over many bays.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// What a bay reports: its last known status, or `unknown` when nothing
/// recent enough is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BayStatus {
    Free,
    Occupied,
    Unknown,
}

impl BayStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BayStatus::Free => "free",
            BayStatus::Occupied => "occupied",
            BayStatus::Unknown => "unknown",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "free" => Some(BayStatus::Free),
            "occupied" => Some(BayStatus::Occupied),
            "unknown" => Some(BayStatus::Unknown),
            _ => None,
        }
    }
}

/// What the store knows of a bay: the status set by its newest
/// status-bearing event, and when it last heard anything about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BayState {
    /// `Free` or `Occupied`; never `Unknown` (that is derived, see [`BayState::report`]).
    pub status: BayStatus,
    /// When the bay entered `status` (event time).
    pub since: DateTime<Utc>,
    /// Event time of the newest event of any kind about this bay.
    pub last_event_at: DateTime<Utc>,
}

/// A bay's status and `since` as reported at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub status: BayStatus,
    /// When the bay entered the reported status; `None` when nothing was ever heard.
    pub since: Option<DateTime<Utc>>,
}

impl BayState {
    /// The status to report at `now`: `unknown` once nothing has been heard
    /// for longer than `staleness`, in which case `since` is when it went stale.
    pub fn report(state: Option<&BayState>, now: DateTime<Utc>, staleness: Duration) -> Report {
        match state {
            None => Report {
                status: BayStatus::Unknown,
                since: None,
            },
            Some(s) if now - s.last_event_at > staleness => Report {
                status: BayStatus::Unknown,
                since: Some(s.last_event_at + staleness),
            },
            Some(s) => Report {
                status: s.status,
                since: Some(s.since),
            },
        }
    }
}

/// Bay counts by reported status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub bays: u32,
    pub occupied: u32,
    pub free: u32,
    pub unknown: u32,
}

impl Counts {
    /// Counts one more bay with status `s`.
    pub fn add(&mut self, s: BayStatus) {
        self.bays += 1;
        match s {
            BayStatus::Free => self.free += 1,
            BayStatus::Occupied => self.occupied += 1,
            BayStatus::Unknown => self.unknown += 1,
        }
    }

    /// Occupied bays as a share (0 to 1) of the bays whose status is known;
    /// `None` when no bay's status is known.
    pub fn occupancy_rate(&self) -> Option<f64> {
        let known = self.occupied + self.free;
        (known > 0).then(|| f64::from(self.occupied) / f64::from(known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
    }

    #[test]
    fn a_bay_never_heard_of_is_unknown() {
        let r = BayState::report(None, t(10, 0), Duration::minutes(30));
        assert_eq!(
            r,
            Report {
                status: BayStatus::Unknown,
                since: None
            }
        );
    }

    #[test]
    fn a_silent_bay_goes_unknown_after_the_window() {
        let s = BayState {
            status: BayStatus::Occupied,
            since: t(9, 0),
            last_event_at: t(9, 30),
        };
        let w = Duration::minutes(30);
        assert_eq!(
            BayState::report(Some(&s), t(10, 0), w).status,
            BayStatus::Occupied
        );
        let r = BayState::report(Some(&s), t(10, 1), w);
        assert_eq!(
            r,
            Report {
                status: BayStatus::Unknown,
                since: Some(t(10, 0))
            }
        );
    }

    #[test]
    fn occupancy_rate_counts_known_bays_only() {
        let mut c = Counts::default();
        assert_eq!(c.occupancy_rate(), None);
        for s in [
            BayStatus::Occupied,
            BayStatus::Free,
            BayStatus::Free,
            BayStatus::Unknown,
        ] {
            c.add(s);
        }
        assert_eq!(
            c,
            Counts {
                bays: 4,
                occupied: 1,
                free: 2,
                unknown: 1
            }
        );
        assert_eq!(c.occupancy_rate(), Some(1.0 / 3.0));
    }
}
