//! Bay states: the newest status of each bay, as the store knows it.

use std::collections::HashMap;

use diesel::prelude::*;

use super::schema::bay_states;
use super::{Store, StoreError, from_ms};
use crate::domain::ids::BayId;
use crate::domain::occupancy::{BayState, BayStatus};

impl Store {
    /// Every bay's stored state, to build the street at start-up.
    pub fn bay_states(&self) -> Result<HashMap<BayId, BayState>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = bay_states::table
            .select((
                bay_states::bay_id,
                bay_states::status,
                bay_states::since_ms,
                bay_states::last_event_at_ms,
            ))
            .load(&mut self.conn()?)?;
        rows.into_iter()
            .map(|(bay_id, status, since_ms, last_ms)| {
                let id = BayId::parse(&bay_id)
                    .map_err(|e| StoreError::Corrupt(format!("bay id {bay_id:?} {e}")))?;
                let status = BayStatus::parse(&status).ok_or_else(|| {
                    StoreError::Corrupt(format!("bay {bay_id} status {status:?}"))
                })?;
                Ok((
                    id,
                    BayState {
                        status,
                        since: from_ms(since_ms)?,
                        last_event_at: from_ms(last_ms)?,
                    },
                ))
            })
            .collect()
    }
}
