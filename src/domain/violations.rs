//! Violations: what kinds there are, their life cycle, and stable ids.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::events::ReportCategory;

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// Occupied longer than the bay's limit within its enforced hours.
    Overstay,
    /// A vehicle observed in no bay (on the footway, say).
    OutsideBay,
    /// A warden's report of an obstruction (goods on the footway).
    Obstruction,
    /// A warden's report of footway parking.
    FootwayParking,
    /// A warden's report of something else.
    Other,
}

impl ViolationKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::Overstay => "overstay",
            ViolationKind::OutsideBay => "outside_bay",
            ViolationKind::Obstruction => "obstruction",
            ViolationKind::FootwayParking => "footway_parking",
            ViolationKind::Other => "other",
        }
    }

    /// The kind a warden's report files.
    pub fn of_report(c: ReportCategory) -> Self {
        match c {
            ReportCategory::Obstruction => ViolationKind::Obstruction,
            ReportCategory::FootwayParking => ViolationKind::FootwayParking,
            ReportCategory::Other => ViolationKind::Other,
        }
    }
}

/// Where a violation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationStatus {
    /// For a warden to act on.
    Open,
    /// A warden issued a ticket.
    Ticketed,
    /// A warden judged it not worth a ticket.
    Dismissed,
    /// Later evidence disproved it (the vehicle left in time after all).
    Void,
}

impl ViolationStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationStatus::Open => "open",
            ViolationStatus::Ticketed => "ticketed",
            ViolationStatus::Dismissed => "dismissed",
            ViolationStatus::Void => "void",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Ticketed, Self::Dismissed, Self::Void]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What a warden does to a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ticket,
    Dismiss,
}

/// Applies a warden's action: only an open violation can be ticketed or
/// dismissed; anything else is a conflict naming the present status.
pub fn act(current: ViolationStatus, action: Action) -> Result<ViolationStatus, ViolationStatus> {
    match (current, action) {
        (ViolationStatus::Open, Action::Ticket) => Ok(ViolationStatus::Ticketed),
        (ViolationStatus::Open, Action::Dismiss) => Ok(ViolationStatus::Dismissed),
        (other, _) => Err(other),
    }
}

/// A stable id for the violation identified by `parts`: the same facts
/// always give the same id, so re-evaluation never makes a second one.
pub fn violation_id(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\u{1f}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("v-{hex}")
}

/// A stay in a bay as the evidence now shows it (a parking session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stay {
    pub start: DateTime<Utc>,
    /// `None` while it lasts.
    pub end: Option<DateTime<Utc>>,
}

impl Stay {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && self.end.is_none_or(|e| t < e)
    }

    fn overlaps(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.start <= to && self.end.is_none_or(|e| from < e)
    }
}

/// Which of `stays` an overstay on file is about: the stay that contains
/// its arrival, else the earliest that overlaps the time the vehicle was
/// known to be there (`arrival` to `known_until`). So a late event that
/// moves a stay's start (an earlier arrival, say) leaves it the same stay:
/// one stay, one overstay. `None` when no stay is left there.
pub fn stay_of(
    arrival: DateTime<Utc>,
    known_until: DateTime<Utc>,
    stays: &[Stay],
) -> Option<usize> {
    stays.iter().position(|s| s.contains(arrival)).or_else(|| {
        stays
            .iter()
            .enumerate()
            .filter(|(_, s)| s.overlaps(arrival, known_until.max(arrival)))
            .min_by_key(|(_, s)| s.start)
            .map(|(i, _)| i)
    })
}

/// What an overstay that a warden acted on says, as filed.
#[derive(Debug, Clone, Copy)]
pub struct OnFile<'a> {
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// When the vehicle was last known there before it was acted on.
    pub last_seen: Option<DateTime<Utc>>,
    pub plate: Option<&'a str>,
    /// When the warden ticketed or dismissed it (the warden saw it then).
    pub acted_at: Option<DateTime<Utc>>,
}

/// The overstay that the evidence shows now.
#[derive(Debug, Clone, Copy)]
pub struct Rejudged<'a> {
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub plate: Option<&'a str>,
}

/// What re-judging makes of an overstay a warden has acted on. Such a
/// violation is never rewritten: fines rest on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// The evidence agrees with it.
    Unchanged,
    /// The vehicle has since left, at this instant, in a way that agrees
    /// with it: the departure may be added (nothing on file changes).
    Departed(DateTime<Utc>),
    /// The evidence now contradicts it: the reasons, for its history.
    Disputed(String),
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Compares an acted-on overstay with what the evidence shows now
/// (`None`: no overstay any more; `stay_end`: when the stay it belongs to
/// ended, if it did). `same_plate` says whether two stored plates name one
/// vehicle (a plate and its pseudonym do).
pub fn review(
    filed: &OnFile<'_>,
    now: Option<&Rejudged<'_>>,
    stay_end: Option<DateTime<Utc>>,
    same_plate: impl Fn(&str, &str) -> bool,
) -> Review {
    let Some(j) = now else {
        let left = stay_end.map_or(String::new(), |e| format!(" (departure at {})", time(e)));
        return Review::Disputed(format!("disputed: later evidence shows no overstay{left}"));
    };
    let mut reasons = Vec::new();
    if j.started_at != filed.started_at {
        reasons.push(format!(
            "arrival at {} on later evidence, not {}",
            time(j.started_at),
            time(filed.started_at)
        ));
    }
    if let (Some(a), Some(b)) = (filed.plate, j.plate)
        && !same_plate(a, b)
    {
        reasons.push("another plate on later evidence".to_owned());
    }
    let known_there = [filed.last_seen, filed.acted_at]
        .into_iter()
        .flatten()
        .fold(filed.started_at, DateTime::max);
    match (filed.ended_at, j.ended_at) {
        (Some(a), Some(b)) if a != b => reasons.push(format!(
            "departure at {} on later evidence, not {}",
            time(b),
            time(a)
        )),
        (Some(a), None) => reasons.push(format!(
            "still there on later evidence, not gone at {}",
            time(a)
        )),
        (None, Some(b)) if b < known_there => reasons.push(format!(
            "departure at {} on later evidence, before {} when it was known there",
            time(b),
            time(known_there)
        )),
        _ => {}
    }
    match (reasons.is_empty(), filed.ended_at, j.ended_at) {
        (false, _, _) => Review::Disputed(format!("disputed: {}", reasons.join("; "))),
        (true, None, Some(b)) => Review::Departed(b),
        _ => Review::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_violations_can_be_acted_on() {
        use ViolationStatus::*;
        assert_eq!(act(Open, Action::Ticket), Ok(Ticketed));
        assert_eq!(act(Open, Action::Dismiss), Ok(Dismissed));
        for s in [Ticketed, Dismissed, Void] {
            assert_eq!(act(s, Action::Ticket), Err(s));
            assert_eq!(act(s, Action::Dismiss), Err(s));
        }
    }

    #[test]
    fn ids_are_stable_identifiers() {
        let a = violation_id(&["overstay", "QF-S-014", "1764202320000"]);
        assert_eq!(a, violation_id(&["overstay", "QF-S-014", "1764202320000"]));
        assert_ne!(a, violation_id(&["overstay", "QF-S-014", "1764202320001"]));
        assert!(crate::domain::ids::check_identifier(&a).is_ok());
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
    }

    #[test]
    fn an_earlier_arrival_is_still_the_same_stay() {
        let stays = [
            Stay {
                start: t(0, 50),
                end: Some(t(4, 0)),
            },
            Stay {
                start: t(5, 0),
                end: None,
            },
        ];
        // Filed as arriving at 01:00: the stay now starts at 00:50.
        assert_eq!(stay_of(t(1, 0), t(3, 0), &stays), Some(0));
        // An arrival in no stay goes to the stay it overlapped.
        assert_eq!(stay_of(t(4, 30), t(6, 0), &stays), Some(1));
        assert_eq!(stay_of(t(4, 10), t(4, 20), &stays), None);
    }

    #[test]
    fn an_acted_on_overstay_is_disputed_not_rewritten() {
        let same = |a: &str, b: &str| a == b;
        let filed = OnFile {
            started_at: t(1, 0),
            ended_at: None,
            last_seen: Some(t(3, 0)),
            plate: Some("F1"),
            acted_at: Some(t(3, 8)),
        };
        let now = |start, end| Rejudged {
            started_at: start,
            ended_at: end,
            plate: Some("F1"),
        };
        assert_eq!(
            review(&filed, Some(&now(t(1, 0), None)), None, same),
            Review::Unchanged
        );
        // Left after the ticket: the departure is added, nothing disputed.
        assert_eq!(
            review(&filed, Some(&now(t(1, 0), Some(t(3, 20)))), None, same),
            Review::Departed(t(3, 20))
        );
        // Left before the warden came: disputed.
        let r = review(&filed, Some(&now(t(1, 0), Some(t(3, 4)))), None, same);
        assert!(
            matches!(&r, Review::Disputed(n) if n.contains("departure at 2026-11-27T03:04:00Z")),
            "{r:?}"
        );
        let r = review(&filed, Some(&now(t(0, 50), None)), None, same);
        assert!(
            matches!(&r, Review::Disputed(n) if n.contains("arrival at 2026-11-27T00:50:00Z")),
            "{r:?}"
        );
        let r = review(&filed, None, Some(t(2, 30)), same);
        assert_eq!(
            r,
            Review::Disputed(
                "disputed: later evidence shows no overstay (departure at 2026-11-27T02:30:00Z)"
                    .into()
            )
        );
        let other = Rejudged {
            plate: Some("F2"),
            ..now(t(1, 0), None)
        };
        assert!(matches!(
            review(&filed, Some(&other), None, same),
            Review::Disputed(_)
        ));
    }
}
