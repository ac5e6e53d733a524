//! The embedded default provider: an allow-list file that a reverse proxy in front of an API
//! server consumes (`plain`, `nginx`, `haproxy` or `json`), written atomically, with an
//! optional reload command. The file is read back as what it enforces ([`enforced`]) and
//! only regular files are read or written, through symlinks ([`fsio`]).

pub mod enforced;
pub mod fsio;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Lease, Provider, ProviderError, RangeSet, Restriction,
    State, TargetConfig, UnrestrictedForm,
};

/// The first line of every file this provider writes.
pub const MARKER: &str = "managed by rangekeeper";

/// The comment that starts a lease line in the plain, nginx and haproxy formats:
/// `# rangekeeper-lease: {"id":...}` (the JSON format has a `leases` list instead).
pub const LEASE_LINE: &str = "rangekeeper-lease: ";

/// The version of a file's content for the compare-and-swap of a lease change: a SHA-256
/// digest, or `absent`.
pub fn version_of(text: Option<&str>) -> String {
    use sha2::Digest as _;
    match text {
        None => "absent".to_owned(),
        Some(t) => {
            let d = sha2::Sha256::digest(t.as_bytes());
            d.iter().fold(String::with_capacity(64), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
        }
    }
}

/// Default time a reload command may take.
const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The static capabilities of the file provider.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        "file",
        "an allow-list file for a reverse proxy (plain, nginx, haproxy, json)",
    )
    .with_ipv6(true)
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::AllAddresses)
    .with_leases(true)
}

/// Build a file provider for one target.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    Ok(Box::new(FileProvider::from_config(cfg)?))
}

/// The formats a proxy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One CIDR per line.
    #[default]
    Plain,
    /// `allow CIDR;` lines, then `deny all;` (for an nginx `include`).
    Nginx,
    /// An HAProxy ACL file (`acl ... src -f FILE`): one CIDR per line.
    Haproxy,
    /// `{"managedBy": "rangekeeper", "target": ..., "ranges": [...]}`.
    Json,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    path: PathBuf,
    #[serde(default)]
    format: Format,
    /// A command (program and arguments, no shell) run after the file changed.
    #[serde(default)]
    reload: Option<Vec<String>>,
    /// Seconds the reload command may take.
    #[serde(default)]
    reload_timeout: Option<u64>,
}

/// The file provider bound to one target.
#[derive(Debug, Clone)]
pub struct FileProvider {
    target: String,
    path: PathBuf,
    format: Format,
    reload: Option<Vec<String>>,
    reload_timeout: Duration,
}

impl FileProvider {
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawConfig = cfg.parse()?;
        if raw.path.as_os_str().is_empty() {
            return Err(ProviderError::Config(format!(
                "target `{}`: `path` is empty",
                cfg.name
            )));
        }
        if let Some(r) = &raw.reload
            && r.first().is_none_or(|p| p.trim().is_empty())
        {
            return Err(ProviderError::Config(format!(
                "target `{}`: `reload` must name a program, e.g. [nginx, -s, reload]",
                cfg.name
            )));
        }
        let path = if raw.path.is_absolute() {
            raw.path
        } else {
            cfg.base_dir.join(raw.path)
        };
        Ok(FileProvider {
            target: cfg.name.clone(),
            path,
            format: raw.format,
            reload: raw.reload,
            reload_timeout: raw
                .reload_timeout
                .map_or(DEFAULT_RELOAD_TIMEOUT, Duration::from_secs),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Render the file for a set. `disabled` writes an allow-everything file.
    pub fn render(&self, set: &RangeSet, disabled: bool) -> String {
        self.render_leased(set, disabled, &[])
    }

    /// The file for `set` with lease records (a comment line each, or the JSON `leases`).
    pub fn render_leased(&self, set: &RangeSet, disabled: bool, leases: &[Lease]) -> String {
        let prefixes = set.prefixes();
        let header = |comment: &str| {
            let mut h = format!(
                "{comment} {MARKER} (target `{}`); changes by hand are overwritten\n",
                self.target
            );
            if disabled {
                h.push_str(&format!("{comment} restriction lifted by `rangekeeper disable`: every address is allowed\n"));
            }
            for l in leases {
                let json = serde_json::to_string(l).unwrap_or_default();
                h.push_str(&format!("{comment} {LEASE_LINE}{json}\n"));
            }
            h
        };
        match self.format {
            Format::Plain | Format::Haproxy => {
                let mut s = header("#");
                for p in &prefixes {
                    s.push_str(&p.to_string());
                    s.push('\n');
                }
                s
            }
            Format::Nginx => {
                let mut s = header("#");
                for p in &prefixes {
                    s.push_str(&format!("allow {p};\n"));
                }
                s.push_str("deny all;\n");
                s
            }
            Format::Json => {
                let mut v = serde_json::json!({
                    "managedBy": "rangekeeper",
                    "target": self.target,
                    "disabled": disabled,
                    "ranges": prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                if !leases.is_empty()
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert(
                        "leases".into(),
                        serde_json::to_value(leases).unwrap_or_default(),
                    );
                }
                let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
                s.push('\n');
                s
            }
        }
    }

    /// What a file's content enforces, as the proxy reading it would apply it.
    pub fn parse_content(&self, text: &str) -> Result<enforced::Enforced, ProviderError> {
        enforced::read(self.format, text).map_err(|e| {
            ProviderError::Other(format!("{}:{}: {}", self.path.display(), e.line, e.message))
        })
    }

    /// The lease records in a file's text: `# rangekeeper-lease:` lines, or the JSON
    /// `leases` list. A record that cannot be read is an error naming its line.
    pub fn parse_leases(&self, text: &str) -> Result<Vec<Lease>, ProviderError> {
        let bad = |line: usize, e: String| {
            ProviderError::Other(format!(
                "{}:{line}: a lease record cannot be read: {e}",
                self.path.display()
            ))
        };
        if self.format == Format::Json {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| bad(e.line(), e.to_string()))?;
            return match v.get("leases") {
                None => Ok(Vec::new()),
                Some(l) => serde_json::from_value(l.clone()).map_err(|e| bad(1, e.to_string())),
            };
        }
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(json) = line
                .trim_start()
                .strip_prefix('#')
                .map(str::trim_start)
                .and_then(|l| l.strip_prefix(LEASE_LINE))
            {
                out.push(serde_json::from_str(json).map_err(|e| bad(i + 1, e.to_string()))?);
            }
        }
        Ok(out)
    }

    /// Whether the file carries our mark: the header comment, or `"managedBy": "rangekeeper"`
    /// in the JSON format (which has no comments).
    fn written_by_us(&self, text: &str) -> bool {
        match self.format {
            Format::Json => serde_json::from_str::<serde_json::Value>(text)
                .is_ok_and(|v| v.get("managedBy") == Some(&serde_json::json!("rangekeeper"))),
            _ => text.contains(MARKER),
        }
    }

    /// The lock file beside the file (`<file>.lock`): lease changes and applies hold it
    /// from their read to their write.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    fn lock(&self) -> Result<rangekeeper_provider::fs::FileLock, ProviderError> {
        let lock = self.lock_path();
        rangekeeper_provider::fs::lock_exclusive(&lock).map_err(|e| {
            let msg = format!("cannot lock {}: {e}", lock.display());
            match e.kind() {
                std::io::ErrorKind::PermissionDenied => ProviderError::Auth(msg),
                // Said as a write would say it: the file's directory is missing.
                std::io::ErrorKind::NotFound => ProviderError::NotFound(format!(
                    "the directory of {} does not exist",
                    self.path.display()
                )),
                _ => ProviderError::Other(msg),
            }
        })
    }

    /// Under the lock: write `content` unless the file changed from `version` (a conflict)
    /// or already holds it. Returns whether it was written.
    fn write_if(&self, content: &str, version: Option<&str>) -> Result<bool, ProviderError> {
        let _lock = self.lock()?;
        let text = self.read_text()?;
        if let Some(v) = version
            && version_of(text.as_deref()) != v
        {
            return Err(ProviderError::Conflict(format!(
                "{} changed since it was read",
                self.path.display()
            )));
        }
        if text.as_deref() == Some(content) {
            return Ok(false);
        }
        self.write_atomic(content)?;
        Ok(true)
    }

    fn fs_error(&self, e: fsio::FsError) -> ProviderError {
        let msg = e.describe(&self.path);
        if e.not_regular() {
            return ProviderError::Config(msg);
        }
        match e.error.kind() {
            std::io::ErrorKind::PermissionDenied => ProviderError::Auth(msg),
            std::io::ErrorKind::NotFound => ProviderError::NotFound(msg),
            _ => ProviderError::Other(msg),
        }
    }

    /// The file's text, `None` when it does not exist yet.
    fn read_text(&self) -> Result<Option<String>, ProviderError> {
        fsio::read_regular(&self.path).map_err(|e| self.fs_error(e))
    }

    /// Write `content` atomically through symlinks, keeping owner, group and mode.
    fn write_atomic(&self, content: &str) -> Result<(), ProviderError> {
        fsio::write_atomic(&self.path, content)
            .map(|_| ())
            .map_err(|e| self.fs_error(e))
    }

    /// Run the reload command, if any; a failure is returned as a note, not an error: the
    /// file is written either way.
    async fn reload(&self) -> Option<String> {
        let cmd = self.reload.as_ref()?;
        let (program, args) = cmd.split_first()?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        let run = command.output();
        match tokio::time::timeout(self.reload_timeout, run).await {
            Err(_) => Some(format!(
                "the file was written, but the reload command `{}` did not finish within {}s",
                cmd.join(" "),
                self.reload_timeout.as_secs()
            )),
            Ok(Err(e)) => Some(format!(
                "the file was written, but the reload command `{}` could not run: {e}",
                cmd.join(" ")
            )),
            Ok(Ok(out)) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let stderr = stderr.trim();
                Some(format!(
                    "the file was written, but the reload command `{}` failed ({}){}{stderr}",
                    cmd.join(" "),
                    out.status,
                    if stderr.is_empty() { "" } else { ": " },
                ))
            }
            Ok(Ok(_)) => None,
        }
    }

    /// After a write (or none): reload, and say what happened.
    async fn finish_write(&self, written: bool) -> Result<Applied, ProviderError> {
        if !written {
            return Ok(Applied::unchanged());
        }
        let mut applied = Applied::changed();
        if let Some(note) = self.reload().await {
            applied.notes.push(note);
        }
        Ok(applied)
    }

    async fn write_and_reload(
        &self,
        set: &RangeSet,
        disabled: bool,
    ) -> Result<Applied, ProviderError> {
        self.write_atomic(&self.render(set, disabled))?;
        let mut applied = Applied::changed();
        if let Some(note) = self.reload().await {
            applied.notes.push(note);
        }
        Ok(applied)
    }
}

fn everything() -> RangeSet {
    enforced::everything()
}

#[async_trait::async_trait]
impl Provider for FileProvider {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let this = self.clone();
        let text = tokio::task::spawn_blocking(move || this.read_text())
            .await
            .map_err(|e| ProviderError::Other(format!("reading {}: {e}", self.path.display())))??;
        let Some(text) = text else {
            let mut s = State::new(Restriction::Unrestricted)
                .with_leases(Vec::new(), Some(version_of(None)));
            s.details
                .push(("path".into(), self.path.display().to_string()));
            s.warnings.push(format!(
                "{} does not exist yet: nothing is restricted",
                self.path.display()
            ));
            return Ok(s);
        };
        let enforced = self.parse_content(&text)?;
        let leases = self.parse_leases(&text)?;
        let admitted = enforced.admitted;
        let restriction = if admitted.is_superset(&everything()) {
            Restriction::Unrestricted
        } else {
            Restriction::Ranges(admitted.clone())
        };
        let mut s =
            State::new(restriction).with_leases(leases.clone(), Some(version_of(Some(&text))));
        s.details
            .push(("path".into(), self.path.display().to_string()));
        if !self.written_by_us(&text) {
            s.warnings.push(format!(
                "{} was not written by rangekeeper; applying replaces it",
                self.path.display()
            ));
        } else if text != self.render_leased(&admitted, false, &leases)
            && text != self.render(&everything(), true)
        {
            s.warnings.push(format!(
                "{} differs from what rangekeeper writes for the addresses it admits (edited by hand?); the next apply rewrites it",
                self.path.display()
            ));
        }
        for n in enforced.notes {
            s.warnings.push(format!("{}: {n}", self.path.display()));
        }
        Ok(s)
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        _opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(desired, "the file would admit no client")?;
        // Lease records stay while their address does (a plain apply knows no leases).
        let this = self.clone();
        let desired_owned = desired.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _lock = this.lock()?;
            let text = this.read_text()?;
            let leases: Vec<Lease> = match &text {
                Some(t) => this
                    .parse_leases(t)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|l| desired_owned.contains_net(&l.net()))
                    .collect(),
                None => Vec::new(),
            };
            let content = this.render_leased(&desired_owned, false, &leases);
            // A no-op only when the file is exactly what would be written.
            if text.as_deref() == Some(content.as_str()) {
                return Ok(false);
            }
            this.write_atomic(&content).map(|()| true)
        })
        .await
        .map_err(|e| ProviderError::Other(format!("writing {}: {e}", self.path.display())))??;
        self.finish_write(written).await
    }

    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        _opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(desired, "the file would admit no client")?;
        rangekeeper_provider::lease::refuse_unheld(desired, leases)?;
        let this = self.clone();
        let content = self.render_leased(desired, false, leases);
        let version = version.map(str::to_owned);
        let written =
            tokio::task::spawn_blocking(move || this.write_if(&content, version.as_deref()))
                .await
                .map_err(|e| {
                    ProviderError::Other(format!("writing {}: {e}", self.path.display()))
                })??;
        self.finish_write(written).await
    }

    async fn disable(&self, _opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        if self.current().await?.restriction == Restriction::Unrestricted {
            return Ok(Applied::default());
        }
        self.write_and_reload(&everything(), true).await
    }
}

#[cfg(test)]
mod tests {
    use rangekeeper_provider::cidr;

    use super::*;

    fn provider(dir: &Path, format: &str, extra: serde_json::Value) -> FileProvider {
        let mut fields = serde_json::json!({"path": "allow.conf", "format": format});
        if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
            f.extend(e.clone());
        }
        let cfg = TargetConfig {
            name: "t".into(),
            base_dir: dir.to_path_buf(),
            fields: fields.as_object().cloned().unwrap_or_default(),
        };
        FileProvider::from_config(&cfg).unwrap()
    }

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
    }

    #[tokio::test]
    async fn every_format_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let want = set(&["203.0.113.0/24", "198.51.100.7", "2001:db8::/48"]);
        for format in ["plain", "nginx", "haproxy", "json"] {
            let p = provider(dir.path(), format, serde_json::json!({}));
            assert_eq!(
                p.current().await.unwrap().restriction,
                Restriction::Unrestricted
            );
            let applied = p.apply(&want, &ApplyOptions::default()).await.unwrap();
            assert!(applied.changed, "{format}");
            assert_eq!(
                p.current().await.unwrap().restriction,
                Restriction::Ranges(want.clone()),
                "{format}"
            );
            let again = p.apply(&want, &ApplyOptions::default()).await.unwrap();
            assert!(!again.changed, "{format}: second apply must be a no-op");
            p.disable(&ApplyOptions::default()).await.unwrap();
            assert_eq!(
                p.current().await.unwrap().restriction,
                Restriction::Unrestricted,
                "{format}"
            );
            std::fs::remove_file(p.path()).unwrap();
        }
    }

    #[tokio::test]
    async fn nginx_file_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), "nginx", serde_json::json!({}));
        p.apply(
            &set(&["192.0.2.0/25", "192.0.2.128/25"]),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
        let text = std::fs::read_to_string(p.path()).unwrap();
        assert!(text.ends_with("allow 192.0.2.0/24;\ndeny all;\n"), "{text}");
        assert!(text.starts_with("# managed by rangekeeper"));
    }

    #[tokio::test]
    async fn failed_reload_is_a_note_and_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(
            dir.path(),
            "plain",
            serde_json::json!({"reload": ["false"]}),
        );
        let applied = p
            .apply(&set(&["192.0.2.1"]), &ApplyOptions::default())
            .await
            .unwrap();
        assert!(applied.changed);
        assert_eq!(applied.notes.len(), 1, "{:?}", applied.notes);
        assert!(applied.notes[0].contains("reload command `false` failed"));
        assert!(p.path().exists());
    }

    #[tokio::test]
    async fn reload_timeout_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(
            dir.path(),
            "plain",
            serde_json::json!({"reload": ["sleep", "5"], "reloadTimeout": 1}),
        );
        let applied = p
            .apply(&set(&["192.0.2.1"]), &ApplyOptions::default())
            .await
            .unwrap();
        assert!(
            applied.notes[0].contains("did not finish within 1s"),
            "{:?}",
            applied.notes
        );
    }

    #[tokio::test]
    async fn corrupt_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), "plain", serde_json::json!({}));
        std::fs::write(p.path(), "# x\n192.0.2.0/24\n10.0.0.256\n").unwrap();
        let err = p.current().await.unwrap_err().to_string();
        assert!(err.contains("allow.conf:3:"), "{err}");
        assert!(err.contains("10.0.0.256"), "{err}");
    }

    #[test]
    fn unknown_field_is_a_config_error() {
        let cfg = TargetConfig {
            name: "t".into(),
            base_dir: ".".into(),
            fields: serde_json::json!({"path": "x", "fromat": "nginx"})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let err = FileProvider::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("unknown field `fromat`"), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn permissions_of_an_existing_file_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), "plain", serde_json::json!({}));
        std::fs::write(p.path(), "192.0.2.0/24\n").unwrap();
        std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
        p.apply(&set(&["192.0.2.9"]), &ApplyOptions::default())
            .await
            .unwrap();
        let mode = std::fs::metadata(p.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
