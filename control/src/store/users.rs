//! Users (argon2id password hashes), login tokens and API keys.
//!
//! Tokens and API key secrets are 32 random bytes, base64url; only their SHA-256 is stored,
//! so a copy of the database opens no session. Passwords are hashed with argon2's defaults
//! (argon2id, random salt) outside the database lock: hashing takes tens of milliseconds.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Result, Store, StoreError, audit, now_s};
use crate::model::{Event, Role, User, validate_name};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (hashing cost must not depend on an attacker's body size).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// API key secrets start with this.
pub const API_KEY_PREFIX: &str = "pk_";

/// A login token as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Owner.
    pub user: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the token is refused from then on.
    pub expires_at: i64,
}

/// An API key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    /// Unique name.
    pub name: String,
    /// Role it acts with.
    pub role: Role,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
}

/// A freshly created API key: the secret is shown this once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// What is stored.
    pub info: ApiKeyInfo,
    /// `pk_...`; only its hash is stored.
    pub secret: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("info", &self.info)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(StoreError::invalid(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(StoreError::invalid(
            "password",
            format!("at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

fn verify(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A real hash of nothing anyone knows, verified against for unknown users so that the
/// answer takes as long as for a known one.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(&random_secret()).ok())
        .as_deref()
}

fn parse_role(s: &str) -> Result<Role> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("role `{s}`")))
}

type UserRow = (String, String, String, bool, i64);

fn user_row(c: &Connection, name: &str) -> Result<Option<(User, String)>> {
    let row: Option<UserRow> = c
        .query_row(
            "SELECT name, hash, role, must_change, created_at FROM users WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    row.map(|(name, hash, role, must, created_at)| {
        Ok((
            User {
                name,
                role: parse_role(&role)?,
                must_change_password: must,
                created_at,
            },
            hash,
        ))
    })
    .transpose()
}

fn admin_count(c: &Connection) -> Result<i64> {
    Ok(
        c.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
            r.get(0)
        })?,
    )
}

impl Store {
    /// Number of users (0 on a fresh install: the caller creates the first admin).
    pub fn user_count(&self) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT name, role, must_change, created_at FROM users ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(name, role, must, created_at)| {
                    Ok(User {
                        name,
                        role: parse_role(&role)?,
                        must_change_password: must,
                        created_at,
                    })
                })
                .collect()
        })
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        self.read(|c| Ok(user_row(c, name)?.map(|(u, _)| u)))
    }

    /// Creates a user; [`StoreError::Conflict`] when the name is taken.
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        role: Role,
        must_change_password: bool,
        actor: &str,
    ) -> Result<(User, Event)> {
        validate_name("name", name)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        self.write(|tx| {
            if user_row(tx, name)?.is_some() {
                return Err(StoreError::Conflict(format!("user {name} exists already")));
            }
            let user = User {
                name: name.to_owned(),
                role,
                must_change_password,
                created_at: now_s(),
            };
            tx.execute(
                "INSERT INTO users (name, hash, role, must_change, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, hash, role.name(), must_change_password, user.created_at],
            )?;
            let ev = audit(
                tx,
                actor,
                None,
                format!("user {name} created"),
                serde_json::json!({"user": name, "role": role.name(), "must_change_password": must_change_password}),
            )?;
            Ok((user, ev))
        })
    }

    /// The user when `password` is theirs; `None` for a wrong password or an unknown user
    /// (which costs one hash verification too, so timing does not tell them apart).
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>> {
        let row = self.read(|c| user_row(c, name))?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(None);
        }
        match row {
            Some((user, hash)) => Ok(verify(password, &hash).then_some(user)),
            None => {
                if let Some(h) = dummy_hash() {
                    let _ = verify(password, h);
                }
                Ok(None)
            }
        }
    }

    /// Sets a new password and revokes every token of the user.
    pub fn set_password(
        &self,
        name: &str,
        new_password: &str,
        must_change_password: bool,
        actor: &str,
    ) -> Result<(User, Event)> {
        check_password(new_password)?;
        let hash = hash_password(new_password)?;
        self.write(|tx| {
            let (mut user, _) =
                user_row(tx, name)?.ok_or_else(|| StoreError::not_found(format!("user {name}")))?;
            tx.execute(
                "UPDATE users SET hash = ?2, must_change = ?3 WHERE name = ?1",
                params![name, hash, must_change_password],
            )?;
            let revoked = tx.execute("DELETE FROM tokens WHERE user = ?1", [name])?;
            user.must_change_password = must_change_password;
            let ev = audit(
                tx,
                actor,
                None,
                format!("password of user {name} changed"),
                serde_json::json!({"user": name, "must_change_password": must_change_password, "tokens_revoked": revoked}),
            )?;
            Ok((user, ev))
        })
    }

    /// Changes a user's role; demoting the last admin is [`StoreError::Forbidden`].
    pub fn set_role(&self, name: &str, role: Role, actor: &str) -> Result<(User, Event)> {
        self.write(|tx| {
            let (mut user, _) =
                user_row(tx, name)?.ok_or_else(|| StoreError::not_found(format!("user {name}")))?;
            if user.role == Role::Admin && role != Role::Admin && admin_count(tx)? <= 1 {
                return Err(StoreError::Forbidden(format!(
                    "{name} is the last admin: make another user admin first"
                )));
            }
            tx.execute(
                "UPDATE users SET role = ?2 WHERE name = ?1",
                params![name, role.name()],
            )?;
            let ev = audit(
                tx,
                actor,
                None,
                format!("role of user {name} set to {}", role.name()),
                serde_json::json!({"user": name, "from": user.role.name(), "to": role.name()}),
            )?;
            user.role = role;
            Ok((user, ev))
        })
    }

    /// Deletes a user and their tokens; deleting the last admin is [`StoreError::Forbidden`].
    pub fn delete_user(&self, name: &str, actor: &str) -> Result<Event> {
        self.write(|tx| {
            let (user, _) =
                user_row(tx, name)?.ok_or_else(|| StoreError::not_found(format!("user {name}")))?;
            if user.role == Role::Admin && admin_count(tx)? <= 1 {
                return Err(StoreError::Forbidden(format!(
                    "{name} is the last admin and cannot be deleted"
                )));
            }
            tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
            audit(
                tx,
                actor,
                None,
                format!("user {name} deleted"),
                serde_json::json!({"user": name, "role": user.role.name()}),
            )
        })
    }

    /// A new login token for `user`, valid for `ttl`: `(token, expires_at unix seconds)`.
    /// Expired tokens of every user are pruned on the way.
    pub fn create_token(&self, user: &str, ttl: Duration) -> Result<(String, i64)> {
        let token = random_secret();
        let now = now_s();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        self.write(|tx| {
            if user_row(tx, user)?.is_none() {
                return Err(StoreError::not_found(format!("user {user}")));
            }
            tx.execute("DELETE FROM tokens WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "INSERT INTO tokens (hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![sha256_hex(&token), user, now, expires_at],
            )?;
            Ok(())
        })?;
        Ok((token, expires_at))
    }

    /// The user a token belongs to; `None` when it is unknown, expired or revoked.
    pub fn token_user(&self, token: &str) -> Result<Option<(User, TokenInfo)>> {
        let hash = sha256_hex(token);
        self.read(|c| {
            let row: Option<(String, i64, i64)> = c
                .query_row(
                    "SELECT user, created_at, expires_at FROM tokens WHERE hash = ?1",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((user, created_at, expires_at)) = row else {
                return Ok(None);
            };
            if expires_at <= now_s() {
                return Ok(None);
            }
            Ok(user_row(c, &user)?.map(|(u, _)| {
                (
                    u,
                    TokenInfo {
                        user,
                        created_at,
                        expires_at,
                    },
                )
            }))
        })
    }

    /// Revokes a token (logout); whether it existed.
    pub fn revoke_token(&self, token: &str) -> Result<bool> {
        let hash = sha256_hex(token);
        self.write(|tx| Ok(tx.execute("DELETE FROM tokens WHERE hash = ?1", [hash])? > 0))
    }

    /// Creates an API key; the secret is in the answer only.
    pub fn create_api_key(
        &self,
        name: &str,
        role: Role,
        actor: &str,
    ) -> Result<(NewApiKey, Event)> {
        validate_name("name", name)?;
        let secret = format!("{API_KEY_PREFIX}{}", random_secret());
        let info = ApiKeyInfo {
            name: name.to_owned(),
            role,
            prefix: secret.chars().take(API_KEY_PREFIX.len() + 6).collect(),
            created_at: now_s(),
            created_by: actor.to_owned(),
        };
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Conflict(format!(
                    "API key {name} exists already"
                )));
            }
            tx.execute(
                "INSERT INTO api_keys (name, hash, prefix, role, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, sha256_hex(&secret), info.prefix, role.name(), info.created_at, actor],
            )?;
            let ev = audit(
                tx,
                actor,
                None,
                format!("API key {name} created"),
                serde_json::json!({"api_key": name, "role": role.name(), "prefix": info.prefix}),
            )?;
            Ok((
                NewApiKey {
                    info: info.clone(),
                    secret: secret.clone(),
                },
                ev,
            ))
        })
    }

    /// Every API key, by name.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT name, role, prefix, created_at, created_by FROM api_keys ORDER BY name",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(name, role, prefix, created_at, created_by)| {
                    Ok(ApiKeyInfo {
                        name,
                        role: parse_role(&role)?,
                        prefix,
                        created_at,
                        created_by,
                    })
                })
                .collect()
        })
    }

    /// Deletes an API key.
    pub fn delete_api_key(&self, name: &str, actor: &str) -> Result<Event> {
        self.write(|tx| {
            if tx.execute("DELETE FROM api_keys WHERE name = ?1", [name])? == 0 {
                return Err(StoreError::not_found(format!("API key {name}")));
            }
            audit(
                tx,
                actor,
                None,
                format!("API key {name} deleted"),
                serde_json::json!({"api_key": name}),
            )
        })
    }

    /// The key's name and role when `secret` is a live API key.
    pub fn api_key_role(&self, secret: &str) -> Result<Option<(String, Role)>> {
        if !secret.starts_with(API_KEY_PREFIX) {
            return Ok(None);
        }
        let hash = sha256_hex(secret);
        self.read(|c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT name, role FROM api_keys WHERE hash = ?1",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            row.map(|(n, r)| Ok((n, parse_role(&r)?))).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;

    fn store() -> Store {
        Store::open_in_memory().unwrap()
    }

    #[test]
    fn users_passwords_and_audit() {
        let s = store();
        assert_eq!(s.user_count().unwrap(), 0);
        let (u, ev) = s
            .create_user("admin", "correct horse", Role::Admin, true, "setup")
            .unwrap();
        assert_eq!(u.role, Role::Admin);
        assert!(u.must_change_password);
        assert_eq!(ev.kind, EventKind::Audit);
        assert_eq!(ev.actor.as_deref(), Some("setup"));
        assert_eq!(ev.message, "user admin created");
        assert!(!ev.details.to_string().contains("correct horse"));
        assert_eq!(s.user_count().unwrap(), 1);
        assert!(matches!(
            s.create_user("admin", "whatever1", Role::Reader, false, "x"),
            Err(StoreError::Conflict(_))
        ));
        let e = s
            .create_user("bob", "short", Role::Reader, false, "x")
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(i) if i.field == "password"),
            "{e:?}"
        );
        assert!(matches!(
            s.create_user("-bad", "long enough", Role::Reader, false, "x"),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(
            s.verify_password("admin", "correct horse").unwrap(),
            Some(u.clone())
        );
        assert_eq!(s.verify_password("admin", "wrong horse").unwrap(), None);
        assert_eq!(s.verify_password("nobody", "correct horse").unwrap(), None);
        assert_eq!(s.users().unwrap(), vec![u]);
        // The hash is argon2id.
        let hash: String = s
            .read(|c| Ok(c.query_row("SELECT hash FROM users", [], |r| r.get(0))?))
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }

    #[test]
    fn tokens_expire_and_password_change_revokes() {
        let s = store();
        s.create_user("alice", "password1", Role::Reader, false, "t")
            .unwrap();
        let (tok, exp) = s.create_token("alice", Duration::from_secs(3600)).unwrap();
        assert!(exp > now_s());
        let (u, info) = s.token_user(&tok).unwrap().unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(info.expires_at, exp);
        assert_eq!(s.token_user("nonsense").unwrap(), None);
        // Only the hash is stored.
        let stored: String = s
            .read(|c| Ok(c.query_row("SELECT hash FROM tokens", [], |r| r.get(0))?))
            .unwrap();
        assert_ne!(stored, tok);
        assert_eq!(stored, sha256_hex(&tok));
        // Expired right away.
        let (old, _) = s.create_token("alice", Duration::ZERO).unwrap();
        assert_eq!(s.token_user(&old).unwrap(), None);
        // Creating another prunes it.
        let (tok2, _) = s.create_token("alice", Duration::from_secs(60)).unwrap();
        let n: i64 = s
            .read(|c| Ok(c.query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 2);
        assert!(s.revoke_token(&tok2).unwrap());
        assert!(!s.revoke_token(&tok2).unwrap());
        assert_eq!(s.token_user(&tok2).unwrap(), None);
        assert!(s.token_user(&tok).unwrap().is_some());
        let (u, ev) = s
            .set_password("alice", "password2", false, "alice")
            .unwrap();
        assert!(!u.must_change_password);
        assert_eq!(ev.details["tokens_revoked"], 1);
        assert_eq!(s.token_user(&tok).unwrap(), None);
        assert!(s.verify_password("alice", "password2").unwrap().is_some());
        assert!(s.verify_password("alice", "password1").unwrap().is_none());
        assert!(matches!(
            s.create_token("nobody", Duration::from_secs(1)),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn the_last_admin_stays() {
        let s = store();
        s.create_user("root", "password1", Role::Admin, false, "t")
            .unwrap();
        s.create_user("eve", "password1", Role::Reader, false, "t")
            .unwrap();
        let (tok, _) = s.create_token("eve", Duration::from_secs(60)).unwrap();
        assert!(matches!(
            s.delete_user("root", "t"),
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            s.set_role("root", Role::Reader, "t"),
            Err(StoreError::Forbidden(_))
        ));
        let (eve, _) = s.set_role("eve", Role::Admin, "root").unwrap();
        assert_eq!(eve.role, Role::Admin);
        let (root, _) = s.set_role("root", Role::Reader, "eve").unwrap();
        assert_eq!(root.role, Role::Reader);
        assert!(matches!(
            s.delete_user("eve", "t"),
            Err(StoreError::Forbidden(_))
        ));
        s.set_role("root", Role::Admin, "eve").unwrap();
        let ev = s.delete_user("eve", "root").unwrap();
        assert_eq!(ev.message, "user eve deleted");
        // Her tokens went with her.
        assert_eq!(s.token_user(&tok).unwrap(), None);
        assert!(matches!(
            s.delete_user("eve", "root"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn api_keys() {
        let s = store();
        let (k, ev) = s.create_api_key("ci", Role::Reader, "root").unwrap();
        assert!(k.secret.starts_with("pk_"));
        assert!(k.secret.starts_with(&k.info.prefix));
        assert!(!format!("{k:?}").contains(&k.secret));
        assert!(!ev.details.to_string().contains(&k.secret));
        assert_eq!(
            s.api_key_role(&k.secret).unwrap(),
            Some(("ci".to_owned(), Role::Reader))
        );
        assert_eq!(s.api_key_role("pk_nope").unwrap(), None);
        assert_eq!(s.api_key_role("nope").unwrap(), None);
        assert!(matches!(
            s.create_api_key("ci", Role::Admin, "root"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.api_keys().unwrap(), vec![k.info.clone()]);
        s.delete_api_key("ci", "root").unwrap();
        assert_eq!(s.api_key_role(&k.secret).unwrap(), None);
        assert!(matches!(
            s.delete_api_key("ci", "root"),
            Err(StoreError::NotFound { .. })
        ));
    }
}
