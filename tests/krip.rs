//! `reconcile --kube-restrict-ip FILE` and `kubeRestrictIp:` targets: the binary run with the
//! hostfw provider inside a network namespace each test creates (root and nft needed: such
//! tests are skipped with a message elsewhere and fail in CI), and the reader's messages.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Scratch, code, seen, stderr, stdout};

/// Whether this machine can run the namespace tests; outside CI a missing root or nft skips.
pub fn can_run_netns_tests() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let nft = Command::new("nft").arg("--version").output().is_ok();
    if !root || !nft {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run this test as root with nft installed"
        );
        eprintln!("skipped: needs root and nft (root: {root}, nft: {nft})");
        return false;
    }
    true
}

/// A network namespace of its own, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("rkk-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "delete", &name])
            .stderr(Stdio::null())
            .status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        Netns(name)
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// The binary run inside the namespace, in `s`'s directory.
    pub fn rangekeeper(&self, s: &Scratch) -> Command {
        let mut c = self.cmd(
            assert_cmd::cargo::cargo_bin("rangekeeper")
                .to_str()
                .unwrap(),
        );
        c.current_dir(s.path())
            .env("NO_COLOR", "1")
            .env_remove("RANGEKEEPER_FILE")
            .env_remove("RANGEKEEPER_LOG")
            .env_remove("RANGEKEEPER_STATE_DIR");
        c
    }

    /// `reconcile --once --kube-restrict-ip kri.yaml --state-dir state` plus `extra`.
    pub fn once(&self, s: &Scratch, extra: &[&str]) -> Output {
        self.rangekeeper(s)
            .args([
                "reconcile",
                "--once",
                "--kube-restrict-ip",
                "kri.yaml",
                "--state-dir",
                "state",
            ])
            .args(extra)
            .output()
            .unwrap()
    }

    /// `nft list table inet NAME` (empty when it does not exist).
    pub fn table(&self, name: &str) -> String {
        let o = self
            .cmd("nft")
            .args(["list", "table", "inet", name])
            .output()
            .unwrap();
        stdout(&o)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// The audit records of a scratch directory's `state/`.
pub fn audit(s: &Scratch) -> Vec<serde_json::Value> {
    s.read_or_empty("state/audit.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
}

/// Stop a loop with SIGTERM and wait for it.
pub fn terminate(child: &mut Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

pub const KRIP: &str = "restrictedPorts: [6443, 10254]\nallowedNetworks:\n  - 198.51.100.0/24\n  - 2001:db8::/32\ncheckInterval: 1s\n";

/// #10.21: what kube-restrict-ip (viper) accepts is accepted, with warnings where the meaning
/// is doubtful; the warnings are what users read.
#[test]
fn kube_restrict_ip_configs_are_read_as_kube_restrict_ip_reads_them() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  cp:\n    provider: hostfw\n    kubeRestrictIp: kri.yaml\n",
    );
    s.write(
        "kri.yaml",
        "RestrictedPorts: 6443\nALLOWEDNETWORKS: \"198.51.100.0/24 192.0.2.7\"\nallowednetworks_extra: 1\nipchain: KRIP\nlogLevel: debug\nrestrictedports2: [1]\n",
    );
    let o = s.run(&["validate", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["targets"][0]["ranges"],
        serde_json::json!(["192.0.2.7/32", "198.51.100.0/24"])
    );
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("krip_viper_forms", seen(&o));

    // Comma-separated strings are read too, with a warning at the value.
    s.write(
        "kri.yaml",
        "restrictedPorts: 6443,10254\nallowedNetworks: 198.51.100.0/24\n",
    );
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(
        stderr(&o).contains("kri.yaml:1:18: warning: `restrictedPorts` `6443,10254` is read as a list separated by commas"),
        "{}",
        seen(&o)
    );
}

/// #10.24: the start-up warning that IPv6 is restricted too, and `ipv6: restrict` or
/// `--leave-ipv6-open` to say which behaviour is wanted.
#[test]
fn ipv6_restriction_is_announced_unless_chosen() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  cp:\n    provider: hostfw\n    kubeRestrictIp: kri.yaml\n",
    );
    s.write("kri.yaml", KRIP);
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("krip_ipv6_warning", seen(&o));
    for choice in ["restrict", "open"] {
        s.write(
            "rangekeeper.yaml",
            &format!("version: 1\ntargets:\n  cp:\n    provider: hostfw\n    kubeRestrictIp: kri.yaml\n    ipv6: {choice}\n"),
        );
        let o = s.run(&["validate"]);
        assert_eq!(code(&o), 0, "{}", seen(&o));
        assert!(!stderr(&o).contains("IPv6"), "{}", seen(&o));
    }
}

/// #10.21, #10.24: `--allow-broad` admits broad networks and `--leave-ipv6-open` writes no
/// IPv6 rule, in `--kube-restrict-ip` mode; without them, broad networks are refused and the
/// start-up warning says IPv6 is restricted.
#[test]
fn kube_restrict_ip_mode_takes_allow_broad_and_leave_ipv6_open() {
    if !can_run_netns_tests() {
        return;
    }
    let ns = Netns::new("flags");
    let s = Scratch::new("version: 1\ntargets: {}\n");
    s.write(
        "kri.yaml",
        "restrictedPorts: [6443]\nallowedNetworks: [0.0.0.0/0, 2001:db8::/32]\n",
    );
    let o = ns.once(&s, &[]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(
        stderr(&o).contains("`0.0.0.0/0` ")
            && stderr(&o).contains("pass `--allow-broad` if that is really meant"),
        "{}",
        seen(&o)
    );
    assert!(!stderr(&o).contains("allowBroad"), "{}", seen(&o));
    assert!(
        stderr(&o).contains("kube-restrict-ip leaves IPv6 open, but this target restricts IPv6 clients on tcp 6443 too: only the IPv6 networks of allowedNetworks (and loopback) may connect. For kube-restrict-ip's behaviour pass `--leave-ipv6-open`\n"),
        "{}",
        seen(&o)
    );
    assert_eq!(ns.table("rangekeeper"), "", "nothing was written");

    let o = ns.once(&s, &["--allow-broad", "--leave-ipv6-open"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(!stderr(&o).contains("IPv6 open"), "{}", seen(&o));
    let table = ns.table("rangekeeper");
    assert!(table.contains("ip saddr"), "{table}");
    assert!(!table.contains("ip6 saddr"), "IPv6 is left open: {table}");
    // The second run finds it in sync: the open IPv6 side reads back as written.
    let o = ns.once(&s, &["--allow-broad", "--leave-ipv6-open", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(stdout(&o).contains("in-sync"), "{}", seen(&o));
}

/// #11.1: `import` reads a skeleton's `kubeRestrictIp` through the provider's import hook as
/// the loader does (the factory no longer reads files), with problems located in the file.
#[test]
fn import_reads_a_kube_restrict_ip_skeleton_through_the_hook() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  cp:\n    provider: hostfw\n    kubeRestrictIp: kri.yaml\n",
    );
    s.write(
        "kri.yaml",
        "restrictedPorts: [http]\nallowedNetworks: [198.51.100.0/24]\n",
    );
    let o = s.run(&["import"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("kri.yaml:1:19: error: invalid port `http`"),
        "{}",
        seen(&o)
    );
    assert!(!stderr(&o).contains("not imported"), "{}", seen(&o));
}
