//! Violations: what kinds there are, their life cycle, and stable ids.

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
}
