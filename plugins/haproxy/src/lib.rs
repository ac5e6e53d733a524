//! `rangekeeper-provider-haproxy`: keeps an ACL of allowed sources in a running HAProxy equal
//! to the declared set, through HAProxy's runtime API (the stats socket), and keeps the ACL
//! file HAProxy loads at start equal to it too, so a restart or reload enforces the same list.
//!
//! The live ACL is swapped atomically with versioned updates (HAProxy >= 2.4): `prepare acl`
//! opens a new, invisible version, `add acl @<ver>` fills it, `commit acl @<ver>` makes it the
//! one HAProxy matches against in one step. A client never meets a half-written list.
//!
//! The order of an apply keeps the two copies from parting: the new version is filled and
//! read back first, then the file is replaced atomically, then the version is committed. If
//! the file cannot be written, the version is dropped and nothing changed; if the commit
//! fails, the old file is put back.

mod runtime;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rangekeeper_provider::cidr::{self, IpNet};
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, Restriction, State,
    TargetConfig, UnrestrictedForm, error_chain,
};

pub use runtime::{Cli, Endpoint};

/// How long one runtime API command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of `add acl` commands sent on one connection (HAProxy reads a command line
/// into one buffer, 16 KiB by default).
const BATCH_BYTES: usize = 4096;
/// The largest ACL file read back.
const MAX_FILE: u64 = 64 << 20;
/// The oldest HAProxy with versioned ACL updates.
const MIN_VERSION: (u32, u32) = (2, 4);

/// What this plugin can hold: IPv4 and IPv6 sources, private ranges included (HAProxy often
/// fronts internal services), lifted by allowing every address.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        "haproxy",
        "An ACL of allowed sources in a running HAProxy, through its runtime API, and the ACL file it loads",
    )
    .with_ipv4(true)
    .with_ipv6(true)
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::AllAddresses)
}

/// Build the provider of one target from its fields.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    Ok(Box::new(Haproxy::new(cfg)?))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    /// The runtime API: a unix socket path (relative to the declaration file), `unix@PATH`,
    /// or a TCP address `IP:PORT`, `ipv4@IP:PORT`, `ipv6@[IP]:PORT`.
    socket: String,
    /// The ACL file, as `-f` names it in HAProxy's configuration; rangekeeper rewrites it.
    acl_file: String,
    /// The ACL's name as `show acl` lists it, when it is not `aclFile` (a relative `-f` path).
    #[serde(default)]
    acl: Option<String>,
}

/// One HAProxy target.
#[derive(Debug)]
pub struct Haproxy {
    target: String,
    cli: Cli,
    /// The ACL file, resolved against the declaration's directory.
    file: PathBuf,
    /// The names `show acl` may list the ACL by.
    names: Vec<String>,
}

/// The ACL found in `show acl`, with HAProxy's version.
#[derive(Debug)]
struct Acl {
    id: String,
    name: String,
    version: String,
}

impl Haproxy {
    pub fn new(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawConfig = cfg.parse()?;
        let bad = |field: &str, why: String| {
            ProviderError::Config(format!("target `{}`: `{field}` {why}", cfg.name))
        };
        let endpoint = parse_endpoint(&raw.socket, &cfg.base_dir).map_err(|w| bad("socket", w))?;
        if raw.acl_file.trim().is_empty() {
            return Err(bad(
                "aclFile",
                "is empty; name the ACL file HAProxy loads".into(),
            ));
        }
        let file = cfg.base_dir.join(&raw.acl_file);
        let mut names = Vec::new();
        if let Some(acl) = &raw.acl {
            if acl.trim().is_empty() {
                return Err(bad("acl", "is empty".into()));
            }
            names.push(acl.clone());
        } else {
            names.push(raw.acl_file.clone());
            names.push(file.display().to_string());
            if let Ok(c) = std::fs::canonicalize(&file) {
                names.push(c.display().to_string());
            }
        }
        Ok(Haproxy {
            target: cfg.name.clone(),
            cli: Cli {
                endpoint,
                timeout: COMMAND_TIMEOUT,
            },
            file,
            names,
        })
    }

    /// HAProxy's version (refusing one without versioned ACL updates) and our ACL's id.
    async fn acl(&self) -> Result<Acl, ProviderError> {
        let info = self.cli.run("show info").await?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("Version:"))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| {
                ProviderError::Other(format!(
                    "target `{}`: {} answered `show info` without a `Version:` line; is it \
                     HAProxy's runtime API? It said: {}",
                    self.target,
                    self.cli.endpoint,
                    cut(runtime::meaningful(&info))
                ))
            })?;
        match major_minor(&version) {
            Some(v) if v >= MIN_VERSION => {}
            _ => {
                return Err(ProviderError::Config(format!(
                    "target `{}`: HAProxy {version} at {} is older than {}.{}: versioned ACL \
                     updates (`prepare acl`, `commit acl`), which swap the list in one step, \
                     need HAProxy 2.4 or newer; upgrade HAProxy",
                    self.target, self.cli.endpoint, MIN_VERSION.0, MIN_VERSION.1
                )));
            }
        }
        let list = self.cli.run("show acl").await?;
        let acls = parse_acl_list(&list);
        let files: Vec<&(String, String)> = acls.iter().filter(|(_, n)| !n.is_empty()).collect();
        let found = files.iter().find(|(_, name)| {
            self.names.iter().any(|n| n == name)
                || (Path::new(name).is_absolute()
                    && std::fs::canonicalize(name)
                        .ok()
                        .zip(std::fs::canonicalize(&self.file).ok())
                        .is_some_and(|(a, b)| a == b))
        });
        match found {
            Some((id, name)) => Ok(Acl {
                id: id.clone(),
                name: name.clone(),
                version,
            }),
            None => {
                let listed = if files.is_empty() {
                    "none".to_owned()
                } else {
                    files
                        .iter()
                        .map(|(_, n)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Err(ProviderError::Config(format!(
                    "target `{}`: HAProxy at {} has no ACL loaded from `{}`; the ACL files it \
                     has: {listed}. Load the file in HAProxy's configuration (`tcp-request \
                     connection reject if !{{ src -f {} }}`), or set `acl:` to the name \
                     `show acl` lists",
                    self.target,
                    self.cli.endpoint,
                    self.names[0],
                    self.file.display()
                )))
            }
        }
    }

    /// The entries of the live ACL (version `ver`, or the current one), as HAProxy holds them.
    async fn entries(&self, acl: &Acl, ver: Option<u64>) -> Result<Vec<String>, ProviderError> {
        let cmd = match ver {
            Some(v) => format!("show acl @{v} #{}", acl.id),
            None => format!("show acl #{}", acl.id),
        };
        let answer = self.cli.run(&cmd).await?;
        let mut out = Vec::new();
        for line in answer.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // `0x55d0c8a1b2c0 192.0.2.0/24`: the entry's reference, then its pattern.
            match line.split_once(' ') {
                Some((r, pattern)) if r.starts_with("0x") => out.push(pattern.trim().to_owned()),
                _ => {
                    return Err(ProviderError::Other(format!(
                        "target `{}`: HAProxy answered `{cmd}` with `{}`",
                        self.target,
                        cut(runtime::meaningful(&answer))
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The live ACL as a set, parsed strictly; warnings for entries with host bits.
    async fn live(&self, acl: &Acl) -> Result<(RangeSet, Vec<String>), ProviderError> {
        let entries = self.entries(acl, None).await?;
        parse_entries(&entries).map_err(|(entry, e)| {
            ProviderError::Invalid(format!(
                "target `{}`: the live ACL `{}` holds the entry {e}; rangekeeper reads only \
                 CIDR entries: remove it (`del acl {} {entry}` on the stats socket) or write \
                 it as a CIDR prefix",
                self.target, acl.name, acl.name
            ))
        })
    }

    /// The ACL file's set: `Ok(None)` when it does not exist, `Err` with the reason it could
    /// not be read or parsed.
    fn file_set(&self) -> Result<Option<RangeSet>, String> {
        let bytes =
            match rangekeeper_provider::fs::read_regular(&self.file, MAX_FILE, "an ACL file") {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("cannot read {}: {}", self.file.display(), e)),
            };
        let text = String::from_utf8_lossy(&bytes);
        let mut nets = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = cidr::parse(line)
                .map_err(|e| format!("{} line {}: {e}", self.file.display(), n + 1))?;
            nets.push(parsed.net);
        }
        Ok(Some(RangeSet::from_nets(nets)))
    }

    fn file_bytes(&self) -> Result<Option<Vec<u8>>, ProviderError> {
        match rangekeeper_provider::fs::read_regular(&self.file, MAX_FILE, "an ACL file") {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.file_error("read", &e)),
        }
    }

    fn file_error(&self, what: &str, e: &std::io::Error) -> ProviderError {
        let msg = format!(
            "target `{}`: cannot {what} the ACL file {}: {}",
            self.target,
            self.file.display(),
            error_chain(e)
        );
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            ProviderError::Auth(msg)
        } else {
            ProviderError::Other(msg)
        }
    }

    /// Make the live ACL and the file hold exactly `want`.
    async fn swap(&self, want: &RangeSet, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        let acl = self.acl().await?;
        // An entry rangekeeper cannot read is replaced like any other.
        let live = self.live(&acl).await.ok().map(|(set, _)| set);
        let file_ok = matches!(self.file_set(), Ok(Some(ref f)) if f == want);
        let live_ok = live.as_ref() == Some(want);
        if live_ok && file_ok {
            return Ok(Applied::unchanged());
        }
        let old_file = self.file_bytes()?;
        let content = file_content(&self.target, want);
        if live_ok {
            self.write_file(&content)?;
            return Ok(Applied::changed().with_note(format!(
                "the live ACL already held the list; the ACL file {} was rewritten so a \
                 restart keeps it",
                self.file.display()
            )));
        }
        opts.progress
            .message(&format!("preparing a new version of ACL `{}`", acl.name));
        let ver = self.prepare(&acl).await?;
        let filled = async {
            self.fill(&acl, ver, want).await?;
            let staged = self.entries(&acl, Some(ver)).await?;
            let (staged_set, _) = parse_entries(&staged).map_err(|(_, e)| {
                ProviderError::Conflict(format!(
                    "target `{}`: version {ver} of ACL `{}` holds {e}, which rangekeeper did \
                     not add; another writer is using it",
                    self.target, acl.name
                ))
            })?;
            if &staged_set != want || staged.len() != want.prefixes().len() {
                return Err(ProviderError::Conflict(format!(
                    "target `{}`: version {ver} of ACL `{}` does not hold what rangekeeper \
                     added ({} entries, expected {}); another writer is using it",
                    self.target,
                    acl.name,
                    staged.len(),
                    want.prefixes().len()
                )));
            }
            self.write_file(&content)
        }
        .await;
        if let Err(e) = filled {
            self.drop_version(&acl, ver).await;
            return Err(e);
        }
        opts.progress
            .message(&format!("committing version {ver} of ACL `{}`", acl.name));
        if let Err(e) = self.commit(&acl, ver).await {
            self.drop_version(&acl, ver).await;
            let restored = match &old_file {
                Some(b) => rangekeeper_provider::fs::write_atomic(&self.file, b, 0o644)
                    .map(|_| ())
                    .map_err(|e| error_chain(&e)),
                None => std::fs::remove_file(&self.file).map_err(|e| error_chain(&e)),
            };
            return Err(match restored {
                Ok(()) => e,
                Err(r) => e.map_message(|m| {
                    format!(
                        "{m}; putting the old ACL file {} back failed too ({r}): it now holds \
                         the new list while HAProxy enforces the old one",
                        self.file.display()
                    )
                }),
            });
        }
        let (now, _) = self.live(&acl).await?;
        if &now != want {
            return Err(ProviderError::Conflict(format!(
                "target `{}`: after committing version {ver}, the live ACL `{}` holds [{now}], \
                 not [{want}]; another writer changed it",
                self.target, acl.name
            )));
        }
        Ok(Applied::changed())
    }

    async fn prepare(&self, acl: &Acl) -> Result<u64, ProviderError> {
        let answer = self.cli.run(&format!("prepare acl #{}", acl.id)).await?;
        runtime::meaningful(&answer)
            .strip_prefix("New version created:")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ProviderError::Other(format!(
                    "target `{}`: HAProxy answered `prepare acl` for `{}` with `{}`",
                    self.target,
                    acl.name,
                    cut(runtime::meaningful(&answer))
                ))
            })
    }

    /// `add acl @ver` every prefix of `want`, many commands to a connection.
    async fn fill(&self, acl: &Acl, ver: u64, want: &RangeSet) -> Result<(), ProviderError> {
        let mut batch = String::new();
        let mut pending: Vec<String> = Vec::new();
        let prefixes = want.prefixes();
        for (i, net) in prefixes.iter().enumerate() {
            if !batch.is_empty() {
                batch.push(';');
            }
            batch.push_str(&format!("add acl @{ver} #{} {net}", acl.id));
            pending.push(net.to_string());
            if batch.len() >= BATCH_BYTES || i + 1 == prefixes.len() {
                let answer = self.cli.run(&batch).await?;
                let said = runtime::meaningful(&answer);
                if !said.is_empty() {
                    return Err(ProviderError::Invalid(format!(
                        "target `{}`: HAProxy refused to add [{}] to ACL `{}`: {}",
                        self.target,
                        pending.join(", "),
                        acl.name,
                        cut(said)
                    )));
                }
                batch.clear();
                pending.clear();
            }
        }
        Ok(())
    }

    async fn commit(&self, acl: &Acl, ver: u64) -> Result<(), ProviderError> {
        let answer = self
            .cli
            .run(&format!("commit acl @{ver} #{}", acl.id))
            .await?;
        let said = runtime::meaningful(&answer);
        if said.is_empty() {
            return Ok(());
        }
        let msg = format!(
            "target `{}`: HAProxy refused to commit version {ver} of ACL `{}`: {}",
            self.target,
            acl.name,
            cut(said)
        );
        Err(if said.contains("out of range") {
            // A newer version was committed meanwhile: someone else is changing the ACL.
            ProviderError::Conflict(msg)
        } else {
            ProviderError::Other(msg)
        })
    }

    /// Drop a version that will not be committed (best effort: an uncommitted version is
    /// invisible, and the next commit of a newer one deletes it anyway).
    async fn drop_version(&self, acl: &Acl, ver: u64) {
        let _ = self.cli.run(&format!("clear acl @{ver} #{}", acl.id)).await;
    }

    fn write_file(&self, content: &str) -> Result<(), ProviderError> {
        rangekeeper_provider::fs::write_atomic(&self.file, content.as_bytes(), 0o644)
            .map(|_| ())
            .map_err(|e| self.file_error("write", &e))
    }
}

#[async_trait::async_trait]
impl Provider for Haproxy {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let acl = self.acl().await?;
        let (live, warnings) = self.live(&acl).await?;
        let mut state = if live.is_empty() {
            State::new(Restriction::Unrestricted).with_warning(format!(
                "the live ACL `{}` is empty: with `tcp-request connection reject if !{{ src -f \
                 ... }}` (or `http-request deny if !...`) HAProxy admits no one, not everyone; \
                 applying fills it",
                acl.name
            ))
        } else if live.contains_net(&all_v4()) && live.contains_net(&all_v6()) {
            State::new(Restriction::Unrestricted)
        } else {
            let mut s = State::new(Restriction::Ranges(live.clone()));
            if live.contains_net(&all_v4()) {
                s = s.with_warning(
                    "every IPv4 address is allowed (0.0.0.0/0 is in the ACL); only IPv6 is \
                     restricted",
                );
            } else if live.contains_net(&all_v6()) {
                s = s.with_warning(
                    "every IPv6 address is allowed (::/0 is in the ACL); only IPv4 is \
                     restricted",
                );
            }
            s
        };
        state.warnings.extend(warnings);
        match self.file_set() {
            Ok(Some(file)) if file == live => {}
            Ok(Some(file)) => state = state.with_drift(differs(&self.file, &file, &live)),
            Ok(None) => {
                state = state.with_drift(format!(
                    "the ACL file {} does not exist: HAProxy cannot load it at the next \
                     restart; the next apply writes it",
                    self.file.display()
                ));
            }
            Err(why) => {
                state = state.with_drift(format!(
                    "the ACL file does not read as a list of ranges ({why}); a restart would \
                     not load the live list; the next apply rewrites it"
                ));
            }
        }
        Ok(state
            .with_detail("socket", self.cli.endpoint.to_string())
            .with_detail("acl", format!("#{} {}", acl.id, acl.name))
            .with_detail("haproxy", acl.version))
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(
            desired,
            "with `tcp-request connection reject if !{ src -f FILE }` (or `http-request deny \
             if !...`) an empty ACL shuts every client out",
        )?;
        self.swap(desired, opts).await
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        self.swap(&RangeSet::from_nets([all_v4(), all_v6()]), opts)
            .await
    }
}

fn all_v4() -> IpNet {
    IpNet::V4(Default::default())
}

fn all_v6() -> IpNet {
    IpNet::V6(Default::default())
}

/// Parse `socket:`: HAProxy's own address forms, a bare `IP:PORT`, or a unix socket path.
fn parse_endpoint(text: &str, base: &Path) -> Result<Endpoint, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty; give the stats socket's path or TCP address".into());
    }
    let tcp = |addr: &str| -> Result<Endpoint, String> {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{addr}` is not an address with a port (`127.0.0.1:9999`)"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!(
                "`{addr}` is not an address with a port (`127.0.0.1:9999`)"
            ));
        }
        Ok(Endpoint::Tcp(addr.to_owned()))
    };
    if let Some(path) = text.strip_prefix("unix@") {
        return Ok(Endpoint::Unix(base.join(path)));
    }
    for prefix in ["ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"] {
        if let Some(addr) = text.strip_prefix(prefix) {
            return tcp(addr);
        }
    }
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(Endpoint::Tcp(text.to_owned()));
    }
    Ok(Endpoint::Unix(base.join(text)))
}

/// `show acl`'s list: `(id, file)` for each ACL (`file` empty for inline patterns).
fn parse_acl_list(answer: &str) -> Vec<(String, String)> {
    answer
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (id, rest) = l.split_once(' ')?;
            id.parse::<u64>().ok()?;
            let rest = rest.strip_prefix('(')?;
            let end = rest
                .find(") ")
                .or_else(|| rest.strip_suffix(')').map(str::len))?;
            Some((id.to_owned(), rest[..end].to_owned()))
        })
        .collect()
}

/// Parse entries with the strict CIDR parser; an entry that does not parse is returned with
/// the reason. Entries with host bits are read at their boundary (HAProxy masks them), with
/// a warning.
fn parse_entries(entries: &[String]) -> Result<(RangeSet, Vec<String>), (String, String)> {
    let mut nets = Vec::with_capacity(entries.len());
    let mut warnings = Vec::new();
    for e in entries {
        let p = cidr::parse(e).map_err(|err| (e.clone(), err.to_string()))?;
        if p.host_bits {
            warnings.push(format!(
                "the ACL entry `{e}` has host bits set; HAProxy matches `{}`",
                p.net
            ));
        }
        nets.push(p.net);
    }
    Ok((RangeSet::from_nets(nets), warnings))
}

/// How the file's list differs from the live one, in words (a few entries each way).
fn differs(file: &Path, in_file: &RangeSet, live: &RangeSet) -> String {
    let show = |s: &RangeSet| {
        let p = s.prefixes();
        let mut shown: Vec<String> = p.iter().take(5).map(ToString::to_string).collect();
        if p.len() > 5 {
            shown.push(format!("and {} more", p.len() - 5));
        }
        shown.join(", ")
    };
    let mut parts = Vec::new();
    let only_file = in_file.difference(live);
    let only_live = live.difference(in_file);
    if !only_file.is_empty() {
        parts.push(format!("only in the file: {}", show(&only_file)));
    }
    if !only_live.is_empty() {
        parts.push(format!("only live: {}", show(&only_live)));
    }
    format!(
        "the ACL file {} differs from the live ACL ({}): a restart or reload would enforce \
         the file; the next apply rewrites both",
        file.display(),
        parts.join("; ")
    )
}

/// The ACL file: a header saying who writes it, then one canonical prefix per line.
fn file_content(target: &str, set: &RangeSet) -> String {
    let mut s = format!(
        "# Managed by rangekeeper (target `{target}`): the sources HAProxy admits.\n\
         # Edits here are undone by the next `rangekeeper apply`; change the declaration.\n"
    );
    for net in set.prefixes() {
        s.push_str(&net.to_string());
        s.push('\n');
    }
    s
}

/// `major.minor` of a version string such as `2.6.12-1+deb12u4`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Text quoted from HAProxy, cut to a sane length.
fn cut(text: &str) -> String {
    const MAX: usize = 300;
    let one_line = text.replace('\n', " / ");
    match one_line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(fields: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "edge".into(),
            base_dir: "/etc/rangekeeper".into(),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn socket_forms() {
        let base = Path::new("/etc/rk");
        assert_eq!(
            parse_endpoint("/run/haproxy/admin.sock", base).unwrap(),
            Endpoint::Unix("/run/haproxy/admin.sock".into())
        );
        assert_eq!(
            parse_endpoint("haproxy.sock", base).unwrap(),
            Endpoint::Unix("/etc/rk/haproxy.sock".into())
        );
        assert_eq!(
            parse_endpoint("unix@/run/a.sock", base).unwrap(),
            Endpoint::Unix("/run/a.sock".into())
        );
        assert_eq!(
            parse_endpoint("127.0.0.1:9999", base).unwrap(),
            Endpoint::Tcp("127.0.0.1:9999".into())
        );
        assert_eq!(
            parse_endpoint("ipv6@[::1]:9999", base).unwrap(),
            Endpoint::Tcp("[::1]:9999".into())
        );
        assert_eq!(
            parse_endpoint("ipv4@lb.internal:9999", base).unwrap(),
            Endpoint::Tcp("lb.internal:9999".into())
        );
        assert!(
            parse_endpoint("ipv4@127.0.0.1", base)
                .unwrap_err()
                .contains("with a port")
        );
        assert!(parse_endpoint(" ", base).unwrap_err().contains("is empty"));
    }

    #[test]
    fn config_errors_name_the_target_and_field() {
        let e = Haproxy::new(&cfg(serde_json::json!({"socket": "/s"}))).unwrap_err();
        assert_eq!(e.kind(), "config");
        assert!(
            e.message().contains("target `edge`") && e.message().contains("aclFile"),
            "{e}"
        );
        let e = Haproxy::new(&cfg(
            serde_json::json!({"socket": "/s", "aclFile": "a.acl", "sockt": 1}),
        ))
        .unwrap_err();
        assert!(e.message().contains("did you mean `socket`"), "{e}");
        let e = Haproxy::new(&cfg(
            serde_json::json!({"socket": "tcp@x", "aclFile": "a.acl"}),
        ))
        .unwrap_err();
        assert!(
            e.message().contains("`socket` `x` is not an address"),
            "{e}"
        );
        let h = Haproxy::new(&cfg(
            serde_json::json!({"socket": "s", "aclFile": "allow.acl"}),
        ))
        .unwrap();
        assert_eq!(h.file, Path::new("/etc/rangekeeper/allow.acl"));
        assert!(h.names.contains(&"allow.acl".to_owned()));
        assert!(h.names.contains(&"/etc/rangekeeper/allow.acl".to_owned()));
    }

    #[test]
    fn acl_list_and_versions_parse() {
        let answer = "# id (file) description\n0 (/tmp/hx/allow.acl) pattern loaded from file '/tmp/hx/allow.acl' used by acl at file 'haproxy.cfg' line 11. curr_ver=0 next_ver=0 entry_cnt=1\n1 () acl 'src' file 'haproxy.cfg' line 11. curr_ver=0 next_ver=0 entry_cnt=0\n\n";
        assert_eq!(
            parse_acl_list(answer),
            [
                ("0".to_owned(), "/tmp/hx/allow.acl".to_owned()),
                ("1".to_owned(), String::new())
            ]
        );
        assert_eq!(major_minor("2.6.12-1+deb12u4"), Some((2, 6)));
        assert_eq!(major_minor("2.2.9"), Some((2, 2)));
        assert_eq!(major_minor("3.0-dev1"), Some((3, 0)));
        assert!(major_minor("2.2.9").unwrap() < MIN_VERSION);
        assert!(major_minor("3.0.1").unwrap() >= MIN_VERSION);
    }

    #[test]
    fn entries_parse_strictly() {
        let (set, warnings) = parse_entries(&[
            "127.0.0.2".to_owned(),
            "10.1.2.3/8".to_owned(),
            "2001:db8::/32".to_owned(),
        ])
        .unwrap();
        assert_eq!(set.len(), 3);
        assert!(
            warnings[0].contains("`10.1.2.3/8` has host bits"),
            "{warnings:?}"
        );
        let (entry, why) = parse_entries(&["10.0.0.0/255.0.0.0".to_owned()]).unwrap_err();
        assert_eq!(entry, "10.0.0.0/255.0.0.0");
        assert!(why.contains("10.0.0.0/255.0.0.0"), "{why}");
    }

    #[test]
    fn the_file_says_who_writes_it_and_lists_canonical_prefixes() {
        let set = RangeSet::from_nets(
            ["192.0.2.0/25", "192.0.2.128/25", "2001:db8::/32"]
                .iter()
                .map(|s| cidr::parse(s).unwrap().net),
        );
        assert_eq!(
            file_content("edge", &set),
            "# Managed by rangekeeper (target `edge`): the sources HAProxy admits.\n\
             # Edits here are undone by the next `rangekeeper apply`; change the declaration.\n\
             192.0.2.0/24\n2001:db8::/32\n"
        );
    }
}
