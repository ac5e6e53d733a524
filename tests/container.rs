//! The container image: scripts/container-context.sh assembles a root filesystem from the
//! binary, the libraries `ldd` lists, the CA certificates and a passwd line, and the
//! Containerfile builds an image `FROM scratch` out of it. Checked three ways: the context's
//! contents; the binary run as user 65532 in a chroot of that root filesystem and nothing
//! else (root); the image built and run with podman (root, podman from
//! scripts/setup/80-podman.sh). Without root these are skipped with a message; with CI=true
//! they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("rangekeeper")
}

/// Assemble a context for the binary under test in a fresh directory.
fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(repo().join("scripts/container-context.sh"))
        .arg("--binary")
        .arg(binary())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "container-context.sh failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        o.status
            .code()
            .map_or("signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The shared libraries `ldd` says `file` loads.
fn libraries(file: &Path) -> Vec<String> {
    let o = Command::new("ldd").arg(file).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=> ") {
                Some((_, rest)) => rest,
                None => l,
            };
            path.starts_with('/')
                .then(|| path.split(" (").next().unwrap_or(path).to_owned())
        })
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// Whether a test needing root (and `tool`) can run; skipped with a message otherwise,
/// failed under CI=true.
fn can_run(tool: &str) -> bool {
    let root = is_root();
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !root || !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run this test as root with {tool} installed (scripts/setup/80-podman.sh)"
        );
        eprintln!("skipped: needs root and {tool} (root: {root}, {tool}: {found})");
        return false;
    }
    true
}

#[test]
fn the_context_holds_the_binary_its_libraries_the_certificates_and_a_non_root_user() {
    let ctx = context();
    let root = ctx.path().join("rootfs");
    let bin = root.join("usr/local/bin/rangekeeper");
    assert!(bin.is_file());
    let libs = libraries(&binary());
    assert!(
        !libs.is_empty(),
        "the binary is dynamically linked against the C library"
    );
    for lib in &libs {
        assert!(
            root.join(lib.trim_start_matches('/')).is_file(),
            "{lib} is missing"
        );
    }
    // Nothing but those: the binary, its libraries, the certificates and the account files.
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(format!("/{}", p.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    files.sort();
    let mut expected: Vec<String> = [
        "/etc/group",
        "/etc/nsswitch.conf",
        "/etc/passwd",
        "/etc/ssl/certs/ca-certificates.crt",
        "/usr/local/bin/rangekeeper",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(libs.iter().cloned())
    .collect();
    expected.sort();
    assert_eq!(files, expected);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("rangekeeper:x:65532:65532:"), "{passwd}");
    assert!(
        std::fs::metadata(root.join("etc/ssl/certs/ca-certificates.crt"))
            .unwrap()
            .len()
            > 10_000
    );
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::fs::metadata(root.join("tmp")).unwrap().permissions();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    assert!(ctx.path().join("Containerfile").is_file());
}

/// `--tool CMD` (nft for the hostfw image) adds a command and the libraries it loads.
#[test]
fn a_tool_comes_with_its_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(repo().join("scripts/container-context.sh"))
        .arg("--binary")
        .arg(binary())
        .args(["--tool", "ls"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ls = String::from_utf8_lossy(
        &Command::new("bash")
            .args(["-c", "type -P ls"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    let root = dir.path().join("rootfs");
    assert!(root.join(ls.trim_start_matches('/')).is_file(), "{ls}");
    for lib in libraries(Path::new(&ls)) {
        assert!(
            root.join(lib.trim_start_matches('/')).is_file(),
            "{lib} of {ls}"
        );
    }
    let o = Command::new("bash")
        .arg(repo().join("scripts/container-context.sh"))
        .arg("--binary")
        .arg(binary())
        .args(["--tool", "no-such-tool-here"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).lines().last(),
        Some("container-context: --tool no-such-tool-here: no such command on PATH")
    );
}

#[test]
fn the_context_script_refuses_a_missing_binary_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(repo().join("scripts/container-context.sh"))
        .args(["--binary", "/nonexistent/rangekeeper"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("context_missing_binary", String::from_utf8_lossy(&o.stderr));
    assert!(!dir.path().join("rootfs").exists());
}

/// The binary as user 65532 in a chroot of the context's root filesystem: it needs nothing
/// that was not copied.
#[test]
fn as_root_the_binary_runs_in_a_chroot_of_only_the_copied_files() {
    if !can_run("chroot") {
        return;
    }
    let ctx = context();
    let root = ctx.path().join("rootfs");
    let run = |args: &[&str]| {
        Command::new("chroot")
            .arg("--userspec=65532:65532")
            .arg(&root)
            .arg("/usr/local/bin/rangekeeper")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    insta::assert_snapshot!("chroot_version", text(&run(&["--version"])));
    insta::assert_snapshot!(
        "chroot_normalize",
        text(&run(&[
            "normalize",
            "192.0.2.0/25",
            "192.0.2.128/25",
            "2001:db8::1"
        ]))
    );
}

/// Removes the test's image when the test ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

/// `podman run` flags for this machine: no network, and resource limits no higher than this
/// process's (root here may lower limits but not raise them); runc when installed, which
/// works where crun refuses hybrid-mode cgroups.
fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    if Command::new("runc").arg("--version").output().is_ok() {
        c.args(["--runtime", "runc"]);
    }
    c.args(args);
    c
}

#[test]
fn as_root_the_image_builds_from_scratch_and_runs_as_user_65532() {
    if !can_run("podman") {
        return;
    }
    let ctx = context();
    let image = Image(format!("localhost/rangekeeper-test:{}", std::process::id()));
    let build = podman(&["build", "--quiet", "-f"])
        .arg(ctx.path().join("Containerfile"))
        .args(["-t", &image.0])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build));
    let user = podman(&["image", "inspect", "--format", "{{.Config.User}}", &image.0])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
    let run = |args: &[&str]| {
        podman(&[
            "run",
            "--rm",
            "--network=none",
            "--ulimit=nofile=1024:1024",
            "--ulimit=nproc=1024:1024",
            "--env=NO_COLOR=1",
            &image.0,
        ])
        .args(args)
        .output()
        .unwrap()
    };
    insta::assert_snapshot!("image_version", text(&run(&["--version"])));
    let o = run(&["normalize", "192.0.2.0/25", "192.0.2.128/25", "2001:db8::1"]);
    insta::assert_snapshot!("image_normalize", text(&o));
}

/// The Kubernetes examples run the image the Containerfile builds, at this version.
#[test]
fn the_kubernetes_examples_name_the_image_of_this_version() {
    let version = env!("CARGO_PKG_VERSION");
    let image = format!("ghcr.io/rangekeeper/rangekeeper:{version}");
    let dir = repo().join("examples/kubernetes");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let yaml = std::fs::read_to_string(&path).unwrap();
        for line in yaml
            .lines()
            .filter(|l| l.trim_start().starts_with("image:"))
        {
            let named = line.trim_start().trim_start_matches("image:").trim();
            let hostfw = path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .contains("hostfw");
            let want = if hostfw {
                format!("{image}-hostfw")
            } else {
                image.clone()
            };
            assert_eq!(named, want, "{}", path.display());
            seen += 1;
        }
    }
    assert_eq!(seen, 6, "one image per example");
    let containerfile = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    assert!(containerfile.contains(&format!("-t {image} ")));
    assert!(containerfile.contains(&format!("-t {image}-hostfw ")));
}
