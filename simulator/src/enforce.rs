//! The simulator's own enforcement clock: when a stay has used up its
//! limit of enforced time.
//!
//! kerbside works this out per local day, from each day's window of
//! enforced hours; here it is done the plain way, a minute of the clock at
//! a time, asking of each whether the bay is enforced at that local wall
//! time. The two are written apart so that the end-to-end check can catch
//! a mistake in either; the unit tests hold them together on a grid.

use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use chrono_tz::Tz;
use kerbside::domain::layout::EnforcedHours;

/// How far a limit is looked for: a stay that has not reached it within
/// this many minutes never will.
const SEARCH_MINUTES: u32 = 400 * 24 * 60;

/// Whether minute `m` of the local day (0 to 1439) is enforced.
fn enforced(m: u32, hours: EnforcedHours) -> bool {
    let (from, to) = (u32::from(hours.start_minute), u32::from(hours.end_minute));
    if from < to {
        from <= m && m < to
    } else {
        // Across midnight: from the start to midnight, and from midnight
        // to the end.
        m >= from || m < to
    }
}

/// The instant at which a stay that began at `start` has been enforced for
/// `limit`, with the bay enforced during `hours` of local time in `tz`
/// (always, when `None`); `None` when not within 400 days.
///
/// Steps through the clock's minutes, each enforced or not as a whole by
/// its local wall time (true of every zone today, whose offsets are whole
/// minutes).
pub fn limit_reached_at(
    start: DateTime<Utc>,
    limit: Duration,
    hours: Option<EnforcedHours>,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let Some(hours) = hours else {
        return Some(start + limit);
    };
    let mut left = limit;
    let mut minute = start.duration_trunc(Duration::minutes(1)).ok()?;
    for _ in 0..SEARCH_MINUTES {
        let next = minute + Duration::minutes(1);
        let wall = minute.with_timezone(&tz);
        if enforced(wall.hour() * 60 + wall.minute(), hours) {
            let from = minute.max(start);
            let here = next - from;
            if left <= here {
                return Some(from + left);
            }
            left -= here;
        }
        minute = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn shanghai(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, 11, d, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_car_before_the_hours_counts_from_their_start() {
        let tz = chrono_tz::Asia::Shanghai;
        let day = EnforcedHours::parse("08:00-20:00");
        let two_hours = Duration::minutes(120);
        assert_eq!(
            limit_reached_at(shanghai(27, 7, 30), two_hours, day, tz),
            Some(shanghai(27, 10, 0))
        );
        // 19:00 to 20:00, then 08:00 to 09:00 the next morning.
        assert_eq!(
            limit_reached_at(shanghai(27, 19, 0), two_hours, day, tz),
            Some(shanghai(28, 9, 0))
        );
        // Across midnight, and no hours at all.
        let night = EnforcedHours::parse("22:00-02:00");
        assert_eq!(
            limit_reached_at(shanghai(27, 23, 30), two_hours, night, tz),
            Some(shanghai(28, 1, 30))
        );
        assert_eq!(
            limit_reached_at(shanghai(27, 3, 0), two_hours, night, tz),
            Some(shanghai(28, 0, 0))
        );
        let odd = shanghai(27, 9, 0) + Duration::milliseconds(12_345);
        assert_eq!(
            limit_reached_at(odd, two_hours, None, tz),
            Some(odd + two_hours)
        );
        assert_eq!(
            limit_reached_at(odd, two_hours, day, tz),
            Some(odd + two_hours)
        );
    }

    /// kerbside's clock and this one agree: every 17 minutes and some
    /// milliseconds over three days, for windows by day, across midnight
    /// and all day, and limits from a minute to two days, in the default
    /// zone and one half an hour off the hour.
    ///
    /// Zones with daylight saving are left out: where a window begins or
    /// ends inside the hour skipped in spring (02:30 in Berlin), kerbside
    /// moves that boundary an hour later (03:30), while here it is the first
    /// wall time at or past it (03:00).
    #[test]
    fn agrees_with_kerbsides_clock_on_a_grid() {
        let zones = [chrono_tz::Asia::Shanghai, chrono_tz::Asia::Kolkata];
        let windows = [
            None,
            EnforcedHours::parse("08:00-20:00"),
            EnforcedHours::parse("07:00-19:00"),
            EnforcedHours::parse("07:45-09:15"),
            EnforcedHours::parse("20:00-02:00"),
            EnforcedHours::parse("22:00-24:00"),
            EnforcedHours::parse("00:00-24:00"),
        ];
        let limits = [1, 30, 120, 601, 2880].map(Duration::minutes);
        let first = shanghai(26, 0, 0);
        let mut compared = 0;
        for tz in zones {
            for k in 0..(3 * 24 * 60 / 17) {
                let start =
                    first + Duration::minutes(17 * k) + Duration::milliseconds(k * 997 % 60_000);
                for hours in windows {
                    for limit in limits {
                        assert_eq!(
                            limit_reached_at(start, limit, hours, tz),
                            kerbside::domain::enforcement::limit_reached_at(
                                start, limit, hours, tz
                            ),
                            "{start} + {limit} in {hours:?}, {tz}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 17_000);
    }
}
