//! Leases through the binary: `grant`, `revoke`, `leases` and `exec` on the `file` provider
//! (a header in the file, a lock file beside it), the plan that shows them apart from the
//! declaration, many parallel `exec` runs with a reconcile loop running throughout (no
//! address is ever lost), and a runner killed with SIGKILL cleaned up after expiry.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Scratch, code, seen, stderr, stdout};

const DECL: &str = r#"version: 1
targets:
  ci-proxy:
    provider: file
    path: allow.txt
    allow: [203.0.113.0/24]
"#;

/// The ranges a plain-format file holds.
fn ranges(s: &Scratch) -> Vec<String> {
    s.read_or_empty("allow.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn lease_lines(s: &Scratch) -> usize {
    s.read_or_empty("allow.txt")
        .lines()
        .filter(|l| l.starts_with("# rangekeeper-lease: "))
        .count()
}

/// The output with the lease ids and times that change every run replaced.
pub(crate) fn stable(text: &str, ids: &[&str]) -> String {
    let mut out = text.to_owned();
    for (i, id) in ids.iter().enumerate() {
        // As long as an id, so tables stay aligned.
        out = out.replace(id, &format!("<lease-id-{i}>"));
    }
    let mut s = String::new();
    let mut rest = out.as_str();
    // RFC 3339 times: 2026-12-07T02:30:00Z
    while let Some(pos) = rest.find(|c: char| c.is_ascii_digit()) {
        let cand = &rest[pos..];
        if cand.len() >= 20
            && cand.as_bytes()[4] == b'-'
            && cand.as_bytes()[10] == b'T'
            && cand.as_bytes()[19] == b'Z'
        {
            s.push_str(&rest[..pos]);
            s.push_str("YYYY-MM-DDTHH:MM:SSZ");
            rest = &cand[20..];
        } else {
            let next = pos + cand.chars().next().map_or(1, char::len_utf8);
            s.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    s.push_str(rest);
    s
}

fn ci_env(cmd: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    cmd.env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_REPOSITORY", "org/repo")
        .env("GITHUB_ACTOR", "alice")
}

fn run_ci(s: &Scratch, args: &[&str]) -> Output {
    ci_env(&mut s.cmd()).args(args).output().unwrap()
}

fn applied(s: &Scratch) {
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
}

#[test]
fn grant_list_plan_revoke_and_revoke_again() {
    let s = Scratch::new(DECL);
    applied(&s);
    let g = run_ci(
        &s,
        &[
            "grant",
            "--target",
            "ci-proxy",
            "--ttl",
            "20m",
            "--ip",
            "198.51.100.7",
            "--reason",
            "deploy",
        ],
    );
    assert_eq!(code(&g), 0, "{}", seen(&g));
    let id = stdout(&g).trim().to_owned();
    assert_eq!(
        stdout(&g),
        format!("{id}\n"),
        "the lease id alone on stdout"
    );
    assert!(!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(ranges(&s), ["198.51.100.7/32", "203.0.113.0/24"]);
    assert_eq!(lease_lines(&s), 1);

    let list = s.run(&["leases"]);
    assert_eq!(code(&list), 0, "{}", seen(&list));
    insta::assert_snapshot!("leases_table", stable(&stdout(&list), &[&id]));
    let json = s.run(&["leases", "--target", "ci-proxy", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(
        v[0]["requestedBy"],
        "alice@github:org/repo/actions/runs/4242"
    );
    insta::assert_snapshot!(
        "leases_json",
        stable(&serde_json::to_string_pretty(&v).unwrap(), &[&id])
    );

    // The plan keeps the lease, shown apart from the declaration: in sync.
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", seen(&plan));
    insta::assert_snapshot!("plan_with_lease", stable(&stdout(&plan), &[&id]));
    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", seen(&apply));
    assert_eq!(ranges(&s), ["198.51.100.7/32", "203.0.113.0/24"]);

    let show = s.run(&["show"]);
    insta::assert_snapshot!("show_with_lease", stable(&stdout(&show), &[&id]));

    let r = s.run(&["revoke", "--target", "ci-proxy", "--lease", &id]);
    assert_eq!(code(&r), 0, "{}", seen(&r));
    assert_eq!(stdout(&r), "");
    assert_eq!(ranges(&s), ["203.0.113.0/24"]);
    assert_eq!(lease_lines(&s), 0);
    // Post steps must be idempotent: a lease already gone is fine, and said.
    let again = s.run(&["revoke", "--target", "ci-proxy", "--lease", &id]);
    assert_eq!(code(&again), 0, "{}", seen(&again));
    assert!(
        stderr(&again).contains("is not on `ci-proxy`"),
        "{}",
        seen(&again)
    );
    assert_eq!(s.run(&["leases"]).stdout, b"no leases\n");
}

#[test]
fn grant_json_names_the_lease() {
    let s = Scratch::new(DECL);
    applied(&s);
    let g = run_ci(
        &s,
        &[
            "grant",
            "-t",
            "ci-proxy",
            "--ttl",
            "1h",
            "--ip",
            "2001:db8::7",
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&g), 0, "{}", seen(&g));
    let v: serde_json::Value = serde_json::from_str(&stdout(&g)).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    insta::assert_snapshot!(
        "grant_json",
        stable(&serde_json::to_string_pretty(&v).unwrap(), &[&id])
    );
    assert!(ranges(&s).contains(&"2001:db8::7/128".to_owned()));
}

#[test]
fn the_plan_shows_an_expired_lease_and_apply_removes_it() {
    let s = Scratch::new(DECL);
    applied(&s);
    let g = run_ci(
        &s,
        &[
            "grant",
            "-t",
            "ci-proxy",
            "--ttl",
            "1s",
            "--ip",
            "198.51.100.9",
        ],
    );
    assert_eq!(code(&g), 0, "{}", seen(&g));
    let id = stdout(&g).trim().to_owned();
    std::thread::sleep(Duration::from_millis(2100));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", seen(&plan));
    insta::assert_snapshot!("plan_expired_lease", stable(&stdout(&plan), &[&id]));
    applied(&s);
    assert_eq!(ranges(&s), ["203.0.113.0/24"]);
    assert_eq!(lease_lines(&s), 0);
}

#[test]
fn refusals_say_why_and_change_nothing() {
    let s = Scratch::new(&format!("{DECL}    maxLeaseTtl: 2h\n"));
    // Unrestricted (no file yet): a lease would restrict it; refused.
    let o = s.run(&[
        "grant",
        "-t",
        "ci-proxy",
        "--ttl",
        "20m",
        "--ip",
        "198.51.100.7",
    ]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("unrestricted"), "{}", seen(&o));
    assert_eq!(stdout(&o), "");
    assert!(!s.exists("allow.txt"));
    applied(&s);
    let before = s.read("allow.txt");
    let o = s.run(&[
        "grant",
        "-t",
        "ci-proxy",
        "--ttl",
        "3h",
        "--ip",
        "198.51.100.7",
    ]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    insta::assert_snapshot!("grant_ttl_too_long", stderr(&o));
    let o = s.run(&["grant", "-t", "nope", "--ttl", "1h", "--ip", "198.51.100.7"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("no target `nope`"), "{}", seen(&o));
    let o = s.run(&[
        "grant",
        "-t",
        "ci-proxy",
        "--ttl",
        "1h",
        "--ip",
        "198.51.100.0/24",
    ]);
    assert_eq!(code(&o), 1, "a lease is one address: {}", seen(&o));
    let o = s.run(&["revoke", "-t", "ci-proxy", "--lease", "../x"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("--lease"), "{}", seen(&o));
    assert_eq!(s.read("allow.txt"), before, "nothing changed");
}

#[test]
fn a_lease_past_the_range_limit_is_refused_with_the_reason() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  ci-proxy:\n    provider: file\n    path: allow.txt\n    maxRanges: 1\n    allow: [203.0.113.0/24]\n",
    );
    applied(&s);
    let o = s.run(&[
        "grant",
        "-t",
        "ci-proxy",
        "--ttl",
        "1h",
        "--ip",
        "198.51.100.7",
    ]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("takes at most 1"), "{}", seen(&o));
    assert_eq!(ranges(&s), ["203.0.113.0/24"]);
}

#[cfg(feature = "gke")]
#[test]
fn grant_refuses_on_a_provider_that_cannot_store_leases() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  e:\n    provider: gke\n    project: my-project\n    location: europe-west1\n    cluster: c\n    endpoint: http://127.0.0.1:9\n    allow: [203.0.113.0/24]\n",
    );
    let o = s.run(&["grant", "-t", "e", "--ttl", "1h", "--ip", "198.51.100.7"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("cannot store leases"), "{}", seen(&o));
}

#[test]
fn exec_grants_runs_revokes_and_keeps_the_exit_code() {
    let s = Scratch::new(DECL);
    applied(&s);
    let o = run_ci(
        &s,
        &[
            "exec",
            "-t",
            "ci-proxy",
            "--ttl",
            "5m",
            "--ip",
            "198.51.100.7",
            "--",
            "sh",
            "-c",
            "grep -q '^198.51.100.7/32$' allow.txt && echo \"in: $RANGEKEEPER_LEASE\" && exit 7",
        ],
    );
    assert_eq!(code(&o), 7, "{}", seen(&o));
    assert!(stdout(&o).starts_with("in: "), "{}", seen(&o));
    assert_eq!(ranges(&s), ["203.0.113.0/24"], "revoked after the command");
    assert_eq!(lease_lines(&s), 0);
    // A command that cannot start: exit 1, nothing left behind.
    let o = s.run(&[
        "exec",
        "-t",
        "ci-proxy",
        "--ttl",
        "5m",
        "--ip",
        "198.51.100.7",
        "--",
        "./does-not-exist",
    ]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert_eq!(ranges(&s), ["203.0.113.0/24"]);
}

#[test]
fn exec_audits_the_grant_and_the_revoke() {
    let s = Scratch::new(DECL);
    applied(&s);
    let o = run_ci(
        &s,
        &[
            "exec",
            "-t",
            "ci-proxy",
            "--ttl",
            "5m",
            "--ip",
            "198.51.100.7",
            "--state-dir",
            "state",
            "--",
            "true",
        ],
    );
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let audit: Vec<serde_json::Value> = s
        .read("state/audit.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0]["trigger"], "exec");
    assert_eq!(audit[0]["added"], serde_json::json!(["198.51.100.7/32"]));
    assert_eq!(audit[0]["lease"]["address"], "198.51.100.7");
    assert_eq!(
        audit[0]["lease"]["requestedBy"],
        "alice@github:org/repo/actions/runs/4242"
    );
    assert_eq!(audit[1]["removed"], serde_json::json!(["198.51.100.7/32"]));
    assert_eq!(audit[1]["lease"]["id"], audit[0]["lease"]["id"]);
}

pub(crate) fn spawn(s: &Scratch, args: &[&str], log: &str) -> Child {
    let log = std::fs::File::create(s.path().join(log)).unwrap();
    crate::common::rangekeeper_std(s.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

pub(crate) fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

pub(crate) fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn exec_passes_sigterm_on_waits_for_the_command_then_revokes() {
    let s = Scratch::new(DECL);
    applied(&s);
    // The command traps TERM, notes it, and exits 3 a little later.
    let mut child = spawn(
        &s,
        &[
            "exec",
            "-t",
            "ci-proxy",
            "--ttl",
            "5m",
            "--ip",
            "198.51.100.7",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term > term.txt; sleep 0.3; exit 3' TERM; touch started; while :; do sleep 0.1; done",
        ],
        "exec.log",
    );
    assert!(
        wait_until(Duration::from_secs(20), || s.exists("started")),
        "{}",
        s.read_or_empty("exec.log")
    );
    assert!(ranges(&s).contains(&"198.51.100.7/32".to_owned()));
    signal(child.id(), "-TERM");
    let st = wait_exit(&mut child, Duration::from_secs(20)).expect("exec ends");
    assert_eq!(st.code(), Some(3), "{}", s.read_or_empty("exec.log"));
    assert_eq!(s.read("term.txt").trim(), "got-term");
    assert_eq!(
        ranges(&s),
        ["203.0.113.0/24"],
        "{}",
        s.read_or_empty("exec.log")
    );

    // Killed by the signal it was passed: 128 + 15.
    let mut child = spawn(
        &s,
        &[
            "exec",
            "-t",
            "ci-proxy",
            "--ttl",
            "5m",
            "--ip",
            "198.51.100.7",
            "--",
            "sh",
            "-c",
            "touch started2; exec sleep 30",
        ],
        "exec2.log",
    );
    assert!(wait_until(Duration::from_secs(20), || s.exists("started2")));
    signal(child.id(), "-TERM");
    let st = wait_exit(&mut child, Duration::from_secs(20)).expect("exec ends");
    assert_eq!(st.code(), Some(143), "{}", s.read_or_empty("exec2.log"));
    assert_eq!(ranges(&s), ["203.0.113.0/24"]);
}

#[test]
fn a_runner_killed_outright_is_cleaned_up_by_the_next_reconcile_after_expiry() {
    let s = Scratch::new(DECL);
    applied(&s);
    let mut child = spawn(
        &s,
        &[
            "exec",
            "-t",
            "ci-proxy",
            "--ttl",
            "2s",
            "--ip",
            "198.51.100.66",
            "--",
            "sh",
            "-c",
            "echo $$ > cmd.pid; touch started; exec sleep 60",
        ],
        "exec.log",
    );
    assert!(wait_until(Duration::from_secs(20), || s.exists("started")));
    // The runner dies: rangekeeper and its command, SIGKILL, no chance to revoke (each by
    // its own pid, never a whole group).
    signal(child.id(), "-KILL");
    let _ = child.wait();
    let cmd: u32 = s.read("cmd.pid").trim().parse().unwrap();
    signal(cmd, "-KILL");
    assert!(ranges(&s).contains(&"198.51.100.66/32".to_owned()));
    assert_eq!(lease_lines(&s), 1);
    // Before expiry a reconcile keeps it ...
    let o = s.run(&["reconcile", "--once", "--state-dir", "state"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(ranges(&s).contains(&"198.51.100.66/32".to_owned()));
    // ... after expiry the next pass removes it, and says so in the audit log.
    std::thread::sleep(Duration::from_millis(2200));
    let o = s.run(&["reconcile", "--once", "--state-dir", "state"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert_eq!(ranges(&s), ["203.0.113.0/24"], "{}", seen(&o));
    assert_eq!(lease_lines(&s), 0);
    let audit = s.read("state/audit.jsonl");
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["trigger"], "lease-expiry", "{audit}");
    assert_eq!(last["removed"], serde_json::json!(["198.51.100.66/32"]));
}

/// Many jobs open one target at once, each for its own address, while a reconcile loop runs
/// throughout: every job sees its address held for its whole run (it checks several times),
/// and at the end only the declaration is left.
#[test]
fn parallel_exec_runs_and_a_reconcile_loop_never_lose_an_address() {
    const JOBS: usize = 16;
    let s = Scratch::new(DECL);
    applied(&s);
    let mut reconciler = spawn(
        &s,
        &[
            "reconcile",
            "--interval",
            "1s",
            "--watch-interval",
            "200ms",
            "--state-dir",
            "state",
        ],
        "reconcile.log",
    );
    let jobs: Vec<(String, Child)> = (0..JOBS)
        .map(|i| {
            // Even last octets: no two leases aggregate into a shorter prefix.
            let ip = format!("198.51.100.{}", 10 + 2 * i);
            let check = format!(
                "for n in 1 2 3 4 5 6; do grep -q '^{ip}/32$' allow.txt || {{ echo \"lost {ip} at check $n\"; exit 99; }}; sleep 0.3; done"
            );
            let child = spawn(
                &s,
                &[
                    "exec", "-t", "ci-proxy", "--ttl", "10m", "--ip", &ip, "--write-deadline",
                    "5m", "--", "sh", "-c", &check,
                ],
                &format!("job{i}.log"),
            );
            (ip, child)
        })
        .collect();
    for (i, (ip, mut child)) in jobs.into_iter().enumerate() {
        let st = wait_exit(&mut child, Duration::from_secs(300)).expect("the job ends");
        assert_eq!(
            st.code(),
            Some(0),
            "job {i} ({ip}): {}",
            s.read_or_empty(&format!("job{i}.log"))
        );
    }
    assert_eq!(ranges(&s), ["203.0.113.0/24"], "{}", s.read("allow.txt"));
    assert_eq!(lease_lines(&s), 0);
    signal(reconciler.id(), "-TERM");
    let st = wait_exit(&mut reconciler, Duration::from_secs(30));
    assert!(st.is_some(), "the reconciler stops on SIGTERM");
    let log = s.read_or_empty("reconcile.log");
    assert!(
        !log.contains("drift:"),
        "lease changes are not drift: {log}"
    );
}

/// A `hostfw` target written with iptables cannot let the kernel end a lease: `grant` says
/// so, naming the target and the backend, before any firewall command runs (no root needed).
#[cfg(feature = "hostfw")]
#[test]
fn grant_on_a_hostfw_target_with_the_iptables_backend_is_refused_naming_it() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  node:\n    provider: hostfw\n    backend: iptables\n    ports: [6443]\n    allow: [203.0.113.0/24]\n",
    );
    let o = s.run(&["grant", "-t", "node", "--ttl", "1h", "--ip", "198.51.100.7"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert_eq!(stdout(&o), "");
    insta::assert_snapshot!("grant_hostfw_iptables_refused", stderr(&o));
}

/// Leases on a `hostfw` target through the binary, on a real kernel: two network namespaces
/// each test creates (a server with a listener, a client with several source addresses,
/// joined by a veth pair), the provider running nft in the server's (`netns:`), real TCP
/// connections from the client. Root and nft needed: skipped with a message elsewhere,
/// failed in CI.
#[cfg(feature = "hostfw")]
mod hostfw {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use rangekeeper_test_support::netns_probe::{self, Listener};

    use super::{applied, run_ci};
    use crate::common::{Scratch, code, seen, stdout};
    use crate::krip::{Netns, can_run_netns_tests};

    const PORT: u16 = 7011;
    const SRV: &str = "198.51.100.1";
    /// Declared; leased only; never declared (for a record written by hand).
    const DECLARED: &str = "198.51.100.10";
    const LEASED: &str = "198.51.100.20";
    const STRAY: &str = "198.51.100.30";
    const TABLE: &str = "rklease";

    struct Lab {
        _listener: Listener,
        srv: Netns,
        cli: Netns,
    }

    fn ok(c: &mut Command) {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", seen(&o));
    }

    impl Lab {
        fn new(tag: &str) -> Lab {
            let (srv, cli) = (
                Netns::new(&format!("{tag}s")),
                Netns::new(&format!("{tag}c")),
            );
            for ns in [&srv, &cli] {
                ok(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]));
            }
            ok(Command::new("ip").args([
                "-n", &srv.0, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns",
                &cli.0,
            ]));
            ok(Command::new("ip").args([
                "-n",
                &srv.0,
                "addr",
                "add",
                &format!("{SRV}/24"),
                "dev",
                "vs",
            ]));
            for a in [DECLARED, LEASED, STRAY] {
                ok(Command::new("ip").args([
                    "-n",
                    &cli.0,
                    "addr",
                    "add",
                    &format!("{a}/24"),
                    "dev",
                    "vc",
                ]));
            }
            ok(Command::new("ip").args(["-n", &srv.0, "link", "set", "vs", "up"]));
            ok(Command::new("ip").args(["-n", &cli.0, "link", "set", "vc", "up"]));
            let listener = Listener::start(&srv.0, &[PORT]).expect("listener did not start");
            Lab {
                _listener: listener,
                srv,
                cli,
            }
        }

        fn decl(&self) -> String {
            format!(
                "version: 1\ntargets:\n  node:\n    provider: hostfw\n    backend: nftables\n    ports: [{PORT}]\n    table: {TABLE}\n    netns: {}\n    allow: [{DECLARED}/32]\n",
                self.srv.0
            )
        }

        /// One TCP connection from `src` in the client namespace to the server's port.
        fn connect(&self, src: &str) -> String {
            netns_probe::connect(
                &self.cli.0,
                src.parse().unwrap(),
                SRV.parse().unwrap(),
                PORT,
                Duration::from_millis(500),
            )
            .to_string()
        }

        fn expect(&self, label: &str, cases: &[(&str, &str)]) {
            let bad: Vec<String> = cases
                .iter()
                .filter_map(|(src, want)| {
                    let got = self.connect(src);
                    (got != *want).then(|| format!("{src}: want {want}, got {got}"))
                })
                .collect();
            assert!(bad.is_empty(), "{label}:\n  {}", bad.join("\n  "));
        }
    }

    fn leases_json(s: &Scratch) -> serde_json::Value {
        let o = s.run(&["leases", "-t", "node", "-o", "json"]);
        assert_eq!(code(&o), 0, "{}", seen(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    }

    #[test]
    fn grant_leases_revoke_and_the_kernel_ends_a_lease_by_itself() {
        if !can_run_netns_tests() {
            return;
        }
        let lab = Lab::new("lg");
        let s = Scratch::new(&lab.decl());
        applied(&s);
        lab.expect(
            "declared only",
            &[(DECLARED, "connected"), (LEASED, "refused")],
        );

        let g = run_ci(
            &s,
            &[
                "grant", "--target", "node", "--ttl", "20m", "--ip", LEASED, "--reason", "deploy",
            ],
        );
        assert_eq!(code(&g), 0, "{}", seen(&g));
        let id = stdout(&g).trim().to_owned();
        lab.expect(
            "leased",
            &[
                (DECLARED, "connected"),
                (LEASED, "connected"),
                (STRAY, "refused"),
            ],
        );
        let table = lab.srv.table(TABLE);
        assert!(
            table.contains(&format!("{LEASED} timeout"))
                && table.contains(&format!("comment \"{id} "))
                && table.contains("alice@github:org/repo/actions/runs/4242 deploy\""),
            "{table}"
        );
        let v = leases_json(&s);
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["id"], id.as_str());
        assert_eq!(v[0]["address"], LEASED);
        assert_eq!(
            v[0]["requestedBy"],
            "alice@github:org/repo/actions/runs/4242"
        );
        assert_eq!(v[0]["reason"], "deploy");
        // The plan keeps the lease apart from the declaration: in sync.
        let plan = s.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(code(&plan), 0, "{}", seen(&plan));
        assert!(stdout(&plan).contains(&id), "{}", seen(&plan));

        let r = s.run(&["revoke", "-t", "node", "--lease", &id]);
        assert_eq!(code(&r), 0, "{}", seen(&r));
        lab.expect("revoked", &[(DECLARED, "connected"), (LEASED, "refused")]);
        assert_eq!(s.run(&["leases"]).stdout, b"no leases\n");

        // Short leases, one of them on the declared address, and no rangekeeper run after
        // the grants: the kernel alone ends them, and the declared address stays admitted.
        let started = Instant::now();
        for ip in [LEASED, DECLARED] {
            let g = run_ci(&s, &["grant", "-t", "node", "--ttl", "4s", "--ip", ip]);
            assert_eq!(code(&g), 0, "{}", seen(&g));
        }
        lab.expect(
            "short leases",
            &[(LEASED, "connected"), (DECLARED, "connected")],
        );
        assert_eq!(leases_json(&s).as_array().unwrap().len(), 2);
        // The first lease's element times out at most 4 s after its grant started.
        std::thread::sleep(Duration::from_millis(4300).saturating_sub(started.elapsed()));
        lab.expect(
            "after the kernel timed the leases out",
            &[(DECLARED, "connected"), (LEASED, "refused")],
        );
        assert!(!lab.srv.table(TABLE).contains(LEASED));
        assert_eq!(s.run(&["leases"]).stdout, b"no leases\n");
        let plan = s.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(code(&plan), 0, "nothing left to clean: {}", seen(&plan));
        let o = s.run(&["reconcile", "--once", "--state-dir", "state"]);
        assert_eq!(code(&o), 0, "{}", seen(&o));
        lab.expect(
            "after a reconcile",
            &[(DECLARED, "connected"), (LEASED, "refused")],
        );
    }

    /// A record past its expiry whose element the kernel still holds (the clock jumped, or
    /// someone wrote a long timeout by hand): `leases` shows it expired, the plan shows its
    /// removal, and the next reconcile pass removes it and its address.
    #[test]
    fn a_reconcile_cleans_a_record_past_its_expiry() {
        if !can_run_netns_tests() {
            return;
        }
        let lab = Lab::new("lr");
        let s = Scratch::new(&lab.decl());
        applied(&s);
        let table = lab.srv.table(TABLE);
        let set = if table.contains("@lease4_1") {
            "lease4_1"
        } else {
            "lease4_0"
        };
        ok(lab.srv.cmd("nft").args([
            "add",
            "element",
            "inet",
            TABLE,
            set,
            &format!("{{ {STRAY} timeout 1h comment \"stale1 2020-01-01T00:00:00Z bob@host\" }}"),
        ]));
        lab.expect("held by the kernel", &[(STRAY, "connected")]);
        let v = leases_json(&s);
        assert_eq!(v[0]["id"], "stale1", "{v}");
        assert_eq!(v[0]["expired"], true, "{v}");
        let plan = s.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(code(&plan), 2, "{}", seen(&plan));
        assert!(stdout(&plan).contains("stale1"), "{}", seen(&plan));

        let o = s.run(&["reconcile", "--once", "--state-dir", "state"]);
        assert_eq!(code(&o), 0, "{}", seen(&o));
        lab.expect(
            "after the reconcile",
            &[(STRAY, "refused"), (DECLARED, "connected")],
        );
        // The lease set the rules name no longer holds it (the idle slot keeps what it held
        // until the next change refills it, and no rule looks at it).
        let table = lab.srv.table(TABLE);
        let live = if table.contains("@lease4_1") {
            "lease4_1"
        } else {
            "lease4_0"
        };
        assert_ne!(live, set, "the change went to the other slot");
        let o = lab
            .srv
            .cmd("nft")
            .args(["list", "set", "inet", TABLE, live])
            .output()
            .unwrap();
        assert!(!stdout(&o).contains(STRAY), "{}", seen(&o));
        assert_eq!(s.run(&["leases"]).stdout, b"no leases\n");
        // The pass says what it removed in the audit log.
        let audit = s.read("state/audit.jsonl");
        let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
        assert_eq!(
            last["removed"],
            serde_json::json!([format!("{STRAY}/32")]),
            "{audit}"
        );
        assert_eq!(last["result"], "applied", "{audit}");
    }
}
