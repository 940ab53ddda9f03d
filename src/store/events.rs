//! Storing device events: the history every state and session is
//! replayed from. An event is new once per `(device_id, event_id)`.

use diesel::prelude::*;

use super::StoreError;
use super::db::{Db, on_backend};
use super::ingest::EventRecord;
use super::schema::events;
use super::to_ms;
use crate::domain::ids::{BayId, RoadId};

#[derive(Insertable)]
#[diesel(table_name = events)]
pub(super) struct NewEvent<'a> {
    device_id: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    observed_at_ms: i64,
    received_at_ms: i64,
    bay_id: Option<&'a str>,
    road_id: Option<&'a str>,
    lon: Option<f64>,
    lat: Option<f64>,
    plate: Option<&'a str>,
    category: Option<&'a str>,
    note: Option<&'a str>,
}

impl<'a> From<&'a EventRecord> for NewEvent<'a> {
    fn from(rec: &'a EventRecord) -> Self {
        let e = &rec.event;
        NewEvent {
            device_id: e.device_id.as_str(),
            event_id: e.event_id.as_str(),
            event_type: e.kind.as_str(),
            observed_at_ms: to_ms(e.observed_at),
            received_at_ms: to_ms(rec.received_at),
            bay_id: rec.bay_id.as_ref().map(BayId::as_str),
            road_id: rec.road_id.as_ref().map(RoadId::as_str),
            lon: e.position.map(|p| p.lon),
            lat: e.position.map(|p| p.lat),
            plate: e.plate.as_deref(),
            category: e.category.map(|c| c.as_str()),
            note: e.note.as_deref(),
        }
    }
}

/// Stores one event unless its `(device_id, event_id)` is stored already:
/// `true` when it is new.
pub(super) fn insert_event(conn: &mut Db, rec: &EventRecord) -> Result<bool, StoreError> {
    // One single-row statement per event: diesel caches it prepared,
    // which beats preparing a large multi-row statement per batch.
    let inserted = on_backend!(conn, c => diesel::insert_into(events::table)
            .values(NewEvent::from(rec))
            .on_conflict((events::device_id, events::event_id))
            .do_nothing()
            .execute(c))?;
    Ok(inserted == 1)
}
