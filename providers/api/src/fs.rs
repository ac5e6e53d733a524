//! Files read and written by rangekeeper and its providers, in one place: bounded reads of
//! regular files only (a FIFO, device or endless file is refused, never read until memory
//! runs out) and atomic replacement (temp file in the same directory, fsync, rename) that
//! writes through symlinks and keeps the file's mode, owner and group.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Read a regular file (following symlinks), refusing anything else and anything larger
/// than `max_bytes`. `what` names the file in errors ("the declaration file").
pub fn read_regular(path: &Path, max_bytes: u64, what: &str) -> std::io::Result<Vec<u8>> {
    // Checked before opening: opening a FIFO blocks until a writer appears.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta, what));
    }
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta, what));
    }
    if meta.len() > max_bytes {
        return Err(too_large(path, max_bytes, what));
    }
    // The size can change between the check and the read (or lie, as in /proc): bound the
    // read itself too.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(path, max_bytes, what));
    }
    Ok(bytes)
}

/// Open for reading without ever blocking in open(2), should a FIFO have been swapped in
/// after the caller's check.
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    opts.open(path)
}

/// `ErrorKind::InvalidInput`: `path` names a FIFO, device, directory or socket.
fn not_regular(path: &Path, meta: &std::fs::Metadata, what: &str) -> std::io::Error {
    let kind = file_kind(meta);
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{} is {kind}, not a regular file; {what} must be a regular file (or a symlink to one)",
            path.display()
        ),
    )
}

/// `ErrorKind::InvalidData`: larger than the bound.
fn too_large(path: &Path, max_bytes: u64, what: &str) -> std::io::Error {
    let limit = if max_bytes >= 1 << 20 && max_bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", max_bytes >> 20)
    } else {
        format!("{max_bytes} bytes")
    };
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{} is larger than {limit}, the most {what} may hold; refusing to read it",
            path.display()
        ),
    )
}

/// What kind of file `meta` describes, in words.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Replace the file at `path` atomically with `bytes`: a temp file in the directory of the
/// file's resolved path (a symlink is written through, never replaced by a regular file),
/// fsync, rename, fsync the directory. An existing file keeps its permissions, owner and
/// group (when they cannot be kept, nothing is changed); a new one gets `new_mode` (unix).
/// A failure leaves the old file as it was. Returns the path of the file written.
pub fn write_atomic(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<PathBuf> {
    let path = resolve_symlinks(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = std::fs::metadata(&path).ok();
    if let Some(m) = &existing
        && !m.is_file()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is {}, not a regular file; refusing to replace it",
                path.display(),
                file_kind(m)
            ),
        ));
    }
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the directory of {} does not exist", path.display()),
        ));
    }
    let (tmp, mut file) = create_temp(&dir, &path)?;
    let result = (|| {
        file.write_all(bytes)?;
        keep_metadata(&file, existing.as_ref(), new_mode)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Makes the rename durable; not every filesystem can sync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

/// An exclusive lock on a lock file, held until dropped (the kernel releases it when the
/// process dies, so a killed writer never leaves it held).
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

/// Take an exclusive `flock(2)` on `path` (created with mode 0600 if missing), waiting for
/// any other holder. Writers of one file take the lock beside it, so their read-modify-write
/// cycles never interleave.
#[cfg(unix)]
pub fn lock_exclusive(path: &Path) -> std::io::Result<FileLock> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(FileLock { _file: file })
}

/// Follow `path` through symlinks to the file they name (which need not exist yet).
pub fn resolve_symlinks(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{}: too many levels of symbolic links", path.display()),
    ))
}

fn create_temp(dir: &Path, path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(unix)]
fn keep_metadata(
    file: &std::fs::File,
    existing: Option<&std::fs::Metadata>,
    new_mode: u32,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    match existing {
        Some(m) => {
            // Owner and group first: chown clears set-id bits, the mode restores them. A file
            // that would change hands (a proxy running unprivileged could no longer read it)
            // is not replaced.
            std::os::unix::fs::fchown(file, Some(m.uid()), Some(m.gid())).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot keep the owner and group (nothing was changed): {e}"),
                )
            })?;
            file.set_permissions(m.permissions())
        }
        None => file.set_permissions(std::fs::Permissions::from_mode(new_mode)),
    }
}

#[cfg(not(unix))]
fn keep_metadata(
    file: &std::fs::File,
    existing: Option<&std::fs::Metadata>,
    _new_mode: u32,
) -> std::io::Result<()> {
    match existing {
        Some(m) => file.set_permissions(m.permissions()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn read_regular_refuses_devices_directories_and_oversized_files() {
        let e = read_regular(Path::new("/dev/zero"), 1024, "the file").unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let dir = std::env::temp_dir();
        let e = read_regular(&dir, 1024, "the file").unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let f = dir.join(format!("rk-fs-test-{}", std::process::id()));
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_regular(&f, 10, "the file").unwrap(), b"0123456789");
        let e = read_regular(&f, 9, "the file").unwrap_err();
        assert!(e.to_string().contains("larger than 9 bytes"), "{e}");
        std::fs::remove_file(&f).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_writes_through_a_symlink_and_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("rk-fs-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.conf");
        std::fs::write(&real, b"old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.join("link.conf");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("real.conf", &link).unwrap();
        write_atomic(&link, b"new", 0o644).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let fresh = dir.join("fresh.conf");
        write_atomic(&fresh, b"x", 0o600).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
