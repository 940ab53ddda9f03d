//! Enforcement time: how many minutes of a stay count against a bay's
//! limit, and when the limit is reached.
//!
//! Only minutes inside the bay's `enforced_hours` count, in the
//! deployment's local time zone, across midnight and across days. All
//! functions are pure: instants in, instants or durations out.

use chrono::{DateTime, Days, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::layout::EnforcedHours;

/// How far ahead a limit is searched for: a stay that has not reached its
/// limit within this many days never will (the window must be empty).
const SEARCH_DAYS: u64 = 400;

/// The local midnight that starts `date`, as an instant (for zones with a
/// gap at midnight, the first valid local time after it).
fn local_instant(tz: Tz, date: NaiveDate, minute: u16) -> DateTime<Utc> {
    let (day, minute) = if minute >= 1440 {
        (date + Days::new(1), minute - 1440)
    } else {
        (date, minute)
    };
    let time = NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)
        .unwrap_or(NaiveTime::MIN);
    let naive = day.and_time(time);
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.with_timezone(&Utc),
        // In a daylight-saving gap: the same wall time an hour later exists.
        None => tz
            .from_local_datetime(&(naive + Duration::hours(1)))
            .earliest()
            .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.with_timezone(&Utc)),
    }
}

/// The enforcement windows of local day `date`: `[start, end)` instants.
fn window(tz: Tz, date: NaiveDate, h: EnforcedHours) -> (DateTime<Utc>, DateTime<Utc>) {
    let end_minute = if h.crosses_midnight() {
        h.end_minute + 1440
    } else {
        h.end_minute
    };
    (
        local_instant(tz, date, h.start_minute),
        local_instant(tz, date, end_minute),
    )
}

/// Enforced time between `from` and `to` (zero when `to <= from`); with
/// no `hours`, every minute is enforced.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use kerbside::domain::{enforcement::enforced_between, layout::EnforcedHours};
/// let tz = chrono_tz::Asia::Shanghai;
/// let h = EnforcedHours::parse("08:00-20:00");
/// // 19:00 to 09:00 the next morning, local: 60 + 60 enforced minutes.
/// let from = Utc.with_ymd_and_hms(2026, 11, 27, 11, 0, 0).unwrap();
/// let to = Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).unwrap();
/// assert_eq!(enforced_between(from, to, h, tz).num_minutes(), 120);
/// ```
pub fn enforced_between(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hours: Option<EnforcedHours>,
    tz: Tz,
) -> Duration {
    if to <= from {
        return Duration::zero();
    }
    let Some(h) = hours else { return to - from };
    windows_from(from, h, tz)
        .take_while(|(ws, _)| *ws < to)
        .map(|(ws, we)| (we.min(to) - ws).max(Duration::zero()))
        .sum()
}

/// Each day's enforcement window that ends after `from`, clipped to start
/// no earlier than it, in order, for [`SEARCH_DAYS`] days.
fn windows_from(
    from: DateTime<Utc>,
    h: EnforcedHours,
    tz: Tz,
) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> {
    // The previous local day's window may run across midnight into `from`.
    let first = from.with_timezone(&tz).date_naive() - Days::new(1);
    (0..SEARCH_DAYS)
        .map(move |i| window(tz, first + Days::new(i), h))
        .filter(move |(_, we)| *we > from)
        .map(move |(ws, we)| (ws.max(from), we))
}

/// The instant at which a stay that began at `start` has used `limit` of
/// enforced time; `None` if that never happens within 400 days.
pub fn limit_reached_at(
    start: DateTime<Utc>,
    limit: Duration,
    hours: Option<EnforcedHours>,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let Some(h) = hours else {
        return Some(start + limit);
    };
    let mut left = limit;
    let mut day = start.with_timezone(&tz).date_naive() - Days::new(1);
    for _ in 0..SEARCH_DAYS {
        let (ws, we) = window(tz, day, h);
        let s = ws.max(start);
        if we > s {
            if we - s >= left {
                return Some(s + left);
            }
            left -= we - s;
        }
        day = day + Days::new(1);
    }
    None
}

/// An overstay as judged at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overstay {
    /// When the vehicle arrived.
    pub started_at: DateTime<Utc>,
    /// When the limit (plus grace) was passed.
    pub detected_at: DateTime<Utc>,
    /// Enforced minutes beyond the limit, as of `until`.
    pub minutes: i64,
}

/// Judges a stay from `start` with the vehicle last known present at
/// `until` (the sensor's end, `now` while a sensor still sees it, or the
/// last warden sighting): an overstay once enforced time passes
/// `max_stay + grace`. `overstay minutes` count beyond `max_stay`.
pub fn judge(
    start: DateTime<Utc>,
    until: DateTime<Utc>,
    max_stay: Duration,
    grace: Duration,
    hours: Option<EnforcedHours>,
    tz: Tz,
) -> Option<Overstay> {
    let detected_at = limit_reached_at(start, max_stay + grace, hours, tz)?;
    if detected_at > until {
        return None;
    }
    let used = enforced_between(start, until, hours, tz);
    Some(Overstay {
        started_at: start,
        detected_at,
        minutes: (used - max_stay).num_minutes().max(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    /// Local Shanghai time on 2026-11-`d`.
    fn local(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Shanghai
            .with_ymd_and_hms(2026, 11, d, h, m, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hours(s: &str) -> Option<EnforcedHours> {
        EnforcedHours::parse(s)
    }

    #[test]
    fn minutes_outside_the_window_do_not_count() {
        let h = hours("08:00-20:00");
        assert_eq!(
            enforced_between(local(27, 7, 0), local(27, 9, 0), h, Shanghai).num_minutes(),
            60
        );
        assert_eq!(
            enforced_between(local(27, 19, 30), local(27, 23, 0), h, Shanghai).num_minutes(),
            30
        );
        assert_eq!(
            enforced_between(local(27, 21, 0), local(28, 7, 59), h, Shanghai).num_minutes(),
            0
        );
        // Three whole days from 08:00: 3 x 12 hours.
        assert_eq!(
            enforced_between(local(24, 8, 0), local(27, 8, 0), h, Shanghai).num_minutes(),
            36 * 60
        );
    }

    #[test]
    fn boundaries_are_exact() {
        let h = hours("08:00-20:00");
        assert_eq!(
            enforced_between(local(27, 8, 0), local(27, 8, 1), h, Shanghai).num_minutes(),
            1
        );
        assert_eq!(
            enforced_between(local(27, 19, 59), local(27, 20, 0), h, Shanghai).num_minutes(),
            1
        );
        assert_eq!(
            enforced_between(local(27, 20, 0), local(27, 20, 1), h, Shanghai).num_minutes(),
            0
        );
        assert_eq!(
            enforced_between(local(27, 9, 0), local(27, 9, 0), h, Shanghai),
            Duration::zero()
        );
        assert_eq!(
            enforced_between(local(27, 10, 0), local(27, 9, 0), h, Shanghai),
            Duration::zero()
        );
    }

    #[test]
    fn a_window_across_midnight_counts_on_both_sides() {
        let h = hours("20:00-02:00");
        assert_eq!(
            enforced_between(local(27, 23, 0), local(28, 3, 0), h, Shanghai).num_minutes(),
            180
        );
        assert_eq!(
            enforced_between(local(28, 1, 0), local(28, 21, 0), h, Shanghai).num_minutes(),
            120
        );
    }

    #[test]
    fn no_hours_means_always_enforced() {
        assert_eq!(
            enforced_between(local(27, 23, 0), local(28, 1, 30), None, Shanghai).num_minutes(),
            150
        );
        assert_eq!(
            limit_reached_at(local(27, 23, 0), Duration::minutes(30), None, Shanghai),
            Some(local(27, 23, 30))
        );
    }

    #[test]
    fn the_limit_is_reached_counting_only_enforced_minutes() {
        let h = hours("08:00-20:00");
        let two_hours = Duration::minutes(120);
        assert_eq!(
            limit_reached_at(local(27, 9, 0), two_hours, h, Shanghai),
            Some(local(27, 11, 0))
        );
        // Arriving at 19:00: one hour tonight, one hour tomorrow morning.
        assert_eq!(
            limit_reached_at(local(27, 19, 0), two_hours, h, Shanghai),
            Some(local(28, 9, 0))
        );
        assert_eq!(
            limit_reached_at(local(27, 22, 0), two_hours, h, Shanghai),
            Some(local(28, 10, 0))
        );
    }

    #[test]
    fn limit_and_between_agree_everywhere() {
        // A property over a grid of arrivals and limits: the enforced time up
        // to the reached instant is exactly the limit.
        for h in [
            hours("08:00-20:00"),
            hours("07:00-19:00"),
            hours("20:00-02:00"),
            hours("00:00-24:00"),
            None,
        ] {
            for start_min in (0..48 * 60).step_by(37) {
                let start = local(20, 0, 0) + Duration::minutes(start_min);
                for limit in [1, 30, 119, 120, 721, 2000] {
                    let l = Duration::minutes(limit);
                    let at = limit_reached_at(start, l, h, Shanghai).unwrap();
                    assert_eq!(
                        enforced_between(start, at, h, Shanghai),
                        l,
                        "{h:?} {start} {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn judging_an_overstay() {
        let h = hours("08:00-20:00");
        let (max, none) = (Duration::minutes(120), Duration::zero());
        // 08:12 arrival; at 10:20 the overstay is 8 minutes.
        let o = judge(local(27, 8, 12), local(27, 10, 20), max, none, h, Shanghai).unwrap();
        assert_eq!((o.detected_at, o.minutes), (local(27, 10, 12), 8));
        // At 11:00 a 09:00 arrival has just reached its limit.
        let o = judge(local(27, 9, 0), local(27, 11, 0), max, none, h, Shanghai).unwrap();
        assert_eq!((o.detected_at, o.minutes), (local(27, 11, 0), 0));
        assert_eq!(
            judge(local(27, 9, 0), local(27, 10, 59), max, none, h, Shanghai),
            None
        );
        // A grace delays detection but not the count.
        let grace = Duration::minutes(10);
        assert_eq!(
            judge(local(27, 9, 0), local(27, 11, 5), max, grace, h, Shanghai),
            None
        );
        let o = judge(local(27, 9, 0), local(27, 11, 15), max, grace, h, Shanghai).unwrap();
        assert_eq!((o.detected_at, o.minutes), (local(27, 11, 10), 15));
    }
}
