//! A batch's parking-session changes, gathered as its events are applied
//! and written together before anything reads sessions back (replays,
//! overstay judging): on PostgreSQL a few statements for the whole batch
//! rather than one round trip per event; on SQLite, where a statement
//! costs no round trip, one cached statement per change as before.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};

use super::db::Db;
use super::schema::parking_sessions;
use super::{StoreError, to_ms};
use crate::domain::ids::BayId;
use crate::domain::occupancy::{BayState, SessionOp};

/// A bay's open session: stored before this batch, or opened in it.
#[derive(Debug, Clone, Copy)]
enum Open {
    Stored(i64),
    New(usize),
}

/// A session opened in this batch.
#[derive(Debug)]
struct NewSession {
    bay: BayId,
    road: String,
    started_ms: i64,
    ended_ms: Option<i64>,
    source: &'static str,
    plate: Option<String>,
}

/// What becomes of a session stored before this batch.
#[derive(Debug, Default)]
struct Change {
    ended_ms: Option<i64>,
    /// `Some` when the plate is set (to the inner value).
    plate: Option<Option<String>>,
}

/// The session changes of one batch, not yet written.
#[derive(Debug, Default)]
pub(super) struct SessionWrites {
    new: Vec<NewSession>,
    changed: HashMap<i64, Change>,
    /// Each touched bay's open session, as this batch has left it.
    open: HashMap<BayId, Option<Open>>,
}

impl SessionWrites {
    /// Takes the session changes of one in-order event of `bay`, whose
    /// state before it was `prev`.
    pub fn take(&mut self, bay: &BayId, road: &str, prev: Option<&BayState>, ops: Vec<SessionOp>) {
        let open = self.open.entry(bay.clone()).or_insert_with(|| {
            prev.and_then(|p| p.open.as_ref())
                .and_then(|o| o.id)
                .map(Open::Stored)
        });
        for op in ops {
            match op {
                SessionOp::Open {
                    started_at,
                    source,
                    plate,
                } => {
                    self.new.push(NewSession {
                        bay: bay.clone(),
                        road: road.to_owned(),
                        started_ms: to_ms(started_at),
                        ended_ms: None,
                        source: source.as_str(),
                        plate,
                    });
                    *open = Some(Open::New(self.new.len() - 1));
                }
                SessionOp::Close { ended_at } => match open.take() {
                    Some(Open::Stored(id)) => {
                        self.changed.entry(id).or_default().ended_ms = Some(to_ms(ended_at));
                    }
                    Some(Open::New(i)) => self.new[i].ended_ms = Some(to_ms(ended_at)),
                    None => {}
                },
                SessionOp::SetPlate { plate } => match *open {
                    Some(Open::Stored(id)) => {
                        self.changed.entry(id).or_default().plate = Some(Some(plate));
                    }
                    Some(Open::New(i)) => self.new[i].plate = Some(plate),
                    None => {}
                },
            }
        }
    }

    /// Writes the changes, and gives each bay's session opened in this
    /// batch and still open its id in `states`.
    pub fn write(
        self,
        conn: &mut Db,
        states: &mut HashMap<BayId, BayState>,
    ) -> Result<(), StoreError> {
        let ids = match conn {
            Db::Sqlite(_) => {
                for (id, c) in &self.changed {
                    if let Some(ended) = c.ended_ms {
                        diesel::update(parking_sessions::table.find(*id))
                            .set(parking_sessions::ended_at_ms.eq(ended))
                            .execute(conn)?;
                    }
                    if let Some(plate) = &c.plate {
                        diesel::update(parking_sessions::table.find(*id))
                            .set(parking_sessions::plate.eq(plate))
                            .execute(conn)?;
                    }
                }
                let mut ids = Vec::with_capacity(self.new.len());
                for s in &self.new {
                    ids.push(
                        diesel::insert_into(parking_sessions::table)
                            .values(row(s))
                            .returning(parking_sessions::session_id)
                            .get_result::<i64>(conn)?,
                    );
                }
                ids
            }
            Db::Pg(pg) => {
                if !self.changed.is_empty() {
                    let (mut id, mut ended, mut set_plate, mut plate) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for (k, c) in &self.changed {
                        id.push(*k);
                        ended.push(c.ended_ms);
                        set_plate.push(c.plate.is_some());
                        plate.push(c.plate.clone().flatten());
                    }
                    diesel::sql_query(
                        "UPDATE parking_sessions s \
                         SET ended_at_ms = COALESCE(u.ended, s.ended_at_ms), \
                             plate = CASE WHEN u.set_plate THEN u.plate ELSE s.plate END \
                         FROM unnest($1::int8[], $2::int8[], $3::bool[], $4::text[]) \
                             AS u(id, ended, set_plate, plate) \
                         WHERE s.session_id = u.id",
                    )
                    .bind::<Array<BigInt>, _>(id)
                    .bind::<Array<Nullable<BigInt>>, _>(ended)
                    .bind::<Array<Bool>, _>(set_plate)
                    .bind::<Array<Nullable<Text>>, _>(plate)
                    .execute(pg)?;
                }
                // Ids drawn first, in one statement, and given to the rows
                // explicitly: which row has which id is then known without
                // relying on the order RETURNING gives rows back in.
                let ids: Vec<i64> = if self.new.is_empty() {
                    Vec::new()
                } else {
                    diesel::sql_query(
                        "SELECT nextval(pg_get_serial_sequence('parking_sessions', 'session_id')) \
                         AS id FROM generate_series(1, $1)",
                    )
                    .bind::<BigInt, _>(self.new.len() as i64)
                    .load::<DrawnId>(pg)?
                    .into_iter()
                    .map(|d| d.id)
                    .collect()
                };
                if ids.len() != self.new.len() {
                    return Err(StoreError::Corrupt(format!(
                        "drew {} session ids for {} sessions",
                        ids.len(),
                        self.new.len()
                    )));
                }
                // 8 columns: well within PostgreSQL's 65,535 parameters.
                for (rows, ids) in self.new.chunks(1000).zip(ids.chunks(1000)) {
                    let values: Vec<_> = rows
                        .iter()
                        .zip(ids)
                        .map(|(s, id)| (parking_sessions::session_id.eq(*id), row(s)))
                        .collect();
                    diesel::insert_into(parking_sessions::table)
                        .values(&values)
                        .execute(pg)?;
                }
                ids
            }
        };
        for (bay, open) in &self.open {
            if let Some(Open::New(i)) = open
                && let Some(o) = states.get_mut(bay).and_then(|s| s.open.as_mut())
            {
                o.id = Some(ids[*i]);
            }
        }
        Ok(())
    }
}

#[derive(QueryableByName)]
struct DrawnId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[allow(clippy::type_complexity)]
fn row(
    s: &NewSession,
) -> (
    diesel::dsl::Eq<parking_sessions::bay_id, &str>,
    diesel::dsl::Eq<parking_sessions::road_id, &str>,
    diesel::dsl::Eq<parking_sessions::started_at_ms, i64>,
    diesel::dsl::Eq<parking_sessions::ended_at_ms, Option<i64>>,
    diesel::dsl::Eq<parking_sessions::source, &'static str>,
    diesel::dsl::Eq<parking_sessions::plate, Option<&str>>,
) {
    (
        parking_sessions::bay_id.eq(s.bay.as_str()),
        parking_sessions::road_id.eq(s.road.as_str()),
        parking_sessions::started_at_ms.eq(s.started_ms),
        parking_sessions::ended_at_ms.eq(s.ended_ms),
        parking_sessions::source.eq(s.source),
        parking_sessions::plate.eq(s.plate.as_deref()),
    )
}
