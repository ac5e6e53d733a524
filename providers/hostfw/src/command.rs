//! Running nft / iptables: optional `ip netns exec` prefix, stdin, a timeout on every call,
//! stderr captured, and failures mapped to typed [`ProviderError`]s with install hints.

use std::process::Stdio;
use std::time::Duration;

use rangekeeper_provider::ProviderError;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long one firewall command may take before we give up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs firewall tools, optionally inside a named network namespace.
#[derive(Debug, Clone)]
pub struct Runner {
    netns: Option<String>,
    timeout: Duration,
}

impl Runner {
    pub fn new(netns: Option<String>) -> Self {
        Runner {
            netns,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Run `program args...` (inside the namespace if one is set), feeding `stdin`.
    /// A non-zero exit is returned as `Output { success: false }`; spawn failures, missing
    /// binaries, missing namespaces and timeouts are errors.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output, ProviderError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str(), program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = self.display(program, args);
        tracing::debug!(command = %shown, "running");

        let mut child = cmd.spawn().map_err(|e| {
            let launched = if self.netns.is_some() { "ip" } else { program };
            if e.kind() == std::io::ErrorKind::NotFound {
                missing_binary(launched)
            } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                ProviderError::Auth(format!("cannot run `{launched}`: {e}"))
            } else {
                ProviderError::Other(format!("cannot run `{shown}`: {e}"))
            }
        })?;

        let input = stdin.map(str::to_owned);
        let mut pipe = child.stdin.take();
        let work = async move {
            if let (Some(text), Some(p)) = (input, pipe.as_mut()) {
                // A tool that exits early closes its stdin; its exit status tells the story.
                let _ = p.write_all(text.as_bytes()).await;
                let _ = p.shutdown().await;
            }
            drop(pipe);
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(self.timeout, work).await {
            Err(_) => {
                return Err(ProviderError::Transient(format!(
                    "`{shown}` did not finish within {}s",
                    self.timeout.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(ProviderError::Other(format!("`{shown}`: {e}"))),
            Ok(Ok(out)) => out,
        };
        let output = Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        };
        if !output.success {
            // Problems of the environment rather than of the command itself.
            if let Some(e) = environment_error(program, self.netns.as_deref(), &output.stderr) {
                return Err(e);
            }
        }
        Ok(output)
    }

    /// Like [`Runner::run`], but a non-zero exit is an error carrying stderr.
    pub async fn run_ok(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output, ProviderError> {
        let out = self.run(program, args, stdin).await?;
        if out.success {
            Ok(out)
        } else {
            Err(command_failed(&self.display(program, args), &out.stderr))
        }
    }

    /// The command as a user would type it (for messages).
    pub fn display(&self, program: &str, args: &[&str]) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if let Some(ns) = &self.netns {
            parts.extend(["ip", "netns", "exec", ns.as_str()]);
        }
        parts.push(program);
        parts.extend(args);
        parts.join(" ")
    }
}

/// The Debian package that ships a tool.
fn package_of(program: &str) -> &'static str {
    if program == "nft" {
        "nftables"
    } else if program.starts_with("ip6tables") || program.starts_with("iptables") {
        "iptables"
    } else if program == "ip" {
        "iproute2"
    } else {
        "the package that provides it"
    }
}

fn missing_binary(program: &str) -> ProviderError {
    ProviderError::Other(format!(
        "`{program}` was not found in PATH: install the `{}` package (apt-get install {})",
        package_of(program),
        package_of(program)
    ))
}

/// Failures that say something about the host rather than the ruleset.
pub(crate) fn environment_error(
    program: &str,
    netns: Option<&str>,
    stderr: &str,
) -> Option<ProviderError> {
    if stderr.contains(&format!("exec of \"{program}\" failed")) && stderr.contains("No such file")
    {
        return Some(missing_binary(program));
    }
    if let Some(ns) = netns
        && stderr.contains("Cannot open network namespace")
    {
        return Some(ProviderError::NotFound(format!(
            "network namespace `{ns}`: {stderr}"
        )));
    }
    if is_permission_error(stderr) {
        return Some(ProviderError::Auth(format!(
            "`{program}` was not allowed to change the firewall: run rangekeeper as root or grant it CAP_NET_ADMIN (in Kubernetes: securityContext.capabilities.add: [NET_ADMIN]); {program} said: {stderr}"
        )));
    }
    if stderr.contains("xtables lock") || stderr.contains("Resource temporarily unavailable") {
        return Some(ProviderError::Transient(format!(
            "`{program}` could not take the xtables lock: {stderr}"
        )));
    }
    None
}

fn is_permission_error(stderr: &str) -> bool {
    stderr.contains("Operation not permitted")
        || stderr.contains("Permission denied")
        || stderr.contains("you must be root")
}

/// A command that ran and failed for a reason of its own.
pub(crate) fn command_failed(shown: &str, stderr: &str) -> ProviderError {
    let stderr = if stderr.is_empty() {
        "(no error output)"
    } else {
        stderr
    };
    ProviderError::Other(format!("`{shown}` failed: {stderr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_cap_net_admin() {
        for stderr in [
            "Operation not permitted (you must be root)\nnetlink: Error: cache initialization failed: Operation not permitted",
            "iptables-restore v1.8.9 (legacy): iptables-restore: unable to initialize table 'filter'\n\nError occurred at line: 1\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\nPermission denied (you must be root)",
        ] {
            let e = environment_error("nft", None, stderr).unwrap();
            assert_eq!(e.kind(), "auth");
            assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
        }
    }

    #[test]
    fn missing_tools_name_the_package() {
        let e = environment_error(
            "nft",
            Some("ns"),
            "exec of \"nft\" failed: No such file or directory",
        )
        .unwrap();
        assert!(e.to_string().contains("apt-get install nftables"), "{e}");
        let e = environment_error(
            "ip6tables-restore",
            Some("ns"),
            "exec of \"ip6tables-restore\" failed: No such file or directory",
        )
        .unwrap();
        assert!(e.to_string().contains("install iptables"), "{e}");
        let e = environment_error(
            "nft",
            Some("gone"),
            "Cannot open network namespace \"gone\": No such file or directory",
        )
        .unwrap();
        assert_eq!(e.kind(), "not_found");
        assert!(environment_error("nft", None, "Error: No such file or directory").is_none());
    }

    #[tokio::test]
    async fn runs_commands_and_maps_missing_binaries() {
        let r = Runner::new(None);
        let out = r.run("cat", &[], Some("hello")).await.unwrap();
        assert!(out.success);
        assert_eq!(out.stdout, "hello");
        let e = r
            .run("rangekeeper-no-such-tool", &[], None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("was not found in PATH"), "{e}");
        let e = r
            .run_ok("sh", &["-c", "echo boom >&2; exit 3"], None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[tokio::test]
    async fn commands_time_out() {
        let r = Runner {
            netns: None,
            timeout: Duration::from_millis(200),
        };
        let e = r.run("sleep", &["5"], None).await.unwrap_err();
        assert_eq!(e.kind(), "transient");
    }
}
