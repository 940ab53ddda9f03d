//! Bay states and open sessions: what the street is rebuilt from at start,
//! what each write transaction starts from, and what another instance's
//! change notice is read back as.

use std::collections::HashMap;

use diesel::prelude::*;

use super::db::Db;
use super::schema::{bay_states, parking_sessions};
use super::{Store, StoreError, from_ms};
use crate::domain::ids::BayId;
use crate::domain::occupancy::{BayState, BayStatus, OpenSession, SessionSource};

/// A bay's stored state and its version (the count of its writes).
pub type Versioned = (BayState, i64);

fn bay_id(s: &str) -> Result<BayId, StoreError> {
    BayId::parse(s).map_err(|e| StoreError::Corrupt(format!("bay id {s:?} {e}")))
}

/// Bays per `IN (...)` list: well within SQLite's cap on bound parameters.
const IN_LIST: usize = 1000;

type StateRow = (String, String, i64, Option<i64>, i64, i64);
type OpenRow = (i64, String, i64, String, Option<String>);

fn state_columns() -> (
    bay_states::bay_id,
    bay_states::status,
    bay_states::since_ms,
    bay_states::status_event_ms,
    bay_states::last_event_at_ms,
    bay_states::version,
) {
    (
        bay_states::bay_id,
        bay_states::status,
        bay_states::since_ms,
        bay_states::status_event_ms,
        bay_states::last_event_at_ms,
        bay_states::version,
    )
}

fn open_columns() -> (
    parking_sessions::session_id,
    parking_sessions::bay_id,
    parking_sessions::started_at_ms,
    parking_sessions::source,
    parking_sessions::plate,
) {
    (
        parking_sessions::session_id,
        parking_sessions::bay_id,
        parking_sessions::started_at_ms,
        parking_sessions::source,
        parking_sessions::plate,
    )
}

/// Joins state rows with their bays' open sessions.
fn assemble(
    rows: Vec<StateRow>,
    open: Vec<OpenRow>,
) -> Result<Vec<(BayId, Versioned)>, StoreError> {
    let mut open_by_bay = HashMap::with_capacity(open.len());
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
        .map(|(bay, status, since_ms, status_ms, last_ms, version)| {
            let status = BayStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("bay {bay} status {status:?}")))?;
            let state = BayState {
                status,
                since: from_ms(since_ms)?,
                status_at: status_ms.map(from_ms).transpose()?,
                last_event_at: from_ms(last_ms)?,
                open: open_by_bay.remove(&bay),
            };
            Ok((bay_id(&bay)?, (state, version)))
        })
        .collect()
}

/// The stored states of these bays (those with one), read in `conn`: in a
/// write transaction that holds the bays' locks, the truth to build on.
pub(super) fn load_states(
    conn: &mut Db,
    ids: &[&str],
) -> Result<HashMap<BayId, Versioned>, StoreError> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_LIST) {
        let rows: Vec<StateRow> = bay_states::table
            .filter(bay_states::bay_id.eq_any(chunk))
            .select(state_columns())
            .load(conn)?;
        let open: Vec<OpenRow> = parking_sessions::table
            .filter(parking_sessions::bay_id.eq_any(chunk))
            .filter(parking_sessions::ended_at_ms.is_null())
            .select(open_columns())
            .load(conn)?;
        out.extend(assemble(rows, open)?);
    }
    Ok(out)
}

impl Store {
    /// Every bay's stored state with its open session and version, to
    /// build the street.
    pub fn bay_states(&self) -> Result<Vec<(BayId, Versioned)>, StoreError> {
        let conn = &mut self.conn()?;
        let rows: Vec<StateRow> = bay_states::table.select(state_columns()).load(conn)?;
        let open: Vec<OpenRow> = parking_sessions::table
            .filter(parking_sessions::ended_at_ms.is_null())
            .select(open_columns())
            .load(conn)?;
        assemble(rows, open)
    }

    /// The stored states of these bays (those with one), with versions.
    pub fn bay_states_of(&self, ids: &[&str]) -> Result<HashMap<BayId, Versioned>, StoreError> {
        load_states(&mut *self.conn()?, ids)
    }
}
