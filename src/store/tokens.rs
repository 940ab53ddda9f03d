//! API tokens: only their digests are stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::api_tokens;
use super::{Store, StoreError, from_ms, to_ms};
use crate::domain::auth::Role;

/// A stored token, as the access check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
    /// When it stops working; `None`: never (until revoked).
    pub expires_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Whether the token has stopped working by `now` (it expires at the
    /// instant itself).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A token as `kerbside token list` shows it: everything but its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn role_of(token_id: i64, role: &str) -> Result<Role, StoreError> {
    Role::parse(role)
        .ok_or_else(|| StoreError::Corrupt(format!("token {token_id} has role {role:?}")))
}

impl Store {
    /// Records a token by its digest, with no expiry; returns its id.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.create_token_expiring(name, role, token_hash, now, None)
    }

    /// Records a token by its digest, working until `expires_at` (`None`:
    /// until revoked); returns its id.
    pub fn create_token_expiring(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<i64, StoreError> {
        let id = diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::name.eq(name),
                api_tokens::role.eq(role.as_str()),
                api_tokens::token_hash.eq(token_hash),
                api_tokens::created_at_ms.eq(to_ms(now)),
                api_tokens::expires_at_ms.eq(expires_at.map(to_ms)),
            ))
            .returning(api_tokens::token_id)
            .get_result(&mut self.conn()?)?;
        Ok(id)
    }

    /// The unrevoked token with this digest, if any, expired or not (the
    /// caller judges expiry against its clock, and can say why it refuses).
    pub fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<(i64, String, String, Option<i64>)> = api_tokens::table
            .filter(api_tokens::token_hash.eq(token_hash))
            .filter(api_tokens::revoked_at_ms.is_null())
            .select((
                api_tokens::token_id,
                api_tokens::name,
                api_tokens::role,
                api_tokens::expires_at_ms,
            ))
            .first(&mut self.conn()?)
            .optional()?;
        row.map(|(token_id, name, role, expires_ms)| {
            Ok(TokenRecord {
                token_id,
                role: role_of(token_id, &role)?,
                name,
                expires_at: expires_ms.map(from_ms).transpose()?,
            })
        })
        .transpose()
    }

    /// Every token, oldest first, without its digest.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        type Row = (i64, String, String, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = api_tokens::table
            .order(api_tokens::token_id)
            .select((
                api_tokens::token_id,
                api_tokens::name,
                api_tokens::role,
                api_tokens::created_at_ms,
                api_tokens::expires_at_ms,
                api_tokens::revoked_at_ms,
            ))
            .load(&mut self.conn()?)?;
        rows.into_iter()
            .map(|(token_id, name, role, created, expires, revoked)| {
                Ok(TokenInfo {
                    token_id,
                    role: role_of(token_id, &role)?,
                    name,
                    created_at: from_ms(created)?,
                    expires_at: expires.map(from_ms).transpose()?,
                    revoked_at: revoked.map(from_ms).transpose()?,
                })
            })
            .collect()
    }

    /// Revokes, at `now`, every unrevoked token named `name` (expired ones
    /// too); returns how many.
    pub fn revoke_tokens_named(&self, name: &str, now: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(diesel::update(
            api_tokens::table
                .filter(api_tokens::name.eq(name))
                .filter(api_tokens::revoked_at_ms.is_null()),
        )
        .set(api_tokens::revoked_at_ms.eq(to_ms(now)))
        .execute(&mut self.conn()?)?)
    }

    /// Every stored token digest, for tests and audits; never the tokens.
    pub fn token_hashes(&self) -> Result<Vec<String>, StoreError> {
        Ok(api_tokens::table
            .select(api_tokens::token_hash)
            .load(&mut self.conn()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn tokens_are_listed_without_digests_and_revoked_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&format!("sqlite://{}", dir.path().join("k.db").display())).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
        let until = t0 + Duration::days(30);
        store.create_token("li", Role::Warden, "h1", t0).unwrap();
        store
            .create_token_expiring("li", Role::Warden, "h2", t0, Some(until))
            .unwrap();
        store.create_token("zhou", Role::Planner, "h3", t0).unwrap();

        let h2 = store.token_by_hash("h2").unwrap().unwrap();
        assert_eq!(h2.expires_at, Some(until));
        assert!(!h2.expired(until - Duration::seconds(1)));
        assert!(h2.expired(until));

        let later = t0 + Duration::hours(1);
        assert_eq!(store.revoke_tokens_named("li", later).unwrap(), 2);
        assert_eq!(store.revoke_tokens_named("li", later).unwrap(), 0);
        assert_eq!(store.token_by_hash("h1").unwrap(), None);
        let list = store.tokens().unwrap();
        let summary: Vec<_> = list
            .iter()
            .map(|t| (t.name.as_str(), t.expires_at, t.revoked_at))
            .collect();
        assert_eq!(
            summary,
            [
                ("li", None, Some(later)),
                ("li", Some(until), Some(later)),
                ("zhou", None, None)
            ]
        );
    }
}
