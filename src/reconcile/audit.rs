//! The audit log: one JSON line per change attempt in `<state-dir>/audit.jsonl`, appended
//! and fsync'd before the next record, so the log survives a crash right after a change.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// One audit record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    pub target: &'a str,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// `initial`, `drift`, `declaration`, `source` or `config` (the reconciler), or the
    /// command that made the change by hand: `apply`, `update`, `disable`, `grant`,
    /// `revoke` or `exec`.
    pub trigger: &'a str,
    /// For a `config` change: the settings that changed (`ports: [6443] -> [6443,10254]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
    /// `applied`, `pending`, `disabled`, `failed` or `refused`.
    pub result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The lease a `grant`, `revoke` or `exec` added or removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<rangekeeper_provider::Lease>,
    /// Under `reconcile --leader-elect`: which replica wrote, in which term, and when the
    /// write was sent and answered, so the audit logs of all replicas together show that no
    /// two wrote at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer: Option<Writer>,
}

/// The replica that made a change, under leader election.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Writer {
    /// The `--identity` of the replica (the lease's holder).
    pub identity: String,
    /// The leadership term of this replica the write was made in (1, 2, ... per process).
    pub term: u64,
    /// When the write was sent and when its answer came, Unix milliseconds.
    pub sent_unix_ms: u64,
    pub done_unix_ms: u64,
}

/// Unix milliseconds of a wall-clock time (0 before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The append-only audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Open (or create) `<dir>/audit.jsonl` for appending.
    pub fn open(dir: &Path) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("audit.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record and fsync it. An error means the record is lost: the change it
    /// records already happened, so the caller reports it as a failure (exit 1, metric, log).
    pub fn record(&self, r: &Record<'_>) -> Result<(), AuditError> {
        let mut line = serde_json::to_string(r).map_err(|e| AuditError {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        let mut f = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|source| AuditError {
                path: self.path.clone(),
                source,
            })
    }
}

/// An audit record that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the audit log {}: {source}", .path.display())]
pub struct AuditError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The one-line account of a change, for an error that says what was done and not recorded:
/// `` `web`: applied +[192.0.2.0/24] -[198.51.100.0/24] ``.
pub fn describe(r: &Record<'_>) -> String {
    format!(
        "`{}`: {} +[{}] -[{}]",
        r.target,
        r.result,
        r.added.join(", "),
        r.removed.join(", ")
    )
}

/// `SystemTime` as RFC 3339 UTC with whole seconds, e.g. `2026-11-22T13:20:05Z` (the one
/// formatter is the lease timestamp's, in the provider contract).
pub fn rfc3339(t: SystemTime) -> String {
    rangekeeper_provider::lease::Timestamp::from_system(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_353_605)),
            "2026-11-22T13:20:05Z"
        );
    }

    #[test]
    fn records_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for result in ["applied", "failed"] {
            log.record(&Record {
                time: rfc3339(SystemTime::now()),
                target: "t",
                added: vec!["192.0.2.0/24".into()],
                removed: vec![],
                trigger: "initial",
                config: vec![],
                result,
                error: None,
                lease: None,
                writer: None,
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["result"], "failed");
        assert_eq!(lines[0]["added"][0], "192.0.2.0/24");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod full_disk {
    use super::*;

    /// A write to a full disk is an error, not a log line: `/dev/full` fails every write with
    /// ENOSPC, as a full filesystem does.
    #[test]
    fn a_record_that_cannot_be_written_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.jsonl")).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let e = log
            .record(&Record {
                time: rfc3339(SystemTime::now()),
                target: "t",
                added: vec![],
                removed: vec![],
                trigger: "initial",
                config: vec![],
                result: "applied",
                error: None,
                lease: None,
                writer: None,
            })
            .unwrap_err();
        assert!(e.to_string().contains("audit.jsonl"), "{e}");
    }
}
