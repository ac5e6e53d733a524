//! The file provider's file system side: reads that accept only regular files and are
//! bounded in size (a FIFO, a device or `/dev/zero` is refused, never read), and atomic
//! writes that go *through* a symlink to the file it names (a temp file beside the real
//! file, renamed over it) and keep that file's owner, group and mode.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The largest allow-list file read back (64 MiB: over a million IPv6 prefixes).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a file could not be read or written.
#[derive(Debug)]
pub enum FsError {
    /// The path names something other than a regular file (FIFO, device, directory, socket).
    NotRegular(String),
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Not UTF-8.
    NotText,
    Io(&'static str, std::io::Error),
}

impl FsError {
    pub fn describe(&self, path: &Path) -> String {
        let p = path.display();
        match self {
            FsError::NotRegular(kind) => format!(
                "{p} is {kind}, not a regular file; a target path must name a regular file (or a symlink to one)"
            ),
            FsError::TooLarge => format!(
                "{p} is larger than {} MiB; refusing to read it as an allow-list",
                MAX_FILE_BYTES >> 20
            ),
            FsError::NotText => format!("{p} is not UTF-8 text"),
            FsError::Io(what, e) => format!("{what} {p}: {e}"),
        }
    }
}

fn kind_of(ft: std::fs::FileType) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO".into();
        }
        if ft.is_char_device() {
            return "a character device".into();
        }
        if ft.is_block_device() {
            return "a block device".into();
        }
        if ft.is_socket() {
            return "a socket".into();
        }
    }
    if ft.is_dir() {
        "a directory".into()
    } else {
        "not a regular file".into()
    }
}

/// Read a regular file (following symlinks), at most [`MAX_FILE_BYTES`]. `Ok(None)` when it
/// does not exist.
pub fn read_regular(path: &Path) -> Result<Option<String>, FsError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::Io("cannot read", e)),
    };
    if !meta.is_file() {
        return Err(FsError::NotRegular(kind_of(meta.file_type())));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        // Never block in open(2) if a FIFO was swapped in after the check above.
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::Io("cannot read", e)),
    };
    let meta = file.metadata().map_err(|e| FsError::Io("cannot read", e))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular(kind_of(meta.file_type())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FsError::Io("cannot read", e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(FsError::TooLarge);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| FsError::NotText)
}

/// The file a write to `path` must replace: `path` itself, or the file its symlinks name.
/// A symlink to a missing file resolves to that file's (absolute) path.
pub fn resolve(path: &Path) -> Result<PathBuf, FsError> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)
                    .map_err(|e| FsError::Io("cannot read the symlink", e))?;
                current = match current.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(m) if !m.is_file() => return Err(FsError::NotRegular(kind_of(m.file_type()))),
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(FsError::Io("cannot inspect", e)),
        }
    }
    Err(FsError::Io(
        "too many levels of symlinks at",
        std::io::Error::other("symlink loop"),
    ))
}

/// Write `content` to the file `path` names, atomically: a temp file in the real file's
/// directory (through symlinks), the existing file's owner, group and mode copied onto it,
/// fsync, rename over the real file, fsync the directory. A new file gets mode 0644 and the
/// writer's owner. The symlink itself is left as it is.
pub fn write_atomic(path: &Path, content: &str) -> Result<PathBuf, FsError> {
    let real = resolve(path)?;
    let dir = match real.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(FsError::Io(
            "the directory does not exist for",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".rangekeeper-")
        .tempfile_in(&dir)
        .map_err(|e| FsError::Io("cannot create a temporary file beside", e))?;
    tmp.write_all(content.as_bytes())
        .map_err(|e| FsError::Io("cannot write", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        match std::fs::metadata(&real) {
            Ok(m) => {
                // Owner and group first: chown clears set-id bits, the mode is set after.
                std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid())).map_err(
                    |e| {
                        FsError::Io(
                            "cannot keep the owner and group (nothing was changed) of",
                            e,
                        )
                    },
                )?;
                std::fs::set_permissions(tmp.path(), m.permissions())
                    .map_err(|e| FsError::Io("cannot keep the mode of", e))?;
            }
            Err(_) => std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
                .map_err(|e| FsError::Io("cannot set the mode of", e))?,
        }
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| FsError::Io("cannot sync", e))?;
    tmp.persist(&real)
        .map_err(|e| FsError::Io("cannot replace", e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        // Make the rename durable; not every filesystem supports syncing a directory.
        let _ = d.sync_all();
    }
    Ok(real)
}
