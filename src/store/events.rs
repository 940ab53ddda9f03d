//! Storing device events: the history every state and session is
//! replayed from. An event is new once per `(device_id, event_id)`.
//!
//! On SQLite that key is a unique constraint of `events`. On PostgreSQL
//! `events` is partitioned by month of `observed_at_ms`, and a unique key
//! of a partitioned table must hold the partition key, so the key lives in
//! `event_keys` (unpartitioned) and one statement stores both.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use super::StoreError;
use super::db::Db;
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
/// `true` when it is new (the store's tests add events one at a time).
#[cfg(test)]
pub(super) fn insert_event(conn: &mut Db, rec: &EventRecord) -> Result<bool, StoreError> {
    Ok(insert_events(conn, std::slice::from_ref(rec))?[0])
}

/// Stores a batch's events, each unless its `(device_id, event_id)` is
/// stored already (or came earlier in the batch): per event, in order,
/// `true` when it is new.
pub(super) fn insert_events(conn: &mut Db, recs: &[EventRecord]) -> Result<Vec<bool>, StoreError> {
    match conn {
        // One cached single-row statement per event: no round trip here,
        // and diesel keeps it prepared.
        Db::Sqlite(c) => recs
            .iter()
            .map(|r| {
                let n = diesel::insert_into(events::table)
                    .values(NewEvent::from(r))
                    .on_conflict((events::device_id, events::event_id))
                    .do_nothing()
                    .execute(c)?;
                Ok(n == 1)
            })
            .collect(),
        Db::Pg(c) => {
            let mut fresh = vec![false; recs.len()];
            // The first of each key in the batch goes to the store; any
            // later one is a duplicate of it.
            let mut first: std::collections::HashMap<(&str, &str), usize> =
                std::collections::HashMap::with_capacity(recs.len());
            for (i, r) in recs.iter().enumerate() {
                first
                    .entry((r.event.device_id.as_str(), r.event.event_id.as_str()))
                    .or_insert(i);
            }
            let mut order: Vec<usize> = first.values().copied().collect();
            order.sort_unstable();
            for chunk in order.chunks(PG_EVENTS_PER_STATEMENT) {
                let rows: Vec<NewEvent> = chunk.iter().map(|&i| NewEvent::from(&recs[i])).collect();
                let stored: Vec<StoredKey> = pg_insert_events(&rows).load(c)?;
                for k in stored {
                    if let Some(&i) = first.get(&(k.device_id.as_str(), k.event_id.as_str())) {
                        fresh[i] = true;
                    }
                }
            }
            Ok(fresh)
        }
    }
}

/// Events per PostgreSQL statement: one round trip stores this many.
const PG_EVENTS_PER_STATEMENT: usize = 5_000;

#[derive(QueryableByName)]
struct StoredKey {
    #[diesel(sql_type = Text)]
    device_id: String,
    #[diesel(sql_type = Text)]
    event_id: String,
}

/// The keys into `event_keys` and, for the keys that were new, the events
/// into `events`, all in one statement (arrays, so its text is the same
/// whatever the batch's size); returns the keys stored. A concurrent
/// insert of one of the keys (another instance) waits for the first to
/// commit, then finds the key and stores nothing for it. The keys must be
/// distinct.
fn pg_insert_events<'a>(
    rows: &'a [NewEvent<'a>],
) -> diesel::query_builder::BoxedSqlQuery<'a, Pg, diesel::query_builder::SqlQuery> {
    use diesel::sql_types::Array;
    let col = |f: fn(&'a NewEvent<'a>) -> &'a str| rows.iter().map(f).collect::<Vec<&str>>();
    let opt = |f: fn(&'a NewEvent<'a>) -> Option<&'a str>| {
        rows.iter().map(f).collect::<Vec<Option<&str>>>()
    };
    diesel::sql_query(
        "WITH input AS (\
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
             $6::text[], $7::text[], $8::float8[], $9::float8[], $10::text[], $11::text[], \
             $12::text[]) \
           AS t(device_id, event_id, event_type, observed_at_ms, received_at_ms, bay_id, \
             road_id, lon, lat, plate, category, note)), \
         k AS (INSERT INTO event_keys (device_id, event_id, observed_at_ms) \
           SELECT device_id, event_id, observed_at_ms FROM input \
           ON CONFLICT DO NOTHING RETURNING device_id, event_id) \
         INSERT INTO events (device_id, event_id, event_type, observed_at_ms, received_at_ms, \
           bay_id, road_id, lon, lat, plate, category, note) \
         SELECT i.device_id, i.event_id, i.event_type, i.observed_at_ms, i.received_at_ms, \
           i.bay_id, i.road_id, i.lon, i.lat, i.plate, i.category, i.note \
         FROM input i JOIN k ON k.device_id = i.device_id COLLATE \"C\" \
           AND k.event_id = i.event_id COLLATE \"C\" \
         RETURNING device_id, event_id",
    )
    .into_boxed()
    .bind::<Array<Text>, _>(col(|r| r.device_id))
    .bind::<Array<Text>, _>(col(|r| r.event_id))
    .bind::<Array<Text>, _>(col(|r| r.event_type))
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.observed_at_ms).collect::<Vec<i64>>())
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.received_at_ms).collect::<Vec<i64>>())
    .bind::<Array<Nullable<Text>>, _>(opt(|r| r.bay_id))
    .bind::<Array<Nullable<Text>>, _>(opt(|r| r.road_id))
    .bind::<Array<Nullable<Double>>, _>(rows.iter().map(|r| r.lon).collect::<Vec<Option<f64>>>())
    .bind::<Array<Nullable<Double>>, _>(rows.iter().map(|r| r.lat).collect::<Vec<Option<f64>>>())
    .bind::<Array<Nullable<Text>>, _>(opt(|r| r.plate))
    .bind::<Array<Nullable<Text>>, _>(opt(|r| r.category))
    .bind::<Array<Nullable<Text>>, _>(opt(|r| r.note))
}
