//! The login session: `{url, username, token, expires_at}` in
//! `$XDG_CONFIG_HOME/palisade/session.json` (else `~/.config/palisade/session.json`), mode
//! 0600 in a directory created 0700. The token is a secret: the file is written to a fresh
//! temporary file created 0600 and renamed over the old one, so it is never readable by
//! others, not even for a moment.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::CliError;

/// A stored login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// API base URL the token belongs to.
    pub url: String,
    /// Who logged in.
    #[serde(default)]
    pub username: String,
    /// Bearer token.
    pub token: String,
    /// As the server sent it: RFC 3339 text or Unix seconds.
    #[serde(default)]
    pub expires_at: Value,
}

impl Session {
    /// Whether `expires_at` is in the past at `now` (Unix seconds). Unknown formats never
    /// expire here: the server decides.
    pub fn expired(&self, now: i64) -> bool {
        let at = match &self.expires_at {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(time::OffsetDateTime::unix_timestamp)
            }
            _ => None,
        };
        at.is_some_and(|at| at <= now)
    }

    /// `expires_at` for humans.
    pub fn expires_text(&self) -> String {
        match &self.expires_at {
            Value::String(s) => s.clone(),
            Value::Null => "unknown".to_owned(),
            v => v.to_string(),
        }
    }
}

/// Where the session file lives, from `XDG_CONFIG_HOME` and `HOME` (empty values ignored).
pub fn path_from(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    let non_empty = |v: Option<&OsStr>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    non_empty(xdg_config_home)
        .or_else(|| non_empty(home).map(|h| h.join(".config")))
        .map(|d| d.join("palisade").join("session.json"))
}

/// The session file path for this process's environment.
pub fn default_path() -> Option<PathBuf> {
    path_from(
        std::env::var_os("XDG_CONFIG_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// Reads the session at `path`; `None` when there is no file.
pub fn load(path: &Path) -> Result<Option<Session>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CliError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::Usage(format!(
            "{} is not a session file ({e}): remove it and run `palisade login`",
            path.display()
        ))
    })
}

/// Writes `session` to `path` with mode 0600 (parent created 0700 when missing).
pub fn save(path: &Path, session: &Session) -> Result<(), CliError> {
    let write = |source| CliError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write)?;
    }
    let text =
        serde_json::to_string_pretty(session).map_err(|e| write(std::io::Error::other(e)))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write)
}

/// Removes the session file; `false` when there was none.
pub fn remove(path: &Path) -> Result<bool, CliError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CliError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn session() -> Session {
        Session {
            url: "http://127.0.0.1:10443".into(),
            username: "admin".into(),
            token: "secret".into(),
            expires_at: Value::from("2030-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn paths_follow_xdg_then_home() {
        let p = |x: Option<&str>, h: Option<&str>| path_from(x.map(OsStr::new), h.map(OsStr::new));
        assert_eq!(
            p(Some("/x"), Some("/home/a")),
            Some(PathBuf::from("/x/palisade/session.json"))
        );
        assert_eq!(
            p(Some(""), Some("/home/a")),
            Some(PathBuf::from("/home/a/.config/palisade/session.json"))
        );
        assert_eq!(p(None, None), None);
    }

    #[test]
    fn saved_file_is_0600_in_a_0700_dir_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/palisade/session.json");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &session()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(load(&path).unwrap(), Some(session()));
        // Overwriting a file someone loosened keeps the new one private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &session()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
    }

    #[test]
    fn expiry_reads_rfc3339_and_unix_seconds() {
        let mut s = session();
        let t2030 = 1_893_456_000;
        assert!(!s.expired(t2030 - 1));
        assert!(s.expired(t2030));
        s.expires_at = Value::from(100);
        assert!(s.expired(100) && !s.expired(99));
        s.expires_at = Value::from("tomorrow");
        assert!(!s.expired(i64::MAX));
    }
}
