//! The nftables backend: one `inet` table of our own with interval sets `allow4`/`allow6`, a
//! `ports` set and an input-hook chain; written as one JSON `nft -f` transaction (checked first
//! with `nft -c`), read back with `nft -j` and compared with exactly what we would write.
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
use crate::config::{Action, Config};
use crate::ranges::range_to_prefixes;

/// The base chain's priority: `filter - 1`, so we see packets before the usual filter chains.
pub const PRIORITY: i64 = -1;
/// The base chain's name inside our table.
pub const CHAIN: &str = "input";

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

fn addr_set(cfg: &Config, name: &str, ty: &str, nets: &[IpNet]) -> Value {
    let mut set = json!({
        "family": "inet", "table": cfg.table.as_str(), "name": name,
        "type": ty, "flags": ["interval"],
    });
    if !nets.is_empty() {
        set["elem"] = Value::Array(nets.iter().map(element).collect());
    }
    json!({"add": {"set": set}})
}

fn verdict(action: Action) -> Value {
    match action {
        Action::Reject => json!({"reject": {"type": "tcp reset"}}),
        Action::Drop => json!({"drop": null}),
    }
}

/// The expressions of the rules of our chain, in order, as we write them.
fn expected_rules(action: Action) -> Vec<Value> {
    let lo = json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
        {"accept": null}
    ]);
    let restrict = |proto: &str, set: &str| {
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports"}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": set}},
            verdict(action)
        ])
    };
    vec![lo, restrict("ip", "@allow4"), restrict("ip6", "@allow6")]
}

/// The whole table, (re)created in one transaction: `add table` (so `delete` cannot fail),
/// `delete table`, then every definition. nft applies the file as one batch: either all of it
/// takes effect at once, or none of it.
pub fn transaction(cfg: &Config, desired: &RangeSet) -> Value {
    let prefixes = desired.prefixes();
    let v4: Vec<IpNet> = prefixes
        .iter()
        .filter(|n| matches!(n, IpNet::V4(_)))
        .copied()
        .collect();
    let v6: Vec<IpNet> = prefixes
        .iter()
        .filter(|n| matches!(n, IpNet::V6(_)))
        .copied()
        .collect();
    let t = cfg.table.as_str();
    let mut cmds = vec![
        json!({"add": {"table": table_obj(cfg)}}),
        json!({"delete": {"table": table_obj(cfg)}}),
        json!({"add": {"table": table_obj(cfg)}}),
        json!({"add": {"set": {
            "family": "inet", "table": t, "name": "ports", "type": "inet_service",
            "elem": cfg.ports.iter().copied().collect::<Vec<u16>>(),
        }}}),
        addr_set(cfg, "allow4", "ipv4_addr", &v4),
        addr_set(cfg, "allow6", "ipv6_addr", &v6),
        json!({"add": {"chain": {
            "family": "inet", "table": t, "name": CHAIN,
            "type": "filter", "hook": "input", "prio": PRIORITY, "policy": "accept",
        }}}),
    ];
    for expr in expected_rules(cfg.action) {
        cmds.push(
            json!({"add": {"rule": {"family": "inet", "table": t, "chain": CHAIN, "expr": expr}}}),
        );
    }
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

/// Our table as read back.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// What `current` reports (a `ports` mismatch counts as a problem there).
    pub live: Live,
    /// The table, sets, chain and rules are exactly as we write them (set contents aside),
    /// so a new allow-list can be written by changing set elements in place.
    pub in_place: bool,
    pub ports: BTreeSet<u16>,
    /// Elements of `allow4` and `allow6` exactly as nft printed them, with their prefixes.
    pub elems: [Vec<(Value, Vec<IpNet>)>; 2],
}

/// Compare `nft -j list table inet <table>` output with what we would write for `cfg`.
#[cfg(test)]
pub fn inspect(listing: &str, cfg: &Config) -> Result<Live, ProviderError> {
    Ok(inspect_table(listing, cfg)?.live)
}

/// Compare `nft -j list table inet <table>` output with what we would write for `cfg`,
/// keeping what an in-place update needs.
pub fn inspect_table(listing: &str, cfg: &Config) -> Result<Table, ProviderError> {
    let doc: Value = serde_json::from_str(listing)
        .map_err(|e| ProviderError::Other(format!("cannot read `nft -j` output: {e}")))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::Other("`nft -j` output has no `nftables` array".into()))?;

    let mut live = Live::default();
    let mut nets: Vec<IpNet> = Vec::new();
    let mut ports: Option<BTreeSet<u16>> = None;
    let mut elems_read: [Vec<(Value, Vec<IpNet>)>; 2] = [Vec::new(), Vec::new()];
    let (mut seen4, mut seen6, mut seen_chain) = (false, false, false);
    let mut rules: Vec<Value> = Vec::new();
    let name = cfg.table.as_str();

    for item in items {
        let Some((kind, obj)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "metainfo" => {}
            "table" => {
                if obj.get("name").and_then(Value::as_str) == Some(name) {
                    live.present = true;
                }
            }
            "set" => {
                let set_name = obj.get("name").and_then(Value::as_str).unwrap_or("?");
                let ty = obj.get("type").and_then(Value::as_str).unwrap_or("?");
                match set_name {
                    "ports" => {
                        if ty != "inet_service" || !flags(obj).is_empty() {
                            live.problem(format!(
                                "set `ports` has type {ty} / flags {:?}",
                                flags(obj)
                            ));
                        }
                        let mut found = BTreeSet::new();
                        for e in elems(obj) {
                            match parse_port_elem(e) {
                                Some(p) => {
                                    found.insert(p);
                                }
                                None => live.problem(format!(
                                    "set `ports` holds an unexpected element {e}"
                                )),
                            }
                        }
                        ports = Some(found);
                    }
                    "allow4" | "allow6" => {
                        let want = if set_name == "allow4" {
                            "ipv4_addr"
                        } else {
                            "ipv6_addr"
                        };
                        if set_name == "allow4" {
                            seen4 = true;
                        } else {
                            seen6 = true;
                        }
                        if ty != want || flags(obj) != ["interval"] {
                            live.problem(format!(
                                "set `{set_name}` has type {ty} / flags {:?} (want {want} / [interval])",
                                flags(obj)
                            ));
                        }
                        for e in elems(obj) {
                            match parse_addr_elem(e) {
                                Some(list)
                                    if list.iter().all(|n| {
                                        (want == "ipv4_addr") == matches!(n, IpNet::V4(_))
                                    }) =>
                                {
                                    nets.extend(list.iter().copied());
                                    elems_read[usize::from(set_name == "allow6")]
                                        .push((e.clone(), list));
                                }
                                _ => live.problem(format!(
                                    "set `{set_name}` holds an unexpected element {e}"
                                )),
                            }
                        }
                    }
                    other => live.problem(format!("unexpected set `{other}`")),
                }
            }
            "chain" => {
                let chain = obj.get("name").and_then(Value::as_str).unwrap_or("?");
                if chain != CHAIN {
                    live.problem(format!("unexpected chain `{chain}`"));
                    continue;
                }
                seen_chain = true;
                let ok = obj.get("type") == Some(&json!("filter"))
                    && obj.get("hook") == Some(&json!("input"))
                    && obj.get("prio").and_then(Value::as_i64) == Some(PRIORITY)
                    && obj.get("policy") == Some(&json!("accept"));
                if !ok {
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
            other => live.problem(format!("unexpected {other} object in the table")),
        }
    }

    if !live.present {
        return Ok(Table::default());
    }
    if !seen4 {
        live.problem("set `allow4` is missing".into());
    }
    if !seen6 {
        live.problem("set `allow6` is missing".into());
    }
    if ports.is_none() {
        live.problem("set `ports` is missing".into());
    }
    if !seen_chain {
        live.problem(format!("chain `{CHAIN}` is missing"));
    } else {
        let want: Vec<Value> = expected_rules(cfg.action)
            .into_iter()
            .map(normalize_expr)
            .collect();
        if rules != want {
            live.problem(format!(
                "chain `{CHAIN}` holds {} rule(s) that differ from the {} rangekeeper writes (action {})",
                rules.len(),
                want.len(),
                cfg.action
            ));
        }
    }
    // Everything so far is structure; the ports are content, updated in place.
    let in_place = live.problems.is_empty();
    let ports = ports.unwrap_or_default();
    if ports != cfg.ports {
        live.problem(format!(
            "set `ports` holds {} but the target restricts {}",
            crate::config::join_ports(&ports),
            cfg.ports_list()
        ));
    }
    live.allow = RangeSet::from_nets(nets);
    Ok(Table {
        live,
        in_place,
        ports,
        elems: elems_read,
    })
}

/// Element changes that turn `table` into `desired` in place (empty: nothing to change).
/// Elements kept are never touched, so a packet that is being evaluated while the
/// transaction commits always finds them: deleting and re-adding them (or recreating the
/// table) would let such a packet see the old rule with elements already inactive, and an
/// allowed source could be refused for that instant.
pub fn in_place_update(cfg: &Config, table: &Table, desired: &RangeSet) -> Vec<Value> {
    let t = cfg.table.as_str();
    let elem_cmd = |op: &str, set: &str, elems: Vec<Value>| json!({op: {"element": {"family": "inet", "table": t, "name": set, "elem": elems}}});
    let mut deletes = Vec::new();
    let mut adds = Vec::new();

    let gone: Vec<Value> = table
        .ports
        .difference(&cfg.ports)
        .map(|p| json!(p))
        .collect();
    let new: Vec<Value> = cfg
        .ports
        .difference(&table.ports)
        .map(|p| json!(p))
        .collect();
    if !gone.is_empty() {
        deletes.push(elem_cmd("delete", "ports", gone));
    }
    if !new.is_empty() {
        adds.push(elem_cmd("add", "ports", new));
    }

    let prefixes = desired.prefixes();
    for (i, set) in ["allow4", "allow6"].into_iter().enumerate() {
        let want: BTreeSet<IpNet> = prefixes
            .iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == (i == 1))
            .copied()
            .collect();
        let mut kept = BTreeSet::new();
        let mut gone = Vec::new();
        for (raw, nets) in &table.elems[i] {
            match nets.as_slice() {
                [one] if want.contains(one) && !kept.contains(one) => {
                    kept.insert(*one);
                }
                _ => gone.push(raw.clone()),
            }
        }
        let new: Vec<Value> = want.difference(&kept).map(element).collect();
        if !gone.is_empty() {
            deletes.push(elem_cmd("delete", set, gone));
        }
        if !new.is_empty() {
            adds.push(elem_cmd("add", set, new));
        }
    }
    // Deletions first, so a wider prefix can replace the narrower ones it covers.
    deletes.extend(adds);
    deletes
}

/// Read our table back.
pub async fn read(runner: &Runner, cfg: &Config) -> Result<Live, ProviderError> {
    Ok(read_table(runner, cfg).await?.live)
}

async fn read_table(runner: &Runner, cfg: &Config) -> Result<Table, ProviderError> {
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
    inspect_table(&out.stdout, cfg)
}

/// Check, then apply, the transaction that makes our table hold `desired`.
///
/// When our table is intact, only the set elements that change are deleted and added (one
/// transaction); otherwise (first apply, or a table someone changed) the whole table is
/// recreated in one transaction.
pub async fn write(runner: &Runner, cfg: &Config, desired: &RangeSet) -> Result<(), ProviderError> {
    let table = read_table(runner, cfg).await?;
    let tx = if table.live.present && table.in_place {
        let cmds = in_place_update(cfg, &table, desired);
        if cmds.is_empty() {
            return Ok(());
        }
        json!({"nftables": cmds}).to_string()
    } else {
        transaction(cfg, desired).to_string()
    };
    runner
        .run_ok("nft", &["-c", "-j", "-f", "-"], Some(&tx))
        .await
        .map_err(|e| match e {
            ProviderError::Other(msg) => {
                ProviderError::Invalid(format!("nft rejected the ruleset: {msg}"))
            }
            other => other,
        })?;
    runner.run_ok("nft", &["-j", "-f", "-"], Some(&tx)).await?;
    Ok(())
}

/// Delete our table. Returns whether it existed.
pub async fn remove(runner: &Runner, cfg: &Config) -> Result<bool, ProviderError> {
    let existed = read(runner, cfg).await?.present;
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
            kube_restrict_ip: None,
        }
    }

    /// What nft 1.0.6 prints for the table `transaction` writes (captured from a real kernel).
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "rk", "handle": 13}}, {"set": {"family": "inet", "name": "ports", "table": "rk", "type": "inet_service", "handle": 1, "elem": [6443, 10254]}}, {"set": {"family": "inet", "name": "allow4", "table": "rk", "type": "ipv4_addr", "handle": 2, "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.0.2.7", {"range": ["198.51.100.1", "198.51.100.2"]}]}}, {"set": {"family": "inet", "name": "allow6", "table": "rk", "type": "ipv6_addr", "handle": 3, "flags": ["interval"], "elem": [{"prefix": {"addr": "2001:db8::", "len": 32}}, {"elem": {"val": "2001:db9::1", "comment": "x"}}]}}, {"chain": {"family": "inet", "table": "rk", "name": "input", "handle": 4, "type": "filter", "hook": "input", "prio": -1, "policy": "accept"}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 6, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@allow4"}}, {"reject": {"type": "tcp reset"}}]}}, {"rule": {"family": "inet", "table": "rk", "chain": "input", "handle": 7, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@allow6"}}, {"reject": {"type": "tcp reset"}}]}}]}"#;

    fn nets(list: &[&str]) -> RangeSet {
        RangeSet::from_nets(list.iter().map(|s| s.parse::<IpNet>().unwrap()))
    }

    #[test]
    fn reads_back_sets_and_accepts_exact_rules() {
        let live = inspect(LISTING, &cfg(Action::Reject)).unwrap();
        assert!(live.present);
        assert!(live.problems.is_empty(), "{:?}", live.problems);
        assert_eq!(
            live.allow,
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
    fn other_action_or_ports_is_a_problem() {
        let live = inspect(LISTING, &cfg(Action::Drop)).unwrap();
        assert!(
            live.problems.iter().any(|p| p.contains("differ")),
            "{:?}",
            live.problems
        );
        let mut c = cfg(Action::Reject);
        c.ports = [6443].into_iter().collect();
        let live = inspect(LISTING, &c).unwrap();
        assert!(
            live.problems.iter().any(|p| p.contains("ports")),
            "{:?}",
            live.problems
        );
    }

    #[test]
    fn missing_rules_or_chain_are_problems() {
        let doc: Value = serde_json::from_str(LISTING).unwrap();
        let items = doc["nftables"].as_array().unwrap();
        let without = |pred: &dyn Fn(&Value) -> bool| {
            let kept: Vec<Value> = items.iter().filter(|i| !pred(i)).cloned().collect();
            json!({"nftables": kept}).to_string()
        };
        // A rule deleted, sets intact.
        let text = without(&|i| i["rule"]["handle"] == json!(6));
        let live = inspect(&text, &cfg(Action::Reject)).unwrap();
        assert!(live.present && !live.problems.is_empty());
        // The chain (and so its rules) deleted.
        let text = without(&|i| i.get("rule").is_some() || i.get("chain").is_some());
        let live = inspect(&text, &cfg(Action::Reject)).unwrap();
        assert!(
            live.problems.iter().any(|p| p.contains("missing")),
            "{:?}",
            live.problems
        );
        // A set deleted.
        let text = without(&|i| i["set"]["name"] == json!("allow6"));
        let live = inspect(&text, &cfg(Action::Reject)).unwrap();
        assert!(
            live.problems.iter().any(|p| p.contains("allow6")),
            "{:?}",
            live.problems
        );
        // An extra rule added.
        let mut extra = items.clone();
        extra.push(json!({"rule": {"family": "inet", "table": "rk", "chain": "input", "expr": [{"accept": null}]}}));
        let live = inspect(
            &json!({"nftables": extra}).to_string(),
            &cfg(Action::Reject),
        )
        .unwrap();
        assert!(!live.problems.is_empty());
    }

    #[test]
    fn in_place_update_touches_only_changed_elements() {
        let c = cfg(Action::Reject);
        let table = inspect_table(LISTING, &c).unwrap();
        assert!(table.in_place);
        // Same list: only the range element, not a prefix as we write them, is rewritten.
        let same = in_place_update(&c, &table, &table.live.allow);
        assert_eq!(
            same,
            vec![
                json!({"delete": {"element": {"family": "inet", "table": "rk", "name": "allow4",
                    "elem": [{"range": ["198.51.100.1", "198.51.100.2"]}]}}}),
                json!({"add": {"element": {"family": "inet", "table": "rk", "name": "allow4",
                    "elem": ["198.51.100.1", "198.51.100.2"]}}}),
            ]
        );
        let tidy = RangeSet::from_nets(
            table
                .live
                .allow
                .prefixes()
                .into_iter()
                .filter(|n| !(matches!(n, IpNet::V4(_)) && n.prefix_len() == 32)),
        );
        assert_eq!(
            in_place_update(&c, &table, &tidy).len(),
            1,
            "only deletions"
        );
        // Keep 10/8 and 2001:db8::/32; drop the rest; add one of each family.
        let want = nets(&[
            "10.0.0.0/8",
            "203.0.113.0/24",
            "2001:db8::/32",
            "2001:dba::/48",
        ]);
        let cmds = in_place_update(&c, &table, &want);
        assert_eq!(
            cmds,
            vec![
                json!({"delete": {"element": {"family": "inet", "table": "rk", "name": "allow4",
                    "elem": ["192.0.2.7", {"range": ["198.51.100.1", "198.51.100.2"]}]}}}),
                json!({"delete": {"element": {"family": "inet", "table": "rk", "name": "allow6",
                    "elem": [{"elem": {"val": "2001:db9::1", "comment": "x"}}]}}}),
                json!({"add": {"element": {"family": "inet", "table": "rk", "name": "allow4",
                    "elem": [{"prefix": {"addr": "203.0.113.0", "len": 24}}]}}}),
                json!({"add": {"element": {"family": "inet", "table": "rk", "name": "allow6",
                    "elem": [{"prefix": {"addr": "2001:dba::", "len": 48}}]}}}),
            ]
        );
        // A port change is an in-place change of the `ports` set.
        let mut c2 = cfg(Action::Reject);
        c2.ports = [6443, 9100].into_iter().collect();
        let table = inspect_table(LISTING, &c2).unwrap();
        assert!(table.in_place && !table.live.problems.is_empty());
        let cmds: Vec<Value> = in_place_update(&c2, &table, &table.live.allow)
            .into_iter()
            .filter(|c| c.to_string().contains(r#""name":"ports""#))
            .collect();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0]["delete"]["element"]["elem"], json!([10254]));
        assert_eq!(cmds[1]["add"]["element"]["elem"], json!([9100]));
        // A different action is structural: no in-place update.
        assert!(!inspect_table(LISTING, &cfg(Action::Drop)).unwrap().in_place);
    }

    #[test]
    fn absent_table_is_not_present() {
        let live = inspect(r#"{"nftables": [{"metainfo": {}}]}"#, &cfg(Action::Reject)).unwrap();
        assert!(!live.present);
        assert!(inspect("not json", &cfg(Action::Reject)).is_err());
    }

    #[test]
    fn transaction_recreates_the_table_atomically() {
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
        assert_eq!(cmds[3]["add"]["set"]["elem"], json!([6443, 10254]));
        assert_eq!(
            cmds[4]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.0.2.7"])
        );
        assert_eq!(
            cmds[5]["add"]["set"]["elem"],
            json!([{"prefix": {"addr": "2001:db8::", "len": 32}}])
        );
        assert_eq!(cmds.len(), 10);
        assert_eq!(cmds[9]["add"]["rule"]["expr"][3], json!({"drop": null}));
        // An IPv4-only list writes an empty allow6 set (no `elem`): IPv6 sources are denied.
        let tx = transaction(&cfg(Action::Reject), &nets(&["10.0.0.0/8"]));
        assert!(tx["nftables"][5]["add"]["set"].get("elem").is_none());
    }
}
