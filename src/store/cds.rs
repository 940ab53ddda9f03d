//! What the Curb Data Specification endpoints read from history: a road's
//! layout revisions, and the times bays were heard from.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::layouts::{StoredLayout, load_revision};
use super::schema::{events, layout_revisions};
use super::{Store, StoreError, to_ms};
use crate::domain::ids::{BayId, RoadId};

/// SQLite allows a few thousand bound values per statement.
const CHUNK: usize = 500;

impl Store {
    /// Every revision of a road with its layout, oldest first; empty when
    /// the road is unknown. Revisions are immutable, and a road has few.
    pub fn layout_history(&self, road: &RoadId) -> Result<Vec<StoredLayout>, StoreError> {
        let conn = &mut self.conn()?;
        let revisions: Vec<i64> = layout_revisions::table
            .filter(layout_revisions::road_id.eq(road.as_str()))
            .order(layout_revisions::revision)
            .select(layout_revisions::revision)
            .load(conn)?;
        revisions
            .into_iter()
            .map(|r| load_revision(conn, road.as_str(), r))
            .collect()
    }

    /// Event times (ms) of these bays in `[from, to)`, by bay then time:
    /// every stored event, heartbeats included, as staleness counts them.
    /// Read through the `(bay_id, observed_at_ms)` index.
    pub fn bay_event_times(
        &self,
        bays: &[BayId],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = &mut self.conn()?;
        let mut out: Vec<(String, i64)> = Vec::new();
        for chunk in bays.chunks(CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(BayId::as_str).collect();
            let rows: Vec<(Option<String>, i64)> = events::table
                .filter(events::bay_id.eq_any(ids))
                .filter(events::observed_at_ms.ge(to_ms(from)))
                .filter(events::observed_at_ms.lt(to_ms(to)))
                .select((events::bay_id, events::observed_at_ms))
                .load(conn)?;
            out.extend(rows.into_iter().filter_map(|(b, t)| b.map(|b| (b, t))));
        }
        out.sort();
        Ok(out)
    }

    /// Each bay's newest event time (ms) before `before`, where it has
    /// one: one index lookup per bay, however long the history.
    pub fn last_event_before(
        &self,
        bays: &[BayId],
        before: DateTime<Utc>,
    ) -> Result<Vec<(BayId, i64)>, StoreError> {
        let conn = &mut self.conn()?;
        let mut out = Vec::new();
        for bay in bays {
            let t: Option<i64> = events::table
                .filter(events::bay_id.eq(bay.as_str()))
                .filter(events::observed_at_ms.lt(to_ms(before)))
                .order(events::observed_at_ms.desc())
                .select(events::observed_at_ms)
                .first(conn)
                .optional()?;
            if let Some(t) = t {
                out.push((bay.clone(), t));
            }
        }
        Ok(out)
    }
}
