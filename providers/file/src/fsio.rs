//! The file provider's file system side, on the one implementation in
//! [`rangekeeper_provider::fs`]: reads that accept only regular files and are bounded in size
//! (a FIFO, a device or `/dev/zero` is refused, never read), and atomic writes that go
//! *through* a symlink to the file it names and keep that file's owner, group and mode.

use std::path::{Path, PathBuf};

use rangekeeper_provider::fs;

/// The largest allow-list file read back (64 MiB: over a million IPv6 prefixes).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// What a target path must be, in the shared messages.
const WHAT: &str = "a target path";

/// Why a file could not be read or written: the shared layer's error, whose kind says what
/// went wrong (`InvalidInput`: not a regular file; `InvalidData`: too large or not UTF-8).
#[derive(Debug)]
pub struct FsError {
    /// What was being done ("cannot read", "cannot write").
    pub doing: &'static str,
    pub error: std::io::Error,
}

impl FsError {
    /// The message for the user. The shared layer's messages name the path already.
    pub fn describe(&self, path: &Path) -> String {
        let text = self.error.to_string();
        if text.contains(&path.display().to_string()) {
            text
        } else {
            format!("{} {}: {text}", self.doing, path.display())
        }
    }

    /// Whether the path names something other than a regular file.
    pub fn not_regular(&self) -> bool {
        self.error.kind() == std::io::ErrorKind::InvalidInput
    }
}

/// Read a regular file (following symlinks), at most [`MAX_FILE_BYTES`], as UTF-8 text.
/// `Ok(None)` when it does not exist.
pub fn read_regular(path: &Path) -> Result<Option<String>, FsError> {
    let err = |error| FsError {
        doing: "cannot read",
        error,
    };
    let bytes = match fs::read_regular(path, MAX_FILE_BYTES, WHAT) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    String::from_utf8(bytes).map(Some).map_err(|_| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        ))
    })
}

/// Write `content` to the file `path` names, atomically (see [`fs::write_atomic`]): a new
/// file gets mode 0644 and the writer's owner. Returns the path of the file written.
pub fn write_atomic(path: &Path, content: &str) -> Result<PathBuf, FsError> {
    fs::write_atomic(path, content.as_bytes(), 0o644).map_err(|error| FsError {
        doing: "cannot write",
        error,
    })
}
