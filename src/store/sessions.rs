//! Parking sessions: each occupied interval of a bay.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::parking_sessions;
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::ids::RoadId;

/// A stored parking session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session_id: i64,
    pub bay_id: String,
    pub started_at: DateTime<Utc>,
    /// `None` while the session lasts.
    pub ended_at: Option<DateTime<Utc>>,
    /// `sensor` or `observed`.
    pub source: String,
    pub plate: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = parking_sessions)]
struct SessionRow {
    session_id: i64,
    bay_id: String,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    source: String,
    plate: Option<String>,
}

/// Where a page of sessions resumes: after this (start, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCursor {
    pub started_at_ms: i64,
    pub session_id: i64,
}

/// Sessions longer than this, ms (24 h), are found through an index of
/// their own (`parking_sessions_long`, whose predicate names this number).
pub const LONG_SESSION_MS: i64 = 86_400_000;

// The partial indexes' predicates, written exactly as the migrations do
// (constants, not binds), so that both planners can prove a query implies
// them: PostgreSQL cannot from a bound parameter under a generic plan.
const OPEN: &str = "ended_at_ms IS NULL";
const LONG: &str = "ended_at_ms - started_at_ms > 86400000";

impl Store {
    /// Sessions of the road's bays overlapping `[from, to)`, oldest first,
    /// after `cursor`, at most `limit`.
    ///
    /// Every read is a bounded index range, however long the road's
    /// history. A session overlaps the window when it started before `to`
    /// and has not ended by `from`. One that started before `from - 24 h`
    /// ([`LONG_SESSION_MS`]) and still overlaps is either still open or
    /// longer than a day: both are rare, and each kind has a partial index
    /// of its own (`parking_sessions_open` by start, `parking_sessions_long`
    /// by end, read from `from` on). Every other overlapping session
    /// started in `[from - 24 h, to)`, a range of the
    /// `(road_id, started_at_ms)` index. The two sets are disjoint and the
    /// first sorts wholly before the second, so the page is the first set's
    /// sessions, then the second's, up to `limit`: nothing is missed, and
    /// no bound on how long a car may stay is assumed.
    pub fn sessions(
        &self,
        road_id: &RoadId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<SessionCursor>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        use diesel::dsl::sql;
        use diesel::sql_types::{BigInt, Bool};
        use parking_sessions::dsl as s;
        // Owned, so that the boxed queries need not borrow the caller's id.
        let road = road_id.as_str().to_owned();
        let (lo, hi) = (to_ms(from), to_ms(to));
        let limit = limit.max(0);
        let split = lo.saturating_sub(LONG_SESSION_MS).min(hi);
        let after = |q: parking_sessions::BoxedQuery<'static, _>| match cursor {
            Some(c) => q.filter(
                s::started_at_ms.gt(c.started_at_ms).or(s::started_at_ms
                    .eq(c.started_at_ms)
                    .and(s::session_id.gt(c.session_id))),
            ),
            None => q,
        };
        let conn = &mut self.conn()?;
        // Started before the split and still going on at `from`: open, or
        // longer than a day.
        let open = after(
            s::parking_sessions
                .filter(s::road_id.eq(road.clone()))
                .filter(sql::<Bool>(OPEN))
                .filter(s::started_at_ms.lt(split))
                .into_boxed(),
        );
        let long = after(
            s::parking_sessions
                .filter(s::road_id.eq(road.clone()))
                .filter(sql::<Bool>(LONG))
                .filter(s::ended_at_ms.gt(lo))
                // `+`: not a term the (road_id, started_at_ms) index can
                // take, or SQLite, without statistics, reads that index
                // from the road's first session instead of this one.
                .filter(sql::<Bool>("+started_at_ms < ").bind::<BigInt, _>(split))
                .into_boxed(),
        );
        let mut rows: Vec<SessionRow> = open
            .order((s::started_at_ms, s::session_id))
            .limit(limit)
            .select(SessionRow::as_select())
            .load(conn)?;
        rows.extend(
            // `+` again: ordered by the plain column, PostgreSQL would
            // rather read the (road_id, started_at_ms) index in order and
            // stop at the limit, which here means reading the road's whole
            // history; this way only the few long sessions are read and
            // sorted.
            long.order((sql::<BigInt>("+started_at_ms"), s::session_id))
                .limit(limit)
                .select(SessionRow::as_select())
                .load::<SessionRow>(conn)?,
        );
        rows.sort_by_key(|r| (r.started_at_ms, r.session_id));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let rest = limit - rows.len() as i64;
        if rest > 0 {
            let recent = after(
                s::parking_sessions
                    .filter(s::road_id.eq(road.clone()))
                    .filter(s::started_at_ms.ge(split))
                    .filter(s::started_at_ms.lt(hi))
                    .filter(s::ended_at_ms.is_null().or(s::ended_at_ms.gt(lo)))
                    .into_boxed(),
            );
            rows.extend(
                recent
                    .order((s::started_at_ms, s::session_id))
                    .limit(rest)
                    .select(SessionRow::as_select())
                    .load::<SessionRow>(conn)?,
            );
        }
        rows.into_iter()
            .map(|r| {
                Ok(SessionRecord {
                    session_id: r.session_id,
                    bay_id: r.bay_id,
                    started_at: from_ms(r.started_at_ms)?,
                    ended_at: r.ended_at_ms.map(from_ms).transpose()?,
                    source: r.source,
                    plate: r.plate,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::store::retention::testing::each;
    use crate::store::schema::{bays, roads};

    /// The window: one day.
    fn day() -> (DateTime<Utc>, DateTime<Utc>) {
        let from = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        (from, from + Duration::days(1))
    }

    /// Every session overlapping the window comes back, the long and the
    /// open ones that started days before it too, oldest first, and page
    /// by page alike; none that does not overlap does.
    #[test]
    fn long_and_open_sessions_overlapping_the_window_are_found() {
        let (from, to) = day();
        let h = Duration::hours;
        // (bay, start, end): bay names say what each is.
        let sessions: [(&str, _, Option<DateTime<Utc>>); 9] = [
            ("open-10-days", from - Duration::days(10), None),
            ("long-3-days", from - Duration::days(3), Some(from + h(2))),
            ("spans-window", from - Duration::days(2), Some(to + h(5))),
            ("started-23h-before", from - h(23), Some(from + h(1))),
            ("inside", from + h(1), Some(from + h(2))),
            ("open-inside", to - h(1), None),
            // None of these overlaps.
            (
                "ended-before",
                from - Duration::days(2),
                Some(from - Duration::days(1)),
            ),
            ("long-ended-at-from", from - Duration::days(5), Some(from)),
            ("starts-at-to", to, None),
        ];
        for t in each() {
            let conn = &mut *t.store.conn().unwrap();
            diesel::insert_into(roads::table)
                .values((
                    roads::road_id.eq("r"),
                    roads::current_revision.eq(1),
                    roads::created_at_ms.eq(0),
                ))
                .execute(conn)
                .unwrap();
            for (bay, start, end) in &sessions {
                diesel::insert_into(bays::table)
                    .values((
                        bays::bay_id.eq(bay),
                        bays::road_id.eq("r"),
                        bays::first_revision.eq(1),
                    ))
                    .execute(conn)
                    .unwrap();
                diesel::insert_into(parking_sessions::table)
                    .values((
                        parking_sessions::bay_id.eq(bay),
                        parking_sessions::road_id.eq("r"),
                        parking_sessions::started_at_ms.eq(to_ms(*start)),
                        parking_sessions::ended_at_ms.eq(end.map(to_ms)),
                        parking_sessions::source.eq("sensor"),
                    ))
                    .execute(conn)
                    .unwrap();
            }
            let road = RoadId::parse("r").unwrap();
            let expected = [
                "open-10-days",
                "long-3-days",
                "spans-window",
                "started-23h-before",
                "inside",
                "open-inside",
            ];
            let found: Vec<String> = t
                .store
                .sessions(&road, from, to, None, 100)
                .unwrap()
                .into_iter()
                .map(|s| s.bay_id)
                .collect();
            assert_eq!(found, expected, "{}", t.name);
            // A page at a time, across the long and the recent ones.
            for limit in [1, 2, 4] {
                let mut paged = Vec::new();
                let mut cursor = None;
                loop {
                    let page = t.store.sessions(&road, from, to, cursor, limit).unwrap();
                    let Some(last) = page.last() else { break };
                    cursor = Some(SessionCursor {
                        started_at_ms: to_ms(last.started_at),
                        session_id: last.session_id,
                    });
                    assert!(page.len() <= limit as usize);
                    paged.extend(page.into_iter().map(|s| s.bay_id));
                }
                assert_eq!(paged, expected, "{} by {limit}", t.name);
            }
            // A window long before all but the open one.
            let early = t
                .store
                .sessions(
                    &road,
                    from - Duration::days(9),
                    from - Duration::days(8),
                    None,
                    100,
                )
                .unwrap();
            assert_eq!(early.len(), 1, "{}", t.name);
            assert_eq!(early[0].bay_id, "open-10-days");
            assert!(
                t.store
                    .sessions(&road, from, to, None, 0)
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
