//! API tokens: only their digests are stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::api_tokens;
use super::{Store, StoreError, to_ms};
use crate::domain::auth::Role;

/// A stored token, as the access check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
}

impl Store {
    /// Records a token by its digest; returns its id.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let id = diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::name.eq(name),
                api_tokens::role.eq(role.as_str()),
                api_tokens::token_hash.eq(token_hash),
                api_tokens::created_at_ms.eq(to_ms(now)),
            ))
            .returning(api_tokens::token_id)
            .get_result(&mut self.conn()?)?;
        Ok(id)
    }

    /// The live (not revoked) token with this digest, if any.
    pub fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<(i64, String, String)> = api_tokens::table
            .filter(api_tokens::token_hash.eq(token_hash))
            .filter(api_tokens::revoked_at_ms.is_null())
            .select((api_tokens::token_id, api_tokens::name, api_tokens::role))
            .first(&mut self.conn()?)
            .optional()?;
        row.map(|(token_id, name, role)| {
            let role = Role::parse(&role).ok_or_else(|| {
                StoreError::Corrupt(format!("token {token_id} has role {role:?}"))
            })?;
            Ok(TokenRecord {
                token_id,
                name,
                role,
            })
        })
        .transpose()
    }

    /// Every stored token digest, for tests and audits; never the tokens.
    pub fn token_hashes(&self) -> Result<Vec<String>, StoreError> {
        Ok(api_tokens::table
            .select(api_tokens::token_hash)
            .load(&mut self.conn()?)?)
    }
}
