//! Users, login sessions and personal API keys.
//!
//! Passwords are hashed by the caller (argon2id in the server); the store keeps the PHC string.
//! Session tokens and API keys are stored only as [`crate::token_hash`] digests.

use crate::error::{Result, StoreError};
use crate::rows::{api_key_columns, user_columns, user_columns_u, ApiKeyRow, CredentialsRow, UserRow};
use crate::types::{ApiKey, ApiKeyId, User, UserCredentials, UserId};
use crate::{now_ms, with_pool, Store};

/// The longest username accepted (in characters).
pub const MAX_USERNAME_CHARS: usize = 64;

fn validate_username(username: &str) -> Result<()> {
    let n = username.chars().count();
    if n == 0 || n > MAX_USERNAME_CHARS {
        return Err(StoreError::Invalid(format!(
            "a username has 1 to {MAX_USERNAME_CHARS} characters"
        )));
    }
    if username.trim() != username || username.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "a username has no leading or trailing spaces and no control characters".into(),
        ));
    }
    Ok(())
}

impl Store {
    /// Creates an account. Usernames are unique regardless of ASCII case
    /// ([`StoreError::Conflict`] when taken). Whether the caller may create accounts is the
    /// server's decision (an admin, or `daehwa user add` on the machine).
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<User> {
        validate_username(username)?;
        const SQL: &str = concat!(
            "INSERT INTO users (username, password_hash, is_admin, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING ", user_columns!()
        );
        let row: UserRow = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(username)
            .bind(password_hash)
            .bind(is_admin)
            .bind(now_ms())
            .fetch_one(pool)
            .await?);
        Ok(row.into())
    }

    /// Creates the first account, as an admin, only while there is no account at all
    /// (the first visitor's sign-up). [`StoreError::Forbidden`] once any user exists.
    ///
    /// The check and the insert are one statement, so two racing first visitors cannot both
    /// become admin on SQLite (writes are serialized); on PostgreSQL the table is locked for
    /// the transaction.
    pub async fn create_first_admin(&self, username: &str, password_hash: &str) -> Result<User> {
        validate_username(username)?;
        const SQL: &str = concat!(
            "INSERT INTO users (username, password_hash, is_admin, created_at) \
             SELECT $1, $2, TRUE, $3 WHERE NOT EXISTS (SELECT 1 FROM users) \
             RETURNING ", user_columns!()
        );
        let row: Option<UserRow> = match &self.backend {
            crate::Backend::Sqlite(pool) => {
                sqlx::query_as(SQL)
                    .bind(username)
                    .bind(password_hash)
                    .bind(now_ms())
                    .fetch_optional(pool)
                    .await?
            }
            crate::Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query_as(SQL)
                    .bind(username)
                    .bind(password_hash)
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row
            }
        };
        row.map(User::from)
            .ok_or(StoreError::Forbidden("the first account already exists"))
    }

    /// How many accounts exist (0 means the setup page should be shown).
    pub async fn count_users(&self) -> Result<i64> {
        let (n,): (i64,) = with_pool!(self, pool => sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await?);
        Ok(n)
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> Result<User> {
        const SQL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let row: Option<UserRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(User::from).ok_or(StoreError::NotFound)
    }

    /// The login lookup: a user and their password hash by username (any ASCII case).
    pub async fn user_credentials(&self, username: &str) -> Result<Option<UserCredentials>> {
        const SQL: &str = concat!(
            "SELECT ", user_columns!(), ", password_hash FROM users WHERE lower(username) = lower($1)"
        );
        let row: Option<CredentialsRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(username)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(|r| UserCredentials {
            user: r.user.into(),
            password_hash: r.password_hash,
        }))
    }

    /// Every account, for an admin ([`StoreError::Forbidden`] otherwise).
    pub async fn list_users(&self, actor: UserId) -> Result<Vec<User>> {
        self.require_admin(actor).await?;
        self.all_users().await
    }

    /// Every account, for the machine's operator (the `daehwa user` command, which has the
    /// database itself in hand); the web API goes through [`Store::list_users`].
    pub async fn all_users(&self) -> Result<Vec<User>> {
        const SQL: &str = concat!("SELECT ", user_columns!(), " FROM users ORDER BY id");
        let rows: Vec<UserRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// Deletes an account and everything it owns (sessions, keys, conversations). Only an
    /// admin may, and not their own account (so the last admin cannot vanish by accident).
    pub async fn delete_user(&self, actor: UserId, target: UserId) -> Result<()> {
        if actor == target {
            return Err(StoreError::Forbidden("an admin cannot delete their own account"));
        }
        self.require_admin(actor).await?;
        // Parent links cut first, as in `delete_conversation` (deep chains).
        let affected = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE messages SET parent_id = NULL WHERE parent_id IS NOT NULL \
                   AND conversation_id IN (SELECT id FROM conversations WHERE user_id = $1)",
            )
            .bind(target)
            .execute(&mut *tx)
            .await?;
            let affected = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(target)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            affected
        });
        if affected == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Grants or removes admin rights (admins only, never on themself).
    pub async fn set_admin(&self, actor: UserId, target: UserId, is_admin: bool) -> Result<User> {
        if actor == target {
            return Err(StoreError::Forbidden("an admin cannot change their own admin right"));
        }
        self.require_admin(actor).await?;
        const SQL: &str = concat!("UPDATE users SET is_admin = $2 WHERE id = $1 RETURNING ", user_columns!());
        let row: Option<UserRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(target)
            .bind(is_admin)
            .fetch_optional(pool)
            .await?);
        row.map(User::from).ok_or(StoreError::NotFound)
    }

    /// Replaces a password hash: a user's own (the server has checked the old password), or
    /// anyone's by an admin. Also ends the target's sessions, so a changed password logs out
    /// every other browser.
    pub async fn set_password_hash(
        &self,
        actor: UserId,
        target: UserId,
        password_hash: &str,
    ) -> Result<()> {
        self.change_password(actor, target, password_hash, false).await.map(drop)
    }

    /// [`Store::set_password_hash`], and with `revoke_api_keys` also revokes every API key of
    /// the target (a password change after a leak); one transaction. Returns how many keys it
    /// revoked.
    pub async fn change_password(
        &self,
        actor: UserId,
        target: UserId,
        password_hash: &str,
        revoke_api_keys: bool,
    ) -> Result<u64> {
        if actor != target {
            self.require_admin(actor).await?;
        }
        let revoked = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(target)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(target)
                .execute(&mut *tx)
                .await?;
            let revoked = if revoke_api_keys {
                sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(target)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            } else {
                0
            };
            tx.commit().await?;
            revoked
        });
        Ok(revoked)
    }

    pub(crate) async fn require_admin(&self, actor: UserId) -> Result<()> {
        match self.user(actor).await {
            Ok(u) if u.is_admin => Ok(()),
            Ok(_) | Err(StoreError::NotFound) => Err(StoreError::Forbidden("admins only")),
            Err(e) => Err(e),
        }
    }

    // ---- sessions ----

    /// Records a login session under the hash of its cookie token, valid until `expires_at`
    /// (Unix ms).
    pub async fn create_session(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user)
        .bind(now_ms())
        .bind(expires_at)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    /// The user a session token hash belongs to, if the session exists and has not expired.
    pub async fn session_user(&self, token_hash: &str) -> Result<Option<User>> {
        const SQL: &str = concat!(
            "SELECT ", user_columns_u!(), " FROM users u JOIN sessions s ON s.user_id = u.id \
             WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        let row: Option<UserRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(token_hash)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?);
        Ok(row.map(User::from))
    }

    /// Ends one session (logout). Returns whether it existed.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool> {
        let affected = with_pool!(self, pool => sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(pool)
            .await?.rows_affected());
        Ok(affected > 0)
    }

    /// Deletes expired sessions (a periodic sweep); returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        let affected = with_pool!(self, pool => sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(pool)
            .await?.rows_affected());
        Ok(affected)
    }

    // ---- API keys ----

    /// Stores a new personal API key for `actor`: its hash, and a short prefix of the key to
    /// show in listings. The key itself is shown to the user once by the caller, never stored.
    pub async fn create_api_key(
        &self,
        actor: UserId,
        name: &str,
        prefix: &str,
        key_hash: &str,
    ) -> Result<ApiKey> {
        const SQL: &str = concat!(
            "INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ", api_key_columns!()
        );
        let row: ApiKeyRow = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(actor)
            .bind(name)
            .bind(prefix)
            .bind(key_hash)
            .bind(now_ms())
            .fetch_one(pool)
            .await?);
        Ok(row.into())
    }

    /// The actor's API keys, revoked ones included (newest first).
    pub async fn list_api_keys(&self, actor: UserId) -> Result<Vec<ApiKey>> {
        const SQL: &str = concat!(
            "SELECT ", api_key_columns!(), " FROM api_keys WHERE user_id = $1 ORDER BY id DESC"
        );
        let rows: Vec<ApiKeyRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(actor)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    /// Revokes one of the actor's keys (idempotent: revoking twice keeps the first time).
    /// [`StoreError::NotFound`] for a key that is not the actor's.
    pub async fn revoke_api_key(&self, actor: UserId, key: ApiKeyId) -> Result<ApiKey> {
        const SQL: &str = concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE id = $1 AND user_id = $2 RETURNING ", api_key_columns!()
        );
        let row: Option<ApiKeyRow> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(key)
            .bind(actor)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?);
        row.map(ApiKey::from).ok_or(StoreError::NotFound)
    }

    /// The owner of an unrevoked API key, by the key's hash (the `/v1` authentication).
    pub async fn api_key_user(&self, key_hash: &str) -> Result<Option<(User, ApiKeyId)>> {
        const SQL: &str = concat!(
            "SELECT ", user_columns_u!(), ", k.id AS key_id FROM users u JOIN api_keys k ON k.user_id = u.id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            key_id: i64,
        }
        let row: Option<Row> = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(key_hash)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(|r| (r.user.into(), ApiKeyId(r.key_id))))
    }
}
