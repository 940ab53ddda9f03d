//! kerbside's street as a DATEX II v3 *Parking Publication Light*: a
//! parking site per road side, a parking space per bay.
//!
//! The rules that matter to a journey planner: a bay kerbside has not
//! heard from within the staleness window is `unknown`, never available;
//! a site's `availableSpaces` counts available bays only; a road whose
//! layout holds no bays is `closed`, not `full`. Field names and the JSON
//! encoding are described in `docs/standards.md`.

use crate::domain::occupancy::{BayStatus, Counts};

/// A space's `availability` (DATEX II Light's mandatory attribute).
pub fn availability(status: BayStatus) -> &'static str {
    match status {
        BayStatus::Free => "available",
        BayStatus::Occupied => "occupied",
        BayStatus::Unknown => "unknown",
    }
}

/// A site's `parkingSiteStatus` (the values of DATEX II's
/// `ParkingSiteStatusEnum` kerbside can say): `closed` for a site with no
/// bays; `spacesAvailable` while any bay is available; `full` only when
/// every bay is known occupied; `statusUnknown` when none is available
/// and some are unknown (they may be free).
pub fn site_status(c: &Counts) -> &'static str {
    if c.bays == 0 {
        "closed"
    } else if c.free > 0 {
        "spacesAvailable"
    } else if c.unknown > 0 {
        "statusUnknown"
    } else {
        "full"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(free: u32, occupied: u32, unknown: u32) -> Counts {
        Counts {
            bays: free + occupied + unknown,
            free,
            occupied,
            unknown,
        }
    }

    #[test]
    fn a_site_is_full_only_when_every_bay_is_known_occupied() {
        assert_eq!(site_status(&counts(0, 3, 0)), "full");
        assert_eq!(site_status(&counts(0, 2, 1)), "statusUnknown");
        assert_eq!(site_status(&counts(1, 2, 1)), "spacesAvailable");
        assert_eq!(site_status(&counts(0, 0, 0)), "closed");
        assert_eq!(availability(BayStatus::Unknown), "unknown");
    }
}
