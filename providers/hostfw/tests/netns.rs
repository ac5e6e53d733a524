//! Real-kernel tests of the hostfw provider: real packets between network namespaces the tests
//! create (`rkt-<pid>-<n>-srv` / `-cli`, joined by a veth pair, documentation addresses only),
//! with the provider running nft / iptables inside the server namespace through `netns:`.
//!
//! Needs root and `ip`, `nft`, `iptables-restore`, `ip6tables-restore` (scripts/setup/50-hostfw.sh).
//! Without them the tests skip with a message, except under `CI=true`, where they fail.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::lease::{Lease, LeaseId, Timestamp};
use rangekeeper_provider::{ApplyOptions, Provider, RangeSet, Restriction, TargetConfig};
use rangekeeper_test_support::netns_probe::{self, Listener, Loop};

/// Restricted ports and one that stays open.
pub(crate) const P1: u16 = 7001;
pub(crate) const P2: u16 = 7003;
pub(crate) const OPEN: u16 = 7002;

pub(crate) const SRV4: &str = "198.51.100.1";
pub(crate) const SRV6: &str = "2001:db8:100::1";
/// Client sources: allowed as a single address, allowed through a wider range, denied.
pub(crate) const A4: &str = "198.51.100.10";
pub(crate) const R4: &str = "198.51.100.70";
pub(crate) const D4: &str = "198.51.100.20";
pub(crate) const A6: &str = "2001:db8:100::10";
pub(crate) const R6: &str = "2001:db8:100::1:70";
pub(crate) const D6: &str = "2001:db8:100::20";
/// Sources no allow-list in these tests ever contains.
pub(crate) const N4: &str = "198.51.100.30";
pub(crate) const N6: &str = "2001:db8:100::30";

/// Connect timeout for single probes (a denied `drop` source must take exactly this long).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

static NEXT: AtomicU32 = AtomicU32::new(0);

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Whether the real-kernel tests can run here; under CI they must.
pub(crate) fn ready() -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut missing: Vec<String> = Vec::new();
    if uid != "0" {
        missing.push("root (network namespaces and firewall rules need it)".into());
    }
    for tool in [
        "ip",
        "nft",
        "iptables-restore",
        "ip6tables-restore",
        "iptables-save",
        "ip6tables-save",
    ] {
        if !on_path(tool) {
            missing.push(format!("`{tool}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "hostfw real-kernel tests need {} (run scripts/setup/50-hostfw.sh as root)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    false
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair; everything is removed on drop, even after a panic.
pub(crate) struct Lab {
    srv: String,
    cli: String,
    table: String,
    listener: Option<Listener>,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let base = format!("rkt-{}-{n}", std::process::id());
        let mut lab = Lab {
            srv: format!("{base}-srv"),
            cli: format!("{base}-cli"),
            table: format!("rkt{n}"),
            listener: None,
        };
        let (srv, cli) = (lab.srv.clone(), lab.cli.clone());
        run(&["ip", "netns", "add", &srv]);
        run(&["ip", "netns", "add", &cli]);
        run(&["ip", "-n", &srv, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &cli, "link", "set", "lo", "up"]);
        run(&[
            "ip", "-n", &srv, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns",
            &cli,
        ]);
        run(&[
            "ip",
            "-n",
            &srv,
            "addr",
            "add",
            &format!("{SRV4}/24"),
            "dev",
            "vs",
        ]);
        run(&[
            "ip",
            "-n",
            &srv,
            "addr",
            "add",
            &format!("{SRV6}/64"),
            "dev",
            "vs",
            "nodad",
        ]);
        for a in [A4, R4, D4, N4] {
            run(&[
                "ip",
                "-n",
                &cli,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "vc",
            ]);
        }
        for a in [A6, R6, D6, N6] {
            run(&[
                "ip",
                "-n",
                &cli,
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                "vc",
                "nodad",
            ]);
        }
        run(&["ip", "-n", &srv, "link", "set", "vs", "up"]);
        run(&["ip", "-n", &cli, "link", "set", "vc", "up"]);
        // Permanent neighbour entries: a fresh link's first IPv6 neighbour solicitations can
        // be lost for up to a second, which would look like a dropped connection.
        let mac = |ns: &str, dev: &str| {
            let out = run(&["ip", "-n", ns, "-br", "link", "show", dev]);
            out.split_whitespace().nth(2).unwrap().to_owned()
        };
        let (mac_srv, mac_cli) = (mac(&srv, "vs"), mac(&cli, "vc"));
        for a in [A4, R4, D4, N4, A6, R6, D6, N6] {
            run(&[
                "ip",
                "-n",
                &srv,
                "neigh",
                "replace",
                a,
                "lladdr",
                &mac_cli,
                "dev",
                "vs",
                "nud",
                "permanent",
            ]);
        }
        for a in [SRV4, SRV6] {
            run(&[
                "ip",
                "-n",
                &cli,
                "neigh",
                "replace",
                a,
                "lladdr",
                &mac_srv,
                "dev",
                "vc",
                "nud",
                "permanent",
            ]);
        }

        lab.listener =
            Some(Listener::start(&srv, &[P1, OPEN, P2]).expect("listener did not start"));
        lab
    }

    /// A provider for this lab's server namespace.
    pub(crate) fn provider(&self, extra: serde_json::Value) -> Box<dyn Provider> {
        let mut fields = serde_json::json!({
            "ports": [P1, P2],
            "table": self.table,
            "netns": self.srv,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                fields.as_object_mut().unwrap().remove(k);
            } else {
                fields[k] = v.clone();
            }
        }
        let mut cfg = TargetConfig {
            name: "lab".into(),
            base_dir: std::env::temp_dir(),
            fields: fields.as_object().unwrap().clone(),
        };
        // What the binary does while loading: the import hook's fields join the target's.
        let imported = rangekeeper_provider_hostfw::import(&cfg);
        assert!(!imported.has_errors(), "{:?}", imported.notes);
        for (k, v) in imported.fields {
            cfg.fields.entry(k).or_insert(v);
        }
        rangekeeper_provider_hostfw::factory(&cfg).unwrap()
    }

    /// Run a command inside the server namespace.
    pub(crate) fn in_srv(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", self.srv.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// One connection attempt from the client namespace (or from the server itself).
    fn connect(&self, from_srv: bool, src: &str, port: u16) -> String {
        let ns = if from_srv { &self.srv } else { &self.cli };
        let dst = if src.contains(':') {
            if from_srv { "::1" } else { SRV6 }
        } else if from_srv {
            "127.0.0.1"
        } else {
            SRV4
        };
        let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
        netns_probe::connect(ns, src, dst, port, CONNECT_TIMEOUT).to_string()
    }

    /// Check every (source, port, outcome); report all mismatches at once.
    pub(crate) fn expect(&self, label: &str, cases: &[(&str, u16, &str)]) {
        let mut bad = Vec::new();
        for (src, port, want) in cases {
            let got = self.connect(false, src, *port);
            if got != *want {
                bad.push(format!("{src} -> :{port}: want {want}, got {got}"));
            }
        }
        assert!(bad.is_empty(), "{label}:\n  {}", bad.join("\n  "));
    }

    /// Loopback on the server always connects, restricted port or not.
    fn expect_loopback_open(&self) {
        assert_eq!(self.connect(true, "127.0.0.1", P1), "connected");
        assert_eq!(self.connect(true, "::1", P1), "connected");
    }

    /// Start a client that connects from `src` to P1 until stopped.
    fn start_loop(&self, src: &str) -> Loop {
        let dst = if src.contains(':') { SRV6 } else { SRV4 };
        Loop::start(
            &self.cli,
            src.parse().unwrap(),
            dst.parse().unwrap(),
            P1,
            Duration::from_millis(2000),
            3000,
        )
        .unwrap()
    }
}

/// Stop a loop client and return (connected, not connected).
fn stop_loop(l: Loop) -> (u32, u32) {
    let c = l.stop().unwrap();
    (c.connected, c.refused + c.timeout + c.error)
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.listener.take());
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

pub(crate) fn set(list: &[&str]) -> RangeSet {
    RangeSet::from_nets(list.iter().map(|s| {
        if s.contains('/') {
            s.parse::<IpNet>().unwrap()
        } else {
            IpNet::from(s.parse::<IpAddr>().unwrap())
        }
    }))
}

/// A4 alone, R4 through a /26, A6 alone, R6 through a /112.
fn allowed() -> RangeSet {
    set(&[A4, "198.51.100.64/26", A6, "2001:db8:100::1:0/112"])
}

/// The full matrix for the `allowed()` list with `action: reject`.
fn reject_matrix() -> Vec<(&'static str, u16, &'static str)> {
    vec![
        (A4, P1, "connected"),
        (R4, P2, "connected"),
        (D4, P1, "refused"),
        (D4, P2, "refused"),
        (D4, OPEN, "connected"),
        (A6, P1, "connected"),
        (R6, P2, "connected"),
        (D6, P1, "refused"),
        (D6, P2, "refused"),
        (D6, OPEN, "connected"),
    ]
}

pub(crate) fn ranges(state: &rangekeeper_provider::State) -> Option<RangeSet> {
    state.restriction.ranges().cloned()
}

async fn check_enforced(lab: &Lab, p: &dyn Provider, backend: &str) {
    let opts = ApplyOptions::default();
    let before = p.current().await.unwrap();
    assert_eq!(before.restriction, Restriction::Unrestricted);
    lab.expect(
        "before apply everything is open",
        &[(D4, P1, "connected"), (D6, P1, "connected")],
    );

    let applied = p.apply(&allowed(), &opts).await.unwrap();
    assert!(applied.changed);
    lab.expect("after apply", &reject_matrix());
    lab.expect_loopback_open();

    let state = p.current().await.unwrap();
    assert_eq!(ranges(&state), Some(allowed()), "{state:?}");
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
    assert!(
        state
            .details
            .contains(&("backend".to_owned(), backend.to_owned())),
        "{:?}",
        state.details
    );

    // Idempotent: nothing is sent the second time.
    assert!(!p.apply(&allowed(), &opts).await.unwrap().changed);
}

async fn check_disable(lab: &Lab, p: &dyn Provider) {
    let opts = ApplyOptions::default();
    assert!(p.disable(&opts).await.unwrap().changed);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    lab.expect(
        "after disable",
        &[(D4, P1, "connected"), (D6, P2, "connected")],
    );
    assert!(!p.disable(&opts).await.unwrap().changed);
}

/// Change the allow-list repeatedly while allowed and never-allowed clients keep connecting:
/// no allowed connection may fail and no denied one may pass during any swap.
async fn check_swaps_under_load(lab: &Lab, p: &dyn Provider) {
    let opts = ApplyOptions::default();
    let base = set(&[A4, A6]);
    p.apply(&base, &opts).await.unwrap();
    let loops = [A4, A6, N4, N6].map(|src| lab.start_loop(src));
    std::thread::sleep(std::time::Duration::from_millis(100));
    let variants = [
        base.union(&set(&[D4])),
        base.union(&set(&["198.51.100.64/26", "2001:db8:100::1:0/112"])),
        base.union(&set(&[D6, "203.0.113.0/24"])),
        base.clone(),
    ];
    for round in 0..3 {
        for v in &variants {
            let a = p.apply(v, &opts).await.unwrap();
            assert!(a.changed || round == 0 && v == &base, "round {round}: {v}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let [a4, a6, n4, n6] = loops.map(stop_loop);
    eprintln!("swap clients (connected, other): A4 {a4:?} A6 {a6:?} N4 {n4:?} N6 {n6:?}");
    assert_eq!(
        (a4.1, a6.1),
        (0, 0),
        "allowed connections failed during swaps"
    );
    assert_eq!(
        (n4.0, n6.0),
        (0, 0),
        "denied connections got through during swaps"
    );
    for (name, (ok, other)) in [("A4", a4), ("A6", a6), ("N4", n4), ("N6", n6)] {
        assert!(
            ok + other > 10,
            "the {name} client barely ran: {ok}+{other}"
        );
    }
    // The last list (base) is what holds now.
    lab.expect(
        "after the swaps",
        &[
            (A4, P1, "connected"),
            (D4, P1, "refused"),
            (D6, P1, "refused"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_reject_enforces_the_list_for_ipv4_and_ipv6_and_leaves_others_alone() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    // A table of someone else's that must survive everything we do.
    lab.in_srv(&["nft", "add table inet someone_else"]);
    lab.in_srv(&[
        "nft",
        "add chain inet someone_else c { type filter hook input priority 10 ; }",
    ]);
    lab.in_srv(&["nft", "add rule inet someone_else c tcp dport 9 accept"]);
    let p = lab.provider(serde_json::json!({"backend": "nftables"}));
    check_enforced(&lab, p.as_ref(), "nftables").await;
    check_disable(&lab, p.as_ref()).await;
    let other = lab.in_srv(&["nft", "list table inet someone_else"]);
    assert!(other.contains("tcp dport 9 accept"), "{other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_drop_makes_denied_sources_time_out() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({"backend": "nftables", "action": "drop"}));
    p.apply(&allowed(), &ApplyOptions::default()).await.unwrap();
    lab.expect(
        "drop",
        &[
            (A4, P1, "connected"),
            (D4, P1, "timeout"),
            (D6, P2, "timeout"),
            (D6, OPEN, "connected"),
            (R6, P1, "connected"),
        ],
    );
    // Switching the action is a change, even with the same list.
    let reject = lab.provider(serde_json::json!({"backend": "nftables"}));
    assert_eq!(
        reject.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert!(
        reject
            .apply(&allowed(), &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    lab.expect("reject again", &[(D4, P1, "refused")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_swaps_are_atomic_under_load() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({"backend": "nftables"}));
    check_swaps_under_load(&lab, p.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_drift_is_reported_and_repaired() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({"backend": "nftables"}));
    let opts = ApplyOptions::default();
    let t = lab.table.clone();
    p.apply(&allowed(), &opts).await.unwrap();

    // 1. The whole table deleted from outside.
    lab.in_srv(&["nft", &format!("delete table inet {t}")]);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    lab.expect("table deleted", &[(D4, P1, "connected")]);
    assert!(p.apply(&allowed(), &opts).await.unwrap().changed);
    lab.expect("repaired", &[(D4, P1, "refused"), (A4, P1, "connected")]);

    // 2. The rules flushed, the sets left in place: not in sync, and repaired.
    lab.in_srv(&["nft", &format!("flush chain inet {t} input")]);
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains("rules missing or modified")),
        "{:?}",
        state.warnings
    );
    let applied = p.apply(&allowed(), &opts).await.unwrap();
    assert!(
        applied.changed
            && applied
                .notes
                .iter()
                .any(|n| n.contains("rewrote rules that were missing")),
        "{applied:?}"
    );
    lab.expect(
        "rules repaired",
        &[(D6, P1, "refused"), (A6, P1, "connected")],
    );

    // 3. An address slipped into a set: visible as a different list, removed by apply.
    // (Into both slots: the one the rules name holds the live list.)
    for slot in ["allow4_0", "allow4_1"] {
        lab.in_srv(&["nft", &format!("add element inet {t} {slot} {{ {D4} }}")]);
    }
    lab.expect("element added", &[(D4, P1, "connected")]);
    let state = p.current().await.unwrap();
    assert_eq!(ranges(&state), Some(allowed().union(&set(&[D4]))));
    assert!(p.apply(&allowed(), &opts).await.unwrap().changed);
    lab.expect("element removed", &[(D4, P1, "refused")]);

    // 4. The whole ruleset flushed (inside the lab namespace only).
    lab.in_srv(&["nft", "flush ruleset"]);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert!(p.apply(&allowed(), &opts).await.unwrap().changed);
    lab.expect("after flush ruleset", &reject_matrix());

    // 5. The declaration now restricts only P1: reported as a change, updated in place.
    let only_p1 = lab.provider(serde_json::json!({"backend": "nftables", "ports": [P1]}));
    let state = only_p1.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert!(
        state.warnings.iter().any(|w| w.contains("ports")),
        "{:?}",
        state.warnings
    );
    assert!(only_p1.apply(&allowed(), &opts).await.unwrap().changed);
    assert_eq!(ranges(&only_p1.current().await.unwrap()), Some(allowed()));
    lab.expect(
        "P2 released",
        &[
            (D4, P1, "refused"),
            (D4, P2, "connected"),
            (D6, P2, "connected"),
        ],
    );
}

/// The iptables backend end to end, with the default `iptables-*` tools or a variant's own.
async fn iptables_end_to_end(variant: Option<&str>) {
    let lab = Lab::new();
    let suffix = variant.map(|v| format!("-{v}")).unwrap_or_default();
    let (ipt, ip6t, save) = (
        format!("iptables{suffix}"),
        format!("ip6tables{suffix}"),
        format!("iptables{suffix}-save"),
    );
    // Someone else's chain and INPUT rule, which must survive.
    lab.in_srv(&[&ipt, "-N", "FOREIGN"]);
    lab.in_srv(&[
        &ipt, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "FOREIGN",
    ]);
    let mut fields = serde_json::json!({"backend": "iptables"});
    if let Some(v) = variant {
        fields["iptablesVariant"] = serde_json::json!(v);
    }
    let p = lab.provider(fields.clone());
    check_enforced(&lab, p.as_ref(), "iptables").await;
    let chain = format!("RK-{}", lab.table);
    // Switching the target to nftables: the iptables rules left behind are named.
    let mut nft_fields = fields.clone();
    nft_fields["backend"] = serde_json::json!("nftables");
    let nft = lab.provider(nft_fields);
    let state = nft.current().await.unwrap();
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains(&format!("iptables chain {chain}"))),
        "{:?}",
        state.warnings
    );
    let saved = lab.in_srv(&[&save, "-t", "filter"]);
    assert!(
        saved.contains(&format!(
            "--comment \"rangekeeper:{}\" -j {chain}",
            lab.table
        )),
        "{saved}"
    );

    // Drift: our jump deleted from INPUT.
    let jump = saved
        .lines()
        .find(|l| l.starts_with("-A INPUT") && l.contains(&chain))
        .unwrap()
        .replacen("-A INPUT", "-D INPUT", 1);
    lab.in_srv(&["sh", "-c", &format!("{ipt} {jump}")]);
    lab.expect("jump deleted", &[(D4, P1, "connected")]);
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains("rules missing or modified")),
        "{:?}",
        state.warnings
    );
    assert!(
        p.apply(&allowed(), &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    lab.expect(
        "jump repaired",
        &[
            (D4, P1, "refused"),
            (D6, P1, "refused"),
            (A6, P1, "connected"),
        ],
    );

    // Drift: our IPv6 chain flushed.
    lab.in_srv(&[&ip6t, "-F", &chain]);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert!(
        p.apply(&allowed(), &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    lab.expect("chain repaired", &reject_matrix());

    check_swaps_under_load(&lab, p.as_ref()).await;
    check_disable(&lab, p.as_ref()).await;
    let saved = lab.in_srv(&[&save, "-t", "filter"]);
    assert!(!saved.contains(&chain), "{saved}");
    assert!(
        saved.contains(":FOREIGN") && saved.contains("--dport 9 -j FOREIGN"),
        "{saved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_backend_enforces_swaps_repairs_and_disables() {
    if !ready() {
        return;
    }
    iptables_end_to_end(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_legacy_variant_enforces_swaps_repairs_and_disables() {
    if !ready() {
        return;
    }
    if !on_path("iptables-legacy-restore") {
        // Debian's iptables package ships both variants; other distributions may not.
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "iptables-legacy-restore is missing (package iptables)"
        );
        eprintln!("skipping: iptables-legacy-restore is not installed");
        return;
    }
    iptables_end_to_end(Some("legacy")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_drop_makes_denied_sources_time_out() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({"backend": "iptables", "action": "drop"}));
    p.apply(&allowed(), &ApplyOptions::default()).await.unwrap();
    lab.expect(
        "drop",
        &[
            (A4, P1, "connected"),
            (D4, P1, "timeout"),
            (D6, P2, "timeout"),
            (D4, OPEN, "connected"),
            (R6, P1, "connected"),
        ],
    );
    assert_eq!(ranges(&p.current().await.unwrap()), Some(allowed()));
}

/// #10.24: `ipv6: open` is kube-restrict-ip's behaviour (IPv6 clients unrestricted, IPv4 held
/// to the list) on both backends; it reads back in sync, and switching back to `restrict`
/// is a difference the next apply repairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_open_leaves_ipv6_clients_unrestricted_on_both_backends() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    for backend in ["nftables", "iptables"] {
        let open = lab.provider(serde_json::json!({"backend": backend, "ipv6": "open"}));
        assert!(
            open.apply(&allowed(), &ApplyOptions::default())
                .await
                .unwrap()
                .changed
        );
        lab.expect(
            &format!("{backend}, ipv6 open"),
            &[
                (A4, P1, "connected"),
                (D4, P1, "refused"),
                (A6, P1, "connected"),
                (D6, P1, "connected"),
                (D6, P2, "connected"),
            ],
        );
        let state = open.current().await.unwrap();
        assert_eq!(ranges(&state), Some(allowed()), "{backend}: {state:?}");
        assert!(
            !open
                .apply(&allowed(), &ApplyOptions::default())
                .await
                .unwrap()
                .changed,
            "{backend}: in sync"
        );
        let restrict = lab.provider(serde_json::json!({"backend": backend}));
        assert_eq!(
            restrict.current().await.unwrap().restriction,
            Restriction::Unrestricted,
            "{backend}: the open IPv6 side is not what `restrict` writes"
        );
        assert!(
            restrict
                .apply(&allowed(), &ApplyOptions::default())
                .await
                .unwrap()
                .changed
        );
        lab.expect(&format!("{backend}, ipv6 restricted"), &reject_matrix());
        assert!(
            restrict
                .disable(&ApplyOptions::default())
                .await
                .unwrap()
                .changed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_restrict_ip_config_gives_the_same_behaviour() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    // kube-restrict-ip's own format, ports as numbers and strings, a host-bits network.
    std::fs::write(
        &file,
        format!(
            "restrictedPorts:\n  - {P1}\n  - \"{P2}\"\n\nallowedNetworks:\n  - 127.0.0.1\n  - {A4}\n  - 198.51.100.70/26\n  - {A6}\n  - 2001:db8:100::1:0/112\n\ncheckInterval: 60s\n"
        ),
    )
    .unwrap();
    let (krip, problems) = rangekeeper_provider_hostfw::parse_kube_restrict_ip(
        &std::fs::read_to_string(&file).unwrap(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let krip = krip.unwrap();
    assert_eq!(krip.ports, vec![P1, P2]);
    assert_eq!(krip.interval, std::time::Duration::from_secs(60));
    assert_eq!(krip.legacy_chain(), "KUBE-RESTRICT-IP");
    let desired = RangeSet::from_nets(
        krip.networks
            .iter()
            .map(|n| rangekeeper_provider::cidr::parse(&n.value).unwrap().net),
    );
    assert_eq!(desired, allowed().union(&set(&["127.0.0.1"])));

    // kube-restrict-ip's own leftovers (its chain and INPUT jump, as it wrote them).
    lab.in_srv(&["iptables", "-N", "KUBE-RESTRICT-IP"]);
    lab.in_srv(&[
        "iptables",
        "-A",
        "KUBE-RESTRICT-IP",
        "-s",
        "0.0.0.0/0",
        "-j",
        "RETURN",
    ]);
    lab.in_srv(&[
        "iptables",
        "-I",
        "INPUT",
        "1",
        "-p",
        "tcp",
        "-m",
        "multiport",
        "--dports",
        "9100",
        "-m",
        "comment",
        "--comment",
        "kube-restrict-ip",
        "-j",
        "KUBE-RESTRICT-IP",
    ]);

    // The target points at the file instead of listing ports; backend left on auto.
    let p =
        lab.provider(serde_json::json!({"ports": null, "kubeRestrictIp": file.to_str().unwrap()}));
    assert!(
        p.apply(&desired, &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    lab.expect("kube-restrict-ip config", &reject_matrix());
    lab.expect_loopback_open();
    let state = p.current().await.unwrap();
    assert_eq!(ranges(&state), Some(desired));
    assert!(
        state
            .details
            .contains(&("backend".to_owned(), "nftables".to_owned())),
        "{:?}",
        state.details
    );
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains("KUBE-RESTRICT-IP is still in iptables with INPUT jumps")),
        "{:?}",
        state.warnings
    );
    // Reported, never touched.
    assert!(p.disable(&ApplyOptions::default()).await.unwrap().changed);
    let saved = lab.in_srv(&["iptables-save", "-t", "filter"]);
    assert!(
        saved.contains(":KUBE-RESTRICT-IP") && saved.contains("--comment kube-restrict-ip"),
        "{saved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_is_not_found() {
    if !ready() {
        return;
    }
    let cfg = TargetConfig {
        name: "gone".into(),
        base_dir: Path::new("/").to_owned(),
        fields: serde_json::json!({"ports": [1], "backend": "nftables", "netns": format!("rkt-{}-absent", std::process::id())})
            .as_object()
            .unwrap()
            .clone(),
    };
    let p = rangekeeper_provider_hostfw::factory(&cfg).unwrap();
    let e = p.current().await.unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");
}

/// A GitHub-Actions-sized list (about 6,000 IPv4 and 1,500 IPv6 prefixes that do not merge),
/// with every `shift_every`-th prefix shifted (0: none) so two lists differ in a predictable part.
fn big_list(shift_every: usize) -> RangeSet {
    let mut nets: Vec<IpNet> = Vec::new();
    for i in 0..6000usize {
        let third = if shift_every > 0 && i % shift_every == 0 {
            128
        } else {
            0
        };
        nets.push(
            format!("10.{}.{}.{third}/25", i / 256, i % 256)
                .parse()
                .unwrap(),
        );
    }
    for i in 0..1500usize {
        let sub = if shift_every > 0 && i % shift_every == 0 {
            1
        } else {
            0
        };
        nets.push(format!("2001:db9:{:x}:{sub}::/64", 2 * i).parse().unwrap());
    }
    nets.push(A4.parse::<IpAddr>().unwrap().into());
    nets.push(A6.parse::<IpAddr>().unwrap().into());
    RangeSet::from_nets(nets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_round_trip_on_both_backends() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let first = big_list(0);
    let second = big_list(10);
    assert!(first.len() > 7400 && second.len() > 7400);
    assert_ne!(first, second);
    for backend in ["nftables", "iptables"] {
        let p = lab.provider(
            serde_json::json!({"backend": backend, "table": format!("{}big", lab.table)}),
        );
        let opts = ApplyOptions::default();
        for list in [&first, &second] {
            let started = std::time::Instant::now();
            assert!(p.apply(list, &opts).await.unwrap().changed);
            let took = started.elapsed();
            assert_eq!(
                ranges(&p.current().await.unwrap()).as_ref(),
                Some(list),
                "{backend}"
            );
            eprintln!("{backend}: applied {} prefixes in {took:?}", list.len());
            assert!(
                took < std::time::Duration::from_secs(15),
                "{backend} took {took:?}"
            );
        }
        // Everything allowed reads back too (iptables-save leaves out `-s 0.0.0.0/0`).
        let everything = set(&["0.0.0.0/0", "::/0"]);
        assert!(p.apply(&everything, &opts).await.unwrap().changed);
        assert_eq!(
            ranges(&p.current().await.unwrap()),
            Some(everything.clone()),
            "{backend}"
        );
        assert!(
            !p.apply(&everything, &opts).await.unwrap().changed,
            "{backend}"
        );
        lab.expect(backend, &[(D4, P1, "connected"), (D6, P2, "connected")]);
        assert!(p.apply(&second, &opts).await.unwrap().changed);
        lab.expect(
            backend,
            &[
                (A4, P1, "connected"),
                (D4, P1, "refused"),
                (A6, P2, "connected"),
                (D6, P2, "refused"),
            ],
        );
        assert!(p.disable(&opts).await.unwrap().changed);
    }
}

/// The shared conformance suite on both backends, inside a fresh namespace each.
#[tokio::test]
async fn both_backends_pass_the_conformance_suite() {
    if !ready() {
        return;
    }
    let b = set(&[D4, "203.0.113.0/24", "2001:db8:100::1:0/112"]);
    for backend in ["nftables", "iptables"] {
        let lab = Lab::new();
        let p = lab.provider(serde_json::json!({ "backend": backend }));
        rangekeeper_provider::conformance::Suite::new(p.as_ref(), &allowed(), &b)
            .run()
            .await
            .unwrap_or_else(|e| panic!("backend {backend}: {e}"));
        // The suite ends with B applied without waiting: enforced at once (synchronous).
        lab.expect(
            "after the suite, B is enforced",
            &[
                (D4, P1, "connected"),
                (A4, P1, "refused"),
                (R4, P2, "refused"),
                (R6, P2, "connected"),
                (A6, P1, "refused"),
                (D6, P1, "refused"),
                (D4, OPEN, "connected"),
            ],
        );
        assert!(
            p.apply(&allowed(), &ApplyOptions::default())
                .await
                .unwrap()
                .changed
        );
        lab.expect("A applied again is enforced", &reject_matrix());
    }
}

// --- leases: set elements with a kernel timeout ---

/// A lease of `addr` ending between `secs` and `secs + 1` seconds from now (records have
/// whole seconds), so its element's whole-second timeout is at least `secs - 1`.
pub(crate) fn lease(id: &str, addr: &str, secs: u64) -> Lease {
    Lease {
        id: LeaseId::parse(id).unwrap(),
        address: addr.parse().unwrap(),
        expires: Timestamp::now().plus(Duration::from_secs(secs + 1)),
        requested_by: "alice@github:org/repo/actions/runs/7".into(),
        reason: None,
    }
}

pub(crate) fn ids(state: &rangekeeper_provider::State) -> Vec<String> {
    let mut v: Vec<String> = state.leases.iter().map(|l| l.id.to_string()).collect();
    v.sort();
    v
}

/// A lease admits its address until the kernel times its element out, with no rangekeeper
/// call after the grant (a dead runner); the records read back; a revoke takes it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_leases_admit_until_the_kernel_times_them_out() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({ "backend": "nftables" }));
    let opts = ApplyOptions::default();
    let declared = set(&[A4, A6]);
    let st = p.current().await.unwrap();
    assert_eq!(st.version.as_deref(), Some("absent"));
    assert!(
        p.apply_leased_declared(&declared, &declared, &[], st.version.as_deref(), &opts)
            .await
            .unwrap()
            .changed
    );
    lab.expect(
        "declared only",
        &[
            (A4, P1, "connected"),
            (D4, P1, "refused"),
            (D6, P1, "refused"),
        ],
    );

    let st = p.current().await.unwrap();
    let granted = std::time::Instant::now();
    let (short, long) = (lease("short-d4", D4, 3), lease("long-d6", D6, 120));
    let desired = declared.union(&set(&[D4, D6]));
    let leases = [short.clone(), long.clone()];
    assert!(
        p.apply_leased_declared(&declared, &desired, &leases, st.version.as_deref(), &opts)
            .await
            .unwrap()
            .changed
    );
    lab.expect(
        "leased",
        &[
            (D4, P1, "connected"),
            (D6, P2, "connected"),
            (N4, P1, "refused"),
            (A4, P1, "connected"),
        ],
    );
    let st = p.current().await.unwrap();
    assert_eq!(ranges(&st), Some(desired.clone()));
    assert_eq!(ids(&st), ["long-d6", "short-d4"]);
    let read = st.leases.iter().find(|l| l.id == long.id).unwrap();
    assert_eq!(
        (read.address, read.expires, read.requested_by.as_str()),
        (long.address, long.expires, long.requested_by.as_str())
    );
    // The declared ranges are in the sets without a timeout, the leases apart.
    let table = lab.in_srv(&["nft", "list", "table", "inet", &lab.table]);
    assert!(
        table.contains("comment \"short-d4 ") && table.contains("comment \"long-d6 "),
        "{table}"
    );
    // Nothing sent when the target holds both already.
    assert!(
        !p.apply_leased_declared(&declared, &desired, &leases, st.version.as_deref(), &opts)
            .await
            .unwrap()
            .changed
    );

    // No rangekeeper call from here: the kernel alone ends the short lease (at most 4 s
    // after it was made).
    std::thread::sleep(Duration::from_millis(4300).saturating_sub(granted.elapsed()));
    lab.expect(
        "after the short lease expired",
        &[
            (D4, P1, "refused"),
            (D6, P1, "connected"),
            (A4, P1, "connected"),
        ],
    );
    let st = p.current().await.unwrap();
    assert_eq!(ids(&st), ["long-d6"]);
    assert_eq!(ranges(&st), Some(declared.union(&set(&[D6]))));

    // Revoked: the record and the address go together.
    assert!(
        p.apply_leased_declared(&declared, &declared, &[], st.version.as_deref(), &opts)
            .await
            .unwrap()
            .changed
    );
    lab.expect("revoked", &[(D6, P1, "refused"), (A6, P1, "connected")]);
    let st = p.current().await.unwrap();
    assert!(st.leases.is_empty());
    assert_eq!(ranges(&st), Some(declared));
}

/// A lease write made from a stale read is a conflict: whether another writer got in before
/// the re-read (the version differs) or between the re-read and the commit (the nonce the
/// transaction deletes is gone), so of many writers from one read exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_lease_writes_are_compare_and_swap() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({ "backend": "nftables" }));
    let opts = ApplyOptions::default();
    let declared = set(&[A4, A6]);
    p.apply(&declared, &opts).await.unwrap();
    let stale = p.current().await.unwrap().version;

    // Another process (another provider, another lock) grants first.
    let other = lab.provider(serde_json::json!({ "backend": "nftables" }));
    let first = lease("first", D4, 600);
    other
        .apply_leased_declared(
            &declared,
            &declared.union(&set(&[D4])),
            std::slice::from_ref(&first),
            stale.as_deref(),
            &opts,
        )
        .await
        .unwrap();
    let e = p
        .apply_leased_declared(
            &declared,
            &declared.union(&set(&[D6])),
            &[lease("second", D6, 600)],
            stale.as_deref(),
            &opts,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "conflict", "{e}");
    assert_eq!(ids(&p.current().await.unwrap()), ["first"]);
    lab.expect("the stale write changed nothing", &[(D6, P1, "refused")]);

    // Many writers from one read at once.
    let base = p.current().await.unwrap().version;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let w = std::sync::Arc::new(lab.provider(serde_json::json!({ "backend": "nftables" })));
        let (declared, base, first) = (declared.clone(), base.clone(), first.clone());
        tasks.spawn(async move {
            let mine = lease(&format!("racer-{i}"), &format!("203.0.113.{}", i + 1), 600);
            let desired = declared.union(&set(&[D4, &mine.address.to_string()]));
            let r = w
                .apply_leased_declared(
                    &declared,
                    &desired,
                    &[first, mine.clone()],
                    base.as_deref(),
                    &ApplyOptions::default(),
                )
                .await;
            (mine.id.to_string(), r)
        });
    }
    let mut won = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (id, r) = r.unwrap();
        match r {
            Ok(_) => won.push(id),
            Err(e) => assert_eq!(e.kind(), "conflict", "{id}: {e}"),
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    let mut want = vec!["first".to_owned(), won[0].clone()];
    want.sort();
    assert_eq!(ids(&p.current().await.unwrap()), want);
}

/// The iptables backend cannot let the kernel end a lease: its targets say so, naming the
/// target and the backend, and still take writes without leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_targets_refuse_leases_and_say_why() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({ "backend": "iptables" }));
    let caps = p.capabilities();
    assert!(!caps.leases);
    let why = caps.leases_refused.unwrap();
    assert!(why.contains("iptables backend"), "{why}");
    let opts = ApplyOptions::default();
    let declared = set(&[A4, A6]);
    let e = p
        .apply_leased_declared(
            &declared,
            &declared.union(&set(&[D4])),
            &[lease("nope", D4, 600)],
            None,
            &opts,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "invalid", "{e}");
    assert!(
        e.to_string().contains("target `lab`") && e.to_string().contains("iptables backend"),
        "{e}"
    );
    assert!(
        p.apply_leased_declared(&declared, &declared, &[], None, &opts)
            .await
            .unwrap()
            .changed
    );
    lab.expect(
        "iptables, no leases",
        &[(A4, P1, "connected"), (D4, P1, "refused")],
    );
    let st = p.current().await.unwrap();
    assert!(st.leases.is_empty() && st.version.is_none());
}

/// What the store cannot hold is refused with the reason, before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_refuses_leases_that_do_not_fit() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({ "backend": "nftables" }));
    let opts = ApplyOptions::default();
    let declared = set(&[A4]);
    p.apply(&declared, &opts).await.unwrap();
    let v = p.current().await.unwrap().version;
    let before = lab.in_srv(&["nft", "list", "table", "inet", &lab.table]);
    let desired = declared.union(&set(&[D4]));
    let mut long = lease("long-reason", D4, 600);
    long.reason = Some("r".repeat(120));
    let two = [lease("one", D4, 600), lease("two", D4, 900)];
    for (what, leases) in [("comment", vec![long]), ("address", two.to_vec())] {
        let e = p
            .apply_leased_declared(&declared, &desired, &leases, v.as_deref(), &opts)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "invalid", "{what}: {e}");
        let text = e.to_string();
        assert!(
            if what == "comment" {
                text.contains("at most 128")
            } else {
                text.contains("one lease per address") && text.contains("lease one")
            },
            "{what}: {text}"
        );
    }
    assert_eq!(
        lab.in_srv(&["nft", "list", "table", "inet", &lab.table]),
        before
    );
}
