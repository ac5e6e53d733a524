//! Helpers shared by the integration tests of the `rangekeeper` binary: a scratch directory
//! to run it in, the binary with a stable environment, and the pieces of its output.

#[cfg(feature = "eks")]
pub mod moto;

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

/// The binary, run in `dir` without colour and without the caller's `RANGEKEEPER_*`
/// settings, so what it prints is the same on every machine.
pub fn rangekeeper_std(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("rangekeeper"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RANGEKEEPER_FILE")
        .env_remove("RANGEKEEPER_LOG")
        .env_remove("RANGEKEEPER_STATE_DIR");
    c
}

/// [`rangekeeper_std`] as an `assert_cmd` command (stdin, timeout, captured output).
pub fn rangekeeper(dir: &Path) -> Command {
    Command::from_std(rangekeeper_std(dir))
}

/// Run a command to its end off the async runtime (so a fake server on that runtime keeps
/// serving meanwhile), giving up after 120 s.
#[allow(dead_code)] // used by the provider modules, each gated on its feature
pub async fn output_off_runtime(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        cmd.timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// A scratch directory with a declaration file in it; commands run inside it so every path
/// in the output is relative and snapshots are stable.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(decl: &str) -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        s.write("rangekeeper.yaml", decl);
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replace a file atomically (as editors and Kubernetes do), so a running reconcile loop
    /// never reads half a file.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path().join(name)).unwrap();
    }

    /// A file's text; the file must exist.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap()
    }

    /// A file's text, empty while the file does not exist yet.
    pub fn read_or_empty(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path().join(name).exists()
    }

    pub fn cmd(&self) -> Command {
        rangekeeper(self.path())
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.cmd().args(args).write_stdin(stdin).output().unwrap()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Everything a user sees, for a snapshot or a failure message.
pub fn seen(o: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        code(o),
        stdout(o),
        stderr(o)
    )
}
