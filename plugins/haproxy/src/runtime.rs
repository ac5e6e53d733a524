//! HAProxy's runtime API (the "stats socket" CLI): one command line per connection, the
//! answer read to the end (the non-interactive mode), with a deadline and a size bound. Every
//! failure becomes a typed [`ProviderError`] that names the socket and says what to do.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rangekeeper_provider::{ProviderError, error_chain};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The most an answer may hold: a `show acl` of a million entries fits; an endless stream
/// from something that is not HAProxy does not grow memory past it.
const MAX_ANSWER: u64 = 64 << 20;

/// Where the runtime API listens: a unix socket or a TCP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl Endpoint {
    /// The `stats socket` line of HAProxy's `global` section that opens this endpoint with
    /// the level ACL changes need.
    pub fn stats_socket_line(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("stats socket {} mode 600 level admin", p.display()),
            Endpoint::Tcp(a) if a.starts_with('[') => format!("stats socket ipv6@{a} level admin"),
            Endpoint::Tcp(a) => format!("stats socket ipv4@{a} level admin"),
        }
    }
}

/// A client of one HAProxy runtime API.
#[derive(Debug, Clone)]
pub struct Cli {
    pub endpoint: Endpoint,
    pub timeout: Duration,
}

impl Cli {
    /// Send one command line (commands may be joined with `;`) and return the whole answer.
    pub async fn run(&self, line: &str) -> Result<String, ProviderError> {
        let first = line.split(' ').take(2).collect::<Vec<_>>().join(" ");
        match tokio::time::timeout(self.timeout, self.exchange(line)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Transient(format!(
                "HAProxy's runtime API at {} did not answer `{first}` within {}s",
                self.endpoint,
                self.timeout.as_secs_f64()
            ))),
        }
    }

    async fn exchange(&self, line: &str) -> Result<String, ProviderError> {
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| connect_error(&self.endpoint, &e))?;
                self.talk(s, line).await
            }
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| connect_error(&self.endpoint, &e))?;
                self.talk(s, line).await
            }
        }
    }

    async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        line: &str,
    ) -> Result<String, ProviderError> {
        let io = |e: std::io::Error| {
            ProviderError::Transient(format!(
                "HAProxy's runtime API at {}: {}",
                self.endpoint,
                error_chain(&e)
            ))
        };
        let mut msg = line.as_bytes().to_vec();
        msg.push(b'\n');
        s.write_all(&msg).await.map_err(io)?;
        s.flush().await.map_err(io)?;
        let mut out = Vec::new();
        (&mut s)
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut out)
            .await
            .map_err(io)?;
        if out.len() as u64 > MAX_ANSWER {
            return Err(ProviderError::Other(format!(
                "the answer of {} is larger than {} MiB; is it HAProxy's runtime API?",
                self.endpoint,
                MAX_ANSWER >> 20
            )));
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(denied) = permission_denied(&self.endpoint, &text) {
            return Err(denied);
        }
        Ok(text)
    }
}

/// A connection that failed, in words: the socket missing is a configuration error that
/// names the `stats socket` line to add; a socket we may not open is an auth error; HAProxy
/// not listening (yet) is transient.
pub fn connect_error(endpoint: &Endpoint, e: &std::io::Error) -> ProviderError {
    use std::io::ErrorKind;
    let cause = error_chain(e);
    match (endpoint, e.kind()) {
        (Endpoint::Unix(p), ErrorKind::NotFound) => ProviderError::Config(format!(
            "there is no HAProxy stats socket at {} ({cause}): is HAProxy running with \
             `{}` in the `global` section of its configuration?",
            p.display(),
            endpoint.stats_socket_line()
        )),
        (Endpoint::Unix(p), ErrorKind::PermissionDenied) => ProviderError::Auth(format!(
            "permission denied opening HAProxy's stats socket {} ({cause}): run rangekeeper as \
             a user that may open it, or give the socket to its group (`{} user haproxy group \
             GROUP mode 660`)",
            p.display(),
            endpoint.stats_socket_line()
        )),
        (_, ErrorKind::ConnectionRefused) => ProviderError::Transient(format!(
            "HAProxy's runtime API at {endpoint} refused the connection ({cause}): is HAProxy \
             running, with `{}` in its `global` section?",
            endpoint.stats_socket_line()
        )),
        _ => ProviderError::Transient(format!(
            "cannot connect to HAProxy's runtime API at {endpoint}: {cause}"
        )),
    }
}

/// HAProxy answers `Permission denied` to a command the socket's level does not allow.
fn permission_denied(endpoint: &Endpoint, answer: &str) -> Option<ProviderError> {
    answer
        .lines()
        .any(|l| l.trim() == "Permission denied")
        .then(|| {
            ProviderError::Auth(format!(
                "HAProxy's runtime API at {endpoint} answered `Permission denied`: changing an \
                 ACL needs a socket at level admin (`{}`)",
                endpoint.stats_socket_line()
            ))
        })
}

/// The answer's text without the blank lines HAProxy ends every answer with.
pub fn meaningful(answer: &str) -> &str {
    answer.trim()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_typed_and_say_what_to_add() {
        let sock = Endpoint::Unix("/run/haproxy/admin.sock".into());
        let e = connect_error(
            &sock,
            &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), "auth");
        assert!(
            e.message().contains("/run/haproxy/admin.sock") && e.message().contains("mode 660"),
            "{e}"
        );
        let e = connect_error(&sock, &std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(e.kind(), "config");
        assert!(
            e.message()
                .contains("`stats socket /run/haproxy/admin.sock mode 600 level admin`"),
            "{e}"
        );
        let tcp = Endpoint::Tcp("127.0.0.1:9999".into());
        let e = connect_error(
            &tcp,
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(e.kind(), "transient");
        assert!(
            e.message()
                .contains("`stats socket ipv4@127.0.0.1:9999 level admin`"),
            "{e}"
        );
    }

    #[test]
    fn permission_denied_is_an_auth_error_naming_the_level() {
        let sock = Endpoint::Unix("/s".into());
        let e = permission_denied(&sock, "Permission denied\n\n").unwrap();
        assert_eq!(e.kind(), "auth");
        assert!(e.message().contains("level admin"), "{e}");
        assert!(permission_denied(&sock, "New version created: 3\n\n").is_none());
    }
}
