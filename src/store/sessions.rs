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

impl Store {
    /// Sessions of the road's bays overlapping `[from, to)`, oldest first,
    /// after `cursor`, at most `limit`.
    pub fn sessions(
        &self,
        road_id: &RoadId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<SessionCursor>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        use parking_sessions::dsl as s;
        let mut q = s::parking_sessions
            .filter(s::road_id.eq(road_id.as_str()))
            .filter(s::started_at_ms.lt(to_ms(to)))
            .filter(s::ended_at_ms.is_null().or(s::ended_at_ms.gt(to_ms(from))))
            .into_boxed();
        if let Some(c) = cursor {
            q = q.filter(
                s::started_at_ms.gt(c.started_at_ms).or(s::started_at_ms
                    .eq(c.started_at_ms)
                    .and(s::session_id.gt(c.session_id))),
            );
        }
        let rows: Vec<SessionRow> = q
            .order((s::started_at_ms, s::session_id))
            .limit(limit)
            .select(SessionRow::as_select())
            .load(&mut self.conn()?)?;
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
