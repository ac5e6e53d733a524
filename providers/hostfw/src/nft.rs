//! The nftables backend: one `inet` table of our own holding two slots of sets (`ports_N`,
//! `allow4_N`, `allow6_N`, `lease4_N`, `lease6_N` for N = 0, 1), a `version` set, and an
//! input-hook chain whose rules name the live slot. A change fills the other slot and points
//! the rules at it, in one JSON `nft -f` transaction checked first with `nft -c`; `current`
//! reads the table back with `nft -j` and compares it with exactly what we would write.
//!
//! Why two slots: nft applies a transaction atomically for packets that arrive after it
//! commits, but a packet being evaluated while it commits can still be on the old rule while
//! set elements deleted by the transaction are already inactive. Deleting and re-adding the
//! live elements (or recreating the table) therefore refused an allowed source about once per
//! 200 changes under load; changing elements in place is atomic but nft's userspace takes
//! seconds to delete hundreds of elements from a large interval set. Filling the idle slot
//! never touches what the old rule looks at, and costs the same for 10 or 10,000 prefixes.
//!
//! Leases: the `lease4_N` / `lease6_N` sets have `flags timeout`; each lease is one element
//! (its address) whose kernel `timeout` is the time left until the lease expires and whose
//! `comment` is its record (`<id> <expires> <requestedBy>[ <reason>]`, the tag encoding of
//! [`rangekeeper_provider::lease`] with the id in place of the address). The kernel removes
//! the element, record and all, when the lease expires, even if rangekeeper never runs
//! again. Declared ranges live only in the `allow` sets, which have no timeout: an address
//! that is both declared and leased is in both, and stays admitted after the lease expires.
//! A rule refuses a new connection only when its source is in neither.
//!
//! The compare-and-swap of a lease change: `version` (a digest of the table as read, times
//! left excluded) is compared with a fresh read under the provider's lock, and the
//! transaction itself deletes the `version` set's one element (a random nonce) as read and
//! adds a new one; a writer that got in between changed the nonce, so the delete fails, and
//! nft aborts the whole transaction (`create table` plays that part for a table read as
//! absent). The kernel thus refuses a stale write even from another process or host tool
//! that honours the nonce (every rangekeeper does), and not only from this process.
//!
//! JSON is used in both directions so table names never collide with nft keywords and the
//! read-back is structured rather than scraped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::lease::{Lease, TAG_PREFIX};
use rangekeeper_provider::{ProviderError, RangeSet};
use serde_json::{Value, json};

use crate::Live;
use crate::command::{Runner, command_failed};
use crate::config::{Action, Config, Ipv6Mode};
use crate::ranges::range_to_prefixes;

/// The base chain's priority: `filter - 1`, so we see packets before the usual filter chains.
pub const PRIORITY: i64 = -1;
/// The base chain's name inside our table.
pub const CHAIN: &str = "input";
/// The set holding the one nonce a write replaces (the kernel-side compare-and-swap).
pub const VERSION_SET: &str = "version";
/// Most bytes of an element comment: nft refuses longer ones in its own syntax (so a saved
/// `nft list ruleset` would not load again), and the kernel's user data holds little more.
pub const MAX_COMMENT_BYTES: usize = 128;
/// The default timeout of the lease sets, in seconds: an element added without one (by hand)
/// is gone at once rather than kept for ever.
pub const LEASE_SET_TIMEOUT: u64 = 1;

/// The kinds of set of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ports,
    Allow { v6: bool },
    Lease { v6: bool },
}

/// The sets of one slot: (name prefix, nft type, flags, kind).
const SLOT_SETS: [(&str, &str, &[&str], Kind); 5] = [
    ("ports", "inet_service", &[], Kind::Ports),
    (
        "allow4",
        "ipv4_addr",
        &["interval"],
        Kind::Allow { v6: false },
    ),
    (
        "allow6",
        "ipv6_addr",
        &["interval"],
        Kind::Allow { v6: true },
    ),
    (
        "lease4",
        "ipv4_addr",
        &["timeout"],
        Kind::Lease { v6: false },
    ),
    (
        "lease6",
        "ipv6_addr",
        &["timeout"],
        Kind::Lease { v6: true },
    ),
];

fn set_name(base: &str, slot: usize) -> String {
    format!("{base}_{slot}")
}

fn table_obj(cfg: &Config) -> Value {
    json!({"family": "inet", "name": cfg.table.as_str()})
}

fn element(net: &IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        Value::String(net.network().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

/// The comment that stores `lease` on its element: `<id> <expires> <requestedBy>[ <reason>]`
/// (the tag value of [`Lease::tag_value`] with the id in place of the address, which is the
/// element itself), or why it does not fit.
pub fn lease_comment(lease: &Lease) -> Result<String, String> {
    let value = lease.tag_value();
    let rest = value.split_once(' ').map_or("", |(_, rest)| rest);
    let comment = format!("{} {rest}", lease.id);
    if comment.len() > MAX_COMMENT_BYTES {
        return Err(format!(
            "lease {} does not fit the hostfw lease store: its record `{comment}` has {} bytes, and an nftables set element's comment holds at most {MAX_COMMENT_BYTES}; shorten the reason (or the requester)",
            lease.id,
            comment.len()
        ));
    }
    Ok(comment)
}

/// Read a lease record written by [`lease_comment`] on the element for `addr`.
pub fn lease_from_comment(addr: IpAddr, comment: &str) -> Result<Lease, String> {
    let bad = |why: String| {
        format!(
            "element {addr} has the comment `{}`, which is not a lease record rangekeeper writes ({why})",
            comment.escape_debug()
        )
    };
    let (id, rest) = comment
        .split_once(' ')
        .ok_or_else(|| bad("expected `<id> <expires> <requestedBy>[ <reason>]`".into()))?;
    match Lease::from_tag(&format!("{TAG_PREFIX}{id}"), &format!("{addr} {rest}")) {
        Some(Ok(lease)) => Ok(lease),
        Some(Err(e)) => Err(bad(e)),
        None => Err(bad("no id".into())),
    }
}

/// One lease as an element is written: its address, record and whole seconds left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseElem {
    pub addr: IpAddr,
    pub comment: String,
    pub timeout: u64,
}

impl LeaseElem {
    /// The element for `lease` at `now` (unix seconds with a fraction): `None` when less than
    /// a whole second is left (it is expired by the time it would be written). The timeout
    /// rounds down, so the kernel never admits the address past the lease's expiry.
    pub fn new(lease: &Lease, now: f64) -> Result<Option<LeaseElem>, String> {
        let comment = lease_comment(lease)?;
        #[allow(clippy::cast_precision_loss)]
        let left = lease.expires.unix() as f64 - now;
        if left < 1.0 {
            return Ok(None);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let timeout = left.floor() as u64;
        Ok(Some(LeaseElem {
            addr: lease.address,
            comment,
            timeout,
        }))
    }

    fn value(&self) -> Value {
        json!({"elem": {"val": self.addr.to_string(), "timeout": self.timeout, "comment": self.comment}})
    }
}

/// Now, in unix seconds with a fraction.
pub fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a write makes the table hold.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub ports: BTreeSet<u16>,
    /// The ranges admitted for good (the declared ones).
    pub permanent: RangeSet,
    /// The leases, each admitted until the kernel times its element out.
    pub leases: Vec<LeaseElem>,
}

/// `add set` commands for one slot holding `content`.
fn slot_sets(cfg: &Config, slot: usize, content: &Content) -> Vec<Value> {
    let prefixes = content.permanent.prefixes();
    let mut out = Vec::new();
    for (base, ty, flags, kind) in SLOT_SETS {
        let mut set = json!({
            "family": "inet", "table": cfg.table.as_str(), "name": set_name(base, slot), "type": ty,
        });
        if !flags.is_empty() {
            set["flags"] = json!(flags);
        }
        let elems: Vec<Value> = match kind {
            Kind::Ports => content.ports.iter().map(|p| json!(p)).collect(),
            Kind::Allow { v6 } => prefixes
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                .map(element)
                .collect(),
            Kind::Lease { v6 } => {
                set["timeout"] = json!(LEASE_SET_TIMEOUT);
                content
                    .leases
                    .iter()
                    .filter(|l| l.addr.is_ipv6() == v6)
                    .map(LeaseElem::value)
                    .collect()
            }
        };
        if !elems.is_empty() {
            set["elem"] = Value::Array(elems);
        }
        out.push(json!({"add": {"set": set}}));
    }
    out
}

fn verdict(action: Action) -> Value {
    match action {
        Action::Reject => json!({"reject": {"type": "tcp reset"}}),
        Action::Drop => json!({"drop": null}),
    }
}

/// The expressions of the rules of our chain, in order, as we write them for `slot`: a new
/// connection to a restricted port is refused when its source is neither allowed nor leased.
/// With `ipv6: open` the IPv6 rule is left out (the IPv6 sets still hold the list).
fn expected_rules(action: Action, ipv6: Ipv6Mode, slot: usize) -> Vec<Value> {
    let lo = json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
        {"accept": null}
    ]);
    let ports = format!("@{}", set_name("ports", slot));
    let restrict = |proto: &str, allow: String, lease: String| {
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": ports}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": format!("@{allow}")}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": format!("@{lease}")}},
            verdict(action)
        ])
    };
    let mut rules = vec![
        lo,
        restrict("ip", set_name("allow4", slot), set_name("lease4", slot)),
    ];
    if ipv6 == Ipv6Mode::Restrict {
        rules.push(restrict(
            "ip6",
            set_name("allow6", slot),
            set_name("lease6", slot),
        ));
    }
    rules
}

fn rule_cmds(cfg: &Config, slot: usize) -> Vec<Value> {
    expected_rules(cfg.action, cfg.ipv6, slot)
        .into_iter()
        .map(|expr| {
            json!({"add": {"rule": {
                "family": "inet", "table": cfg.table.as_str(), "chain": CHAIN, "expr": expr,
            }}})
        })
        .collect()
}

/// A fresh nonce for the `version` set, different from `old`.
pub fn new_nonce(old: Option<u32>) -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        #[allow(clippy::cast_possible_truncation)]
        let n = h.finish() as u32;
        if Some(n) != old {
            return n;
        }
    }
}

fn version_set(cfg: &Config, nonce: u32) -> Value {
    json!({"add": {"set": {
        "family": "inet", "table": cfg.table.as_str(), "name": VERSION_SET, "type": "mark",
        "elem": [nonce],
    }}})
}

/// The compare-and-swap of the nonce read: delete it (which fails, aborting the transaction,
/// when another writer replaced it since), add `new`.
fn nonce_swap(cfg: &Config, old: u32, new: u32) -> Vec<Value> {
    let set = |elem: u32| json!({"family": "inet", "table": cfg.table.as_str(), "name": VERSION_SET, "elem": [elem]});
    vec![
        json!({"delete": {"element": set(old)}}),
        json!({"add": {"element": set(new)}}),
    ]
}

/// The whole table, (re)created in one transaction with slot 0 live and slot 1 empty. A table
/// read as absent is made with `create` (which fails if another writer made it since); one
/// that is present but not ours in structure is replaced (`add`, `delete`, `add`), after
/// taking its nonce when it has one.
pub fn transaction(cfg: &Config, before: &Table, content: &Content, nonce: u32) -> Value {
    let mut cmds = Vec::new();
    if before.live.present {
        if let Some(old) = before.nonce {
            cmds.extend(nonce_swap(cfg, old, nonce));
        }
        cmds.push(json!({"add": {"table": table_obj(cfg)}}));
        cmds.push(json!({"delete": {"table": table_obj(cfg)}}));
        cmds.push(json!({"add": {"table": table_obj(cfg)}}));
    } else {
        cmds.push(json!({"create": {"table": table_obj(cfg)}}));
    }
    cmds.extend(slot_sets(cfg, 0, content));
    cmds.extend(slot_sets(
        cfg,
        1,
        &Content {
            ports: BTreeSet::new(),
            ..Content::default()
        },
    ));
    cmds.push(version_set(cfg, nonce));
    cmds.push(json!({"add": {"chain": {
        "family": "inet", "table": cfg.table.as_str(), "name": CHAIN,
        "type": "filter", "hook": "input", "prio": PRIORITY, "policy": "accept",
    }}}));
    cmds.extend(rule_cmds(cfg, 0));
    json!({"nftables": cmds})
}

/// Switch an intact table to `slot`: swap the nonce, replace that (idle) slot's sets with the
/// new content, then replace the chain's rules with ones naming it. One transaction.
pub fn swap(cfg: &Config, slot: usize, old_nonce: u32, nonce: u32, content: &Content) -> Value {
    let t = cfg.table.as_str();
    let mut cmds = nonce_swap(cfg, old_nonce, nonce);
    for (base, _, _, _) in SLOT_SETS {
        cmds.push(json!({"delete": {"set": {"family": "inet", "table": t, "name": set_name(base, slot)}}}));
    }
    cmds.extend(slot_sets(cfg, slot, content));
    cmds.push(json!({"flush": {"chain": {"family": "inet", "table": t, "name": CHAIN}}}));
    cmds.extend(rule_cmds(cfg, slot));
    json!({"nftables": cmds})
}

/// Remove our table and nothing else (idempotent: `add` first so `delete` always finds it).
pub fn removal(cfg: &Config) -> Value {
    json!({"nftables": [
        {"add": {"table": table_obj(cfg)}},
        {"delete": {"table": table_obj(cfg)}},
    ]})
}

fn listing(cfg: &Config) -> Value {
    json!({"nftables": [{"list": {"table": table_obj(cfg)}}]})
}

/// Normalize version-dependent spellings: `ct state` matches may be written with `in` or `==`
/// and with a one-element list.
fn normalize_expr(mut expr: Value) -> Value {
    if let Some(list) = expr.as_array_mut() {
        for stmt in list.iter_mut() {
            if let Some(m) = stmt.get_mut("match").and_then(Value::as_object_mut) {
                let is_ct_state = m.get("left") == Some(&json!({"ct": {"key": "state"}}));
                if is_ct_state {
                    m.insert("op".into(), json!("=="));
                    if let Some(Value::Array(items)) = m.get("right")
                        && items.len() == 1
                    {
                        let only = items[0].clone();
                        m.insert("right".into(), only);
                    }
                }
            }
        }
    }
    expr
}

/// One element of an address set as prefixes.
fn parse_addr_elem(v: &Value) -> Option<Vec<IpNet>> {
    match v {
        Value::String(s) => {
            let addr: IpAddr = s.parse().ok()?;
            Some(vec![IpNet::from(addr)])
        }
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
                let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
                Some(vec![IpNet::new(addr, len).ok()?.trunc()])
            } else if let Some(Value::Array(r)) = o.get("range") {
                let (a, b) = (
                    r.first()?.as_str()?.parse().ok()?,
                    r.get(1)?.as_str()?.parse().ok()?,
                );
                range_to_prefixes(a, b)
            } else if let Some(e) = o.get("elem") {
                parse_addr_elem(e.get("val")?)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// One element of a lease set: its address and comment.
fn parse_lease_elem(v: &Value) -> Option<(IpAddr, Option<String>)> {
    match v {
        Value::String(s) => Some((s.parse().ok()?, None)),
        Value::Object(o) => {
            let e = o.get("elem")?;
            let addr = e.get("val")?.as_str()?.parse().ok()?;
            let comment = e.get("comment").and_then(Value::as_str).map(str::to_owned);
            Some((addr, comment))
        }
        _ => None,
    }
}

fn parse_port_elem(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => u16::try_from(n.as_u64()?).ok(),
        Value::Object(o) => parse_port_elem(o.get("elem")?.get("val")?),
        _ => None,
    }
}

fn elems(set: &Value) -> &[Value] {
    set.get("elem")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn flags(set: &Value) -> Vec<&str> {
    match set.get("flags") {
        Some(Value::Array(f)) => f.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// The content of one slot's sets.
#[derive(Debug, Clone, Default)]
struct SlotContent {
    /// Which of the sets exist with the right type and flags.
    sound: [bool; SLOT_SETS.len()],
    ports: BTreeSet<u16>,
    nets: Vec<IpNet>,
    /// Lease elements: address, comment, and the set they are in.
    leases: Vec<(IpAddr, Option<String>, String)>,
    /// Elements that could not be read as ports or addresses of the set's family.
    odd: Vec<String>,
}

/// Our table as read back.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// What `current` reports (`allow`: the permanent ranges, leases apart).
    pub live: Live,
    /// The lease records of the live slot's lease sets.
    pub leases: Vec<Lease>,
    /// The comment of each lease element of the live slot, by address.
    pub lease_comments: BTreeMap<IpAddr, String>,
    /// The slot the rules name (when they are exactly ours).
    pub live_slot: Option<usize>,
    /// The slot a swap may fill: the table, its sets and its chain are as we write them
    /// and no rule names that slot's sets. `None`: recreate the whole table.
    pub swap_to: Option<usize>,
    /// The `version` set's one element, when it has exactly one.
    pub nonce: Option<u32>,
    /// A digest of the table as read (`absent` when there is none), times left excluded.
    pub version: String,
}

impl Table {
    /// Everything the table admits: the permanent ranges and the leased addresses.
    pub fn admitted(&self) -> RangeSet {
        self.live
            .allow
            .union(&RangeSet::from_nets(self.leases.iter().map(Lease::net)))
    }
}

/// The version of a table listing: SHA-256 of the JSON with every `expires` (the time an
/// element has left, which changes with every read) and the metainfo left out.
fn digest(doc: &Value) -> String {
    use sha2::Digest as _;
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| k.as_str() != "expires" && k.as_str() != "metainfo")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    let d = sha2::Sha256::digest(strip(doc).to_string().as_bytes());
    d.iter()
        .take(16)
        .fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The version of a table that does not exist.
pub const ABSENT: &str = "absent";

/// Compare `nft -j list table inet <table>` output with what we would write for `cfg`.
pub fn inspect(listing: &str, cfg: &Config) -> Result<Table, ProviderError> {
    let doc: Value = serde_json::from_str(listing)
        .map_err(|e| ProviderError::Other(format!("cannot read `nft -j` output: {e}")))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::Other("`nft -j` output has no `nftables` array".into()))?;

    let mut live = Live::default();
    let mut slots = [SlotContent::default(), SlotContent::default()];
    let mut chain_ok = false;
    let mut seen_chain = false;
    let mut rules: Vec<Value> = Vec::new();
    let mut structure_ok = true;
    let mut nonce = None;
    let mut seen_version = false;

    for item in items {
        let Some((kind, obj)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "metainfo" => {}
            "table" => {
                if obj.get("name").and_then(Value::as_str) == Some(cfg.table.as_str()) {
                    live.present = true;
                }
            }
            "set" => {
                let name = obj.get("name").and_then(Value::as_str).unwrap_or("?");
                let ty = obj.get("type").and_then(Value::as_str).unwrap_or("?");
                if name == VERSION_SET {
                    seen_version = true;
                    let found: Vec<u32> = elems(obj)
                        .iter()
                        .filter_map(|e| u32::try_from(e.as_u64()?).ok())
                        .collect();
                    if ty != "mark" || !flags(obj).is_empty() || found.len() != 1 {
                        live.problem(format!(
                            "set `{VERSION_SET}` is not one `mark` element (found type {ty}, {} element(s))",
                            elems(obj).len()
                        ));
                        structure_ok = false;
                    } else {
                        nonce = found.first().copied();
                    }
                    continue;
                }
                let found = (0..2).find_map(|slot| {
                    SLOT_SETS
                        .iter()
                        .position(|(base, _, _, _)| set_name(base, slot) == name)
                        .map(|i| (slot, i))
                });
                let Some((slot, i)) = found else {
                    live.problem(format!("unexpected set `{name}`"));
                    structure_ok = false;
                    continue;
                };
                let (_, want_ty, want_flags, kind) = SLOT_SETS[i];
                let timeout_ok = match kind {
                    Kind::Lease { .. } => {
                        obj.get("timeout").and_then(Value::as_u64) == Some(LEASE_SET_TIMEOUT)
                    }
                    _ => obj.get("timeout").is_none(),
                };
                if ty != want_ty || flags(obj) != want_flags || !timeout_ok {
                    live.problem(format!(
                        "set `{name}` has type {ty} / flags {:?} / timeout {} (want {want_ty} / {want_flags:?}{})",
                        flags(obj),
                        obj.get("timeout").unwrap_or(&Value::Null),
                        if matches!(kind, Kind::Lease { .. }) {
                            format!(" / timeout {LEASE_SET_TIMEOUT}")
                        } else {
                            String::new()
                        }
                    ));
                    structure_ok = false;
                    continue;
                }
                let content = &mut slots[slot];
                content.sound[i] = true;
                for e in elems(obj) {
                    match kind {
                        Kind::Ports => match parse_port_elem(e) {
                            Some(p) => {
                                content.ports.insert(p);
                            }
                            None => content.odd.push(format!("set `{name}` holds {e}")),
                        },
                        Kind::Allow { v6 } => match parse_addr_elem(e) {
                            Some(list) if list.iter().all(|n| matches!(n, IpNet::V6(_)) == v6) => {
                                content.nets.extend(list);
                            }
                            _ => content.odd.push(format!("set `{name}` holds {e}")),
                        },
                        Kind::Lease { v6 } => match parse_lease_elem(e) {
                            Some((addr, comment)) if addr.is_ipv6() == v6 => {
                                content.leases.push((addr, comment, name.to_owned()));
                            }
                            _ => content.odd.push(format!("set `{name}` holds {e}")),
                        },
                    }
                }
            }
            "chain" => {
                let chain = obj.get("name").and_then(Value::as_str).unwrap_or("?");
                if chain != CHAIN {
                    live.problem(format!("unexpected chain `{chain}`"));
                    structure_ok = false;
                    continue;
                }
                seen_chain = true;
                chain_ok = obj.get("type") == Some(&json!("filter"))
                    && obj.get("hook") == Some(&json!("input"))
                    && obj.get("prio").and_then(Value::as_i64) == Some(PRIORITY)
                    && obj.get("policy") == Some(&json!("accept"));
                if !chain_ok {
                    live.problem(format!(
                        "chain `{CHAIN}` is not `type filter hook input priority filter - 1; policy accept` (found {obj})"
                    ));
                }
            }
            "rule" => {
                if obj.get("chain").and_then(Value::as_str) == Some(CHAIN) {
                    rules.push(normalize_expr(
                        obj.get("expr").cloned().unwrap_or(Value::Null),
                    ));
                }
            }
            other => {
                live.problem(format!("unexpected {other} object in the table"));
                structure_ok = false;
            }
        }
    }

    if !live.present {
        return Ok(Table {
            version: ABSENT.to_owned(),
            ..Table::default()
        });
    }
    for (slot, content) in slots.iter().enumerate() {
        for (i, (base, _, _, _)) in SLOT_SETS.iter().enumerate() {
            if !content.sound[i] {
                structure_ok = false;
                if !live
                    .problems
                    .iter()
                    .any(|p| p.contains(&set_name(base, slot)))
                {
                    live.problem(format!(
                        "set `{}` is missing{}",
                        set_name(base, slot),
                        if base.starts_with("lease") {
                            " (a table written by a rangekeeper without leases)"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
    }
    if !seen_version {
        structure_ok = false;
        live.problem(format!("set `{VERSION_SET}` is missing"));
    }
    if !seen_chain {
        live.problem(format!("chain `{CHAIN}` is missing"));
    }

    // Which slot the rules name: exactly our rules for one slot, or nothing usable.
    let live_slot = (0..2).find(|&slot| {
        let want: Vec<Value> = expected_rules(cfg.action, cfg.ipv6, slot)
            .into_iter()
            .map(normalize_expr)
            .collect();
        rules == want
    });
    let mut table = Table::default();
    match live_slot {
        Some(slot) => {
            let content = &slots[slot];
            for odd in &content.odd {
                live.problem(odd.clone());
            }
            if content.ports != cfg.ports {
                live.problem(format!(
                    "set `{}` holds {} but the target restricts {}",
                    set_name("ports", slot),
                    crate::config::join_ports(&content.ports),
                    cfg.ports_list()
                ));
            }
            live.allow = RangeSet::from_nets(content.nets.iter().copied());
            for (addr, comment, set) in &content.leases {
                let read = match comment {
                    Some(c) => lease_from_comment(*addr, c),
                    None => Err(format!("element {addr} has no lease record (comment)")),
                };
                match read {
                    Ok(lease) => {
                        table.lease_comments.insert(*addr, comment.clone().unwrap_or_default());
                        table.leases.push(lease);
                    }
                    Err(e) => live.problem(format!("set `{set}`: {e}")),
                }
            }
        }
        None if seen_chain => live.problem(format!(
            "chain `{CHAIN}` holds {} rule(s) that differ from the {} rangekeeper writes (action {})",
            rules.len(),
            expected_rules(cfg.action, cfg.ipv6, 0).len(),
            cfg.action
        )),
        None => {}
    }

    // A swap may fill a slot no rule names (a packet in flight may be looking at the other).
    let named = |slot: usize| {
        rules.iter().any(|r| {
            let text = r.to_string();
            SLOT_SETS
                .iter()
                .any(|(base, _, _, _)| text.contains(&format!("\"@{}\"", set_name(base, slot))))
        })
    };
    if structure_ok && chain_ok && nonce.is_some() {
        table.swap_to = match (named(0), named(1)) {
            (true, false) => Some(1),
            (false, true) | (false, false) => Some(0),
            (true, true) => None,
        };
    }
    table.live = live;
    table.live_slot = live_slot;
    table.nonce = nonce;
    table.version = digest(&doc);
    Ok(table)
}

/// Read our table back.
pub async fn read(runner: &Runner, cfg: &Config) -> Result<Table, ProviderError> {
    let request = listing(cfg).to_string();
    let out = runner
        .run("nft", &["-j", "-f", "-"], Some(&request))
        .await?;
    if !out.success {
        if out.stderr.contains("No such file or directory") {
            return Ok(Table {
                version: ABSENT.to_owned(),
                ..Table::default()
            });
        }
        return Err(command_failed(
            &runner.display("nft", &["-j", "-f", "-"]),
            &out.stderr,
        ));
    }
    inspect(&out.stdout, cfg)
}

/// Check, then apply, the transaction that makes our table hold `content`, from the table
/// as read in `before`: a swap to the idle slot when the table is intact, else the whole
/// table recreated. Either takes the nonce read in `before` (or creates the table read as
/// absent), so a table changed by another writer since is a [`ProviderError::Conflict`].
pub async fn write(
    runner: &Runner,
    cfg: &Config,
    before: &Table,
    content: &Content,
) -> Result<(), ProviderError> {
    let nonce = new_nonce(before.nonce);
    let tx = match (before.live.present, before.swap_to, before.nonce) {
        (true, Some(slot), Some(old)) => swap(cfg, slot, old, nonce, content),
        _ => transaction(cfg, before, content, nonce),
    }
    .to_string();
    let raced = |msg: &str| {
        msg.contains("Device or resource busy")
            || msg.contains("No such file or directory")
            || msg.contains("File exists")
    };
    runner
        .run_ok("nft", &["-c", "-j", "-f", "-"], Some(&tx))
        .await
        .map_err(|e| match e {
            ProviderError::Other(msg) if raced(&msg) => busy(&msg),
            ProviderError::Other(msg) => {
                ProviderError::Invalid(format!("nft rejected the ruleset: {msg}"))
            }
            other => other,
        })?;
    runner
        .run_ok("nft", &["-j", "-f", "-"], Some(&tx))
        .await
        .map_err(|e| match e {
            ProviderError::Other(msg) if raced(&msg) => busy(&msg),
            other => other,
        })?;
    Ok(())
}

/// Another writer changed the table since it was read (its nonce, its idle slot, or its
/// existence): re-read and retry.
fn busy(msg: &str) -> ProviderError {
    ProviderError::Conflict(format!(
        "the table changed while rangekeeper was writing it (another writer?): {msg}"
    ))
}

/// Delete our table. Returns whether it existed.
pub async fn remove(runner: &Runner, cfg: &Config) -> Result<bool, ProviderError> {
    let existed = read(runner, cfg).await?.live.present;
    if existed {
        runner
            .run_ok("nft", &["-j", "-f", "-"], Some(&removal(cfg).to_string()))
            .await?;
    }
    Ok(existed)
}

/// Whether `nft` can be used here (installed, and the kernel answers).
pub async fn usable(runner: &Runner) -> Result<bool, ProviderError> {
    match runner.run("nft", &["-j", "list", "tables"], None).await {
        Ok(out) => Ok(out.success),
        Err(ProviderError::Auth(msg)) => Err(ProviderError::Auth(msg)),
        Err(ProviderError::NotFound(msg)) => Err(ProviderError::NotFound(msg)),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendChoice, TableName};
    use rangekeeper_provider::lease::{LeaseId, Timestamp};

    fn cfg(action: Action) -> Config {
        Config {
            target: "t".into(),
            ports: [6443, 10254].into_iter().collect(),
            backend: BackendChoice::Nftables,
            table: TableName::parse("rk").unwrap(),
            action,
            netns: None,
            iptables_variant: None,
            ipv6: Ipv6Mode::Restrict,
            kube_restrict_ip: None,
        }
    }

    /// What nft 1.0.6 prints for a table whose rules name slot 1, with a lease in each
    /// family (captured from a real kernel; one range element and one element with a
    /// comment in an allow set).
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "rk", "handle": 1}}, {"set": {"family": "inet", "name": "ports_0", "table": "rk", "type": "inet_service", "handle": 2, "elem": [22]}}, {"set": {"family": "inet", "name": "allow4_0", "table": "rk", "type": "ipv4_addr", "handle": 3, "flags": ["interval"], "elem": ["203.0.113.9"]}}, {"set": {"family": "inet", "name": "allow6_0", "table": "rk", "type": "ipv6_addr", "handle": 4, "flags": ["interval"]}}, {"set": {"family": "inet", "name": "lease4_0", "table": "rk", "type": "ipv4_addr", "handle": 5, "flags": ["timeout"], "timeout": 1}}, {"set": {"family": "inet", "name": "lease6_0", "table": "rk", "type": "ipv6_addr", "handle": 6, "flags": ["timeout"], "timeout": 1}}, {"set": {"family": "inet", "name": "ports_1", "table": "rk", "type": "inet_service", "handle": 7, "elem": [6443, 10254]}}, {"set": {"family": "inet", "name": "allow4_1", "table": "rk", "type": "ipv4_addr", "handle": 8, "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.0.2.7", {"range": ["198.51.100.1", "198.51.100.2"]}]}}, {"set": {"family": "inet", "name": "allow6_1", "table": "rk", "type": "ipv6_addr", "handle": 9, "flags": ["interval"], "elem": [{"prefix": {"addr": "2001:db8::", "len": 32}}, {"elem": {"val": "2001:db9::1", "comment": "x"}}]}}, {"set": {"family": "inet", "name": "lease4_1", "table": "rk", "type": "ipv4_addr", "handle": 10, "flags": ["timeout"], "timeout": 1, "elem": [{"elem": {"val": "192.0.2.50", "timeout": 600, "expires": 599, "comment": "abc123 2026-12-07T02:30:00Z alice@github:org/repo/actions/runs/1 deploy"}}]}}, {"set": {"family": "inet", "name": "lease6_1", "table": "rk", "type": "ipv6_addr", "handle": 11, "flags": ["timeout"], "timeout": 1, "elem": [{"elem": {"val": "2001:db8:1::7", "timeout": 900, "expires": 899, "comment": "def456 2026-12-07T02:35:00Z bob@host"}}]}}, {"set": {"family": "inet", "name": "version", "table": "rk", "type": "mark", "handle": 12, "elem": [305419896]}}, {"chain": {"family": "inet", "table": "rk", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": -1, "policy": "accept"}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 13, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 14, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports_1"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@allow4_1"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@lease4_1"}}, {"reject": {"type": "tcp reset"}}]}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 15, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports_1"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@allow6_1"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@lease6_1"}}, {"reject": {"type": "tcp reset"}}]}}]}"#;

    fn nets(list: &[&str]) -> RangeSet {
        RangeSet::from_nets(list.iter().map(|s| s.parse::<IpNet>().unwrap()))
    }

    fn doc_without(pred: &dyn Fn(&Value) -> bool) -> Value {
        let doc: Value = serde_json::from_str(LISTING).unwrap();
        let kept: Vec<Value> = doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| !pred(i))
            .cloned()
            .collect();
        json!({"nftables": kept})
    }

    fn without(pred: &dyn Fn(&Value) -> bool) -> String {
        doc_without(pred).to_string()
    }

    fn lease(id: &str, addr: &str, expires: u64, by: &str, reason: Option<&str>) -> Lease {
        Lease {
            id: LeaseId::parse(id).unwrap(),
            address: addr.parse().unwrap(),
            expires: Timestamp::from_unix(expires),
            requested_by: by.into(),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn reads_the_live_slot_its_leases_and_the_nonce() {
        let t = inspect(LISTING, &cfg(Action::Reject)).unwrap();
        assert!(t.live.present);
        assert!(t.live.problems.is_empty(), "{:?}", t.live.problems);
        assert_eq!(t.live_slot, Some(1));
        assert_eq!(t.swap_to, Some(0));
        assert_eq!(t.nonce, Some(305_419_896));
        assert_eq!(
            t.live.allow,
            nets(&[
                "10.0.0.0/8",
                "192.0.2.7/32",
                "198.51.100.1/32",
                "198.51.100.2/32",
                "2001:db8::/32",
                "2001:db9::1/128"
            ])
        );
        assert_eq!(t.leases.len(), 2);
        let l4 = &t.leases[0];
        assert_eq!(l4.id.as_str(), "abc123");
        assert_eq!(l4.address.to_string(), "192.0.2.50");
        assert_eq!(l4.expires.to_string(), "2026-12-07T02:30:00Z");
        assert_eq!(l4.requested_by, "alice@github:org/repo/actions/runs/1");
        assert_eq!(l4.reason.as_deref(), Some("deploy"));
        assert_eq!(t.leases[1].address.to_string(), "2001:db8:1::7");
        assert!(t.admitted().contains_net(&"192.0.2.50/32".parse().unwrap()));
        assert!(!t.live.allow.contains_net(&"192.0.2.50/32".parse().unwrap()));
    }

    #[test]
    fn the_version_ignores_time_left_and_changes_with_content() {
        let c = cfg(Action::Reject);
        let v = inspect(LISTING, &c).unwrap().version;
        assert_eq!(v.len(), 32);
        let later = LISTING.replace("\"expires\": 599", "\"expires\": 12");
        assert_eq!(inspect(&later, &c).unwrap().version, v);
        let other_nonce = LISTING.replace("305419896", "7");
        assert_ne!(inspect(&other_nonce, &c).unwrap().version, v);
        let lease_gone = without(&|i| i["set"]["name"] == json!("lease4_1"));
        assert_ne!(inspect(&lease_gone, &c).unwrap().version, v);
        let absent = inspect(r#"{"nftables": [{"metainfo": {}}]}"#, &c).unwrap();
        assert_eq!(absent.version, ABSENT);
    }

    #[test]
    fn a_lease_element_without_a_readable_record_is_a_problem() {
        let c = cfg(Action::Reject);
        let t = inspect(&LISTING.replace("abc123 2026", "abc123 20x6"), &c).unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("lease4_1")
                && p.contains("192.0.2.50")
                && p.contains("not a lease record")),
            "{:?}",
            t.live.problems
        );
        assert_eq!(t.leases.len(), 1);
        // A hand-added element without a comment.
        let bare = LISTING.replace(
            r#"{"elem": {"val": "192.0.2.50", "timeout": 600, "expires": 599, "comment": "abc123 2026-12-07T02:30:00Z alice@github:org/repo/actions/runs/1 deploy"}}"#,
            r#""192.0.2.51""#,
        );
        let t = inspect(&bare, &c).unwrap();
        assert!(
            t.live
                .problems
                .iter()
                .any(|p| p.contains("no lease record")),
            "{:?}",
            t.live.problems
        );
    }

    #[test]
    fn lease_records_round_trip_and_long_ones_are_refused() {
        let l = lease(
            "k3x9",
            "203.0.113.7",
            1_795_353_605,
            "alice@github:org/repo/actions/runs/123",
            Some("deploy (prod)"),
        );
        let c = lease_comment(&l).unwrap();
        assert_eq!(
            c,
            "k3x9 2026-11-22T13:20:05Z alice@github:org/repo/actions/runs/123 deploy _prod_"
        );
        let back = lease_from_comment(l.address, &c).unwrap();
        assert_eq!(
            (back.id, back.address, back.expires),
            (l.id.clone(), l.address, l.expires)
        );
        assert_eq!(back.requested_by, l.requested_by);
        assert_eq!(back.reason.as_deref(), Some("deploy _prod_"));

        let long = lease(
            "k3x9",
            "2001:db8::1",
            1_795_353_605,
            "alice@github:org/repo/actions/runs/123",
            Some(&"x".repeat(100)),
        );
        let e = lease_comment(&long).unwrap_err();
        assert!(e.contains("k3x9") && e.contains("at most 128"), "{e}");
        assert!(lease_from_comment(l.address, "justone").is_err());
    }

    #[test]
    fn lease_elements_time_out_no_later_than_the_lease() {
        let l = lease("a1", "192.0.2.9", 1000, "me@host", None);
        let e = LeaseElem::new(&l, 900.4).unwrap().unwrap();
        assert_eq!(e.timeout, 99);
        assert_eq!(e.comment, "a1 1970-01-01T00:16:40Z me@host");
        assert_eq!(LeaseElem::new(&l, 999.2).unwrap(), None);
        assert_eq!(LeaseElem::new(&l, 1000.0).unwrap(), None);
    }

    #[test]
    fn other_action_or_ports_is_a_problem_but_still_swappable() {
        let t = inspect(LISTING, &cfg(Action::Drop)).unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("differ")),
            "{:?}",
            t.live.problems
        );
        assert_eq!(t.swap_to, Some(0));
        let mut c = cfg(Action::Reject);
        c.ports = [6443].into_iter().collect();
        let t = inspect(LISTING, &c).unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("ports_1")),
            "{:?}",
            t.live.problems
        );
        assert_eq!(t.swap_to, Some(0));
    }

    #[test]
    fn missing_rules_chain_sets_or_nonce_are_problems() {
        // A rule deleted, sets intact: a problem, and no rule names slot 0 any more... but
        // the remaining rule still names slot 1, so the swap goes to slot 0.
        let t = inspect(
            &without(&|i| i["rule"]["handle"] == json!(14)),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(t.live.present && !t.live.problems.is_empty());
        assert_eq!(t.swap_to, Some(0));
        // The chain flushed: nothing names either slot.
        let t = inspect(&without(&|i| i.get("rule").is_some()), &cfg(Action::Reject)).unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("differ")),
            "{:?}",
            t.live.problems
        );
        assert_eq!(t.swap_to, Some(0));
        // The chain deleted: recreate.
        let t = inspect(
            &without(&|i| i.get("rule").is_some() || i.get("chain").is_some()),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("missing")),
            "{:?}",
            t.live.problems
        );
        assert_eq!(t.swap_to, None);
        // An idle set deleted: recreate.
        for name in ["allow6_0", "lease4_0"] {
            let t = inspect(
                &without(&|i| i["set"]["name"] == json!(name)),
                &cfg(Action::Reject),
            )
            .unwrap();
            assert!(
                t.live.problems.iter().any(|p| p.contains(name)),
                "{:?}",
                t.live.problems
            );
            assert_eq!(t.swap_to, None);
        }
        // The nonce gone: recreate (a swap could not take it).
        let t = inspect(
            &without(&|i| i["set"]["name"] == json!(VERSION_SET)),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("version")),
            "{:?}",
            t.live.problems
        );
        assert_eq!((t.swap_to, t.nonce), (None, None));
        // A lease set without its default timeout is not ours.
        let t = inspect(
            &LISTING.replacen(
                r#""flags": ["timeout"], "timeout": 1}"#,
                r#""flags": ["timeout"]}"#,
                1,
            ),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("lease4_0")),
            "{:?}",
            t.live.problems
        );
        // An extra rule added.
        let doc: Value = serde_json::from_str(LISTING).unwrap();
        let mut extra = doc["nftables"].as_array().unwrap().clone();
        extra.push(json!({"rule": {"family": "inet", "table": "rk", "chain": "input", "expr": [{"accept": null}]}}));
        let t = inspect(
            &json!({"nftables": extra}).to_string(),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(!t.live.problems.is_empty());
        assert_eq!(t.live_slot, None);
    }

    #[test]
    fn absent_table_is_not_present() {
        let t = inspect(r#"{"nftables": [{"metainfo": {}}]}"#, &cfg(Action::Reject)).unwrap();
        assert!(!t.live.present);
        assert!(inspect("not json", &cfg(Action::Reject)).is_err());
    }

    fn content(permanent: &RangeSet, leases: Vec<LeaseElem>) -> Content {
        Content {
            ports: [6443, 10254].into_iter().collect(),
            permanent: permanent.clone(),
            leases,
        }
    }

    #[test]
    fn transaction_creates_an_absent_table_with_slot_0_live() {
        let absent = Table::default();
        let elem = LeaseElem {
            addr: "192.0.2.50".parse().unwrap(),
            comment: "a1 2026-12-07T02:30:00Z me@host".into(),
            timeout: 60,
        };
        let tx = transaction(
            &cfg(Action::Drop),
            &absent,
            &content(
                &nets(&["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]),
                vec![elem],
            ),
            42,
        );
        let cmds = tx["nftables"].as_array().unwrap();
        // `create`: fails when another writer made the table since it was read as absent.
        assert_eq!(
            cmds[0],
            json!({"create": {"table": {"family": "inet", "name": "rk"}}})
        );
        assert_eq!(cmds[1]["add"]["set"]["name"], json!("ports_0"));
        assert_eq!(cmds[1]["add"]["set"]["elem"], json!([6443, 10254]));
        assert_eq!(
            cmds[2]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.0.2.7"])
        );
        assert_eq!(
            cmds[3]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "2001:db8::", "len": 32}}])
        );
        assert_eq!(cmds[4]["add"]["set"]["name"], json!("lease4_0"));
        assert_eq!(cmds[4]["add"]["set"]["flags"], json!(["timeout"]));
        assert_eq!(cmds[4]["add"]["set"]["timeout"], json!(1));
        assert_eq!(
            cmds[4]["add"]["set"]["elem"],
            json!([{"elem": {"val": "192.0.2.50", "timeout": 60, "comment": "a1 2026-12-07T02:30:00Z me@host"}}])
        );
        assert!(cmds[5]["add"]["set"].get("elem").is_none());
        // Slot 1 exists, empty.
        for c in &cmds[6..11] {
            assert!(c["add"]["set"]["name"].as_str().unwrap().ends_with("_1"));
            assert!(c["add"]["set"].get("elem").is_none());
        }
        assert_eq!(cmds[11]["add"]["set"]["name"], json!(VERSION_SET));
        assert_eq!(cmds[11]["add"]["set"]["elem"], json!([42]));
        assert_eq!(cmds.len(), 16);
        let v6 = &cmds[15]["add"]["rule"]["expr"];
        assert_eq!(v6[2]["match"]["right"], json!("@allow6_0"));
        assert_eq!(v6[3]["match"]["right"], json!("@lease6_0"));
        assert_eq!(v6[4], json!({"drop": null}));
    }

    #[test]
    fn recreating_a_present_table_takes_its_nonce_first() {
        let c = cfg(Action::Reject);
        let broken = inspect(&without(&|i| i["set"]["name"] == json!("allow6_0")), &c).unwrap();
        assert_eq!(broken.swap_to, None);
        let tx = transaction(&c, &broken, &content(&nets(&["10.0.0.0/8"]), vec![]), 9);
        let cmds = tx["nftables"].as_array().unwrap();
        assert_eq!(
            cmds[0],
            json!({"delete": {"element": {"family": "inet", "table": "rk", "name": "version", "elem": [305_419_896]}}})
        );
        assert_eq!(cmds[1]["add"]["element"]["elem"], json!([9]));
        assert!(cmds[2].get("add").is_some() && cmds[3].get("delete").is_some());
    }

    #[test]
    fn swap_takes_the_nonce_fills_the_idle_slot_and_repoints_the_rules() {
        let tx = swap(
            &cfg(Action::Reject),
            0,
            305_419_896,
            7,
            &content(&nets(&["10.0.0.0/8"]), vec![]),
        );
        let cmds = tx["nftables"].as_array().unwrap();
        let names: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        assert_eq!(cmds[0]["delete"]["element"]["elem"], json!([305_419_896]));
        assert_eq!(cmds[1]["add"]["element"]["elem"], json!([7]));
        assert!(names[2].contains(r#""delete":{"set""#) && names[2].contains("ports_0"));
        assert!(names[6].contains("lease6_0"));
        assert_eq!(
            cmds[8]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "10.0.0.0", "len": 8}}])
        );
        assert!(
            cmds[9]["add"]["set"].get("elem").is_none(),
            "IPv6 denied entirely"
        );
        assert!(names[12].contains(r#""flush":{"chain""#));
        assert_eq!(cmds.len(), 16);
        // Nothing in the swap touches slot 1, which the old rules name.
        assert!(names.iter().all(|n| !n.contains("_1")));
    }

    /// The kernel side of the compare-and-swap, against a real kernel in a namespace of its
    /// own (root needed: skipped with a message without it, failed under `CI=true`).
    mod netns {
        use super::*;

        struct Ns(String);

        impl Drop for Ns {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }

        fn namespace(tag: &str) -> Option<Ns> {
            let name = format!("rkn-{tag}-{}", std::process::id());
            let made = std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            if !made {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI must run this test as root with `ip` and `nft`"
                );
                eprintln!("skipping: needs root and `ip netns`");
                return None;
            }
            Some(Ns(name))
        }

        fn content(addr: &str) -> Content {
            Content {
                ports: [6443].into_iter().collect(),
                permanent: nets(&[addr]),
                leases: Vec::new(),
            }
        }

        /// A write planned from a read that two other writes have since overtaken: the idle
        /// slot is idle again (so deleting its sets succeeds), only the nonce tells, and its
        /// delete fails the whole transaction.
        #[tokio::test]
        async fn a_write_from_a_stale_read_is_a_conflict_even_when_the_slot_is_idle_again() {
            let Some(ns) = namespace("cas") else { return };
            let runner = Runner::new(Some(ns.0.clone()));
            let c = cfg(Action::Reject);

            // Absent when read, created by another writer since: `create` fails.
            let absent = read(&runner, &c).await.unwrap();
            assert!(!absent.live.present);
            write(&runner, &c, &absent, &content("192.0.2.1/32"))
                .await
                .unwrap();
            let e = write(&runner, &c, &absent, &content("192.0.2.66/32"))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), "conflict", "{e}");

            let stale = read(&runner, &c).await.unwrap();
            assert_eq!(stale.swap_to, Some(1));
            for addr in ["192.0.2.2/32", "192.0.2.3/32"] {
                let now = read(&runner, &c).await.unwrap();
                write(&runner, &c, &now, &content(addr)).await.unwrap();
            }
            let before = read(&runner, &c).await.unwrap();
            assert_eq!(
                before.swap_to,
                Some(1),
                "the stale read's idle slot is idle again"
            );
            let e = write(&runner, &c, &stale, &content("192.0.2.66/32"))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), "conflict", "{e}");
            let after = read(&runner, &c).await.unwrap();
            assert_eq!(after.live.allow, nets(&["192.0.2.3/32"]));
            assert_eq!(
                after.version, before.version,
                "nothing of the stale write landed"
            );

            // The same from a table that is not ours in structure (recreated, not swapped):
            // the nonce is taken before the table is replaced.
            let mut broken = read(&runner, &c).await.unwrap();
            broken.swap_to = None;
            let now = read(&runner, &c).await.unwrap();
            write(&runner, &c, &now, &content("192.0.2.4/32"))
                .await
                .unwrap();
            let e = write(&runner, &c, &broken, &content("192.0.2.66/32"))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), "conflict", "{e}");
            assert_eq!(
                read(&runner, &c).await.unwrap().live.allow,
                nets(&["192.0.2.4/32"])
            );
        }
    }

    #[test]
    fn a_new_nonce_differs_from_the_old() {
        for _ in 0..100 {
            let old = new_nonce(None);
            assert_ne!(new_nonce(Some(old)), old);
        }
    }
}
