//! The exec-plugin protocol (version 1): the messages a plugin and rangekeeper exchange as
//! JSON lines over the plugin's stdin and stdout. `docs/plugin-protocol.md` describes it for
//! plugin authors in any language; this module is its one definition in Rust.
//!
//! 1. The plugin speaks first: a [`Hello`] naming the versions it supports (`{"v":[1]}`).
//! 2. The host sends one [`Request`] per line (`{"v":1,"kind":"current","target":{...}}`) and
//!    reads lines until the [`Reply`] (`{"Ok":...}` or `{"Err":{"kind":...}}`); while it works
//!    on an `apply` or `disable` the plugin may send `{"progress":"..."}` lines first.
//! 3. Closing the plugin's stdin ends the session; the plugin exits 0.
//!
//! Every enum has a catch-all, so a newer plugin talks to an older host and the reverse.

use serde::{Deserialize, Serialize};

use crate::{ProviderError, RangeSet, State, TargetConfig, Violation};

/// The protocol versions this crate speaks, oldest first.
pub const VERSIONS: &[u32] = &[1];

/// The first line a plugin prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol versions the plugin speaks.
    pub v: Vec<u32>,
}

/// The highest version both sides speak, or a message naming both sides' versions.
pub fn negotiate(host: &[u32], plugin: &[u32]) -> Result<u32, String> {
    host.iter()
        .copied()
        .filter(|v| plugin.contains(v))
        .max()
        .ok_or_else(|| {
            format!(
                "no common protocol version: the plugin speaks {}, this rangekeeper speaks {}",
                list(plugin),
                list(host)
            )
        })
}

fn list(vs: &[u32]) -> String {
    if vs.is_empty() {
        return "none".into();
    }
    vs.iter()
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The target a request is about: its name, the directory of its declaration file, and its
/// provider-specific fields exactly as declared (minus the host's own `plugin` and
/// `pluginTimeout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireTarget {
    pub name: String,
    pub base_dir: String,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl WireTarget {
    pub fn from_config(cfg: &TargetConfig) -> Self {
        WireTarget {
            name: cfg.name.clone(),
            base_dir: cfg.base_dir.display().to_string(),
            fields: cfg.fields.clone(),
        }
    }

    pub fn to_config(&self) -> TargetConfig {
        TargetConfig {
            name: self.name.clone(),
            base_dir: self.base_dir.clone().into(),
            fields: self.fields.clone(),
        }
    }
}

/// What the host asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Operation {
    /// Reply: [`crate::Capabilities`].
    Capabilities,
    /// Offline checks of a desired set. Reply: [`Checked`].
    Check { ranges: Vec<String> },
    /// Reply: [`crate::State`].
    Current,
    /// Reply: [`crate::Applied`].
    Apply { ranges: Vec<String>, wait: bool },
    /// Reply: [`crate::Applied`].
    Disable { wait: bool },
    /// Checks of a desired set that read the target, while planning; `current` is what the
    /// plugin's `current` just returned. Reply: [`Checked`]. A plugin that answers
    /// `unsupported` finds nothing (the trait's default).
    Preflight { ranges: Vec<String>, current: State },
    /// Write the ranges and exactly these lease records in one step, only when the target is
    /// still at `version` (the `version` of the plugin's last `current` reply); otherwise a
    /// `conflict` error. Sent only to a plugin whose capabilities say `leases: true`.
    /// Reply: [`crate::Applied`].
    ApplyLeased {
        ranges: Vec<String>,
        leases: Vec<crate::Lease>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        wait: bool,
    },
    /// An operation a newer host knows and this plugin does not; the plugin answers with an
    /// `unsupported` error.
    #[serde(other)]
    Unknown,
}

impl Operation {
    /// The `kind` on the wire, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Capabilities => "capabilities",
            Operation::Check { .. } => "check",
            Operation::Current => "current",
            Operation::Apply { .. } => "apply",
            Operation::Disable { .. } => "disable",
            Operation::Preflight { .. } => "preflight",
            Operation::ApplyLeased { .. } => "apply-leased",
            Operation::Unknown => "unknown",
        }
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The negotiated protocol version.
    pub v: u32,
    #[serde(flatten)]
    pub op: Operation,
    /// The target the request is about; absent only on a `capabilities` request that asks
    /// what the plugin can do in general (`rangekeeper providers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<WireTarget>,
}

/// The reply to `check` and `preflight`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    #[serde(default)]
    pub violations: Vec<Violation>,
}

/// One line from the plugin after a request: the reply, or progress before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply<T> {
    Ok(T),
    Err(ProviderError),
    /// A progress message while the plugin works (shown on rangekeeper's spinner).
    #[serde(rename = "progress")]
    Progress(String),
}

/// The error kind a plugin answers an operation it does not know with (read by the host as
/// [`ProviderError::Unknown`] of this kind).
pub const UNSUPPORTED: &str = "unsupported";

/// The executable name prefix of plugins: provider `x` is `rangekeeper-provider-x`.
pub const PLUGIN_PREFIX: &str = "rangekeeper-provider-";

/// The plugin executable for provider `name` on `PATH` (the first directory that has it).
pub fn find_plugin(name: &str) -> Option<std::path::PathBuf> {
    if name.is_empty() || name.contains(['/', '\\']) {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    let file = format!("{PLUGIN_PREFIX}{name}");
    std::env::split_paths(&path)
        .map(|dir| dir.join(&file))
        .find(|p| is_executable(p))
}

/// Every plugin on `PATH` as (provider name, executable), sorted by name; a name found in
/// two directories is the first one, as a shell would run it.
pub fn discover_plugins() -> Vec<(String, std::path::PathBuf)> {
    let mut found: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let file = e.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_prefix(PLUGIN_PREFIX)) else {
                continue;
            };
            let p = e.path();
            if !name.is_empty() && !found.contains_key(name) && is_executable(&p) {
                found.insert(name.to_owned(), p);
            }
        }
    }
    found.into_iter().collect()
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A set as the canonical CIDR strings that travel on the wire.
pub fn wire_ranges(set: &RangeSet) -> Vec<String> {
    let mut out = Vec::with_capacity(set.len());
    set.for_each_prefix(|n| out.push(n.to_string()));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Applied, Capabilities, Restriction, State, UnrestrictedForm};

    fn target() -> WireTarget {
        let fields = serde_json::json!({"listener": "api", "socket": "/run/haproxy.sock"});
        WireTarget {
            name: "edge".into(),
            base_dir: "/etc/rangekeeper".into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    fn lease() -> crate::Lease {
        crate::Lease {
            id: crate::LeaseId::parse("k3v9q2m7x1ab").unwrap(),
            address: "203.0.113.7".parse().unwrap(),
            expires: crate::Timestamp::parse("2026-12-07T02:30:00Z").unwrap(),
            requested_by: "alice@github:org/repo/actions/runs/123".into(),
            reason: Some("deploy".into()),
        }
    }

    fn ranges(items: &[&str]) -> Vec<String> {
        wire_ranges(&crate::parse_wire_ranges(items).unwrap())
    }

    /// One example of every message of protocol v1, named, with who sends it.
    fn every_message() -> Vec<(&'static str, serde_json::Value)> {
        let req = |op: Operation, target: Option<WireTarget>| {
            serde_json::to_value(Request { v: 1, op, target }).unwrap()
        };
        let ok = |v: serde_json::Value| serde_json::to_value(Reply::Ok(v)).unwrap();
        let val = |v: &dyn erased::Ser| v.value();
        let err = |e: ProviderError| serde_json::to_value(Reply::<()>::Err(e)).unwrap();
        let caps = Capabilities::new("haproxy", "HAProxy ACL via the runtime API")
            .with_max_ranges(Some(10000))
            .with_ipv6(true)
            .with_private_ranges(true)
            .with_unrestricted(UnrestrictedForm::Removed);
        vec![
            (
                "hello (plugin -> host, first line)",
                serde_json::to_value(Hello { v: vec![1] }).unwrap(),
            ),
            (
                "capabilities request without a target (rangekeeper providers)",
                req(Operation::Capabilities, None),
            ),
            (
                "capabilities request",
                req(Operation::Capabilities, Some(target())),
            ),
            (
                "check request",
                req(
                    Operation::Check {
                        ranges: ranges(&["192.0.2.0/24", "2001:db8::/32"]),
                    },
                    Some(target()),
                ),
            ),
            ("current request", req(Operation::Current, Some(target()))),
            (
                "apply request",
                req(
                    Operation::Apply {
                        ranges: ranges(&["192.0.2.0/24", "198.51.100.7/32"]),
                        wait: true,
                    },
                    Some(target()),
                ),
            ),
            (
                "disable request",
                req(Operation::Disable { wait: false }, Some(target())),
            ),
            (
                "preflight request",
                req(
                    Operation::Preflight {
                        ranges: ranges(&["192.0.2.0/24"]),
                        current: State::new(Restriction::Ranges(
                            crate::parse_wire_ranges(&["198.51.100.0/24"]).unwrap(),
                        )),
                    },
                    Some(target()),
                ),
            ),
            (
                "apply-leased request (a provider that stores leases)",
                req(
                    Operation::ApplyLeased {
                        ranges: ranges(&["192.0.2.0/24", "203.0.113.7/32"]),
                        leases: vec![lease()],
                        version: Some("W/\"etag-42\"".into()),
                        wait: true,
                    },
                    Some(target()),
                ),
            ),
            ("capabilities reply", ok(val(&caps))),
            (
                "capabilities reply, a provider that stores leases",
                ok(val(&Capabilities::new(
                    "haproxy",
                    "HAProxy ACL via the runtime API",
                )
                .with_leases(true))),
            ),
            (
                "current reply with leases and a version",
                ok(val(&State::new(Restriction::Ranges(
                    crate::parse_wire_ranges(&["192.0.2.0/24", "203.0.113.7/32"]).unwrap(),
                ))
                .with_leases(vec![lease()], Some("W/\"etag-42\"".into())))),
            ),
            (
                "check reply",
                ok(val(&Checked {
                    violations: vec![
                        crate::Violation::at("10.0.0.0/8", "private ranges are not accepted"),
                        crate::Violation::new("too many ranges"),
                    ],
                })),
            ),
            (
                "preflight reply",
                ok(val(&Checked {
                    violations: vec![crate::Violation::new(
                        "the nodes' outbound IP 20.1.2.3 would lose the API server",
                    )],
                })),
            ),
            (
                "current reply, restricted",
                ok(val(&State::new(Restriction::Ranges(
                    crate::parse_wire_ranges(&["192.0.2.0/24"]).unwrap(),
                ))
                .with_detail("acl", "#1 (/etc/haproxy/allow.acl)")
                .with_warning("the ACL file and the live ACL differ"))),
            ),
            (
                "current reply, unrestricted",
                ok(val(&State::new(Restriction::Unrestricted))),
            ),
            ("apply reply, changed", ok(val(&Applied::changed()))),
            ("apply reply, unchanged", ok(val(&Applied::unchanged()))),
            (
                "apply or disable reply, pending",
                ok(val(
                    &Applied::pending().with_note("operation op-123 runs in the background")
                )),
            ),
            (
                "progress (before a reply)",
                serde_json::to_value(Reply::<()>::Progress("waiting for the operation".into()))
                    .unwrap(),
            ),
            (
                "error: not found",
                err(ProviderError::NotFound("no listener `api`".into())),
            ),
            (
                "error: conflict",
                err(ProviderError::Conflict("ACL version moved".into())),
            ),
            (
                "error: throttled",
                err(ProviderError::Throttled {
                    message: "rate exceeded".into(),
                    retry_after: Some(Duration::from_millis(2000)),
                }),
            ),
            (
                "error: invalid",
                err(ProviderError::Invalid("bad pattern".into())),
            ),
            (
                "error: auth",
                err(ProviderError::Auth("socket permission denied".into())),
            ),
            (
                "error: transient",
                err(ProviderError::Transient("connection reset".into())),
            ),
            (
                "error: config",
                err(ProviderError::Config("`socket` is required".into())),
            ),
            (
                "error: other",
                err(ProviderError::Other("unexpected answer".into())),
            ),
            (
                "error: unsupported (an operation the plugin does not know)",
                err(ProviderError::Unknown {
                    kind: UNSUPPORTED.into(),
                    message: "this plugin does not know the operation".into(),
                }),
            ),
        ]
    }

    mod erased {
        pub trait Ser {
            fn value(&self) -> serde_json::Value;
        }
        impl<T: serde::Serialize> Ser for T {
            fn value(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap()
            }
        }
    }

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/protocol-v1.jsonl");

    fn golden_text() -> String {
        let mut text = String::from(
            "# Every message of the rangekeeper plugin protocol v1, byte for byte (one JSON\n\
             # document per line; see docs/plugin-protocol.md). Generated by\n\
             # `UPDATE_GOLDEN=1 cargo test -p rangekeeper-provider protocol`; a change here is\n\
             # a change to the wire.\n",
        );
        for (name, msg) in every_message() {
            text.push_str(&format!(
                "# {name}\n{}\n",
                serde_json::to_string(&msg).unwrap()
            ));
        }
        text
    }

    #[test]
    fn every_message_matches_its_golden_bytes() {
        let want = golden_text();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &want).unwrap();
        }
        let have = std::fs::read_to_string(GOLDEN).unwrap();
        assert_eq!(
            have, want,
            "the wire changed; if on purpose, run with UPDATE_GOLDEN=1 and review the diff"
        );
    }

    /// The JSON Schema in docs/ describes every golden message and refuses broken ones
    /// (checked with Python's `jsonschema`, which CI installs).
    #[test]
    fn the_documented_json_schema_accepts_every_message_and_refuses_broken_ones() {
        let schema = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/plugin-protocol.schema.json"
        );
        let script = r##"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = 0
for line in open(sys.argv[2]):
    if not line.startswith("#") and not v.is_valid(json.loads(line)):
        print("refused:", line.strip()); bad += 1
for line in sys.argv[3:]:
    if v.is_valid(json.loads(line)):
        print("accepted:", line); bad += 1
sys.exit(1 if bad else 0)
"##;
        let has = std::process::Command::new("python3")
            .args(["-c", "import jsonschema"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has {
            assert!(
                std::env::var("CI").is_err(),
                "python3 with jsonschema is required in CI"
            );
            eprintln!("SKIP: python3 with jsonschema not found");
            return;
        }
        let out = std::process::Command::new("python3")
            .args(["-c", script, schema, GOLDEN])
            .args([
                r#"{"v":1,"kind":"apply","target":{"name":"x","baseDir":"/"}}"#,
                r#"{"Ok":{"restriction":{"kind":"ranges","ranges":[]}}}"#,
                r#"{"Err":{"message":"no kind"}}"#,
                r#"{"progress":1}"#,
                r#"{"v":"1"}"#,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn every_golden_message_reads_back_as_what_it_was() {
        let text = std::fs::read_to_string(GOLDEN).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), every_message().len());
        for line in lines {
            let ok = serde_json::from_str::<Hello>(line).is_ok()
                || serde_json::from_str::<Request>(line).is_ok_and(|r| {
                    serde_json::to_string(&r).unwrap() == line && r.op != Operation::Unknown
                })
                || serde_json::from_str::<Reply<serde_json::Value>>(line)
                    .is_ok_and(|r| serde_json::to_string(&r).unwrap() == line);
            assert!(ok, "does not read back: {line}");
        }
    }

    #[test]
    fn the_highest_common_version_wins_and_a_mismatch_names_both_sides() {
        assert_eq!(negotiate(&[1, 2, 3], &[2, 3, 9]), Ok(3));
        assert_eq!(negotiate(&[1], &[1]), Ok(1));
        let err = negotiate(&[1], &[2, 3]).unwrap_err();
        assert!(err.contains("plugin speaks v2, v3"), "{err}");
        assert!(err.contains("rangekeeper speaks v1"), "{err}");
        assert!(negotiate(&[1], &[]).unwrap_err().contains("speaks none"));
    }

    #[test]
    fn an_unknown_operation_reads_as_unknown() {
        let r: Request = serde_json::from_str(
            r#"{"v":1,"kind":"rotate","ttl":5,"target":{"name":"t","baseDir":"/"}}"#,
        )
        .unwrap();
        assert_eq!(r.op, Operation::Unknown);
        assert_eq!(r.target.unwrap().name, "t");
    }

    #[test]
    fn replies_read_progress_ok_and_err() {
        let p: Reply<Checked> = serde_json::from_str(r#"{"progress":"polling"}"#).unwrap();
        assert_eq!(p, Reply::Progress("polling".into()));
        let e: Reply<Checked> =
            serde_json::from_str(r#"{"Err":{"kind":"unsupported","message":"no"}}"#).unwrap();
        assert!(
            matches!(e, Reply::Err(ProviderError::Unknown { ref kind, .. }) if kind == UNSUPPORTED)
        );
    }
}
