//! The ingress rules of a security group as rangekeeper sees them, and what an apply changes.
//!
//! Pure: the group is read by the caller; everything here is decided without a call, so it is
//! tested without AWS.
//!
//! The plugin owns the rules whose `Description` is its marker (`rangekeeper:<target>`). It
//! writes one rule per declared range and port, `FromPort == ToPort`, with the configured
//! protocol. Rules it does not own are never touched; those that admit traffic on the managed
//! ports beyond the declared list are reported, since the group then admits more than declared.

use std::collections::BTreeMap;

use rangekeeper_provider::cidr::{self, IpNet};
use rangekeeper_provider::{ProviderError, RangeSet, Restriction, State, Violation};

use crate::config::SgTarget;

/// Where an ingress rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `CidrIpv4` as returned.
    V4(String),
    /// `CidrIpv6` as returned.
    V6(String),
    /// Members of another security group.
    Group(String),
    /// A managed prefix list.
    PrefixList(String),
    /// No source rangekeeper knows.
    Unknown,
}

/// One ingress rule of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The security-group rule ID (`sgr-...`).
    pub id: String,
    /// `IpProtocol` as returned (`tcp`, `6`, `-1`, ...).
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub source: Source,
    pub description: Option<String>,
}

/// A security group as read: its identity and its ingress rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: Option<String>,
    pub vpc_id: Option<String>,
    pub ingress: Vec<Rule>,
}

/// The IANA number or name of a protocol, as EC2 names it (`tcp`, `udp`, `-1` for all).
fn protocol_name(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "6" | "tcp" => "tcp".into(),
        "17" | "udp" => "udp".into(),
        "-1" | "all" => "-1".into(),
        other => other.to_owned(),
    }
}

/// `0.0.0.0/0`.
fn all_v4() -> IpNet {
    IpNet::V4(cidr::Ipv4Net::default())
}

/// `::/0`.
fn all_v6() -> IpNet {
    IpNet::V6(cidr::Ipv6Net::default())
}

/// The set that lifts the restriction: every IPv4 and IPv6 address.
pub fn unrestricted_set() -> RangeSet {
    RangeSet::from_nets([all_v4(), all_v6()])
}

impl Rule {
    /// What the rule admits on which ports, for messages: `tcp 6443`, `tcp 6000-7000`, `all
    /// traffic`.
    fn ports_text(&self) -> String {
        let proto = protocol_name(&self.protocol);
        if proto == "-1" {
            return "all traffic".into();
        }
        match (self.from_port, self.to_port) {
            (Some(a), Some(b)) if a == b => format!("{proto} {a}"),
            (Some(a), Some(b)) => format!("{proto} {a}-{b}"),
            _ => proto,
        }
    }

    /// The source, for messages.
    fn source_text(&self) -> String {
        match &self.source {
            Source::V4(c) | Source::V6(c) => c.clone(),
            Source::Group(g) => format!("members of security group {g}"),
            Source::PrefixList(p) => format!("prefix list {p}"),
            Source::Unknown => "a source rangekeeper does not know".into(),
        }
    }

    /// `sgr-0abc ("office vpn")`.
    fn label(&self) -> String {
        match self.description.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => format!("{} ({d:?})", self.id),
            None => self.id.clone(),
        }
    }

    /// Whether the rule admits traffic on `port` of the target's protocol.
    fn covers(&self, target: &SgTarget, port: u16) -> bool {
        let proto = protocol_name(&self.protocol);
        if proto == "-1" {
            return true;
        }
        if proto != target.protocol.as_str() {
            return false;
        }
        match (self.from_port, self.to_port) {
            (Some(a), Some(b)) => a <= i32::from(port) && i32::from(port) <= b,
            // A TCP or UDP rule always has ports; one without is read as all ports.
            _ => true,
        }
    }

    /// The port this rule is written for, when it has the shape the plugin writes: the
    /// target's protocol and one of its ports, `FromPort == ToPort`.
    fn managed_port(&self, target: &SgTarget) -> Option<u16> {
        if protocol_name(&self.protocol) != target.protocol.as_str() {
            return None;
        }
        match (self.from_port, self.to_port) {
            (Some(a), Some(b)) if a == b => {
                u16::try_from(a).ok().filter(|p| target.ports.contains(p))
            }
            _ => None,
        }
    }

    /// The CIDR of the rule, parsed strictly; `Ok(None)` for a group or prefix-list source.
    /// The bool is true when the text was written canonically (no host bits).
    fn net(&self) -> Result<Option<(IpNet, bool)>, String> {
        match &self.source {
            Source::V4(c) | Source::V6(c) => cidr::parse(c)
                .map(|p| Some((p.net, !p.host_bits && c.contains('/'))))
                .map_err(|e| {
                    format!(
                        "rule {} holds {c:?}, which is not a valid CIDR: {e}",
                        self.id
                    )
                }),
            _ => Ok(None),
        }
    }

    /// Which rule quotas the rule counts against: (IPv4, IPv6). A rule that references a
    /// group or prefix list counts against both.
    fn families(&self) -> (usize, usize) {
        match &self.source {
            Source::V4(_) => (1, 0),
            Source::V6(_) => (0, 1),
            _ => (1, 1),
        }
    }
}

/// A rule key as the plugin writes it: a port and a range.
pub type Key = (u16, IpNet);

/// The group read against one target: which rules it owns, which it does not, and what they
/// admit on the managed ports.
#[derive(Debug)]
pub struct View<'a> {
    target: &'a SgTarget,
    group: &'a Group,
    /// The plugin's rules in the shape it writes, by port and range.
    owned: BTreeMap<Key, Vec<&'a Rule>>,
    /// The plugin's rules in another shape (another port or protocol, a port range, a group
    /// source, host bits): the next apply revokes them.
    stray: Vec<&'a Rule>,
    /// Rules of others that admit traffic on a managed port.
    covering: Vec<&'a Rule>,
    /// Rules of others in exactly the shape the plugin would write (EC2 refuses a second
    /// identical rule, so the plugin cannot add its own).
    foreign_keys: BTreeMap<Key, &'a Rule>,
    /// Inbound rules of others per IP family (they count against the quota).
    foreign_count: (usize, usize),
}

/// The writes an apply makes: rules to authorize, then rule IDs to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Change {
    pub authorize: Vec<Key>,
    pub revoke: Vec<String>,
}

impl<'a> View<'a> {
    /// Sort the group's ingress rules. A rule the plugin must understand (its own, or one
    /// admitting traffic on a managed port) whose CIDR does not parse is an error naming it:
    /// a group we cannot read is a group we must not rewrite.
    pub fn new(target: &'a SgTarget, group: &'a Group) -> Result<Self, ProviderError> {
        let mut view = View {
            target,
            group,
            owned: BTreeMap::new(),
            stray: Vec::new(),
            covering: Vec::new(),
            foreign_keys: BTreeMap::new(),
            foreign_count: (0, 0),
        };
        let unreadable = |why: String| {
            ProviderError::Other(format!(
                "security group `{}`: {why}; rangekeeper does not change a group it cannot read",
                group.id
            ))
        };
        for rule in &group.ingress {
            let ours = rule.description.as_deref() == Some(target.marker.as_str());
            let port = rule.managed_port(target);
            if ours {
                match (port, rule.net().map_err(unreadable)?) {
                    (Some(port), Some((net, true))) => {
                        view.owned.entry((port, net)).or_default().push(rule)
                    }
                    _ => view.stray.push(rule),
                }
                continue;
            }
            let (v4, v6) = rule.families();
            view.foreign_count.0 += v4;
            view.foreign_count.1 += v6;
            if target.ports.iter().any(|p| rule.covers(target, *p)) {
                let net = rule.net().map_err(unreadable)?;
                view.covering.push(rule);
                if let (Some(port), Some((net, true))) = (port, net) {
                    view.foreign_keys.insert((port, net), rule);
                }
            }
        }
        Ok(view)
    }

    /// The ranges the plugin's rules admit on `port`.
    fn held_on(&self, port: u16) -> RangeSet {
        RangeSet::from_nets(
            self.owned
                .keys()
                .filter(|(p, _)| *p == port)
                .map(|(_, net)| *net),
        )
    }

    /// Why the plugin's rules are not one list on every managed port (empty when they are).
    fn inconsistencies(&self) -> Vec<String> {
        let mut out = Vec::new();
        let per_port: Vec<(u16, RangeSet)> = self
            .target
            .ports
            .iter()
            .map(|p| (*p, self.held_on(*p)))
            .collect();
        if per_port.windows(2).any(|w| w[0].1 != w[1].1) {
            let lists: Vec<String> = per_port
                .iter()
                .map(|(p, set)| {
                    let set = if set.is_empty() {
                        "nothing".to_owned()
                    } else {
                        set.to_string()
                    };
                    format!("{} {p}: {set}", self.target.protocol.as_str())
                })
                .collect();
            out.push(format!(
                "the ports hold different lists ({})",
                lists.join("; ")
            ));
        }
        for rule in &self.stray {
            out.push(format!(
                "rule {} ({} from {}) is not in the shape rangekeeper writes for {}",
                rule.id,
                rule.ports_text(),
                rule.source_text(),
                self.target.ports_label()
            ));
        }
        for (key, rules) in &self.owned {
            if rules.len() > 1 {
                out.push(format!(
                    "{} rules admit {} on port {}",
                    rules.len(),
                    key.1,
                    key.0
                ));
            }
        }
        out
    }

    /// What the plugin's rules admit, when they are one list on every port.
    fn consistent_set(&self) -> Option<RangeSet> {
        if !self.inconsistencies().is_empty() {
            return None;
        }
        let first = self.target.ports.iter().next()?;
        Some(self.held_on(*first))
    }

    /// Whether the group holds exactly `desired` on every managed port, in rules the plugin
    /// owns (so an apply sends nothing).
    pub fn holds(&self, desired: &RangeSet) -> bool {
        self.consistent_set().is_some_and(|s| s == *desired)
    }

    /// What `current` reports. The plugin's rules on every port give the restriction (every
    /// address of both families: unrestricted); rules of others never count, but those that
    /// admit more are warned about. Rules of the plugin that are not one list on every port
    /// read as unrestricted with a warning, so the plan shows a change and the next apply
    /// rewrites them.
    pub fn state(&self) -> State {
        let mut warnings = Vec::new();
        let (restriction, reference) = match self.consistent_set() {
            Some(set) if set.is_superset(&unrestricted_set()) => (Restriction::Unrestricted, set),
            // No rule of ours yet (a fresh group): the protocol has no empty list, and the
            // plan must show every declared range as added, so it reads as a state to fill.
            Some(set) if set.is_empty() => {
                warnings.push(format!(
                    "rangekeeper owns no rule in security group `{}` yet (Description `{}`): on \
                     {} it admits only what rules of others admit; the next apply adds the \
                     declared list",
                    self.group.id,
                    self.target.marker,
                    self.target.ports_label()
                ));
                (Restriction::Unrestricted, set)
            }
            Some(set) => (Restriction::Ranges(set.clone()), set),
            None => {
                warnings.push(format!(
                    "the rules rangekeeper owns in security group `{}` (Description `{}`) are not \
                     one list on {}: {}; reported as unrestricted so that the next apply rewrites \
                     them",
                    self.group.id,
                    self.target.marker,
                    self.target.ports_label(),
                    self.inconsistencies().join("; ")
                ));
                let all = RangeSet::from_nets(self.owned.keys().map(|(_, n)| *n));
                (Restriction::Unrestricted, all)
            }
        };
        warnings.extend(self.beyond(&reference));
        let mut state = State::new(restriction);
        state.warnings = warnings;
        let d = &mut state.details;
        d.push(("groupId".into(), self.group.id.clone()));
        if let Some(name) = &self.group.name {
            d.push(("groupName".into(), name.clone()));
        }
        if let Some(vpc) = &self.group.vpc_id {
            d.push(("vpcId".into(), vpc.clone()));
        }
        d.push(("ports".into(), self.target.ports_label()));
        d.push((
            "owner".into(),
            format!("Description `{}`", self.target.marker),
        ));
        let owned: usize = self.owned.values().map(Vec::len).sum::<usize>() + self.stray.len();
        d.push((
            "rules".into(),
            format!(
                "{owned} owned by this target, {} of others on the managed ports, {} inbound in all",
                self.covering.len(),
                self.group.ingress.len()
            ),
        ));
        state
    }

    /// Warnings for rules of others that admit traffic on a managed port beyond `allowed`:
    /// the group then admits more than declared.
    pub fn beyond(&self, allowed: &RangeSet) -> Vec<String> {
        let mut out = Vec::new();
        for rule in &self.covering {
            let extra = match rule.net() {
                Ok(Some((net, _))) => !allowed.contains_net(&net),
                // Group members and prefix lists are addresses rangekeeper cannot see.
                _ => true,
            };
            if extra {
                out.push(format!(
                    "security-group rule {} admits {} on {}, beyond the declared list; it is not \
                     rangekeeper's (its Description is not `{}`), so it stays and the group admits \
                     more than declared",
                    rule.label(),
                    rule.source_text(),
                    rule.ports_text(),
                    self.target.marker
                ));
            }
        }
        out
    }

    /// The rule keys of `desired`: one per range and port.
    fn keys(&self, desired: &RangeSet) -> Vec<Key> {
        let nets = desired.prefixes();
        self.target
            .ports
            .iter()
            .flat_map(|p| nets.iter().map(move |n| (*p, *n)))
            .collect()
    }

    /// The writes that make the group hold exactly `desired`: rules to add, and the IDs of
    /// the plugin's rules to revoke (those `desired` does not have, duplicates, strays).
    pub fn change(&self, desired: &RangeSet) -> Change {
        if self.holds(desired) {
            return Change::default();
        }
        let want = self.keys(desired);
        let authorize = want
            .iter()
            .filter(|k| !self.owned.contains_key(k))
            .copied()
            .collect();
        let mut revoke = Vec::new();
        for (key, rules) in &self.owned {
            let keep = usize::from(want.contains(key));
            revoke.extend(rules.iter().skip(keep).map(|r| r.id.clone()));
        }
        revoke.extend(self.stray.iter().map(|r| r.id.clone()));
        Change { authorize, revoke }
    }

    /// Why `desired` cannot be applied to this group, found before any write: a rule of
    /// others in the way, and the rule quota per IP family, both after the change and while
    /// it runs (new rules are added before old ones are revoked).
    pub fn violations(&self, desired: &RangeSet) -> Vec<Violation> {
        let mut out = Vec::new();
        let change = self.change(desired);
        for key in &change.authorize {
            if let Some(rule) = self.foreign_keys.get(key) {
                out.push(Violation::at(
                    key.1,
                    format!(
                        "{} on {} {}: security-group rule {} already admits exactly this and is \
                         not rangekeeper's; EC2 refuses a second identical rule, so rangekeeper \
                         cannot add its own. Remove that rule, or set its Description to `{}` so \
                         that rangekeeper owns it",
                        key.1,
                        self.target.protocol.as_str(),
                        key.0,
                        rule.label(),
                        self.target.marker
                    ),
                ));
            }
        }
        let owned_now = self
            .owned
            .values()
            .flatten()
            .chain(self.stray.iter())
            .map(|r| r.families())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let added = change.authorize.iter().fold((0, 0), |a, (_, n)| match n {
            IpNet::V4(_) => (a.0 + 1, a.1),
            IpNet::V6(_) => (a.0, a.1 + 1),
        });
        let ports = self.target.ports.len();
        let max = self.target.max_rules;
        for (family, declared, foreign, owned, add) in [
            (
                "IPv4",
                desired.v4_len(),
                self.foreign_count.0,
                owned_now.0,
                added.0,
            ),
            (
                "IPv6",
                desired.v6_len(),
                self.foreign_count.1,
                owned_now.1,
                added.1,
            ),
        ] {
            let after = foreign + declared * ports;
            let peak = foreign + owned + add;
            if after > max {
                out.push(Violation::new(format!(
                    "security group `{}` would hold {after} inbound {family} rules ({declared} \
                     range(s) x {ports} port(s), plus {foreign} rule(s) rangekeeper does not \
                     own), over `maxRules` {max}, EC2's quota of inbound rules per security group \
                     and IP family; shorten the list (or let `onExceed: cover` fit it), or raise \
                     `maxRules` if your account's quota is higher",
                    self.group.id
                )));
            } else if peak > max {
                out.push(Violation::new(format!(
                    "security group `{}` would hold {peak} inbound {family} rules while \
                     changing, over `maxRules` {max}: rangekeeper adds the new rules before it \
                     revokes the old ones ({owned} now, {add} to add, {foreign} not \
                     rangekeeper's), so that no client allowed before and after is cut off. \
                     Apply a list between the two first, or raise the quota and `maxRules`",
                    self.group.id
                )));
            }
        }
        out
    }
}

/// Problems of a desired set found without a call: one rule per range and port must fit the
/// quota of each IP family.
pub fn offline_violations(target: &SgTarget, desired: &RangeSet) -> Vec<Violation> {
    let ports = target.ports.len();
    let mut out = Vec::new();
    for (family, n) in [("IPv4", desired.v4_len()), ("IPv6", desired.v6_len())] {
        if n * ports > target.max_rules {
            out.push(Violation::new(format!(
                "{n} {family} range(s) x {ports} port(s) need {} inbound rules, over `maxRules` \
                 {} (EC2's quota of inbound rules per security group and IP family; raise it if \
                 your account's quota is higher)",
                n * ports,
                target.max_rules
            )));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Protocol;
    use std::collections::BTreeSet;

    fn target(ports: &[u16], max_rules: usize) -> SgTarget {
        SgTarget {
            name: "api".into(),
            group_id: "sg-12345678".into(),
            region: "eu-west-1".into(),
            ports: ports.iter().copied().collect::<BTreeSet<_>>(),
            protocol: Protocol::Tcp,
            max_rules,
            profile: None,
            marker: "rangekeeper:api".into(),
        }
    }

    fn set(s: &[&str]) -> RangeSet {
        RangeSet::from_nets(s.iter().map(|c| cidr::parse(c).unwrap().net))
    }

    fn rule(id: &str, proto: &str, ports: (i32, i32), cidr: &str, desc: Option<&str>) -> Rule {
        Rule {
            id: id.into(),
            protocol: proto.into(),
            from_port: Some(ports.0),
            to_port: Some(ports.1),
            source: if cidr.contains(':') {
                Source::V6(cidr.into())
            } else if cidr.starts_with("sg-") {
                Source::Group(cidr.into())
            } else {
                Source::V4(cidr.into())
            },
            description: desc.map(str::to_owned),
        }
    }

    fn ours(id: &str, port: i32, cidr: &str) -> Rule {
        rule(id, "tcp", (port, port), cidr, Some("rangekeeper:api"))
    }

    fn group(rules: Vec<Rule>) -> Group {
        Group {
            id: "sg-12345678".into(),
            name: Some("api".into()),
            vpc_id: None,
            ingress: rules,
        }
    }

    #[test]
    fn an_empty_group_holds_nothing_and_an_apply_adds_every_rule() {
        let t = target(&[6443], 60);
        let g = group(vec![]);
        let v = View::new(&t, &g).unwrap();
        let st = v.state();
        assert_eq!(st.restriction, Restriction::Unrestricted);
        assert!(
            st.warnings[0].contains("owns no rule in security group"),
            "{st:?}"
        );
        let c = v.change(&set(&["203.0.113.0/24", "2001:db8::/32"]));
        assert_eq!(c.authorize.len(), 2);
        assert!(c.revoke.is_empty());
    }

    #[test]
    fn owned_rules_are_the_restriction_and_in_sync_sends_nothing() {
        let t = target(&[6443, 443], 60);
        let g = group(vec![
            ours("sgr-1", 6443, "203.0.113.0/25"),
            ours("sgr-2", 6443, "203.0.113.128/25"),
            ours("sgr-3", 443, "203.0.113.0/24"),
            // IANA numbers read as names.
            rule(
                "sgr-4",
                "6",
                (6443, 6443),
                "2001:db8::/32",
                Some("rangekeeper:api"),
            ),
            rule(
                "sgr-5",
                "tcp",
                (443, 443),
                "2001:db8::/32",
                Some("rangekeeper:api"),
            ),
        ]);
        let v = View::new(&t, &g).unwrap();
        let want = set(&["203.0.113.0/24", "2001:db8::/32"]);
        assert_eq!(v.state().restriction, Restriction::Ranges(want.clone()));
        assert!(v.holds(&want));
        assert_eq!(v.change(&want), Change::default());
        assert!(v.state().warnings.is_empty(), "{:?}", v.state().warnings);
    }

    #[test]
    fn a_change_adds_what_is_missing_and_revokes_what_is_extra() {
        let t = target(&[6443], 60);
        let g = group(vec![
            ours("sgr-1", 6443, "203.0.113.0/24"),
            ours("sgr-2", 6443, "198.51.100.0/24"),
        ]);
        let v = View::new(&t, &g).unwrap();
        let c = v.change(&set(&["203.0.113.0/24", "192.0.2.0/24"]));
        assert_eq!(
            c,
            Change {
                authorize: vec![(6443, cidr::parse("192.0.2.0/24").unwrap().net)],
                revoke: vec!["sgr-2".into()],
            }
        );
    }

    #[test]
    fn ports_that_disagree_and_stray_rules_read_unrestricted_with_the_reason() {
        let t = target(&[6443, 443], 60);
        let g = group(vec![
            ours("sgr-1", 6443, "203.0.113.0/24"),
            ours("sgr-2", 443, "198.51.100.0/24"),
            ours("sgr-3", 22, "192.0.2.0/24"),
            rule(
                "sgr-4",
                "tcp",
                (6443, 6443),
                "192.0.2.1/24",
                Some("rangekeeper:api"),
            ),
        ]);
        let v = View::new(&t, &g).unwrap();
        let st = v.state();
        assert_eq!(st.restriction, Restriction::Unrestricted);
        let w = st.warnings.join("\n");
        assert!(
            w.contains("tcp 443: 198.51.100.0/24; tcp 6443: 203.0.113.0/24"),
            "{w}"
        );
        assert!(w.contains("rule sgr-3 (tcp 22 from 192.0.2.0/24)"), "{w}");
        assert!(w.contains("rule sgr-4"), "{w}");
        let want = set(&["203.0.113.0/24"]);
        assert!(!v.holds(&want));
        let c = v.change(&want);
        assert_eq!(
            c.authorize,
            vec![(443, cidr::parse("203.0.113.0/24").unwrap().net)]
        );
        assert_eq!(c.revoke, vec!["sgr-2", "sgr-3", "sgr-4"]);
    }

    #[test]
    fn everything_on_every_port_is_unrestricted() {
        let t = target(&[6443], 60);
        let g = group(vec![
            ours("sgr-1", 6443, "0.0.0.0/0"),
            ours("sgr-2", 6443, "::/0"),
        ]);
        let v = View::new(&t, &g).unwrap();
        assert_eq!(v.state().restriction, Restriction::Unrestricted);
        assert!(v.holds(&unrestricted_set()));
        let g = group(vec![ours("sgr-1", 6443, "0.0.0.0/0")]);
        let v = View::new(&t, &g).unwrap();
        assert_eq!(
            v.state().restriction,
            Restriction::Ranges(set(&["0.0.0.0/0"]))
        );
    }

    #[test]
    fn rules_of_others_are_kept_and_warned_about_when_they_admit_more() {
        let t = target(&[6443], 60);
        let g = group(vec![
            ours("sgr-1", 6443, "203.0.113.0/24"),
            // Inside the declared list: harmless, no warning.
            rule(
                "sgr-2",
                "tcp",
                (6443, 6443),
                "203.0.113.7/32",
                Some("office"),
            ),
            // Beyond it, through a port range.
            rule("sgr-3", "tcp", (6000, 7000), "198.51.100.0/24", Some("vpn")),
            // All traffic from another group.
            rule("sgr-4", "-1", (-1, -1), "sg-87654321", None),
            // Another port, another protocol: not about the API server.
            rule("sgr-5", "tcp", (22, 22), "0.0.0.0/0", None),
            rule("sgr-6", "udp", (6443, 6443), "0.0.0.0/0", None),
        ]);
        let v = View::new(&t, &g).unwrap();
        let st = v.state();
        assert_eq!(
            st.restriction,
            Restriction::Ranges(set(&["203.0.113.0/24"]))
        );
        assert_eq!(st.warnings.len(), 2, "{:?}", st.warnings);
        assert!(
            st.warnings[0].contains("sgr-3 (\"vpn\") admits 198.51.100.0/24 on tcp 6000-7000"),
            "{:?}",
            st.warnings
        );
        assert!(
            st.warnings[1]
                .contains("sgr-4 admits members of security group sg-87654321 on all traffic"),
            "{:?}",
            st.warnings
        );
        // None of them is ever revoked.
        let c = v.change(&set(&["192.0.2.0/24"]));
        assert_eq!(c.revoke, vec!["sgr-1"]);
    }

    #[test]
    fn an_identical_rule_of_others_refuses_the_range_it_duplicates() {
        let t = target(&[6443], 60);
        let g = group(vec![rule(
            "sgr-9",
            "tcp",
            (6443, 6443),
            "203.0.113.0/24",
            Some("office"),
        )]);
        let v = View::new(&t, &g).unwrap();
        let found = v.violations(&set(&["203.0.113.0/24", "192.0.2.0/24"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].range.as_deref(), Some("203.0.113.0/24"));
        assert!(
            found[0]
                .message
                .contains("sgr-9 (\"office\") already admits exactly this"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn quotas_count_both_families_apart_and_the_rules_of_others() {
        let t = target(&[6443, 443], 5);
        // 3 ranges x 2 ports = 6 > 5, found offline.
        let three = set(&["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]);
        let v = offline_violations(&t, &three);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("3 IPv4 range(s) x 2 port(s) need 6"),
            "{v:?}"
        );
        // Two families of two ranges each fit apart.
        let mixed = set(&[
            "192.0.2.0/24",
            "198.51.100.0/24",
            "2001:db8::/32",
            "2001:db9::/32",
        ]);
        assert!(offline_violations(&t, &mixed).is_empty());
        // With two IPv4 rules of others, 2 x 2 + 2 = 6 > 5; a group reference counts in both.
        let g = group(vec![
            rule("sgr-1", "tcp", (22, 22), "192.0.2.0/24", None),
            rule("sgr-2", "tcp", (22, 22), "sg-87654321", None),
        ]);
        let view = View::new(&t, &g).unwrap();
        let found = view.violations(&mixed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .contains("would hold 6 inbound IPv4 rules (2 range(s) x 2 port(s), plus 2"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn the_quota_holds_while_changing_too() {
        let t = target(&[6443], 4);
        let g = group(vec![
            ours("sgr-1", 6443, "192.0.2.0/24"),
            ours("sgr-2", 6443, "198.51.100.0/24"),
            ours("sgr-3", 6443, "203.0.113.0/24"),
        ]);
        let v = View::new(&t, &g).unwrap();
        // Three new ranges: 3 after, but 6 at once.
        let found = v.violations(&set(&["23.1.0.0/24", "23.2.0.0/24", "23.3.0.0/24"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .contains("6 inbound IPv4 rules while changing"),
            "{found:?}"
        );
        // Swapping one range peaks at 4: fine.
        assert!(
            v.violations(&set(&["192.0.2.0/24", "198.51.100.0/24", "23.3.0.0/24"]))
                .is_empty()
        );
    }

    #[test]
    fn an_unreadable_cidr_on_a_managed_port_is_an_error_naming_it() {
        let t = target(&[6443], 60);
        let g = group(vec![rule(
            "sgr-7",
            "tcp",
            (6443, 6443),
            "300.1.2.0/24",
            None,
        )]);
        let e = View::new(&t, &g).unwrap_err();
        assert!(
            e.to_string().contains("sgr-7") && e.to_string().contains("300.1.2.0/24"),
            "{e}"
        );
        // Elsewhere it is none of our business.
        let g = group(vec![rule("sgr-7", "tcp", (22, 22), "300.1.2.0/24", None)]);
        assert!(View::new(&t, &g).is_ok());
    }
}
