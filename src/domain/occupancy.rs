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

/// Where a parking session's evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionSource {
    /// An in-ground sensor's `occupied`.
    Sensor,
    /// A warden's `observed` sighting.
    Observed,
}

impl SessionSource {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionSource::Sensor => "sensor",
            SessionSource::Observed => "observed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sensor" => Some(SessionSource::Sensor),
            "observed" => Some(SessionSource::Observed),
            _ => None,
        }
    }
}

/// The parking session a bay is in, while it is occupied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    /// The store's id for it; `None` until stored.
    pub id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub source: SessionSource,
    pub plate: Option<String>,
}

/// What is known of a bay: the status set by its newest status-bearing
/// event (by event time), and when anything was last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BayState {
    /// `Free` or `Occupied`; `Unknown` only when nothing but heartbeats was
    /// ever heard. (Staleness is derived, see [`BayState::report`].)
    pub status: BayStatus,
    /// When the bay entered `status` (event time).
    pub since: DateTime<Utc>,
    /// Event time of the newest status-bearing event; `None` when none yet.
    pub status_at: Option<DateTime<Utc>>,
    /// Event time of the newest event of any type (heartbeats included).
    pub last_event_at: DateTime<Utc>,
    /// The session under way, while occupied.
    pub open: Option<OpenSession>,
}

/// A status-bearing (or liveness) signal about a bay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal<'a> {
    /// A sensor says a vehicle is there.
    Occupied,
    /// A sensor says the bay is empty.
    Vacated,
    /// A warden saw this plate in the bay.
    Observed { plate: &'a str },
    /// A sensor is alive; status unchanged.
    Heartbeat,
}

/// A change to the bay's parking sessions, for the store to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    Open {
        started_at: DateTime<Utc>,
        source: SessionSource,
        plate: Option<String>,
    },
    /// Ends the open session.
    Close { ended_at: DateTime<Utc> },
    /// Records the plate of the open session, first seen by a warden.
    SetPlate { plate: String },
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The new state, and the session changes to store.
    Next(BayState, Vec<SessionOp>),
    /// The event is older than the bay's newest status event: it goes into
    /// history, and the bay's sessions must be replayed (see [`replay`]).
    Late,
}

/// Applies one event at event time `at` to a bay's state (`None`: nothing
/// heard yet). Event time wins: a status event older than the newest one
/// already applied is [`Applied::Late`] and changes nothing here.
pub fn apply(state: Option<&BayState>, at: DateTime<Utc>, signal: Signal<'_>) -> Applied {
    let mut next = match state {
        Some(s) => s.clone(),
        None => BayState {
            status: BayStatus::Unknown,
            since: at,
            status_at: None,
            last_event_at: at,
            open: None,
        },
    };
    next.last_event_at = next.last_event_at.max(at);
    if signal == Signal::Heartbeat {
        return Applied::Next(next, Vec::new());
    }
    if next.status_at.is_some_and(|t| at < t) {
        return Applied::Late;
    }
    next.status_at = Some(at);
    let mut ops = Vec::new();
    let open = |next: &mut BayState, ops: &mut Vec<SessionOp>, source, plate: Option<String>| {
        next.status = BayStatus::Occupied;
        next.since = at;
        next.open = Some(OpenSession {
            id: None,
            started_at: at,
            source,
            plate: plate.clone(),
        });
        ops.push(SessionOp::Open {
            started_at: at,
            source,
            plate,
        });
    };
    match signal {
        Signal::Occupied if next.status != BayStatus::Occupied => {
            open(&mut next, &mut ops, SessionSource::Sensor, None);
        }
        Signal::Observed { plate } => match next.open.as_mut() {
            None => open(
                &mut next,
                &mut ops,
                SessionSource::Observed,
                Some(plate.to_owned()),
            ),
            Some(s) if s.plate.is_none() => {
                s.plate = Some(plate.to_owned());
                ops.push(SessionOp::SetPlate {
                    plate: plate.to_owned(),
                });
            }
            Some(s) if s.plate.as_deref() != Some(plate) => {
                // Another vehicle: the previous one left, unseen, by now.
                ops.push(SessionOp::Close { ended_at: at });
                open(
                    &mut next,
                    &mut ops,
                    SessionSource::Observed,
                    Some(plate.to_owned()),
                );
            }
            Some(_) => {}
        },
        Signal::Vacated if next.status != BayStatus::Free => {
            if next.open.take().is_some() {
                ops.push(SessionOp::Close { ended_at: at });
            }
            next.status = BayStatus::Free;
            next.since = at;
        }
        _ => {}
    }
    Applied::Next(next, ops)
}

/// A parking session as replay derives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpan {
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub source: SessionSource,
    pub plate: Option<String>,
}

/// Rebuilds a bay's state and sessions from its status events, for when a
/// late event lands inside history already applied.
///
/// `start` is the state at the point replay begins (no open session: replay
/// always starts between sessions); `events` are the status events from that
/// point, in event-time order (ties in arrival order). Heartbeats need not be
/// passed; `last_event_at` is carried over from `start`.
pub fn replay<'a>(
    start: Option<BayState>,
    events: impl IntoIterator<Item = (DateTime<Utc>, Signal<'a>)>,
) -> (Option<BayState>, Vec<SessionSpan>) {
    let mut state = start;
    let mut spans: Vec<SessionSpan> = Vec::new();
    for (at, signal) in events {
        // In sorted order nothing is late, so `Late` cannot happen here.
        if let Applied::Next(next, ops) = apply(state.as_ref(), at, signal) {
            for op in ops {
                match op {
                    SessionOp::Open {
                        started_at,
                        source,
                        plate,
                    } => spans.push(SessionSpan {
                        started_at,
                        ended_at: None,
                        source,
                        plate,
                    }),
                    SessionOp::Close { ended_at } => {
                        if let Some(s) = spans.last_mut() {
                            s.ended_at = Some(ended_at);
                        }
                    }
                    SessionOp::SetPlate { plate } => {
                        if let Some(s) = spans.last_mut() {
                            s.plate = Some(plate);
                        }
                    }
                }
            }
            state = Some(next);
        }
    }
    (state, spans)
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
            Some(s) if s.status == BayStatus::Unknown => Report {
                status: BayStatus::Unknown,
                since: None,
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
            status_at: Some(t(9, 0)),
            last_event_at: t(9, 30),
            open: None,
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

    fn run(events: &[(DateTime<Utc>, Signal<'static>)]) -> (Option<BayState>, Vec<SessionSpan>) {
        replay(None, events.iter().copied())
    }

    #[test]
    fn occupied_then_vacated_is_one_closed_session() {
        let (s, spans) = run(&[
            (t(9, 0), Signal::Occupied),
            (t(9, 5), Signal::Occupied),
            (t(10, 0), Signal::Vacated),
        ]);
        let s = s.unwrap();
        assert_eq!((s.status, s.since), (BayStatus::Free, t(10, 0)));
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (spans[0].started_at, spans[0].ended_at),
            (t(9, 0), Some(t(10, 0)))
        );
        assert_eq!(spans[0].source, SessionSource::Sensor);
    }

    #[test]
    fn an_older_event_is_late_and_changes_nothing() {
        let Applied::Next(s, _) = apply(None, t(10, 0), Signal::Occupied) else {
            panic!()
        };
        assert_eq!(apply(Some(&s), t(9, 59), Signal::Vacated), Applied::Late);
        // A heartbeat is never late: it only refreshes liveness.
        let Applied::Next(h, ops) = apply(Some(&s), t(9, 0), Signal::Heartbeat) else {
            panic!()
        };
        assert!(ops.is_empty());
        assert_eq!(h, s);
    }

    #[test]
    fn a_heartbeat_keeps_a_bay_fresh_without_changing_its_status() {
        let Applied::Next(s, _) = apply(None, t(9, 0), Signal::Vacated) else {
            panic!()
        };
        let Applied::Next(s, _) = apply(Some(&s), t(9, 40), Signal::Heartbeat) else {
            panic!()
        };
        let w = Duration::minutes(30);
        assert_eq!(
            BayState::report(Some(&s), t(10, 0), w),
            Report {
                status: BayStatus::Free,
                since: Some(t(9, 0))
            }
        );
        // Heartbeats alone never invent a status.
        let Applied::Next(h, _) = apply(None, t(9, 0), Signal::Heartbeat) else {
            panic!()
        };
        assert_eq!(
            BayState::report(Some(&h), t(9, 1), w).status,
            BayStatus::Unknown
        );
    }

    #[test]
    fn sightings_of_one_plate_are_one_session_another_plate_starts_a_new_one() {
        let (s, spans) = run(&[
            (t(10, 35), Signal::Observed { plate: "浙F12345" }),
            (t(11, 10), Signal::Observed { plate: "浙F12345" }),
            (t(11, 30), Signal::Observed { plate: "浙F99999" }),
        ]);
        assert_eq!(spans.len(), 2);
        assert_eq!(
            (spans[0].started_at, spans[0].ended_at),
            (t(10, 35), Some(t(11, 30)))
        );
        assert_eq!(spans[1].plate.as_deref(), Some("浙F99999"));
        assert_eq!(s.unwrap().since, t(11, 30));
    }

    #[test]
    fn a_sighting_names_the_sensor_session() {
        let (_, spans) = run(&[
            (t(8, 12), Signal::Occupied),
            (t(10, 20), Signal::Observed { plate: "浙F1" }),
        ]);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            (spans[0].source, spans[0].plate.as_deref()),
            (SessionSource::Sensor, Some("浙F1"))
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
