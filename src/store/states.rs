//! Bay states and open sessions: what the street is rebuilt from at start.

use std::collections::HashMap;

use diesel::prelude::*;

use super::schema::{bay_states, parking_sessions};
use super::{Store, StoreError, from_ms};
use crate::domain::ids::BayId;
use crate::domain::occupancy::{BayState, BayStatus, OpenSession, SessionSource};

fn bay_id(s: &str) -> Result<BayId, StoreError> {
    BayId::parse(s).map_err(|e| StoreError::Corrupt(format!("bay id {s:?} {e}")))
}

impl Store {
    /// Every bay's stored state with its open session, to build the street.
    pub fn bay_states(&self) -> Result<Vec<(BayId, BayState)>, StoreError> {
        let conn = &mut self.conn()?;
        let rows: Vec<(String, String, i64, Option<i64>, i64)> = bay_states::table
            .select((
                bay_states::bay_id,
                bay_states::status,
                bay_states::since_ms,
                bay_states::status_event_ms,
                bay_states::last_event_at_ms,
            ))
            .load(conn)?;
        let open: Vec<(i64, String, i64, String, Option<String>)> = parking_sessions::table
            .filter(parking_sessions::ended_at_ms.is_null())
            .select((
                parking_sessions::session_id,
                parking_sessions::bay_id,
                parking_sessions::started_at_ms,
                parking_sessions::source,
                parking_sessions::plate,
            ))
            .load(conn)?;
        let mut open_by_bay = HashMap::new();
        for (id, bay, started, source, plate) in open {
            let source = SessionSource::parse(&source)
                .ok_or_else(|| StoreError::Corrupt(format!("session {id} source {source:?}")))?;
            open_by_bay.insert(
                bay,
                OpenSession {
                    id: Some(id),
                    started_at: from_ms(started)?,
                    source,
                    plate,
                },
            );
        }
        rows.into_iter()
            .map(|(bay, status, since_ms, status_ms, last_ms)| {
                let status = BayStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("bay {bay} status {status:?}")))?;
                let state = BayState {
                    status,
                    since: from_ms(since_ms)?,
                    status_at: status_ms.map(from_ms).transpose()?,
                    last_event_at: from_ms(last_ms)?,
                    open: open_by_bay.remove(&bay),
                };
                Ok((bay_id(&bay)?, state))
            })
            .collect()
    }
}
