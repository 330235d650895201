//! The container runtime's API: name, image and labels of a container, from a
//! Docker-compatible API on a Unix socket (Docker's `/var/run/docker.sock`, or podman's
//! `podman system service` socket). HTTP/1.1 over the socket, one connection per request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// How long one request may take (connect, send, whole answer).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer read (a container's JSON is a few KiB).
const MAX_ANSWER: u64 = 4 << 20;

/// Where the runtime API socket is looked for, in order, when none is configured.
pub const DEFAULT_SOCKETS: [&str; 3] = [
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/podman/podman.sock",
];

/// What the runtime knows of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// Its image, as given when it was created.
    pub image: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// Why the runtime could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Connecting or the HTTP exchange failed.
    #[error("runtime API at {}: {what}", socket.display())]
    Http {
        /// The socket.
        socket: PathBuf,
        /// What failed.
        what: String,
    },
    /// No answer within [`TIMEOUT`].
    #[error("runtime API at {}: no answer within {TIMEOUT:?}", socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
    },
    /// An answer other than 200 or 404.
    #[error("runtime API at {}: status {status}", socket.display())]
    Status {
        /// The socket.
        socket: PathBuf,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not the container JSON.
    #[error("runtime API at {}: unexpected answer", socket.display())]
    Json {
        /// The socket.
        socket: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Deserialize)]
struct Inspect {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<InspectConfig>,
}

#[derive(Debug, Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The socket to use: `configured` when given, else the first of [`DEFAULT_SOCKETS`] that
/// exists; `None` when there is none.
pub fn find_socket(configured: Option<&Path>) -> Option<PathBuf> {
    match configured {
        Some(p) => Some(p.to_path_buf()),
        None => DEFAULT_SOCKETS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
    }
}

/// `GET /containers/{id}/json`: the container's name, image and labels; `None` when the
/// runtime does not know it (404).
pub async fn inspect(socket: &Path, id: &str) -> Result<Option<Meta>, RuntimeError> {
    match tokio::time::timeout(TIMEOUT, inspect_inner(socket, id)).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::Timeout {
            socket: socket.to_path_buf(),
        }),
    }
}

async fn inspect_inner(socket: &Path, id: &str) -> Result<Option<Meta>, RuntimeError> {
    use tokio::io::AsyncReadExt;
    let http = |what: String| RuntimeError::Http {
        socket: socket.to_path_buf(),
        what,
    };
    // Container ids are hex; anything else would change the path.
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || id.starts_with('.')
    {
        return Err(http(format!("bad container id `{id}`")));
    }
    // HTTP/1.0 with `Connection: close`: the answer ends when the connection does.
    let stream = super::http::request(
        socket,
        &format!(
            "GET /containers/{id}/json HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ),
    )
    .await
    .map_err(http)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| http(format!("answer: {e}")))?;
    let (status, body) = super::http::parse_answer(&raw).map_err(http)?;
    match status {
        200 => {}
        404 => return Ok(None),
        status => {
            return Err(RuntimeError::Status {
                socket: socket.to_path_buf(),
                status,
            });
        }
    }
    let raw: Inspect = serde_json::from_slice(&body).map_err(|source| RuntimeError::Json {
        socket: socket.to_path_buf(),
        source,
    })?;
    let config = raw.config;
    Ok(Some(Meta {
        name: raw.name.strip_prefix('/').unwrap_or(&raw.name).to_owned(),
        image: config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        labels: config.and_then(|c| c.labels).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each connection once: 200 with `body` for `/containers/known/json`, 404
    /// otherwise; records the request lines.
    async fn serve(listener: tokio::net::UnixListener, body: &'static str) {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let answer = if text.starts_with("GET /containers/known/json HTTP/1.") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else if text.starts_with("GET /containers/slow/json") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    return;
                } else if text.starts_with("GET /containers/broken/json") {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_owned()
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_owned()
                };
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    }

    #[tokio::test]
    async fn inspects_through_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(serve(
            listener,
            r#"{"Id":"known","Name":"/web-1","Config":{"Image":"nginx:1.27","Labels":{"app":"web","tier":"front"}},"State":{"Running":true}}"#,
        ));
        let meta = inspect(&sock, "known").await.unwrap().unwrap();
        assert_eq!(meta.name, "web-1");
        assert_eq!(meta.image, "nginx:1.27");
        assert_eq!(
            meta.labels,
            BTreeMap::from([
                ("app".to_owned(), "web".to_owned()),
                ("tier".to_owned(), "front".to_owned())
            ])
        );
        assert_eq!(inspect(&sock, "unknown").await.unwrap(), None);
        assert!(matches!(
            inspect(&sock, "broken").await,
            Err(RuntimeError::Status { status: 500, .. })
        ));
        assert!(inspect(&sock, "../x").await.is_err());
        let started = std::time::Instant::now();
        assert!(matches!(
            inspect(&sock, "slow").await,
            Err(RuntimeError::Timeout { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(matches!(
            inspect(&dir.path().join("none.sock"), "known").await,
            Err(RuntimeError::Http { .. })
        ));
    }

    #[tokio::test]
    async fn null_labels_and_missing_config() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("podman.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(serve(
            listener,
            r#"{"Name":"db","Config":{"Image":"postgres","Labels":null}}"#,
        ));
        let meta = inspect(&sock, "known").await.unwrap().unwrap();
        assert_eq!(
            meta,
            Meta {
                name: "db".into(),
                image: "postgres".into(),
                labels: BTreeMap::new()
            }
        );
    }

    #[test]
    fn configured_socket_wins() {
        assert_eq!(
            find_socket(Some(Path::new("/x.sock"))),
            Some(PathBuf::from("/x.sock"))
        );
    }
}
