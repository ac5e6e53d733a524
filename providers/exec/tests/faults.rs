//! Misbehaving plugins: each gives a clear error naming the plugin and quoting what it
//! printed, the process group is gone afterwards, and memory stays bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use rangekeeper_provider::{ApplyOptions, Provider, ProviderError};
use rangekeeper_provider_exec::ExecProvider;

use crate::common::{script, scripted, set, spec};

/// The timeout of the tests that hang.
const SHORT: Duration = Duration::from_millis(1500);
/// The timeout of the others (Python's start-up on a loaded machine).
const LONG: Duration = Duration::from_secs(20);

fn start(exe: &Path, dir: &Path) -> Result<ExecProvider, ProviderError> {
    ExecProvider::start(spec(exe, dir, serde_json::json!({}), LONG))
}

fn start_short(exe: &Path, dir: &Path, timeout: Duration) -> Result<ExecProvider, ProviderError> {
    ExecProvider::start(spec(exe, dir, serde_json::json!({}), timeout))
}

fn alive(pid: &str) -> bool {
    // A zombie is not alive: its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_plugin_that_hangs_is_killed_with_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let exe = script(
        dir.path(),
        "hang",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > '{}'\nwait\n",
            pids.display()
        ),
    );
    let t = Instant::now();
    let err = start_short(&exe, dir.path(), SHORT)
        .err()
        .expect("a hang must fail");
    assert!(
        t.elapsed() < SHORT + Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    let msg = err.to_string();
    assert!(msg.contains(&exe.display().to_string()), "{msg}");
    assert!(msg.contains("no answer to `hello` within"), "{msg}");
    assert_eq!(err.kind(), "transient");
    // The backgrounded `sleep` was in the plugin's group: it is gone too.
    let pid = std::fs::read_to_string(&pids).unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    while alive(pid.trim()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid.trim()), "the plugin's child {pid} survived");
}

#[tokio::test]
async fn a_plugin_that_hangs_on_a_call_times_out_and_the_next_call_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let exe = scripted(dir.path(), "hang-on-current");
    let p = start_short(&exe, dir.path(), Duration::from_secs(5)).unwrap();
    let err = p.current().await.unwrap_err();
    assert!(
        err.to_string().contains("no answer to `current` within"),
        "{err}"
    );
    assert!(err.is_retryable(), "a timeout is transient");
    // The next call starts a new process (a restart, not a retry).
    let applied = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await;
    assert!(applied.unwrap().changed);
    assert_eq!(p.starts(), 2);
}

#[test]
fn a_plugin_that_exits_at_once_names_its_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "exits",
        "#!/bin/sh\necho 'AWS_PROFILE prod is not configured' >&2\nexit 3\n",
    );
    let msg = start(&exe, dir.path()).err().unwrap().to_string();
    assert!(msg.contains(&exe.display().to_string()), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("AWS_PROFILE prod is not configured"), "{msg}");
}

#[test]
fn a_plugin_that_prints_garbage_instead_of_a_hello_is_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "garbage",
        "#!/bin/sh\necho 'Usage: foo [--bar]'\nsleep 5\n",
    );
    let msg = start(&exe, dir.path()).err().unwrap().to_string();
    assert!(msg.contains("did not start with a protocol hello"), "{msg}");
    assert!(msg.contains("`Usage: foo [--bar]`"), "{msg}");
    assert!(msg.contains(&exe.display().to_string()), "{msg}");
}

#[tokio::test]
async fn a_plugin_that_answers_with_garbage_is_quoted_and_killed() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(&scripted(dir.path(), "garbage-reply"), dir.path()).unwrap();
    let msg = p.current().await.unwrap_err().to_string();
    assert!(
        msg.contains("answered `current` with something that is not a protocol reply"),
        "{msg}"
    );
    assert!(
        msg.contains("Traceback (most recent call last): oops"),
        "{msg}"
    );
    assert!(msg.contains("plugin-garbage-reply"), "{msg}");
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_plugin_that_prints_an_endless_line_is_cut_off_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(&scripted(dir.path(), "huge-reply"), dir.path()).unwrap();
    let before = peak_rss_kib();
    let msg = p.current().await.unwrap_err().to_string();
    assert!(
        msg.contains("printed a line longer than 8388608 bytes"),
        "{msg}"
    );
    assert!(msg.contains("`xxxx"), "{msg}");
    assert!(msg.len() < 1000, "the quote is cut: {} bytes", msg.len());
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}

#[test]
fn a_plugin_with_an_unknown_protocol_version_names_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let exe = script(
        dir.path(),
        "v7",
        "#!/bin/sh\necho '{\"v\":[7,8]}'\ncat > /dev/null\n",
    );
    let err = start(&exe, dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("the plugin speaks v7, v8, this rangekeeper speaks v1"),
        "{msg}"
    );
    assert!(msg.contains(&exe.display().to_string()), "{msg}");
    assert_eq!(err.kind(), "config");
}

#[tokio::test]
async fn ranges_that_do_not_parse_are_refused_by_the_strict_parser() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(&scripted(dir.path(), "bad-ranges"), dir.path()).unwrap();
    let msg = p.current().await.unwrap_err().to_string();
    assert!(
        msg.contains("answered `current` with a reply that does not read"),
        "{msg}"
    );
    assert!(msg.contains("send `10.0.0.0/8`"), "{msg}");
    assert!(msg.contains("plugin-bad-ranges"), "{msg}");
}

#[tokio::test]
async fn an_empty_current_after_a_successful_apply_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(&scripted(dir.path(), "empty-after-apply"), dir.path()).unwrap();
    assert!(p.current().await.is_ok());
    let applied = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert!(applied.changed);
    let msg = p.current().await.unwrap_err().to_string();
    assert!(msg.contains("reported an empty list of ranges"), "{msg}");
    assert!(msg.contains("plugin-empty-after-apply"), "{msg}");
}

#[tokio::test]
async fn a_plugin_that_exits_after_each_reply_is_restarted_for_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(&scripted(dir.path(), "exit-after-reply"), dir.path()).unwrap();
    for _ in 0..3 {
        // Give the plugin the moment it takes to exit after its reply.
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.current().await.unwrap();
    }
    assert_eq!(
        p.starts(),
        4,
        "capabilities, then three calls, each in a new process"
    );
}

#[test]
fn a_missing_plugin_is_a_config_error_naming_the_name_looked_for() {
    let cfg = rangekeeper_provider::TargetConfig {
        name: "edge".into(),
        base_dir: std::env::temp_dir(),
        fields: serde_json::Map::new(),
    };
    let err = rangekeeper_provider_exec::build("no-such-firewall-xyz", &cfg)
        .err()
        .unwrap();
    assert_eq!(err.kind(), "config");
    assert!(
        err.to_string()
            .contains("no `rangekeeper-provider-no-such-firewall-xyz` was found on PATH"),
        "{err}"
    );
}
