//! The iptables fallback: a chain `RK-<table>` per family (iptables and ip6tables), jumped to
//! from INPUT for new TCP connections to the ports (jumps marked with the comment
//! `rangekeeper:<table>`), holding `-i lo -j RETURN`, one `-s NET -j RETURN` per allowed
//! prefix, then REJECT (tcp-reset) or DROP.
//!
//! Each family is rewritten with one `iptables-restore --noflush` transaction (checked first
//! with `--test`): `:CHAIN` flushes the chain and the new content plus any jump changes follow
//! in the same COMMIT, which the kernel applies as one table replacement (legacy) or one
//! nf_tables batch (iptables-nft), so there is no moment with a half-written chain. Only our
//! chain and jumps carrying our comment are ever touched.

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::{ProviderError, RangeSet};

use crate::Live;
use crate::command::Runner;
use crate::config::{Action, Config, IptablesVariant, Ipv6Mode};

/// `-m multiport` takes at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;
/// Seconds iptables-restore waits for the xtables lock.
const LOCK_WAIT: &str = "5";

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// `iptables-save` / `ip6tables-save`, or a variant's own (`iptables-legacy-save`, ...).
    fn save(self, variant: Option<IptablesVariant>) -> String {
        self.tool(variant, "save")
    }

    fn restore(self, variant: Option<IptablesVariant>) -> String {
        self.tool(variant, "restore")
    }

    fn tool(self, variant: Option<IptablesVariant>, what: &str) -> String {
        let base = match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        match variant {
            None => format!("{base}-{what}"),
            Some(IptablesVariant::Legacy) => format!("{base}-legacy-{what}"),
            Some(IptablesVariant::Nft) => format!("{base}-nft-{what}"),
        }
    }

    fn everything(self) -> IpNet {
        match self {
            Family::V4 => IpNet::V4(Default::default()),
            Family::V6 => IpNet::V6(Default::default()),
        }
    }

    fn holds(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
}

/// Split a rule line the way iptables-save quotes it (double quotes, backslash escapes).
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn join(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| {
            if t.is_empty() || t.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                t.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The INPUT jumps we write (rule specs after `-A INPUT`), as iptables-save prints them.
/// With `ipv6: open`, ip6tables gets none: its chain holds the list but nothing jumps to it.
fn expected_jumps(cfg: &Config, family: Family) -> Vec<Vec<String>> {
    if family == Family::V6 && cfg.ipv6 == Ipv6Mode::Open {
        return Vec::new();
    }
    let ports: Vec<u16> = cfg.ports.iter().copied().collect();
    ports
        .chunks(MULTIPORT_MAX)
        .map(|chunk| {
            let list = chunk
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut spec = strs(&["-p", "tcp", "-m", "multiport", "--dports"]);
            spec.push(list);
            spec.extend(strs(&[
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "comment",
                "--comment",
            ]));
            spec.push(cfg.table.comment());
            spec.push("-j".into());
            spec.push(cfg.table.chain());
            spec
        })
        .collect()
}

/// The final rule of our chain (spec after `-A CHAIN`).
fn verdict_rule(action: Action) -> Vec<String> {
    match action {
        Action::Reject => strs(&["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]),
        Action::Drop => strs(&["-j", "DROP"]),
    }
}

/// What one family's filter table holds of ours.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FamilyLive {
    pub chain_exists: bool,
    pub nets: Vec<IpNet>,
    /// Our INPUT jumps (rule specs after `-A INPUT`) in order.
    pub jumps: Vec<Vec<String>>,
    pub problems: Vec<String>,
}

impl FamilyLive {
    pub fn present(&self) -> bool {
        self.chain_exists || !self.jumps.is_empty()
    }
}

/// Read our chain and jumps out of `iptables-save -t filter` output.
pub fn inspect(save: &str, cfg: &Config, family: Family) -> FamilyLive {
    let chain = cfg.table.chain();
    let comment = cfg.table.comment();
    let mut live = FamilyLive::default();
    let mut body: Vec<Vec<String>> = Vec::new();
    let mut in_filter = false;
    for line in save.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            in_filter = table == "filter";
            continue;
        }
        if !in_filter {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            if decl.split_whitespace().next() == Some(chain.as_str()) {
                live.chain_exists = true;
            }
            continue;
        }
        let t = tokens(line);
        if t.len() < 2 || t[0] != "-A" {
            continue;
        }
        if t[1] == "INPUT" {
            let ours = t.windows(2).any(|w| w[0] == "--comment" && w[1] == comment);
            let to_us = t
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == chain);
            if ours {
                live.jumps.push(t[2..].to_vec());
            } else if to_us {
                live.problems.push(format!(
                    "a rule rangekeeper did not write jumps to {chain}: {line}"
                ));
            }
        } else if t[1] == chain {
            body.push(t[2..].to_vec());
        }
    }
    if !live.present() {
        return live;
    }
    let name = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    if !live.chain_exists {
        live.problems
            .push(format!("{name} chain {chain} is missing"));
    }
    if live.jumps != expected_jumps(cfg, family) {
        live.problems.push(format!(
            "{name} INPUT jumps to {chain} are missing or differ (want tcp ports {})",
            cfg.ports_list()
        ));
    }
    let lo = strs(&["-i", "lo", "-j", "RETURN"]);
    let last = verdict_rule(cfg.action);
    let mut ok_shape = body.first() == Some(&lo) && body.last() == Some(&last) && body.len() >= 2;
    if ok_shape {
        for rule in &body[1..body.len() - 1] {
            match rule.as_slice() {
                [s, net, j, ret] if s == "-s" && j == "-j" && ret == "RETURN" => {
                    match net.parse::<IpNet>() {
                        Ok(n) if family.holds(&n) => live.nets.push(n.trunc()),
                        _ => ok_shape = false,
                    }
                }
                // iptables-save leaves out `-s 0.0.0.0/0` / `-s ::/0`: they match everything.
                [j, ret] if j == "-j" && ret == "RETURN" => live.nets.push(family.everything()),
                _ => ok_shape = false,
            }
        }
    }
    if live.chain_exists && !ok_shape {
        live.problems.push(format!(
            "{name} chain {chain} holds rules that differ from what rangekeeper writes (action {})",
            cfg.action
        ));
    }
    live
}

/// The restore input that makes one family hold `nets`, given what it holds now.
pub fn restore_input(cfg: &Config, family: Family, nets: &[IpNet], now: &FamilyLive) -> String {
    let chain = cfg.table.chain();
    let mut lines = vec!["*filter".to_owned(), format!(":{chain} - [0:0]")];
    lines.push(format!("-A {chain} -i lo -j RETURN"));
    for net in nets.iter().filter(|n| family.holds(n)) {
        lines.push(format!("-A {chain} -s {net} -j RETURN"));
    }
    lines.push(format!("-A {chain} {}", join(&verdict_rule(cfg.action))));
    let want = expected_jumps(cfg, family);
    if now.jumps != want {
        for old in &now.jumps {
            lines.push(format!("-D INPUT {}", join(old)));
        }
        for new in want.iter().rev() {
            lines.push(format!("-I INPUT 1 {}", join(new)));
        }
    }
    lines.push("COMMIT".into());
    lines.join("\n") + "\n"
}

/// The restore input that removes our jumps and chain from one family.
pub fn removal_input(cfg: &Config, now: &FamilyLive) -> String {
    let chain = cfg.table.chain();
    let mut lines = vec!["*filter".to_owned()];
    for old in &now.jumps {
        lines.push(format!("-D INPUT {}", join(old)));
    }
    if now.chain_exists {
        lines.push(format!(":{chain} - [0:0]"));
        lines.push(format!("-X {chain}"));
    }
    lines.push("COMMIT".into());
    lines.join("\n") + "\n"
}

async fn read_family(
    runner: &Runner,
    cfg: &Config,
    family: Family,
) -> Result<FamilyLive, ProviderError> {
    let out = runner
        .run_ok(&family.save(cfg.iptables_variant), &["-t", "filter"], None)
        .await?;
    Ok(inspect(&out.stdout, cfg, family))
}

async fn restore(
    runner: &Runner,
    cfg: &Config,
    family: Family,
    input: &str,
) -> Result<(), ProviderError> {
    let tool = family.restore(cfg.iptables_variant);
    let check = ["-w", LOCK_WAIT, "--noflush", "--test"];
    runner
        .run_ok(&tool, &check, Some(input))
        .await
        .map_err(|e| match e {
            ProviderError::Other(msg) => {
                ProviderError::Invalid(format!("{tool} rejected the rules: {msg}"))
            }
            other => other,
        })?;
    runner
        .run_ok(&tool, &["-w", LOCK_WAIT, "--noflush"], Some(input))
        .await?;
    Ok(())
}

/// If kube-restrict-ip's chain `chain` is still in the IPv4 filter table, a warning saying so
/// (kube-restrict-ip only ever wrote IPv4 rules). Best effort: no iptables, no warning.
pub async fn kube_restrict_ip_leftover(
    runner: &Runner,
    cfg: &Config,
    chain: &str,
) -> Option<String> {
    let out = runner
        .run(
            &Family::V4.save(cfg.iptables_variant),
            &["-t", "filter"],
            None,
        )
        .await
        .ok()?;
    if !out.success {
        return None;
    }
    kube_restrict_ip_warning(&out.stdout, chain)
}

/// The warning for a leftover kube-restrict-ip chain in `iptables-save` output, with the
/// commands that remove it.
pub fn kube_restrict_ip_warning(save: &str, chain: &str) -> Option<String> {
    let declared = save.lines().any(|l| {
        l.strip_prefix(':')
            .and_then(|d| d.split_whitespace().next())
            == Some(chain)
    });
    if !declared {
        return None;
    }
    let jumps: Vec<&str> = save
        .lines()
        .filter(|l| {
            let t = tokens(l);
            t.len() > 2
                && t[0] == "-A"
                && t[1] == "INPUT"
                && t.windows(2).any(|w| w[0] == "-j" && w[1] == chain)
        })
        .collect();
    let removal: String = jumps
        .iter()
        .map(|j| format!("iptables {}; ", j.replacen("-A INPUT", "-D INPUT", 1)))
        .collect();
    Some(format!(
        "kube-restrict-ip's chain {chain} is still in iptables{}: it keeps enforcing its own list next to rangekeeper's. Stop kube-restrict-ip, then remove it: {removal}iptables -F {chain}; iptables -X {chain}",
        if jumps.is_empty() {
            ""
        } else {
            " with INPUT jumps to it"
        }
    ))
}

/// Both families' state, merged.
pub async fn read(runner: &Runner, cfg: &Config) -> Result<(Live, [FamilyLive; 2]), ProviderError> {
    let v4 = read_family(runner, cfg, Family::V4).await?;
    let v6 = read_family(runner, cfg, Family::V6).await?;
    let mut live = Live {
        present: v4.present() || v6.present(),
        ..Live::default()
    };
    if live.present {
        for (name, f) in [("iptables", &v4), ("ip6tables", &v6)] {
            if !f.present() {
                live.problem(format!("{name} holds no chain or jump of ours"));
            }
            for p in &f.problems {
                live.problem(p.clone());
            }
        }
        live.allow = RangeSet::from_nets(v4.nets.iter().chain(v6.nets.iter()).copied());
    }
    Ok((live, [v4, v6]))
}

/// Make both families hold `desired`; a family already exactly right is left alone.
pub async fn write(runner: &Runner, cfg: &Config, desired: &RangeSet) -> Result<(), ProviderError> {
    let (_, families) = read(runner, cfg).await?;
    let prefixes = desired.prefixes();
    for (family, now) in Family::ALL.into_iter().zip(families.iter()) {
        let want = RangeSet::from_nets(prefixes.iter().filter(|n| family.holds(n)).copied());
        let have = RangeSet::from_nets(now.nets.iter().copied());
        if now.present() && now.problems.is_empty() && have == want {
            continue;
        }
        restore(
            runner,
            cfg,
            family,
            &restore_input(cfg, family, &prefixes, now),
        )
        .await?;
    }
    Ok(())
}

/// Remove our jumps and chains. Returns whether anything existed.
pub async fn remove(runner: &Runner, cfg: &Config) -> Result<bool, ProviderError> {
    let mut existed = false;
    for family in Family::ALL {
        let now = read_family(runner, cfg, family).await?;
        if now.present() {
            existed = true;
            restore(runner, cfg, family, &removal_input(cfg, &now)).await?;
        }
    }
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendChoice, TableName};

    fn cfg(action: Action) -> Config {
        Config {
            target: "t".into(),
            ports: [6443, 10254].into_iter().collect(),
            backend: BackendChoice::Iptables,
            table: TableName::parse("rk").unwrap(),
            action,
            netns: None,
            iptables_variant: None,
            ipv6: Ipv6Mode::Restrict,
            kube_restrict_ip: None,
        }
    }

    const SAVE: &str = r#"# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:RK-rk - [0:0]
-A INPUT -p tcp -m multiport --dports 6443,10254 -m conntrack --ctstate NEW -m comment --comment "rangekeeper:rk" -j RK-rk
-A INPUT -j KUBE-FIREWALL
-A RK-rk -i lo -j RETURN
-A RK-rk -s 10.0.0.0/8 -j RETURN
-A RK-rk -s 192.0.2.7/32 -j RETURN
-A RK-rk -p tcp -j REJECT --reject-with tcp-reset
COMMIT
"#;

    #[test]
    fn tokens_follow_iptables_save_quoting() {
        assert_eq!(
            tokens(r#"-A INPUT -m comment --comment "a b\"c" -j X"#),
            strs(&[
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "a b\"c",
                "-j",
                "X"
            ])
        );
        assert_eq!(join(&strs(&["--comment", "a b"])), r#"--comment "a b""#);
    }

    #[test]
    fn reads_our_chain_only() {
        let live = inspect(SAVE, &cfg(Action::Reject), Family::V4);
        assert!(live.chain_exists);
        assert!(live.problems.is_empty(), "{:?}", live.problems);
        assert_eq!(
            live.nets,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.7/32".parse().unwrap()
            ]
        );
        assert_eq!(live.jumps, expected_jumps(&cfg(Action::Reject), Family::V4));
        // A different action or port list is drift.
        assert!(
            !inspect(SAVE, &cfg(Action::Drop), Family::V4)
                .problems
                .is_empty()
        );
        let mut c = cfg(Action::Reject);
        c.ports = [6443].into_iter().collect();
        assert!(!inspect(SAVE, &c, Family::V4).problems.is_empty());
    }

    /// #10.21: more than 15 ports (kube-restrict-ip's single `-m multiport` rule cannot hold
    /// them) need no warning here: the iptables backend writes one jump per 15 ports, and
    /// reads them back as ours.
    #[test]
    fn more_than_fifteen_ports_take_one_jump_per_fifteen() {
        let mut c = cfg(Action::Reject);
        c.ports = (7000..7031).collect();
        let jumps = expected_jumps(&c, Family::V4);
        assert_eq!(jumps.len(), 3);
        assert!(
            jumps
                .iter()
                .all(|j| j[4] == "--dports" && j[5].split(',').count() <= MULTIPORT_MAX)
        );
        let input = restore_input(&c, Family::V4, &[], &FamilyLive::default());
        let save = input
            .replace(":RK-rk - [0:0]", ":INPUT ACCEPT [0:0]\n:RK-rk - [0:0]")
            .replace("-I INPUT 1", "-A INPUT");
        // `-I INPUT 1` in reverse order is `-A INPUT` in order.
        let mut lines: Vec<&str> = save.lines().collect();
        let first_jump = lines
            .iter()
            .position(|l| l.starts_with("-A INPUT"))
            .unwrap();
        lines[first_jump..first_jump + 3].reverse();
        let live = inspect(&lines.join("\n"), &c, Family::V4);
        assert!(live.problems.is_empty(), "{:?}", live.problems);
    }

    /// #10.24: `ipv6: open` (kube-restrict-ip's behaviour) keeps the ip6tables chain with
    /// the list but no INPUT jump to it, and reads that back as exactly ours.
    #[test]
    fn ipv6_open_writes_no_ip6tables_jump_and_reads_back_in_sync() {
        let mut c = cfg(Action::Reject);
        c.ipv6 = Ipv6Mode::Open;
        let nets: Vec<IpNet> = vec!["2001:db8::/32".parse().unwrap()];
        let input = restore_input(&c, Family::V6, &nets, &FamilyLive::default());
        assert!(!input.contains("INPUT"), "{input}");
        assert!(
            input.contains("-A RK-rk -s 2001:db8::/32 -j RETURN"),
            "{input}"
        );
        let save = input.replace(":RK-rk - [0:0]", ":INPUT ACCEPT [0:0]\n:RK-rk - [0:0]");
        let live = inspect(&save, &c, Family::V6);
        assert!(live.chain_exists && live.jumps.is_empty());
        assert!(live.problems.is_empty(), "{:?}", live.problems);
        assert_eq!(live.nets, nets);
        // IPv4 is restricted as always.
        assert_eq!(expected_jumps(&c, Family::V4).len(), 1);
        // A jump left from `ipv6: restrict` is not ours any more: rewritten.
        c.ipv6 = Ipv6Mode::Restrict;
        let restricted = restore_input(&c, Family::V6, &nets, &FamilyLive::default());
        c.ipv6 = Ipv6Mode::Open;
        let save = restricted
            .replace(":RK-rk - [0:0]", ":INPUT ACCEPT [0:0]\n:RK-rk - [0:0]")
            .replace("-I INPUT 1", "-A INPUT");
        assert!(!inspect(&save, &c, Family::V6).problems.is_empty());
    }

    #[test]
    fn missing_jump_or_chain_is_drift_and_absence_is_absence() {
        let no_jump: String = SAVE
            .lines()
            .filter(|l| !l.contains("rangekeeper:rk"))
            .map(|l| format!("{l}\n"))
            .collect();
        let live = inspect(&no_jump, &cfg(Action::Reject), Family::V4);
        assert!(
            live.present() && live.problems.iter().any(|p| p.contains("jumps")),
            "{:?}",
            live.problems
        );
        let no_chain: String = SAVE
            .lines()
            .filter(|l| !l.contains("RK-rk -") && !l.starts_with(":RK-rk"))
            .map(|l| format!("{l}\n"))
            .collect();
        let live = inspect(&no_chain, &cfg(Action::Reject), Family::V4);
        assert!(
            live.problems.iter().any(|p| p.contains("missing")),
            "{:?}",
            live.problems
        );
        let none = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
        let live = inspect(none, &cfg(Action::Reject), Family::V4);
        assert!(!live.present() && live.problems.is_empty());
        assert!(!inspect("", &cfg(Action::Reject), Family::V6).present());
    }

    #[test]
    fn restore_rewrites_chain_and_fixes_jumps_in_one_commit() {
        let c = cfg(Action::Drop);
        let nets: Vec<IpNet> = ["10.0.0.0/8", "2001:db8::/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let now = FamilyLive::default();
        let text = restore_input(&c, Family::V6, &nets, &now);
        assert_eq!(
            text,
            "*filter\n:RK-rk - [0:0]\n-A RK-rk -i lo -j RETURN\n-A RK-rk -s 2001:db8::/32 -j RETURN\n-A RK-rk -j DROP\n-I INPUT 1 -p tcp -m multiport --dports 6443,10254 -m conntrack --ctstate NEW -m comment --comment rangekeeper:rk -j RK-rk\nCOMMIT\n"
        );
        // With the right jump in place, INPUT is not touched.
        let now = inspect(SAVE, &c, Family::V4);
        let text = restore_input(&c, Family::V4, &nets, &now);
        assert!(!text.contains("INPUT"), "{text}");
        // Stale jumps are deleted in the same commit.
        let mut c2 = cfg(Action::Reject);
        c2.ports = [22].into_iter().collect();
        let text = restore_input(&c2, Family::V4, &nets, &now);
        assert!(
            text.contains("-D INPUT -p tcp -m multiport --dports 6443,10254"),
            "{text}"
        );
        assert!(
            text.contains("-I INPUT 1 -p tcp -m multiport --dports 22 "),
            "{text}"
        );
        let gone = removal_input(&c, &now);
        assert!(
            gone.contains("-D INPUT") && gone.ends_with("-X RK-rk\nCOMMIT\n"),
            "{gone}"
        );
    }

    #[test]
    fn everything_reads_back_although_iptables_save_omits_it() {
        let save = SAVE.replace("-A RK-rk -s 10.0.0.0/8 -j RETURN", "-A RK-rk -j RETURN");
        let live = inspect(&save, &cfg(Action::Reject), Family::V4);
        assert!(live.problems.is_empty(), "{:?}", live.problems);
        assert!(live.nets.contains(&"0.0.0.0/0".parse().unwrap()));
        let v6 = inspect(
            &save.replace("-A RK-rk -s 192.0.2.7/32 -j RETURN\n", ""),
            &cfg(Action::Reject),
            Family::V6,
        );
        assert_eq!(v6.nets, vec!["::/0".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn kube_restrict_ip_leftovers_are_named_with_their_removal() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-RESTRICT-IP - [0:0]\n-A INPUT -p tcp -m multiport --dports 9100 -m comment --comment kube-restrict-ip -j KUBE-RESTRICT-IP\n-A KUBE-RESTRICT-IP -s 10.0.0.0/8 -j RETURN\nCOMMIT\n";
        let w = kube_restrict_ip_warning(save, "KUBE-RESTRICT-IP").unwrap();
        assert!(w.contains("iptables -D INPUT -p tcp -m multiport --dports 9100 -m comment --comment kube-restrict-ip -j KUBE-RESTRICT-IP;"), "{w}");
        assert!(
            w.ends_with("iptables -F KUBE-RESTRICT-IP; iptables -X KUBE-RESTRICT-IP"),
            "{w}"
        );
        assert!(kube_restrict_ip_warning(save, "OTHER").is_none());
        assert!(kube_restrict_ip_warning(SAVE, "KUBE-RESTRICT-IP").is_none());
    }

    #[test]
    fn many_ports_are_split_for_multiport() {
        let mut c = cfg(Action::Reject);
        c.ports = (1000..1020).collect();
        let jumps = expected_jumps(&c, Family::V4);
        assert_eq!(jumps.len(), 2);
        assert_eq!(jumps[0][5].split(',').count(), 15);
        assert_eq!(jumps[1][5].split(',').count(), 5);
    }
}
