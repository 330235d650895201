//! What a client command can fail with, and the exit code each failure maps to (listed in
//! `palisade --help` and docs/operations.md, "CLI").

use std::path::PathBuf;

use crate::model::Invalid;
use crate::policy_code::PolicyCodeError;

/// Process exit codes of the client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The server refused or failed the operation.
    Failed = 1,
    /// Usage error or bad local input.
    Usage = 2,
    /// Not logged in, expired, or forbidden (401, 403).
    Auth = 3,
    /// Not found (404).
    NotFound = 4,
    /// Conflict or stale (409, 412).
    Conflict = 5,
    /// Cannot reach the server.
    Unreachable = 6,
}

impl Exit {
    /// The exit code for an HTTP error status.
    pub fn for_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Auth,
            404 => Self::NotFound,
            409 | 412 => Self::Conflict,
            _ => Self::Failed,
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failed client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error("{method} {path}: HTTP {status} {code}: {message}")]
    Api {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// `error.code` of the envelope (`http_<status>` when the body had none).
        code: String,
        /// `error.message` (or the start of the body).
        message: String,
    },
    /// The connection failed (refused, DNS, TLS, timeout, dropped).
    #[error("cannot reach the server at {url}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// A success status with a body that is not what the contract says.
    #[error("{method} {path}: unexpected answer: {reason}")]
    BadResponse {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// No token: neither --token, PALISADE_TOKEN nor a session for this URL.
    #[error("not logged in to {url}: run `palisade login` (or pass --token / set PALISADE_TOKEN)")]
    NotLoggedIn {
        /// Base URL.
        url: String,
    },
    /// The session's token expired.
    #[error("the session for {url} expired at {expires_at}: run `palisade login`")]
    Expired {
        /// Base URL.
        url: String,
        /// When.
        expires_at: String,
    },
    /// Bad arguments or input that clap could not check.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A local file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A policy document that does not parse.
    #[error("{}", path.display())]
    Policy {
        /// The file.
        path: PathBuf,
        /// Why (with line and column).
        #[source]
        source: PolicyCodeError,
    },
    /// A policy document that parses but is invalid; every problem is listed.
    #[error("{}: {} problem(s):{}", path.display(), errors.len(), list(errors))]
    InvalidPolicy {
        /// The file.
        path: PathBuf,
        /// Every problem.
        errors: Vec<Invalid>,
    },
    /// An input the model rejects (a group or rule built from arguments).
    #[error("invalid {what}")]
    Invalid {
        /// Group, rule.
        what: &'static str,
        /// Which field and why.
        #[source]
        source: Invalid,
    },
    /// Writing our own output failed (closed pipe).
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

fn list(errors: &[Invalid]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

impl CliError {
    /// The exit code.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Api { status, .. } => Exit::for_status(*status),
            Self::Unreachable { .. } => Exit::Unreachable,
            Self::BadResponse { .. } | Self::Write { .. } | Self::Output(_) => Exit::Failed,
            Self::NotLoggedIn { .. } | Self::Expired { .. } => Exit::Auth,
            Self::Usage(_)
            | Self::Read { .. }
            | Self::Policy { .. }
            | Self::InvalidPolicy { .. }
            | Self::Invalid { .. } => Exit::Usage,
        }
    }

    /// The message with every cause, `a: b: c`.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Output(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> CliError {
        CliError::Api {
            method: "GET",
            path: "/v1/groups/x".into(),
            status,
            code: "c".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn statuses_map_to_documented_exit_codes() {
        let codes: Vec<u8> = [400, 401, 403, 404, 409, 412, 422, 500, 503]
            .into_iter()
            .map(|s| api(s).exit().code())
            .collect();
        assert_eq!(codes, [1, 3, 3, 4, 5, 5, 1, 1, 1]);
        assert_eq!(CliError::NotLoggedIn { url: "u".into() }.exit().code(), 3);
        assert_eq!(CliError::Usage("x".into()).exit().code(), 2);
        assert_eq!(
            CliError::InvalidPolicy {
                path: "p".into(),
                errors: vec![]
            }
            .exit()
            .code(),
            2
        );
        assert_eq!(
            CliError::Unreachable {
                url: "u".into(),
                source: ureq::Error::ConnectionFailed
            }
            .exit()
            .code(),
            6
        );
    }

    #[test]
    fn chain_prints_every_cause_once() {
        let e = CliError::Invalid {
            what: "group",
            source: Invalid::new("criteria[0].value", "empty"),
        };
        assert_eq!(e.chain(), "invalid group: criteria[0].value: empty");
        assert_eq!(api(404).chain(), "GET /v1/groups/x: HTTP 404 c: m");
        let e = CliError::InvalidPolicy {
            path: "p.yaml".into(),
            errors: vec![Invalid::new("a", "b"), Invalid::new("c", "d")],
        };
        assert_eq!(e.chain(), "p.yaml: 2 problem(s):\n  a: b\n  c: d");
    }
}
