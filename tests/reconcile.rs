//! Integration tests of `rangekeeper reconcile` and live range sources through the binary:
//! `--once` for cron, the loop (drift, declaration changes, SIGTERM, metrics, audit log),
//! and sources served from 127.0.0.1 that misbehave in every way a download can.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Scratch, code, seen, stderr, stdout};
use rangekeeper_cidr::RangeSet;

// ---------------------------------------------------------------------------------------
// Helpers

impl Scratch {
    /// One reconcile pass, as cron runs it.
    fn once(&self) -> Output {
        self.run(&["reconcile", "--once", "--state-dir", "state"])
    }

    /// Start the reconcile loop; stderr goes to `loop.log` in the scratch directory.
    fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_env(args, &[])
    }

    fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.path().join("loop.log")).unwrap();
        crate::common::rangekeeper_std(self.path())
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// The ranges a plain-format file target holds (none while it does not exist).
    fn ranges(&self, name: &str) -> RangeSet {
        set(&self
            .read_or_empty(name)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect::<Vec<_>>())
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        self.read_or_empty("state/audit.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        items
            .iter()
            .map(|s| rangekeeper_cidr::parse(s.trim()).unwrap().net),
    )
}

/// Poll `cond` every 50ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Send SIGTERM and wait (bounded) for the process to exit.
fn terminate(child: &mut Child, limit: Duration) -> Option<i32> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A free address on 127.0.0.1 (bound and released; good enough for a test).
fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// GET over loopback with a bounded wait; returns (status, body).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_owned())?;
    Some((status, body))
}

/// The value of one sample in a Prometheus text exposition.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// What the test server answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
    delay: Duration,
    /// Send Content-Length (else the body ends when the connection closes).
    length: bool,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
            length: true,
        }
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1: one thread per connection, one request each.
struct Server {
    addr: SocketAddr,
}

impl Server {
    fn start(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let r = handler(&path);
                    std::thread::sleep(r.delay);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nConnection: close\r\n",
                        r.status
                    );
                    if r.length {
                        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
                    }
                    out.push_str("\r\n");
                    let _ = conn.write_all(out.as_bytes());
                    let _ = conn.write_all(&r.body);
                    let _ = conn.flush();
                });
            }
        });
        Server { addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/ranges")
            .join(name),
    )
    .unwrap()
}

const TWO_TARGETS: &str = r#"version: 1
sets:
  office: [203.0.113.0/24, 198.51.100.7]
targets:
  proxy-a:
    provider: file
    path: a.txt
    allow: [office]
  proxy-b:
    provider: file
    path: b.txt
    allow: [office, 192.0.2.0/25]
"#;

// ---------------------------------------------------------------------------------------
// --once (cron)

#[test]
fn once_converges_then_finds_everything_in_sync() {
    let s = Scratch::new(TWO_TARGETS);
    let o = s.once();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("once_initial", stdout(&o));
    assert_eq!(s.ranges("a.txt"), set(&["203.0.113.0/24", "198.51.100.7"]));
    assert_eq!(
        s.ranges("b.txt"),
        set(&["203.0.113.0/24", "198.51.100.7", "192.0.2.0/25"])
    );
    let audit = s.audit();
    assert_eq!(audit.len(), 2, "{audit:?}");
    for r in &audit {
        assert_eq!(r["trigger"], "initial");
        assert_eq!(r["result"], "applied");
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r["removed"], serde_json::json!([]));
    }
    let a = audit.iter().find(|r| r["target"] == "proxy-a").unwrap();
    assert_eq!(
        a["added"],
        serde_json::json!(["198.51.100.7/32", "203.0.113.0/24"])
    );

    let again = s.run(&["reconcile", "--once", "--state-dir", "state", "-o", "json"]);
    assert_eq!(code(&again), 0, "{}", seen(&again));
    let v: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    insta::assert_json_snapshot!("once_in_sync_json", v);
    assert_eq!(s.audit().len(), 2, "nothing changed, nothing audited");
}

#[test]
fn a_failing_target_does_not_block_the_others_and_is_named() {
    let s = Scratch::new(&format!(
        "{TWO_TARGETS}  broken:\n    provider: file\n    path: no/such/dir/c.txt\n    allow: [office]\n"
    ));
    let o = s.once();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(
        stderr(&o).contains("error: 1 target not converged: broken"),
        "{}",
        seen(&o)
    );
    assert!(
        stdout(&o).contains("broken: failed: apply failed: not found"),
        "{}",
        seen(&o)
    );
    assert!(s.exists("a.txt") && s.exists("b.txt"), "{}", seen(&o));
    let audit = s.audit();
    let broken = audit.iter().find(|r| r["target"] == "broken").unwrap();
    assert_eq!(broken["result"], "failed");
    assert!(broken["error"].as_str().unwrap().contains("does not exist"));
}

#[test]
fn a_refused_target_is_reported_and_never_applied() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  open:\n    provider: file\n    path: o.txt\n    allow: [0.0.0.0/0]\n  fine:\n    provider: file\n    path: f.txt\n    allow: [192.0.2.1]\n",
    );
    let o = s.once();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(
        stdout(&o).contains("open: refused: refused: `0.0.0.0/0` is broader than /8"),
        "{}",
        seen(&o)
    );
    assert!(!s.exists("o.txt"));
    assert!(s.exists("f.txt"));
    let audit = s.audit();
    let open = audit.iter().find(|r| r["target"] == "open").unwrap();
    assert_eq!(open["result"], "refused");
}

#[test]
fn an_invalid_declaration_fails_at_start_with_its_location() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.300]\n",
    );
    let o = s.once();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("rangekeeper.yaml:6:"), "{}", seen(&o));
    assert!(!s.exists("t.txt"));
}

// ---------------------------------------------------------------------------------------
// The loop

#[test]
fn loop_corrects_drift_follows_the_declaration_serves_metrics_and_stops_on_sigterm() {
    let s = Scratch::new(TWO_TARGETS);
    let addr = free_addr();
    let mut child = s.spawn(&[
        "reconcile",
        "--interval",
        "1s",
        "--watch-interval",
        "200ms",
        "--state-dir",
        "state",
        "--metrics-addr",
        &addr,
    ]);
    let log = || s.read("loop.log");
    let want_a = set(&["203.0.113.0/24", "198.51.100.7"]);
    assert!(
        wait_until(Duration::from_secs(10), || s.ranges("a.txt") == want_a
            && s.exists("b.txt")),
        "{}",
        log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || http_get(&addr, "/readyz")
            .is_some_and(|(st, _)| st == 200)),
        "{}",
        log()
    );
    assert_eq!(http_get(&addr, "/healthz").unwrap().0, 200);

    // Drift: someone edits the file by hand; corrected within one interval (plus slack).
    let hand_edited = format!("{}10.0.0.0/8\n", s.read("a.txt"));
    s.write("a.txt", &hand_edited);
    assert!(
        wait_until(Duration::from_secs(4), || s.ranges("a.txt") == want_a),
        "drift not corrected: {}",
        log()
    );
    assert!(
        wait_until(Duration::from_secs(2), || log().contains(
            "drift: `proxy-a` was changed outside rangekeeper (added: [10.0.0.0/8], removed: [])"
        )),
        "{}",
        log()
    );

    // A declaration change is picked up.
    s.write(
        "rangekeeper.yaml",
        &TWO_TARGETS.replace("198.51.100.7]", "198.51.100.7, 192.0.2.200]"),
    );
    let want_a2 = set(&["203.0.113.0/24", "198.51.100.7", "192.0.2.200"]);
    assert!(
        wait_until(Duration::from_secs(5), || s.ranges("a.txt") == want_a2),
        "declaration change not applied: {}",
        log()
    );

    // An invalid new declaration is rejected; the last valid one keeps running.
    s.write(
        "rangekeeper.yaml",
        "version: 1\ntargets:\n  proxy-a:\n    provider: file\n    allow: [nosuchset]\n",
    );
    assert!(
        wait_until(Duration::from_secs(5), || log()
            .contains("the changed declaration is rejected")),
        "{}",
        log()
    );
    assert!(log().contains("unknown set `nosuchset`"), "{}", log());
    s.write("a.txt", "# by hand\n10.0.0.0/8\n");
    assert!(
        wait_until(Duration::from_secs(4), || s.ranges("a.txt") == want_a2),
        "the last valid declaration stopped: {}",
        log()
    );

    // The file is written before the reconcile finishes: wait for its bookkeeping.
    let scrape = || http_get(&addr, "/metrics").unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || metric(
            &scrape().1,
            "rangekeeper_target_applies_total{target=\"proxy-a\"}"
        ) == Some(4.0)),
        "{}",
        scrape().1
    );
    let (status, text) = scrape();
    assert_eq!(status, 200);
    assert_eq!(
        metric(&text, "rangekeeper_target_drift_total{target=\"proxy-a\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rangekeeper_target_drift_total{target=\"proxy-b\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "rangekeeper_target_applies_total{target=\"proxy-a\"}"
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rangekeeper_target_ranges{target=\"proxy-a\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rangekeeper_target_in_sync{target=\"proxy-b\"}"),
        Some(1.0),
        "{text}"
    );
    // The invalid file is still on disk: not ready, though the last valid one runs on.
    assert_eq!(
        metric(&text, "rangekeeper_declaration_valid"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(http_get(&addr, "/readyz").unwrap().0, 503);
    assert_eq!(
        metric(&text, "rangekeeper_declaration_reloads_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rangekeeper_declaration_errors_total"),
        Some(1.0),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = metric(
        &text,
        "rangekeeper_target_last_success_timestamp_seconds{target=\"proxy-a\"}",
    )
    .unwrap();
    assert!((now - last).abs() < 10.0, "{text}");
    assert!(text.contains("# TYPE rangekeeper_target_errors_total counter"));

    let triggers: Vec<(String, String)> = s
        .audit()
        .iter()
        .filter(|r| r["target"] == "proxy-a")
        .map(|r| {
            (
                r["trigger"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let t = |a: &str| (a.to_owned(), "applied".to_owned());
    assert_eq!(
        triggers,
        vec![t("initial"), t("drift"), t("declaration"), t("drift")]
    );

    assert_eq!(
        terminate(&mut child, Duration::from_secs(10)),
        Some(0),
        "{}",
        log()
    );
    assert!(log().contains("signal received"), "{}", log());
}

#[test]
fn sigterm_during_an_apply_lets_it_finish_then_exits_cleanly() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  slow:\n    provider: file\n    path: s.txt\n    reload: [sleep, '2']\n    allow: [192.0.2.1]\n",
    );
    let mut child = s.spawn(&[
        "reconcile",
        "--interval",
        "1m",
        "--state-dir",
        "state",
        "--grace",
        "10s",
    ]);
    // The file is written first, then the 2s reload runs: the apply is in flight.
    assert!(
        wait_until(Duration::from_secs(10), || s.exists("s.txt")),
        "{}",
        s.read("loop.log")
    );
    let start = Instant::now();
    assert_eq!(
        terminate(&mut child, Duration::from_secs(10)),
        Some(0),
        "{}",
        s.read("loop.log")
    );
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "did not wait for the apply"
    );
    let log = s.read("loop.log");
    assert!(
        log.contains("waiting up to 10s for 1 in-flight reconcile"),
        "{log}"
    );
    let audit = s.audit();
    assert_eq!(audit.len(), 1, "{log}");
    assert_eq!(audit[0]["result"], "applied");
}

#[test]
fn sigterm_past_the_grace_period_cancels_and_says_so() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  slow:\n    provider: file\n    path: s.txt\n    reload: [sleep, '5']\n    allow: [192.0.2.1]\n",
    );
    let mut child = s.spawn(&["reconcile", "--state-dir", "state", "--grace", "300ms"]);
    assert!(wait_until(Duration::from_secs(10), || s.exists("s.txt")));
    assert_eq!(
        terminate(&mut child, Duration::from_secs(4)),
        Some(1),
        "{}",
        s.read("loop.log")
    );
    assert!(
        s.read("loop.log")
            .contains("did not finish within the grace period")
    );
}

#[test]
fn the_declaration_behind_a_swapped_symlink_is_followed() {
    // The Kubernetes ConfigMap layout: file -> ..data/file, ..data -> a timestamped dir.
    let s = Scratch::new("unused: true\n");
    let root = s.path();
    std::fs::create_dir(root.join("v1")).unwrap();
    std::fs::create_dir(root.join("v2")).unwrap();
    let decl = |ip: &str| {
        format!(
            "version: 1\ntargets:\n  t:\n    provider: file\n    path: ../t.txt\n    allow: [{ip}]\n"
        )
    };
    std::fs::write(root.join("v1/rangekeeper.yaml"), decl("192.0.2.1")).unwrap();
    std::fs::write(root.join("v2/rangekeeper.yaml"), decl("192.0.2.2")).unwrap();
    std::os::unix::fs::symlink("v1", root.join("..data")).unwrap();
    std::fs::create_dir(root.join("cm")).unwrap();
    std::os::unix::fs::symlink(
        "../..data/rangekeeper.yaml",
        root.join("cm/rangekeeper.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../v1", root.join("cm/..data")).unwrap_or(());
    // cm/rangekeeper.yaml -> ../..data/rangekeeper.yaml -> v1/rangekeeper.yaml
    let mut child = s.spawn(&[
        "-f",
        "cm/rangekeeper.yaml",
        "reconcile",
        "--interval",
        "1m",
        "--watch-interval",
        "200ms",
        "--state-dir",
        "state",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || s.ranges("t.txt")
            == set(&["192.0.2.1"])),
        "{}",
        s.read("loop.log")
    );
    // Atomic swap of the ..data symlink.
    std::os::unix::fs::symlink("v2", root.join("..data.tmp")).unwrap();
    std::fs::rename(root.join("..data.tmp"), root.join("..data")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || s.ranges("t.txt")
            == set(&["192.0.2.2"])),
        "{}",
        s.read("loop.log")
    );
    assert_eq!(terminate(&mut child, Duration::from_secs(10)), Some(0));
}

// ---------------------------------------------------------------------------------------
// Live sources

#[test]
fn url_sources_read_github_meta_and_aws_ip_ranges() {
    let gh = fixture("github-meta.json");
    let aws = fixture("aws-ip-ranges.json");
    let server = Server::start(move |path| match path {
        "/meta" => Reply::ok(gh.clone()),
        "/ip-ranges.json" => Reply::ok(aws.clone()),
        _ => Reply {
            status: 404,
            ..Reply::ok("{}")
        },
    });
    let s = Scratch::new(&format!(
        r#"version: 1
sets:
  github-actions: {{ url: "{gh}", select: /actions, refresh: 6h }}
  ec2-euw1: {{ url: "{aws}", select: /prefixes, where: {{service: EC2, region: eu-west-1}}, field: ip_prefix, refresh: 1d }}
  ec2-euw1-v6: {{ url: "{aws}", select: /ipv6_prefixes, where: {{service: EC2, region: eu-west-1}}, field: ipv6_prefix }}
targets:
  ci:
    provider: file
    path: ci.txt
    allow: [github-actions]
  ec2:
    provider: file
    path: ec2.txt
    allow: [ec2-euw1, ec2-euw1-v6]
"#,
        gh = server.url("/meta"),
        aws = server.url("/ip-ranges.json"),
    ));
    let o = s.once();
    assert_eq!(code(&o), 0, "{}", seen(&o));

    // The expected sets, computed here from the fixtures independently.
    let gh: serde_json::Value = serde_json::from_slice(&fixture("github-meta.json")).unwrap();
    let actions: Vec<&str> = gh["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(actions.len() > 7000);
    assert_eq!(s.ranges("ci.txt"), set(&actions));
    let aws: serde_json::Value = serde_json::from_slice(&fixture("aws-ip-ranges.json")).unwrap();
    let pick = |list: &str, field: &str| -> Vec<String> {
        aws[list]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["service"] == "EC2" && p["region"] == "eu-west-1")
            .map(|p| p[field].as_str().unwrap().to_owned())
            .collect()
    };
    let mut want: Vec<String> = pick("prefixes", "ip_prefix");
    want.extend(pick("ipv6_prefixes", "ipv6_prefix"));
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    assert!(want.len() > 100);
    let ec2 = s.ranges("ec2.txt");
    assert_eq!(ec2, set(&want));
    // eu-central-1 and non-EC2 entries are in the document but not in the set.
    assert!(
        !ec2.contains_addr("3.4.12.4".parse().unwrap()),
        "AMAZON service, eu-west-1"
    );

    // Cached in the state dir, atomically written.
    let cached: serde_json::Value =
        serde_json::from_str(&s.read("state/sources/github-actions.json")).unwrap();
    assert_eq!(cached["source"], "github-actions");
    assert_eq!(
        set(&cached["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>()),
        set(&actions)
    );
}

/// Every way a download can go wrong, each on its own source, after a first good value.
#[test]
fn misbehaving_sources_keep_their_last_good_value() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let server = Server::start(move |path| {
        let good = Reply::ok(r#"{"list": ["198.51.100.0/24"]}"#);
        if m.load(Ordering::SeqCst) == 0 {
            return good;
        }
        match path {
            "/garbage" => Reply::ok("<html>rate limited</html>"),
            "/huge" => Reply::ok(format!(r#"{{"list": ["{}"]}}"#, "1".repeat(5000))),
            "/huge-stream" => Reply {
                length: false,
                ..Reply::ok(format!(r#"{{"list": ["{}"]}}"#, "1".repeat(5000)))
            },
            "/slow" => Reply {
                delay: Duration::from_secs(3),
                ..good
            },
            "/empty" => Reply::ok(r#"{"list": []}"#),
            "/everything" => Reply::ok(r#"{"list": ["198.51.100.0/24", "0.0.0.0/0"]}"#),
            "/tenfold" => Reply::ok(r#"{"list": ["198.51.96.0/20"]}"#),
            "/down" => Reply {
                status: 503,
                ..good
            },
            _ => good,
        }
    });
    let names = [
        "garbage",
        "huge",
        "huge-stream",
        "slow",
        "empty",
        "everything",
        "tenfold",
        "down",
    ];
    let mut decl = String::from("version: 1\nsets:\n");
    for n in names {
        decl.push_str(&format!(
            "  src-{n}: {{url: \"{}\", select: /list, refresh: 1s, timeout: 1s, maxBytes: 1000}}\n",
            server.url(&format!("/{n}"))
        ));
    }
    decl.push_str("targets:\n");
    for n in names {
        decl.push_str(&format!(
            "  t-{n}:\n    provider: file\n    path: {n}.txt\n    allow: [192.0.2.1, src-{n}]\n"
        ));
    }
    let s = Scratch::new(&decl);
    let o = s.once();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let want = set(&["192.0.2.1", "198.51.100.0/24"]);
    for n in names {
        assert_eq!(s.ranges(&format!("{n}.txt")), want, "{n}");
    }

    mode.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1100)); // the cached values are due again
    let start = Instant::now();
    let o = s.once();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the slow source was not cut off"
    );
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::with_settings!({filters => vec![
        (r"from \d+[a-z]+ ago", "from [age] ago"),
        (r"127\.0\.0\.1:\d+", "[server]"),
    ]}, {
        insta::assert_snapshot!("misbehaving_sources_stdout", stdout(&o));
    });
    for n in names {
        assert_eq!(
            s.ranges(&format!("{n}.txt")),
            want,
            "{n} changed: {}",
            seen(&o)
        );
    }
    let out = stdout(&o);
    for (n, why) in [
        ("garbage", "the response is not JSON"),
        ("huge", "larger than the cap of 1000 bytes"),
        ("huge-stream", "larger than the cap of 1000 bytes"),
        ("slow", "timed out after 1s"),
        ("empty", "returned no ranges"),
        (
            "everything",
            "it yields `0.0.0.0/0` (every address); held back",
        ),
        ("tenfold", "it grew more than 10-fold"),
        ("down", "answered 503"),
    ] {
        let stale = format!("source `src-{n}` is stale: using its last good value");
        let line = out.lines().find(|l| l.contains(&stale));
        let line = line.unwrap_or_else(|| panic!("src-{n} not reported stale: {}", seen(&o)));
        assert!(line.contains(why), "src-{n}: {line}");
        assert!(
            stderr(&o).contains(&format!("source=src-{n}")),
            "src-{n}: {}",
            seen(&o)
        );
    }
    // `plan` shows the stale values as warnings.
    let p = s.run(&["plan", "--state-dir", "state"]);
    assert_eq!(code(&p), 0, "{}", seen(&p));
    assert!(
        stdout(&p).contains("source `src-everything` is stale: using its last good value"),
        "{}",
        seen(&p)
    );
}

#[test]
fn a_source_without_any_value_never_shrinks_an_allow_list() {
    let server = Server::start(|_| Reply {
        status: 500,
        ..Reply::ok("oops")
    });
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  partners: {{url: \"{}\", select: /list}}\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.1, partners]\n  other:\n    provider: file\n    path: other.txt\n    allow: [192.0.2.9]\n",
        server.url("/list")
    ));
    s.write("t.txt", "192.0.2.1\n198.51.100.0/24\n");
    let o = s.once();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(
        stderr(&o).contains("1 target not converged: t"),
        "{}",
        seen(&o)
    );
    assert!(
        stdout(&o).contains("source `partners` has no value"),
        "{}",
        seen(&o)
    );
    assert_eq!(
        s.read("t.txt"),
        "192.0.2.1\n198.51.100.0/24\n",
        "t was changed"
    );
    assert!(s.exists("other.txt"));
    let p = s.run(&["plan"]);
    assert_eq!(code(&p), 1, "{}", seen(&p));
    assert!(
        stdout(&p).contains("never shrinks because a download failed"),
        "{}",
        seen(&p)
    );
    let a = s.run(&["apply", "--yes"]);
    assert_eq!(code(&a), 1, "{}", seen(&a));
    assert_eq!(s.read("t.txt"), "192.0.2.1\n198.51.100.0/24\n");
}

#[test]
fn a_source_that_appears_later_is_picked_up_by_the_loop_and_shown_stale_in_metrics() {
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let server = Server::start(move |_| match m.load(Ordering::SeqCst) {
        0 => Reply {
            status: 503,
            ..Reply::ok("")
        },
        1 => Reply::ok(r#"["198.51.100.0/24"]"#),
        _ => Reply::ok("garbage"),
    });
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  partners: {{url: \"{}\", refresh: 1s}}\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.1, partners]\n",
        server.url("/p")
    ));
    let addr = free_addr();
    let mut child = s.spawn(&[
        "reconcile",
        "--interval",
        "1s",
        "--state-dir",
        "state",
        "--metrics-addr",
        &addr,
    ]);
    let scrape = || http_get(&addr, "/metrics").map(|x| x.1).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &scrape(),
            "rangekeeper_target_errors_total{target=\"t\",kind=\"source\"}"
        )
        .is_some()),
        "{}",
        s.read("loop.log")
    );
    assert!(!s.exists("t.txt"));
    assert_eq!(
        http_get(&addr, "/readyz").unwrap().0,
        200,
        "a pass over every target is done"
    );
    assert_eq!(
        metric(&scrape(), "rangekeeper_source_up{source=\"partners\"}"),
        Some(0.0)
    );
    mode.store(1, Ordering::SeqCst);
    let want = set(&["192.0.2.1", "198.51.100.0/24"]);
    assert!(
        wait_until(Duration::from_secs(30), || s.ranges("t.txt") == want),
        "{}",
        s.read("loop.log")
    );
    mode.store(2, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &scrape(),
            "rangekeeper_source_stale{source=\"partners\"}"
        ) == Some(1.0)),
        "{}",
        s.read("loop.log")
    );
    let text = scrape();
    assert!(
        metric(
            &text,
            "rangekeeper_source_errors_total{source=\"partners\",kind=\"invalid\"}"
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(
        metric(&text, "rangekeeper_source_age_seconds{source=\"partners\"}").is_some(),
        "{text}"
    );
    assert_eq!(s.ranges("t.txt"), want);
    assert!(wait_until(Duration::from_secs(3), || !s.audit().is_empty()));
    let audit = s.audit();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["trigger"], "source", "{audit:?}");
    assert_eq!(
        audit[0]["added"],
        serde_json::json!(["192.0.2.1/32", "198.51.100.0/24"])
    );
    assert_eq!(terminate(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn dns_sources_resolve_each_address_to_a_host_prefix() {
    let s = Scratch::new(
        "version: 1\nsets:\n  me: {dns: localhost}\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [me]\n",
    );
    let o = s.once();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let got = s.ranges("t.txt");
    assert!(
        got.contains_addr("127.0.0.1".parse().unwrap())
            || got.contains_addr("::1".parse().unwrap()),
        "{got}"
    );
    assert!(
        got.prefixes()
            .iter()
            .all(|p| p.prefix_len() == p.max_prefix_len()),
        "{got}"
    );
}

fn echo(ip: &'static str) -> Server {
    Server::start(move |_| Reply::ok(format!("{ip}\n")))
}

#[test]
fn self_sources_need_agreeing_echo_endpoints() {
    let (a, b, c) = (
        echo("203.0.113.9"),
        echo("203.0.113.9"),
        echo("203.0.113.10"),
    );
    let decl = |e1: &Server, e2: &Server| {
        format!(
            "version: 1\nsets:\n  me: {{self: {{endpoints: [\"{}\", \"{}\"]}}}}\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [me, 192.0.2.0/24]\n",
            e1.url("/"),
            e2.url("/")
        )
    };
    let s = Scratch::new(&decl(&a, &b));
    let o = s.once();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert_eq!(s.ranges("t.txt"), set(&["203.0.113.9", "192.0.2.0/24"]));

    let s = Scratch::new(&decl(&a, &c));
    let o = s.once();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(
        stdout(&o).contains("the echo endpoints disagree"),
        "{}",
        seen(&o)
    );
    assert!(!s.exists("t.txt"));
}

#[test]
fn the_lockout_guard_refuses_to_drop_our_own_egress_ip() {
    let (a, b) = (echo("203.0.113.9"), echo("203.0.113.9"));
    let s = Scratch::new(
        "version: 1\ntargets:\n  bastion:\n    provider: file\n    path: t.txt\n    allow: [203.0.113.0/24]\n",
    );
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    s.write("rangekeeper.yaml", "version: 1\ntargets:\n  bastion:\n    provider: file\n    path: t.txt\n    allow: [198.51.100.0/24]\n");
    let echo_args = ["--self-echo", &a.url("/"), "--self-echo", &b.url("/")];
    for cmd in [
        vec!["apply", "--yes"],
        vec!["reconcile", "--once", "--state-dir", "state"],
        vec![
            "update",
            "--target",
            "bastion",
            "--set",
            "198.51.100.0/24",
            "--yes",
        ],
    ] {
        let mut args = cmd.clone();
        args.extend(echo_args);
        let o = s.run(&args);
        assert_eq!(code(&o), 1, "{cmd:?}: {}", seen(&o));
        assert!(
            stdout(&o).contains("the change would lock this machine out of `bastion`: its egress IP 203.0.113.9 (found with --self-echo) is allowed now but not in the new list"),
            "{cmd:?}: {}",
            seen(&o)
        );
        assert_eq!(s.ranges("t.txt"), set(&["203.0.113.0/24"]), "{cmd:?}");
    }
    // --allow-lockout applies anyway, with a warning.
    let mut args = vec!["apply", "--yes", "--allow-lockout"];
    args.extend(echo_args);
    let o = s.run(&args);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(
        stdout(&o).contains("--allow-lockout: applying anyway"),
        "{}",
        seen(&o)
    );
    assert_eq!(s.ranges("t.txt"), set(&["198.51.100.0/24"]));
}

#[test]
fn bad_source_declarations_are_located() {
    let s = Scratch::new(
        r#"version: 1
sets:
  a: {url: "http://example.com/x", select: /list}
  b: {url: "https://example.com/x", select: list}
  c: {dns: bastion.example.com, select: /x}
  d: {url: "https://example.com/x", refresh: 6}
  e: {url: "https://example.com/x", dns: x.example.com}
  f: {self: yes-please}
  g: {url: "https://example.com/x", selct: /list}
  h: {url: "https://example.com/x", where: {service: EC2}}
targets:
  t:
    provider: file
    path: t.txt
    allow: [a, b, c, d, e, f, g, h]
"#,
    );
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("bad_source_declarations", stderr(&o));
}

#[test]
fn validate_makes_no_network_call_and_says_sources_are_not_fetched() {
    let s = Scratch::new(
        "version: 1\nsets:\n  gh: {url: \"https://api.github.com/meta\", select: /actions, refresh: 6h}\ntargets:\n  ci:\n    provider: file\n    path: ci.txt\n    allow: [gh]\n",
    );
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("validate_sources", stdout(&o));
    let j = s.run(&["validate", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&j)).unwrap();
    assert_eq!(v["targets"][0]["sources"]["gh"], "not fetched");
    assert_eq!(
        v["sets"][0]["source"],
        "url https://api.github.com/meta select /actions, refresh 6h"
    );
}

#[cfg(all(feature = "aks", feature = "eks", feature = "gke", feature = "hostfw"))]
/// The declaration embedded in a Kubernetes example's ConfigMap (`rangekeeper.yaml: |`).
fn configmap_declaration(example: &str) -> String {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("examples/kubernetes")
            .join(example),
    )
    .unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("rangekeeper.yaml: |"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no declaration in {example}"));
    let indent = head.len() - head.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect()
}

/// The examples use the cloud providers and hostfw.
#[cfg(all(feature = "aks", feature = "eks", feature = "gke", feature = "hostfw"))]
#[test]
fn the_kubernetes_examples_carry_valid_declarations() {
    for example in [
        "reconciler-cronjob.yaml",
        "reconciler-deployment.yaml",
        "reconciler-ha.yaml",
        "reconciler-sharded.yaml",
    ] {
        let decl = configmap_declaration(example);
        assert!(decl.starts_with("version: 1\n"), "{example}: {decl}");
        let s = Scratch::new(&decl);
        let o = s.run(&["validate"]);
        assert_eq!(code(&o), 0, "{example}: {}", seen(&o));
        assert!(
            stdout(&o).contains("not fetched by validate"),
            "{example}: {}",
            seen(&o)
        );
    }
}

#[test]
fn a_source_added_to_the_declaration_mid_run_is_fetched_before_its_target_is_reconciled() {
    let server = Server::start(|_| Reply {
        delay: Duration::from_millis(300),
        ..Reply::ok(r#"["198.51.100.0/24"]"#)
    });
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.1]\n",
    );
    let mut child = s.spawn(&[
        "reconcile",
        "--interval",
        "1s",
        "--watch-interval",
        "100ms",
        "--state-dir",
        "state",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || s.ranges("t.txt")
            == set(&["192.0.2.1"])),
        "{}",
        s.read("loop.log")
    );
    s.write(
        "rangekeeper.yaml",
        &format!(
            "version: 1\nsets:\n  partners: {{url: \"{}\"}}\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.1, partners]\n",
            server.url("/p")
        ),
    );
    let want = set(&["192.0.2.1", "198.51.100.0/24"]);
    assert!(
        wait_until(Duration::from_secs(10), || s.ranges("t.txt") == want),
        "{}",
        s.read("loop.log")
    );
    assert_eq!(terminate(&mut child, Duration::from_secs(10)), Some(0));
    let log = s.read("loop.log");
    assert!(!log.contains("not converged"), "{log}");
    assert!(!log.contains("has no value"), "{log}");
}

/// The loop against a real provider: AKS behind a fake Azure Resource Manager on 127.0.0.1
/// (eTag/If-Match, long-running PUTs). A refused read is retried after backoff; a change made
/// in the portal is drift, corrected on the next pass.
#[cfg(feature = "aks")]
#[test]
fn the_loop_keeps_an_aks_cluster_converged_through_faults_and_drift() {
    use rangekeeper_test_support::fake_arm::{FakeArm, Fault, example_cluster};

    const TOKEN: &str = "test-token-not-a-secret";
    const SUB: &str = "00000000-0000-0000-0000-000000000000";
    const EGRESS: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(FakeArm::start(TOKEN)).unwrap();
    let path = FakeArm::cluster_path(SUB, "rg1", "clustername1");
    fake.insert_cluster(&path, example_cluster());
    fake.insert_public_ip(
        &format!("{EGRESS}1"),
        Some(std::net::Ipv4Addr::new(20, 1, 2, 3)),
    );
    fake.insert_public_ip(
        &format!("{EGRESS}2"),
        Some(std::net::Ipv4Addr::new(20, 1, 2, 4)),
    );
    fake.set_lro(1, Duration::from_millis(100), 0);
    // The first read is refused (a role assignment not yet propagated).
    fake.inject(
        Fault::Status(403, "AuthorizationFailed".into(), "not yet".into()),
        Some(axum::http::Method::GET),
        1,
    );
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  office: [52.160.0.0/16, 20.1.2.3, 20.1.2.4]\ntargets:\n  prod-aks:\n    provider: aks\n    subscription: {SUB}\n    resourceGroup: rg1\n    cluster: clustername1\n    armEndpoint: {}\n    allow: [office]\n",
        fake.endpoint()
    ));
    let addr = free_addr();
    let mut child = s.spawn_env(
        &[
            "reconcile",
            "--interval",
            "1s",
            "--state-dir",
            "state",
            "--metrics-addr",
            &addr,
        ],
        &[("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN)],
    );
    let stored = || {
        fake.cluster(&path).and_then(|c| {
            c.pointer("/properties/apiServerAccessProfile/authorizedIPRanges")
                .cloned()
        })
    };
    let want = serde_json::json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"]);
    assert!(
        wait_until(Duration::from_secs(20), || stored() == Some(want.clone())),
        "{}",
        s.read("loop.log")
    );
    let scrape = || http_get(&addr, "/metrics").map(|x| x.1).unwrap_or_default();
    // The PUT is stored before its operation ends: wait until the apply is confirmed.
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &scrape(),
            "rangekeeper_target_applies_total{target=\"prod-aks\"}"
        ) == Some(1.0)),
        "{}",
        s.read("loop.log")
    );
    assert_eq!(
        metric(
            &scrape(),
            "rangekeeper_target_errors_total{target=\"prod-aks\",kind=\"auth\"}"
        ),
        Some(1.0),
        "{}",
        scrape()
    );
    // Someone adds a range in the portal.
    fake.modify_cluster(&path, |c| {
        c["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] = serde_json::json!([
            "20.1.2.3/32",
            "20.1.2.4/32",
            "52.160.0.0/16",
            "198.18.0.1/32"
        ]);
    });
    assert!(
        wait_until(Duration::from_secs(15), || stored() == Some(want.clone())),
        "drift not corrected: {}",
        s.read("loop.log")
    );
    assert!(
        wait_until(Duration::from_secs(3), || metric(
            &scrape(),
            "rangekeeper_target_drift_total{target=\"prod-aks\"}"
        ) == Some(1.0)),
        "{}\n{}",
        scrape(),
        s.read("loop.log")
    );
    assert_eq!(
        terminate(&mut child, Duration::from_secs(15)),
        Some(0),
        "{}",
        s.read("loop.log")
    );
    let log = s.read("loop.log");
    assert!(log.contains("added: [198.18.0.1/32]"), "{log}");
    assert!(!log.contains(TOKEN), "the token never shows");
    let audit = s.audit();
    let triggers: Vec<&str> = audit
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["initial", "drift"], "{audit:?}");
    drop(rt);
}

/// A binary built without the `kubernetes` feature says why `--leader-elect` cannot work,
/// before it reads or writes anything.
#[cfg(not(feature = "kubernetes"))]
#[test]
fn leader_elect_without_the_kubernetes_feature_says_so() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.0/24]\n",
    );
    let o = s.run(&["reconcile", "--leader-elect", "--state-dir", "state"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    insta::assert_snapshot!("leader_elect_without_kubernetes", seen(&o));
    assert!(!s.exists("t.txt"), "nothing was written");
    assert!(!s.exists("state"), "nothing was started");
}

// ---------------------------------------------------------------------------------------
// Quota scopes (issue 16): throttling slows a pass down instead of failing it

/// A fleet over two AKS subscriptions and two EKS regions behind a fake ARM and a fake EKS,
/// every cluster already holding `ALLOW`, and the declaration of it. The fakes add 30 ms to
/// every request.
#[cfg(all(feature = "aks", feature = "eks"))]
struct ScopedFleet {
    _rt: tokio::runtime::Runtime,
    arm: rangekeeper_test_support::fake_arm::FakeArm,
    eks: rangekeeper_test_support::fake_eks::FakeEks,
    s: Scratch,
    targets: usize,
}

#[cfg(all(feature = "aks", feature = "eks"))]
impl ScopedFleet {
    const TOKEN: &str = "test-token-not-a-secret";
    const ALLOW: &[&str] = &["81.2.69.142/32", "140.82.112.0/20"];

    fn new(per_scope: usize, eks_regions: &[&str]) -> ScopedFleet {
        use rangekeeper_test_support::{fake_arm, fake_eks};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let arm = rt.block_on(fake_arm::FakeArm::start(Self::TOKEN)).unwrap();
        let eks = rt.block_on(fake_eks::FakeEks::start("testing")).unwrap();
        let mut body = fake_arm::example_cluster();
        body["properties"]["apiServerAccessProfile"] =
            serde_json::json!({ "authorizedIPRanges": Self::ALLOW });
        let mut decl = format!(
            "version: 1\nsets:\n  office: [{}]\ntargets:\n",
            Self::ALLOW.join(", ")
        );
        let mut targets = 0;
        for sub in [
            "00000000-0000-0000-0000-0000000000a1",
            "00000000-0000-0000-0000-0000000000a2",
        ] {
            for i in 0..per_scope {
                let name = format!("aks-{}-{i}", &sub[34..]);
                arm.insert_cluster(
                    &fake_arm::FakeArm::cluster_path(sub, "rg", &name),
                    body.clone(),
                );
                decl.push_str(&format!(
                    "  {name}:\n    provider: aks\n    subscription: {sub}\n    resourceGroup: rg\n    cluster: {name}\n    armEndpoint: {}\n    allow: [office]\n",
                    arm.endpoint()
                ));
                targets += 1;
            }
        }
        for region in eks_regions {
            for i in 0..per_scope {
                let name = format!("eks-{region}-{i}");
                eks.insert_cluster(
                    region,
                    &name,
                    fake_eks::example_cluster(region, &name, Self::ALLOW),
                );
                decl.push_str(&format!(
                    "  {name}:\n    provider: eks\n    region: {region}\n    cluster: {name}\n    allow: [office]\n"
                ));
                targets += 1;
            }
        }
        arm.set_latency(Duration::from_millis(30));
        eks.set_latency(Duration::from_millis(30));
        ScopedFleet {
            _rt: rt,
            arm,
            eks,
            s: Scratch::new(&decl),
            targets,
        }
    }

    /// `reconcile --once -o json` with `args`: the output and each target's result.
    fn once(&self, args: &[&str]) -> (Output, Vec<String>) {
        let mut cmd = self.s.cmd();
        crate::common::moto::aws_env(&mut cmd, self.s.path(), &self.eks.endpoint());
        cmd.env("RANGEKEEPER_AZURE_ACCESS_TOKEN", Self::TOKEN);
        let o = cmd
            .args(["-o", "json", "reconcile", "--once", "--state-dir", "state"])
            .args(args)
            .output()
            .unwrap();
        let results = serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["results"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|r| r["result"].as_str().unwrap_or_default().to_owned())
            .collect();
        (o, results)
    }

    /// The most requests of one subscription or region the fakes saw in flight at once.
    fn most_in_flight(&self) -> usize {
        self.arm
            .most_in_flight()
            .into_iter()
            .chain(self.eks.most_in_flight())
            .filter(|(scope, _)| !scope.is_empty())
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0)
    }
}

/// ARM answers 429 and EKS ThrottlingException to any request beyond 3 of its subscription
/// or region in flight: the pass slows those scopes down, retries the throttled reads, and
/// ends with every target in sync and none failed; no scope ever has more requests in
/// flight than `--concurrency-per-scope`.
#[cfg(all(feature = "aks", feature = "eks"))]
#[test]
fn throttled_scopes_slow_down_and_the_pass_still_ends_in_sync() {
    let f = ScopedFleet::new(12, &["eu-west-1", "us-east-1"]);
    f.arm.set_throttle(Some(3), 0);
    f.eks.set_throttle(Some(3));
    let (o, results) = f.once(&["--concurrency-per-scope", "6"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert_eq!(results.len(), f.targets, "{}", seen(&o));
    assert!(
        results.iter().all(|r| r == "in-sync"),
        "{results:?}\n{}",
        seen(&o)
    );
    assert!(
        f.arm.throttled() > 0 && f.eks.throttled() > 0,
        "both APIs throttled"
    );
    let most = f.most_in_flight();
    assert!(
        most <= 6,
        "{most} requests of one scope in flight, over the bound of 6"
    );
    let err = stderr(&o);
    assert!(
        err.contains("slowing down `aks/subscription/00000000-0000-0000-0000-0000000000a"),
        "{err}"
    );
    assert!(err.contains("slowing down `eks/"), "{err}");
    assert!(!err.contains("not converged"), "{err}");
}

/// ARM says few reads are left of the subscription's quota (the remaining-reads header)
/// without refusing any: the subscription slows down before it is throttled, and every
/// target is in sync with one read each.
#[cfg(all(feature = "aks", feature = "eks"))]
#[test]
fn a_low_remaining_reads_header_slows_the_subscription_down() {
    let f = ScopedFleet::new(10, &[]);
    f.arm.set_remaining_reads(Some(20));
    let (o, results) = f.once(&["--concurrency-per-scope", "8"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert_eq!(results.len(), f.targets);
    assert!(results.iter().all(|r| r == "in-sync"), "{results:?}");
    assert!(f.most_in_flight() <= 8);
    assert_eq!(f.arm.requests().len(), f.targets, "one read per target");
    let err = stderr(&o);
    assert!(
        err.contains(
            "the API said 20 requests are left of its quota; at most 4 of its targets at a time now"
        ),
        "{err}"
    );
    // The fleet spans subscriptions, each slowed on its first answer, in no set order.
    let mut first = err
        .lines()
        .find(|l| l.contains("slowing down") && l.contains("at most 4"))
        .unwrap_or_default()
        .to_owned();
    for n in 1..=9 {
        first = first.replace(
            &format!("00000000-0000-0000-0000-0000000000a{n}"),
            "<subscription>",
        );
    }
    insta::assert_snapshot!("scope_slowed_down_log", first);
}
