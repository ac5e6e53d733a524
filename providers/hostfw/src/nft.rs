//! The nftables backend: one `inet` table of our own holding two slots of sets (`ports_N`,
//! `allow4_N`, `allow6_N` for N = 0, 1) and an input-hook chain whose rules name the live
//! slot. A change fills the other slot and points the rules at it, in one JSON `nft -f`
//! transaction checked first with `nft -c`; `current` reads the table back with `nft -j` and
//! compares it with exactly what we would write.
//!
//! Why two slots: nft applies a transaction atomically for packets that arrive after it
//! commits, but a packet being evaluated while it commits can still be on the old rule while
//! set elements deleted by the transaction are already inactive. Deleting and re-adding the
//! live elements (or recreating the table) therefore refused an allowed source about once per
//! 200 changes under load; changing elements in place is atomic but nft's userspace takes
//! seconds to delete hundreds of elements from a large interval set. Filling the idle slot
//! never touches what the old rule looks at, and costs the same for 10 or 10,000 prefixes.
//!
//! JSON is used in both directions so table names never collide with nft keywords and the
//! read-back is structured rather than scraped.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rangekeeper_provider::cidr::IpNet;
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

/// The sets of one slot: (name prefix, nft type, interval flag).
const SLOT_SETS: [(&str, &str, bool); 3] = [
    ("ports", "inet_service", false),
    ("allow4", "ipv4_addr", true),
    ("allow6", "ipv6_addr", true),
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

/// `add set` commands for one slot holding `ports` and `desired`.
fn slot_sets(cfg: &Config, slot: usize, ports: &BTreeSet<u16>, desired: &RangeSet) -> Vec<Value> {
    let prefixes = desired.prefixes();
    let mut out = Vec::new();
    for (base, ty, interval) in SLOT_SETS {
        let mut set = json!({
            "family": "inet", "table": cfg.table.as_str(), "name": set_name(base, slot), "type": ty,
        });
        if interval {
            set["flags"] = json!(["interval"]);
        }
        let elems: Vec<Value> = match base {
            "ports" => ports.iter().map(|p| json!(p)).collect(),
            "allow4" => prefixes
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)))
                .map(element)
                .collect(),
            _ => prefixes
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)))
                .map(element)
                .collect(),
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

/// The expressions of the rules of our chain, in order, as we write them for `slot`.
/// With `ipv6: open` the IPv6 rule is left out (the `allow6` sets still hold the list).
fn expected_rules(action: Action, ipv6: Ipv6Mode, slot: usize) -> Vec<Value> {
    let lo = json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
        {"accept": null}
    ]);
    let ports = format!("@{}", set_name("ports", slot));
    let restrict = |proto: &str, set: String| {
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": ports}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": format!("@{set}")}},
            verdict(action)
        ])
    };
    let mut rules = vec![lo, restrict("ip", set_name("allow4", slot))];
    if ipv6 == Ipv6Mode::Restrict {
        rules.push(restrict("ip6", set_name("allow6", slot)));
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

/// The whole table, (re)created in one transaction: `add table` (so `delete` cannot fail),
/// `delete table`, then every definition with slot 0 live and slot 1 empty. Used when the
/// table is missing or its structure is not ours.
pub fn transaction(cfg: &Config, desired: &RangeSet) -> Value {
    let mut cmds = vec![
        json!({"add": {"table": table_obj(cfg)}}),
        json!({"delete": {"table": table_obj(cfg)}}),
        json!({"add": {"table": table_obj(cfg)}}),
    ];
    cmds.extend(slot_sets(cfg, 0, &cfg.ports, desired));
    cmds.extend(slot_sets(cfg, 1, &BTreeSet::new(), &RangeSet::new()));
    cmds.push(json!({"add": {"chain": {
        "family": "inet", "table": cfg.table.as_str(), "name": CHAIN,
        "type": "filter", "hook": "input", "prio": PRIORITY, "policy": "accept",
    }}}));
    cmds.extend(rule_cmds(cfg, 0));
    json!({"nftables": cmds})
}

/// Switch an intact table to `slot`: replace that (idle) slot's sets with the new content,
/// then replace the chain's rules with ones naming it. One transaction.
pub fn swap(cfg: &Config, slot: usize, desired: &RangeSet) -> Value {
    let t = cfg.table.as_str();
    let mut cmds = Vec::new();
    for (base, _, _) in SLOT_SETS {
        cmds.push(json!({"delete": {"set": {"family": "inet", "table": t, "name": set_name(base, slot)}}}));
    }
    cmds.extend(slot_sets(cfg, slot, &cfg.ports, desired));
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
    /// Which of the three sets exist with the right type and flags.
    sound: [bool; 3],
    ports: BTreeSet<u16>,
    nets: Vec<IpNet>,
    /// Elements that could not be read as ports or addresses of the set's family.
    odd: Vec<String>,
}

/// Our table as read back.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// What `current` reports.
    pub live: Live,
    /// The slot the rules name (when they are exactly ours).
    pub live_slot: Option<usize>,
    /// The slot a swap may fill: the table, its six sets and its chain are as we write them
    /// and no rule names that slot's sets. `None`: recreate the whole table.
    pub swap_to: Option<usize>,
}

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
                let found = (0..2).find_map(|slot| {
                    SLOT_SETS
                        .iter()
                        .position(|(base, _, _)| set_name(base, slot) == name)
                        .map(|i| (slot, i))
                });
                let Some((slot, i)) = found else {
                    live.problem(format!("unexpected set `{name}`"));
                    structure_ok = false;
                    continue;
                };
                let (base, want_ty, interval) = SLOT_SETS[i];
                let want_flags: &[&str] = if interval { &["interval"] } else { &[] };
                if ty != want_ty || flags(obj) != want_flags {
                    live.problem(format!(
                        "set `{name}` has type {ty} / flags {:?} (want {want_ty} / {want_flags:?})",
                        flags(obj)
                    ));
                    structure_ok = false;
                    continue;
                }
                let content = &mut slots[slot];
                content.sound[i] = true;
                for e in elems(obj) {
                    if base == "ports" {
                        match parse_port_elem(e) {
                            Some(p) => {
                                content.ports.insert(p);
                            }
                            None => content.odd.push(format!("set `{name}` holds {e}")),
                        }
                    } else {
                        let v6 = base == "allow6";
                        match parse_addr_elem(e) {
                            Some(list) if list.iter().all(|n| matches!(n, IpNet::V6(_)) == v6) => {
                                content.nets.extend(list);
                            }
                            _ => content.odd.push(format!("set `{name}` holds {e}")),
                        }
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
        return Ok(Table::default());
    }
    for (slot, content) in slots.iter().enumerate() {
        for (i, (base, _, _)) in SLOT_SETS.iter().enumerate() {
            if !content.sound[i] {
                structure_ok = false;
                if !live
                    .problems
                    .iter()
                    .any(|p| p.contains(&set_name(base, slot)))
                {
                    live.problem(format!("set `{}` is missing", set_name(base, slot)));
                }
            }
        }
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
        }
        None if seen_chain => live.problem(format!(
            "chain `{CHAIN}` holds {} rule(s) that differ from the 3 rangekeeper writes (action {})",
            rules.len(),
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
                .any(|(base, _, _)| text.contains(&format!("\"@{}\"", set_name(base, slot))))
        })
    };
    if structure_ok && chain_ok {
        table.swap_to = match (named(0), named(1)) {
            (true, false) => Some(1),
            (false, true) | (false, false) => Some(0),
            (true, true) => None,
        };
    }
    table.live = live;
    table.live_slot = live_slot;
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
            return Ok(Table::default());
        }
        return Err(command_failed(
            &runner.display("nft", &["-j", "-f", "-"]),
            &out.stderr,
        ));
    }
    inspect(&out.stdout, cfg)
}

/// Check, then apply, the transaction that makes our table hold `desired`: a swap to the
/// idle slot when the table is intact, else the whole table recreated.
pub async fn write(runner: &Runner, cfg: &Config, desired: &RangeSet) -> Result<(), ProviderError> {
    let table = read(runner, cfg).await?;
    let tx = match (table.live.present, table.swap_to) {
        (true, Some(slot)) => swap(cfg, slot, desired),
        _ => transaction(cfg, desired),
    }
    .to_string();
    runner
        .run_ok("nft", &["-c", "-j", "-f", "-"], Some(&tx))
        .await
        .map_err(|e| match e {
            ProviderError::Other(msg) if msg.contains("Device or resource busy") => busy(&msg),
            ProviderError::Other(msg) => {
                ProviderError::Invalid(format!("nft rejected the ruleset: {msg}"))
            }
            other => other,
        })?;
    runner
        .run_ok("nft", &["-j", "-f", "-"], Some(&tx))
        .await
        .map_err(|e| match e {
            ProviderError::Other(msg) if msg.contains("Device or resource busy") => busy(&msg),
            other => other,
        })?;
    Ok(())
}

/// The idle slot became live under us (another writer swapped meanwhile): re-read and retry.
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

    /// What nft 1.0.6 prints for a table whose rules name slot 1 (captured from a real
    /// kernel, then one range element and one element with a comment edited in).
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "rk", "handle": 9}}, {"set": {"family": "inet", "name": "ports_0", "table": "rk", "type": "inet_service", "handle": 1, "elem": [22]}}, {"set": {"family": "inet", "name": "allow4_0", "table": "rk", "type": "ipv4_addr", "handle": 2, "flags": ["interval"], "elem": ["203.0.113.9"]}}, {"set": {"family": "inet", "name": "allow6_0", "table": "rk", "type": "ipv6_addr", "handle": 3, "flags": ["interval"]}}, {"set": {"family": "inet", "name": "ports_1", "table": "rk", "type": "inet_service", "handle": 10, "elem": [6443, 10254]}}, {"set": {"family": "inet", "name": "allow4_1", "table": "rk", "type": "ipv4_addr", "handle": 11, "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.0.2.7", {"range": ["198.51.100.1", "198.51.100.2"]}]}}, {"set": {"family": "inet", "name": "allow6_1", "table": "rk", "type": "ipv6_addr", "handle": 12, "flags": ["interval"], "elem": [{"prefix": {"addr": "2001:db8::", "len": 32}}, {"elem": {"val": "2001:db9::1", "comment": "x"}}]}}, {"chain": {"family": "inet", "table": "rk", "name": "input", "handle": 7, "type": "filter", "hook": "input", "prio": -1, "policy": "accept"}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 13, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 14, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports_1"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@allow4_1"}}, {"reject": {"type": "tcp reset"}}]}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 15, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports_1"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@allow6_1"}}, {"reject": {"type": "tcp reset"}}]}}]}"#;

    fn nets(list: &[&str]) -> RangeSet {
        RangeSet::from_nets(list.iter().map(|s| s.parse::<IpNet>().unwrap()))
    }

    fn without(pred: &dyn Fn(&Value) -> bool) -> String {
        let doc: Value = serde_json::from_str(LISTING).unwrap();
        let kept: Vec<Value> = doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| !pred(i))
            .cloned()
            .collect();
        json!({"nftables": kept}).to_string()
    }

    #[test]
    fn reads_the_live_slot_and_accepts_exact_rules() {
        let t = inspect(LISTING, &cfg(Action::Reject)).unwrap();
        assert!(t.live.present);
        assert!(t.live.problems.is_empty(), "{:?}", t.live.problems);
        assert_eq!(t.live_slot, Some(1));
        assert_eq!(t.swap_to, Some(0));
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
    fn missing_rules_chain_or_sets_are_problems() {
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
        let t = inspect(
            &without(&|i| i["set"]["name"] == json!("allow6_0")),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(
            t.live.problems.iter().any(|p| p.contains("allow6_0")),
            "{:?}",
            t.live.problems
        );
        assert_eq!(t.swap_to, None);
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

    #[test]
    fn transaction_recreates_the_table_with_slot_0_live() {
        let tx = transaction(
            &cfg(Action::Drop),
            &nets(&["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]),
        );
        let cmds = tx["nftables"].as_array().unwrap();
        assert_eq!(
            cmds[0],
            json!({"add": {"table": {"family": "inet", "name": "rk"}}})
        );
        assert_eq!(
            cmds[1],
            json!({"delete": {"table": {"family": "inet", "name": "rk"}}})
        );
        assert_eq!(cmds[3]["add"]["set"]["name"], json!("ports_0"));
        assert_eq!(cmds[3]["add"]["set"]["elem"], json!([6443, 10254]));
        assert_eq!(
            cmds[4]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.0.2.7"])
        );
        assert_eq!(
            cmds[5]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "2001:db8::", "len": 32}}])
        );
        // Slot 1 exists, empty.
        for c in &cmds[6..9] {
            assert!(c["add"]["set"]["name"].as_str().unwrap().ends_with("_1"));
            assert!(c["add"]["set"].get("elem").is_none());
        }
        assert_eq!(cmds.len(), 13);
        assert_eq!(cmds[12]["add"]["rule"]["expr"][3], json!({"drop": null}));
        assert_eq!(
            cmds[12]["add"]["rule"]["expr"][2]["match"]["right"],
            json!("@allow6_0")
        );
    }

    #[test]
    fn swap_fills_the_idle_slot_and_repoints_the_rules() {
        let tx = swap(&cfg(Action::Reject), 0, &nets(&["10.0.0.0/8"]));
        let cmds = tx["nftables"].as_array().unwrap();
        let names: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        assert!(names[0].contains(r#""delete":{"set""#) && names[0].contains("ports_0"));
        assert!(names[2].contains("allow6_0"));
        assert_eq!(
            cmds[4]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "10.0.0.0", "len": 8}}])
        );
        assert!(
            cmds[5]["add"]["set"].get("elem").is_none(),
            "IPv6 denied entirely"
        );
        assert!(names[6].contains(r#""flush":{"chain""#));
        assert_eq!(cmds.len(), 10);
        // Nothing in the swap touches slot 1, which the old rules name.
        assert!(names.iter().all(|n| !n.contains("_1")));
    }
}
