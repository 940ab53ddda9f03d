//! Quarantined messages: what ingest could not store, alone, after several
//! tries, set aside whole so that ingest goes on.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::quarantine;
use super::{Store, StoreError, from_ms, to_ms};

/// A message set aside, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// Its number, in the order set aside (0 before it is stored).
    pub seq: i64,
    /// The device segment of the topic, as sent.
    pub device_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    /// The store's error on the last try.
    pub error: String,
    pub received_at: DateTime<Utc>,
    pub quarantined_at: DateTime<Utc>,
}

/// seq, device_id, topic, payload, error, received_at_ms, quarantined_at_ms.
type QuarantineRow = (i64, String, String, Vec<u8>, String, i64, i64);

impl Store {
    /// Sets a message aside; returns its number.
    pub fn quarantine(&self, rec: &QuarantineRecord) -> Result<i64, StoreError> {
        Ok(diesel::insert_into(quarantine::table)
            .values((
                quarantine::device_id.eq(&rec.device_id),
                quarantine::topic.eq(&rec.topic),
                quarantine::payload.eq(&rec.payload),
                quarantine::error.eq(&rec.error),
                quarantine::received_at_ms.eq(to_ms(rec.received_at)),
                quarantine::quarantined_at_ms.eq(to_ms(rec.quarantined_at)),
            ))
            .returning(quarantine::seq)
            .get_result(&mut self.conn()?)?)
    }

    /// The `limit` messages set aside most recently, newest first.
    pub fn quarantined(&self, limit: i64) -> Result<Vec<QuarantineRecord>, StoreError> {
        let rows: Vec<QuarantineRow> = quarantine::table
            .order(quarantine::seq.desc())
            .limit(limit)
            .select((
                quarantine::seq,
                quarantine::device_id,
                quarantine::topic,
                quarantine::payload,
                quarantine::error,
                quarantine::received_at_ms,
                quarantine::quarantined_at_ms,
            ))
            .load(&mut self.conn()?)?;
        rows.into_iter()
            .map(|(seq, device_id, topic, payload, error, r, q)| {
                Ok(QuarantineRecord {
                    seq,
                    device_id,
                    topic,
                    payload,
                    error,
                    received_at: from_ms(r)?,
                    quarantined_at: from_ms(q)?,
                })
            })
            .collect()
    }
}
