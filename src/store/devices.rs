//! The device registry: who may send events, and the passwords an external
//! broker has yet to learn.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{broker_password_outbox, device_registry, devices};
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::devices::DeviceKind;
use crate::domain::ids::DeviceId;

/// A registered device, as listed to an admin (never its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub kind: DeviceKind,
    pub name: String,
    /// `$7$...` PBKDF2-SHA512 digest of its MQTT password.
    pub password_digest: String,
    pub created_at: DateTime<Utc>,
    /// The last time one of its events was stored (to the minute).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn record(row: Row) -> Result<DeviceRecord, StoreError> {
    let (id, kind, name, password_digest, created, revoked, seen) = row;
    Ok(DeviceRecord {
        device_id: DeviceId::parse(&id)
            .map_err(|e| StoreError::Corrupt(format!("device id {id:?} {e}")))?,
        kind: DeviceKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("device {id} has kind {kind:?}")))?,
        name,
        password_digest,
        created_at: from_ms(created)?,
        last_seen_at: seen.map(from_ms).transpose()?,
        revoked_at: revoked.map(from_ms).transpose()?,
    })
}

macro_rules! device_query {
    () => {
        device_registry::table
            .left_join(devices::table.on(devices::device_id.eq(device_registry::device_id)))
            .select((
                device_registry::device_id,
                device_registry::kind,
                device_registry::name,
                device_registry::password_digest,
                device_registry::created_at_ms,
                device_registry::revoked_at_ms,
                devices::last_seen_ms.nullable(),
            ))
    };
}

impl Store {
    /// Registers a device. `password` is the plain password, kept in the
    /// broker outbox until an external broker has learned it. Fails with
    /// [`StoreError::DeviceExists`] if the id was ever registered.
    pub fn create_device(
        &self,
        id: &DeviceId,
        kind: DeviceKind,
        name: &str,
        password: &str,
        password_digest: &str,
        now: DateTime<Utc>,
    ) -> Result<DeviceRecord, StoreError> {
        self.write(|c| {
            let exists: i64 = device_registry::table
                .filter(device_registry::device_id.eq(id.as_str()))
                .count()
                .get_result(c)?;
            if exists > 0 {
                return Err(StoreError::DeviceExists(id.to_string()));
            }
            diesel::insert_into(device_registry::table)
                .values((
                    device_registry::device_id.eq(id.as_str()),
                    device_registry::kind.eq(kind.as_str()),
                    device_registry::name.eq(name),
                    device_registry::password_digest.eq(password_digest),
                    device_registry::created_at_ms.eq(to_ms(now)),
                ))
                .execute(c)?;
            diesel::insert_into(broker_password_outbox::table)
                .values((
                    broker_password_outbox::device_id.eq(id.as_str()),
                    broker_password_outbox::password.eq(password),
                    broker_password_outbox::created_at_ms.eq(to_ms(now)),
                ))
                .execute(c)?;
            Ok(())
        })?;
        self.device(id)?
            .ok_or_else(|| StoreError::Corrupt(format!("device {id} vanished after insert")))
    }

    /// Revokes a device, keeping it for history; revoking twice keeps the
    /// first time. `None` when no such device was ever registered.
    pub fn revoke_device(
        &self,
        id: &DeviceId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        self.write(|c| {
            diesel::update(
                device_registry::table
                    .filter(device_registry::device_id.eq(id.as_str()))
                    .filter(device_registry::revoked_at_ms.is_null()),
            )
            .set(device_registry::revoked_at_ms.eq(to_ms(now)))
            .execute(c)?;
            diesel::delete(
                broker_password_outbox::table
                    .filter(broker_password_outbox::device_id.eq(id.as_str())),
            )
            .execute(c)?;
            Ok::<_, StoreError>(())
        })?;
        self.device(id)
    }

    /// One registered device (revoked or not).
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let row: Option<Row> = device_query!()
            .filter(device_registry::device_id.eq(id.as_str()))
            .first(&mut self.conn()?)
            .optional()?;
        row.map(record).transpose()
    }

    /// Every registered device, revoked ones included, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows: Vec<Row> = device_query!()
            .order(device_registry::device_id.asc())
            .load(&mut self.conn()?)?;
        rows.into_iter().map(record).collect()
    }

    /// Plain passwords an external broker has yet to learn: (device, password).
    pub fn pending_broker_passwords(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(broker_password_outbox::table
            .select((
                broker_password_outbox::device_id,
                broker_password_outbox::password,
            ))
            .order(broker_password_outbox::created_at_ms.asc())
            .load(&mut self.conn()?)?)
    }

    /// Forgets a device's plain password, once a broker has it (or needs none).
    pub fn forget_broker_password(&self, device_id: &str) -> Result<(), StoreError> {
        diesel::delete(
            broker_password_outbox::table.filter(broker_password_outbox::device_id.eq(device_id)),
        )
        .execute(&mut self.conn()?)?;
        Ok(())
    }

    /// Forgets every plain password waiting for a broker.
    pub fn forget_all_broker_passwords(&self) -> Result<usize, StoreError> {
        Ok(diesel::delete(broker_password_outbox::table).execute(&mut self.conn()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::devices::generate_password;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let s = Store::open(&url).unwrap();
        (dir, s)
    }

    #[test]
    fn a_device_is_registered_once_listed_and_revoked_for_good() {
        let (_d, store) = store();
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let id = DeviceId::parse("sensor-014").unwrap();
        let pw = generate_password();
        let d = store
            .create_device(
                &id,
                DeviceKind::Sensor,
                "bay 14",
                &pw.secret,
                &pw.digest,
                now,
            )
            .unwrap();
        assert_eq!(d.kind, DeviceKind::Sensor);
        assert_eq!(d.revoked_at, None);
        assert_eq!(d.last_seen_at, None);
        assert!(matches!(
            store.create_device(&id, DeviceKind::Handheld, "again", "x", &pw.digest, now),
            Err(StoreError::DeviceExists(_))
        ));
        assert_eq!(
            store.pending_broker_passwords().unwrap(),
            vec![("sensor-014".into(), pw.secret.clone())]
        );

        let later = now + chrono::Duration::minutes(5);
        let r = store.revoke_device(&id, later).unwrap().unwrap();
        assert_eq!(r.revoked_at, Some(later));
        let again = store
            .revoke_device(&id, later + chrono::Duration::minutes(1))
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_at, Some(later), "the first revocation stands");
        assert!(store.pending_broker_passwords().unwrap().is_empty());
        assert_eq!(store.devices().unwrap().len(), 1);
        let unknown = DeviceId::parse("nobody").unwrap();
        assert_eq!(store.revoke_device(&unknown, later).unwrap(), None);
    }
}
