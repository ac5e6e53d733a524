//! The plugin through the `rangekeeper` binary: `rangekeeper-provider-aws-sg` on `PATH`, the
//! AWS configuration from the environment as a user has it (`AWS_ENDPOINT_URL`, credentials
//! from the standard chain), moto's EC2 behind the counting proxy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{Proxy, add_rule, client, create_group, rule_lines, start_moto};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `rangekeeper` binary, built once per test run (cargo builds this crate's binary for
/// its tests, not another package's). Built as the workspace's tests build it (every
/// package's dev-dependencies in view), so after the test command's build it compiles
/// nothing; `cargo build -p rangekeeper` would resolve features differently and compile much
/// of the dependency tree again.
fn rangekeeper() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "--workspace", "--bins", "--examples"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exe = Path::new(env!("CARGO_BIN_EXE_rangekeeper-provider-aws-sg"))
            .parent()
            .unwrap()
            .join("rangekeeper");
        assert!(exe.is_file(), "{}", exe.display());
        exe
    })
}

/// A scratch directory holding a declaration, with only this plugin in a `bin` directory put
/// first on `PATH`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(decl: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rangekeeper.yaml"), decl).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_rangekeeper-provider-aws-sg"),
            bin.join("rangekeeper-provider-aws-sg"),
        )
        .unwrap();
        Scratch { dir }
    }

    /// Run rangekeeper with the plugin on PATH and EC2 at `endpoint`.
    fn run(&self, endpoint: &str, args: &[&str]) -> Output {
        self.command(endpoint, args, true).output().unwrap()
    }

    /// The same with no AWS credentials anywhere.
    fn run_without_credentials(&self, endpoint: &str, args: &[&str]) -> Output {
        self.command(endpoint, args, false).output().unwrap()
    }

    fn command(&self, endpoint: &str, args: &[&str], credentials: bool) -> Command {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(rangekeeper());
        cmd.current_dir(self.dir.path()).args(args);
        for k in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL_EC2",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "RANGEKEEPER_FILE",
            "RANGEKEEPER_LOG",
            "RANGEKEEPER_STATE_DIR",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("PATH", path)
            .env("NO_COLOR", "1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_CONFIG_FILE", "/nonexistent/rangekeeper/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/rangekeeper/credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if credentials {
            cmd.env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing");
        }
        cmd
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Group and rule IDs are random: snapshots show them as placeholders.
fn ids() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"sgr-[0-9a-f]{8,17}", "sgr-[ID]");
    s.add_filter(r"sg-[0-9a-f]{8,17}", "sg-[ID]");
    s.add_filter(r"vpc-[0-9a-f]{8,17}", "vpc-[ID]");
    s
}

#[tokio::test]
async fn providers_test_passes_through_the_binary_against_moto() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "conformance").await;
    let decl =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance.yaml"))
            .unwrap();
    assert!(decl.contains("sg-0123456789abcdef0"));
    let s = Scratch::new(&decl.replace("sg-0123456789abcdef0", &g));

    let o = s.run(
        &proxy.endpoint,
        &[
            "providers",
            "test",
            "aws-sg",
            "--target",
            "conformance",
            "--missing-target",
            "missing",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    insta::assert_snapshot!("providers_test_aws_sg", stdout(&o));
    assert!(
        proxy.writes() > 0,
        "the suite went through the plugin to EC2"
    );

    // `rangekeeper providers` lists the plugin with its capabilities.
    let o = s.run(&proxy.endpoint, &["providers", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == "aws-sg")
        .unwrap_or_else(|| panic!("{rows:#}"));
    insta::with_settings!({filters => vec![(r#""plugin": ".*""#, r#""plugin": "[PATH]""#)]}, {
        insta::assert_json_snapshot!("providers_row_aws_sg", row);
    });
}

#[tokio::test]
async fn plan_apply_and_plan_again_through_the_binary() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    add_rule(&c, &g, "tcp", (6000, 7000), "23.7.0.0/16", "vpn").await;
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  office: [140.82.112.0/20, 185.199.108.153, 2606:50c0::/32]\n\
         targets:\n  api:\n    provider: aws-sg\n    groupId: {g}\n    region: eu-west-1\n\
         \x20   allow: [office]\n"
    ));

    let o = s.run(&proxy.endpoint, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    ids().bind(|| insta::assert_snapshot!("plan_before_apply", stdout(&o)));

    let o = s.run(&proxy.endpoint, &["apply", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        rule_lines(&c, &g).await,
        [
            "tcp 6000 23.7.0.0/16 [vpn]",
            "tcp 6443 140.82.112.0/20 [rangekeeper:api]",
            "tcp 6443 185.199.108.153/32 [rangekeeper:api]",
            "tcp 6443 2606:50c0::/32 [rangekeeper:api]",
        ]
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("admits 23.7.0.0/16 on tcp 6000-7000"),
        "the rule of others is reported after the apply: {}",
        text(&o)
    );

    // In sync, never silently: the rule of others that admits more is in the plan.
    let writes = proxy.writes();
    let o = s.run(&proxy.endpoint, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    ids().bind(|| insta::assert_snapshot!("plan_in_sync_with_a_rule_of_others", stdout(&o)));
    let o = s.run(&proxy.endpoint, &["plan", "-o", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warnings = plan.to_string();
    assert!(warnings.contains("beyond the declared list"), "{plan:#}");
    let o = s.run(&proxy.endpoint, &["apply", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(proxy.writes(), writes, "in sync: nothing written");

    // No credentials anywhere: an auth error naming the target, nothing applied.
    let o = s.run_without_credentials(&proxy.endpoint, &["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The plan reports it for the target, with how to authenticate.
    let all = text(&o);
    assert!(
        all.contains("api (aws-sg): error")
            && all.contains("authentication or permission")
            && all.contains("AWS_ACCESS_KEY_ID"),
        "{all}"
    );
}
