//! The HAProxy plugin against a real HAProxy (Debian's package) started on loopback with a
//! frontend that admits only the ACL's sources: clients connect from 127.0.0.x addresses and
//! are really admitted or refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rangekeeper_provider::conformance::{Fault, Suite};
use rangekeeper_provider::{
    ApplyOptions, Provider, ProviderError, RangeSet, Restriction, TargetConfig, cidr,
};
use rangekeeper_test_support::haproxy::{self, Haproxy};

const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const DENIED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
}

/// A scratch directory and HAProxy in it, whose ACL file starts with `entries`; `None` when
/// haproxy is not installed (and CI is not set).
fn start(entries: &[&str]) -> Option<(tempfile::TempDir, Haproxy)> {
    let exe = haproxy::exe()?;
    let dir = tempfile::tempdir().unwrap();
    let h = Haproxy::start(&exe, dir.path(), entries);
    Some((dir, h))
}

fn provider_for(dir: &Path, fields: serde_json::Value) -> Box<dyn Provider> {
    rangekeeper_provider_haproxy::factory(&TargetConfig {
        name: "edge".into(),
        base_dir: dir.to_path_buf(),
        fields: fields.as_object().unwrap().clone(),
    })
    .unwrap()
}

fn provider(dir: &Path) -> Box<dyn Provider> {
    provider_for(
        dir,
        serde_json::json!({"socket": "admin.sock", "aclFile": "allow.acl"}),
    )
}

fn opts() -> ApplyOptions {
    ApplyOptions::default()
}

async fn holds(p: &dyn Provider) -> Restriction {
    p.current().await.unwrap().restriction
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_sources_are_admitted_and_others_refused() {
    let Some((dir, h)) = start(&["127.0.0.9"]) else {
        return;
    };
    let p = provider(dir.path());
    assert!(!h.admits(ALLOWED), "only 127.0.0.9 is in the file at start");
    let want = set(&["127.0.0.2/32", "192.0.2.0/24", "2001:db8::/32"]);
    let applied = p.apply(&want, &opts()).await.unwrap();
    assert!(applied.changed && !applied.pending, "{applied:?}");
    assert_eq!(holds(p.as_ref()).await, Restriction::Ranges(want.clone()));
    assert!(h.admits(ALLOWED), "{}", h.log());
    assert!(!h.admits(DENIED));
    assert_eq!(
        h.live_entries(),
        ["127.0.0.2/32", "192.0.2.0/24", "2001:db8::/32"]
    );
    let file = std::fs::read_to_string(&h.acl).unwrap();
    assert!(
        file.starts_with("# Managed by rangekeeper (target `edge`)"),
        "{file}"
    );
    assert!(
        file.ends_with("127.0.0.2/32\n192.0.2.0/24\n2001:db8::/32\n"),
        "{file}"
    );
    let state = p.current().await.unwrap();
    assert!(state.drift.is_empty(), "{:?}", state.drift);
    assert!(
        state
            .details
            .iter()
            .any(|(k, v)| k == "haproxy" && v.starts_with('2')),
        "{:?}",
        state.details
    );
    // The same list again sends nothing.
    let again = p.apply(&want, &opts()).await.unwrap();
    assert!(!again.changed, "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_under_load_refuses_no_allowed_connection() {
    let Some((dir, h)) = start(&["127.0.0.2", "127.0.0.4"]) else {
        return;
    };
    let p = provider(dir.path());
    let h = Arc::new(h);
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the clients however this test ends, so the last handle on HAProxy is dropped
    // and HAProxy stopped even when an assertion fails.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop_clients = StopOnDrop(stop.clone());
    let (tries, refused, let_in) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let allowed_client = {
        let (h, stop, tries, refused) = (h.clone(), stop.clone(), tries.clone(), refused.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                tries.fetch_add(1, Ordering::SeqCst);
                if !h.admits(ALLOWED) {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let denied_client = {
        let (h, stop, let_in) = (h.clone(), stop.clone(), let_in.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if h.admits(DENIED) {
                    let_in.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // Many replacements, each list a different size, every one keeping 127.0.0.2.
    for i in 0..60u8 {
        let mut items = vec!["127.0.0.2/32".to_owned()];
        for j in 0..(i % 7) {
            items.push(format!("198.51.{i}.{}/32", j * 2));
        }
        let want = set(&items.iter().map(String::as_str).collect::<Vec<_>>());
        let applied = p.apply(&want, &opts()).await.unwrap();
        assert!(applied.changed, "{i}: {applied:?}");
    }
    stop.store(true, Ordering::SeqCst);
    allowed_client.join().unwrap();
    denied_client.join().unwrap();
    let tries = tries.load(Ordering::SeqCst);
    eprintln!("{tries} connections from the allowed source during 60 swaps");
    assert!(tries > 10, "the client connected only {tries} times");
    assert_eq!(
        refused.load(Ordering::SeqCst),
        0,
        "allowed connections refused during {tries} tries"
    );
    assert_eq!(let_in.load(Ordering::SeqCst), 0, "a denied source got in");
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_by_hand_is_seen_and_repaired() {
    let Some((dir, h)) = start(&["127.0.0.9"]) else {
        return;
    };
    let p = provider(dir.path());
    let want = set(&["127.0.0.2/32", "192.0.2.0/24"]);
    p.apply(&want, &opts()).await.unwrap();

    // An entry added by hand through the socket: the live ACL admits it, the file does not.
    let list = h.cli(&format!("add acl {} 127.0.0.3", h.acl.display()));
    assert_eq!(list.trim(), "", "{list}");
    assert!(h.admits(DENIED));
    let state = p.current().await.unwrap();
    assert_eq!(
        state.restriction,
        Restriction::Ranges(want.union(&set(&["127.0.0.3/32"])))
    );
    assert!(
        state.drift.len() == 1 && state.drift[0].contains("only live: 127.0.0.3/32"),
        "{:?}",
        state.drift
    );
    let applied = p.apply(&want, &opts()).await.unwrap();
    assert!(applied.changed, "{applied:?}");
    assert!(!h.admits(DENIED));
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Ranges(want.clone()));
    assert!(state.drift.is_empty(), "{:?}", state.drift);

    // The file edited by hand: the live ACL still holds the list, a restart would not.
    std::fs::write(&h.acl, "127.0.0.2/32\n192.0.2.0/24\n10.0.0.0/8\n").unwrap();
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Ranges(want.clone()));
    assert!(
        state.drift.len() == 1 && state.drift[0].contains("only in the file: 10.0.0.0/8"),
        "{:?}",
        state.drift
    );
    let applied = p.apply(&want, &opts()).await.unwrap();
    assert!(
        applied.changed && applied.notes[0].contains("was rewritten"),
        "{applied:?}"
    );
    assert!(p.current().await.unwrap().drift.is_empty());
    assert!(
        !std::fs::read_to_string(&h.acl)
            .unwrap()
            .contains("10.0.0.0/8")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_the_list() {
    let Some((dir, mut h)) = start(&["127.0.0.3"]) else {
        return;
    };
    let p = provider(dir.path());
    assert!(h.admits(DENIED));
    let want = set(&["127.0.0.2/32", "2001:db8::/32"]);
    p.apply(&want, &opts()).await.unwrap();
    h.restart();
    assert_eq!(h.live_entries(), ["127.0.0.2/32", "2001:db8::/32"]);
    assert!(h.admits(ALLOWED), "{}", h.log());
    assert!(!h.admits(DENIED));
    let p = provider(dir.path());
    assert_eq!(holds(p.as_ref()).await, Restriction::Ranges(want));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_acl_disable_and_the_empty_set() {
    let Some((dir, h)) = start(&[]) else {
        return;
    };
    let p = provider(dir.path());
    // Empty: no one is admitted, which the state says in words.
    assert!(!h.admits(ALLOWED));
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert!(
        state.warnings.iter().any(|w| w.contains("admits no one")),
        "{:?}",
        state.warnings
    );
    let want = set(&["127.0.0.2/32"]);
    p.apply(&want, &opts()).await.unwrap();
    // An empty desired set is refused and changes nothing.
    let e = p.apply(&RangeSet::new(), &opts()).await.unwrap_err();
    assert_eq!(e.kind(), "invalid");
    assert!(e.message().contains("shuts every client out"), "{e}");
    assert_eq!(holds(p.as_ref()).await, Restriction::Ranges(want.clone()));
    // Disable admits every source.
    let applied = p.disable(&opts()).await.unwrap();
    assert!(applied.changed);
    assert!(h.admits(DENIED) && h.admits(ALLOWED));
    assert_eq!(h.live_entries(), ["0.0.0.0/0", "::/0"]);
    assert_eq!(holds(p.as_ref()).await, Restriction::Unrestricted);
    assert!(!p.disable(&opts()).await.unwrap().changed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes() {
    let Some((dir, h)) = start(&["127.0.0.2"]) else {
        return;
    };
    let p = provider(dir.path());
    let a = set(&["23.1.2.0/24", "2a00:1450:4001::/48"]);
    let b = set(&["23.1.8.0/23", "23.1.20.7/32", "127.0.0.2/32"]);
    // The socket moved away (HAProxy gone, or a wrong path): a config error naming it.
    let moved = dir.path().join("moved.sock");
    let inject = || std::fs::rename(&h.socket, &moved).unwrap();
    let clear = || std::fs::rename(&moved, &h.socket).unwrap();
    Suite::new(p.as_ref(), &a, &b)
        .with_fault(Fault {
            name: "stats socket missing",
            inject: &inject,
            clear: &clear,
            expect: "config",
        })
        .run()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_errors_name_the_fault() {
    let Some((dir, h)) = start(&["127.0.0.2"]) else {
        return;
    };
    // An ACL file HAProxy did not load: the files it has are listed.
    std::fs::write(dir.path().join("other.acl"), "").unwrap();
    let p = provider_for(
        dir.path(),
        serde_json::json!({"socket": "admin.sock", "aclFile": "other.acl"}),
    );
    let e = p.current().await.unwrap_err();
    assert_eq!(e.kind(), "config", "{e}");
    assert!(
        e.message().contains("no ACL loaded from `other.acl`")
            && e.message().contains(&format!("`{}`", h.acl.display())),
        "{e}"
    );
    // No socket at the path: the `stats socket` line to add.
    let p = provider_for(
        dir.path(),
        serde_json::json!({"socket": "nope.sock", "aclFile": "allow.acl"}),
    );
    let e = p.apply(&set(&["127.0.0.2/32"]), &opts()).await.unwrap_err();
    assert_eq!(e.kind(), "config", "{e}");
    assert!(
        e.message().contains(&format!(
            "`stats socket {} mode 600 level admin`",
            dir.path().join("nope.sock").display()
        )),
        "{e}"
    );
    // A file that cannot be written: nothing changes live either.
    let before = h.live_entries();
    let p = provider_for(
        dir.path(),
        serde_json::json!({"socket": "admin.sock", "aclFile": "allow.acl", "acl": h.acl.display().to_string()}),
    );
    // The file is a symlink into a directory that does not exist: it cannot be replaced.
    std::fs::remove_file(&h.acl).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone/allow.acl"), &h.acl).unwrap();
    let e = p.apply(&set(&["192.0.2.0/24"]), &opts()).await.unwrap_err();
    assert!(
        e.message().contains("cannot write the ACL file") && e.message().contains("gone"),
        "{e}"
    );
    assert_eq!(h.live_entries(), before, "nothing was committed");
    // The version it had filled (the newest, `next_ver`) was cleared, not left behind.
    let list = h.cli("show acl");
    let next = list
        .lines()
        .find(|l| l.contains(&format!("({})", h.acl.display())))
        .and_then(|l| l.split("next_ver=").nth(1))
        .and_then(|v| v.split(' ').next())
        .unwrap_or_else(|| panic!("{list}"))
        .to_owned();
    assert_ne!(next, "0", "a version was prepared: {list}");
    let staged = h.cli(&format!("show acl @{next} {}", h.acl.display()));
    assert_eq!(staged.trim(), "", "version {next} still holds entries");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_haproxy_older_than_2_4_is_refused_with_the_reason() {
    // A runtime API that answers as HAProxy 2.2 does.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"Name: HAProxy\nVersion: 2.2.9-2+deb11u6\n\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let p = provider_for(
        dir.path(),
        serde_json::json!({"socket": format!("ipv4@{addr}"), "aclFile": "allow.acl"}),
    );
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Config(_)), "{e}");
    assert!(
        e.message().contains("HAProxy 2.2.9-2+deb11u6")
            && e.message().contains("need HAProxy 2.4 or newer"),
        "{e}"
    );
}
