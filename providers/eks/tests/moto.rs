//! The EKS provider against a real local EKS emulator: moto's server (PyPI `moto[server]`),
//! started by each test on 127.0.0.1 on a free port and killed on drop. moto answers
//! UpdateClusterConfig without an update id, has no DescribeUpdate and validates nothing, so
//! these tests prove convergence by read-back and that the strictness is our own.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_eks::Client;
use aws_sdk_eks::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_eks::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_eks::error::BoxError;
use aws_sdk_eks::types::{IpFamily, KubernetesNetworkConfigRequest, VpcConfigRequest};
use rangekeeper_provider::{
    ApplyOptions, Provider, ProviderError, RangeSet, Restriction, TargetConfig,
};
use rangekeeper_provider_eks::{EksProvider, Tuning, configure, factory};

/// A moto server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    let p = match std::env::var_os("RANGEKEEPER_MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server"),
    };
    p.exists().then_some(p)
}

/// Start moto, or `None` (skip) when it is not installed. Under `CI=true` a missing moto fails.
fn start_moto() -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        let msg =
            "moto_server not found (set RANGEKEEPER_MOTO_SERVER or run scripts/setup/40-moto.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}; CI=true requires it");
        }
        eprintln!("SKIP: {msg}");
        return None;
    };
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("moto_server exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {addr} within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto {
        child,
        endpoint: format!("http://{addr}"),
    })
}

/// Records the HTTP method and path of every request sent to the emulator.
#[derive(Debug, Clone, Default)]
struct Wire(Arc<Mutex<Vec<String>>>);

impl Intercept for Wire {
    fn name(&self) -> &'static str {
        "Wire"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request();
        let uri = req.uri().to_string();
        let path = uri
            .split("://")
            .nth(1)
            .and_then(|r| r.find('/').map(|i| r[i..].to_owned()));
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", req.method(), path.unwrap_or(uri)));
        Ok(())
    }
}

impl Wire {
    fn updates(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains("/update-config"))
            .count()
    }
}

/// A client for the emulator with fake credentials set in the client config (not the process
/// environment), rangekeeper's timeouts, and a request recorder.
fn client(moto: &Moto, wire: &Wire) -> Client {
    let conf = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(&moto.endpoint)
        .interceptor(wire.clone());
    Client::from_conf(configure(conf, &Tuning::fast()).build())
}

async fn create_cluster(c: &Client, name: &str, cidrs: &[&str], ipv6: bool) {
    let mut vpc = VpcConfigRequest::builder()
        .subnet_ids("subnet-0a1b2c3d")
        .subnet_ids("subnet-4e5f6a7b")
        .endpoint_public_access(true)
        .endpoint_private_access(false);
    for cidr in cidrs {
        vpc = vpc.public_access_cidrs(*cidr);
    }
    let mut req = c
        .create_cluster()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(vpc.build());
    if ipv6 {
        req = req.kubernetes_network_config(
            KubernetesNetworkConfigRequest::builder()
                .ip_family(IpFamily::Ipv6)
                .build(),
        );
    }
    req.send().await.expect("create cluster in moto");
}

fn set(s: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        s.iter()
            .map(|c| rangekeeper_provider::cidr::parse(c).unwrap().net),
    )
}

fn provider(c: &Client, cluster: &str) -> EksProvider {
    EksProvider::with_client(cluster, c.clone()).with_tuning(Tuning::fast())
}

#[tokio::test]
async fn current_apply_in_sync_and_disable_against_moto() {
    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    create_cluster(&c, "prod", &["0.0.0.0/0"], false).await;
    let p = provider(&c, "prod");

    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Unrestricted);
    assert!(
        st.details
            .contains(&("endpointPublicAccess".into(), "true".into())),
        "{:?}",
        st.details
    );
    assert!(
        st.details.contains(&("ipFamily".into(), "ipv4".into())),
        "{:?}",
        st.details
    );
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("private endpoint access is off")),
        "{:?}",
        st.warnings
    );

    // Apply: moto answers without an update id; the provider confirms by reading back.
    let desired = set(&[
        "140.82.112.0/20",
        "151.101.0.0/17",
        "151.101.128.0/17",
        "185.199.108.153",
    ]);
    let applied = p.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert!(applied.changed && !applied.pending, "{applied:?}");
    assert_eq!(wire.updates(), 1);
    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Ranges(desired.clone()));
    let stored = st
        .details
        .iter()
        .find(|(k, _)| k == "publicAccessCidrs")
        .unwrap();
    assert_eq!(
        stored.1, "140.82.112.0/20, 151.101.0.0/16, 185.199.108.153/32",
        "canonical list sent"
    );

    // In sync (same set, another spelling): no update call at all.
    let again = set(&[
        "151.101.0.0/16",
        "185.199.108.153/32",
        "140.82.112.0/21",
        "140.82.120.0/21",
    ]);
    let applied = p.apply(&again, &ApplyOptions::default()).await.unwrap();
    assert!(!applied.changed);
    assert_eq!(
        wire.updates(),
        1,
        "an in-sync apply must not call UpdateClusterConfig"
    );

    // Disable: 0.0.0.0/0, then a second disable makes no call.
    let applied = p.disable(&ApplyOptions::default()).await.unwrap();
    assert!(applied.changed);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert_eq!(wire.updates(), 2);
    let applied = p.disable(&ApplyOptions::default()).await.unwrap();
    assert!(!applied.changed);
    assert_eq!(wire.updates(), 2);
}

#[tokio::test]
async fn strictness_is_ours_because_moto_validates_nothing() {
    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    create_cluster(&c, "prod", &["0.0.0.0/0"], false).await;
    let p = provider(&c, "prod");
    let o = ApplyOptions::default();

    // A private range: moto would store it; we refuse before any update.
    let e = p.apply(&set(&["10.20.0.0/16"]), &o).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("10.20.0.0/16")),
        "{e:?}"
    );
    // IPv6 on an IPv4 cluster.
    let e = p.apply(&set(&["2606:50c0::/32"]), &o).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("ipFamily ipv4")),
        "{e:?}"
    );
    // More than 40 ranges.
    let many: Vec<String> = (0..41).map(|i| format!("140.82.{}.0/24", i * 2)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = p.apply(&set(&many), &o).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("at most 40")),
        "{e:?}"
    );
    assert_eq!(wire.updates(), 0);

    // A bad CIDR stored by someone else (moto accepts anything) is an error naming it.
    c.update_cluster_config()
        .name("prod")
        .resources_vpc_config(
            VpcConfigRequest::builder()
                .public_access_cidrs("140.82.112.0/20")
                .public_access_cidrs("300.1.2.0/24")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let e = p.current().await.unwrap_err();
    assert!(e.to_string().contains("300.1.2.0/24"), "{e}");
}

#[tokio::test]
async fn ipv6_cluster_accepts_ipv6_and_disable_opens_both_families() {
    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    create_cluster(&c, "v6", &["0.0.0.0/0", "::/0"], true).await;
    let p = provider(&c, "v6");
    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Unrestricted);
    assert!(
        st.details.contains(&("ipFamily".into(), "ipv6".into())),
        "{:?}",
        st.details
    );

    let desired = set(&["140.82.112.0/20", "2606:50c0::/32"]);
    assert!(p.check(&desired).is_empty());
    let applied = p.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert!(applied.changed);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(desired)
    );

    p.disable(&ApplyOptions::default()).await.unwrap();
    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Unrestricted);
    let stored = st
        .details
        .iter()
        .find(|(k, _)| k == "publicAccessCidrs")
        .unwrap();
    assert_eq!(stored.1, "0.0.0.0/0, ::/0");
}

#[tokio::test]
async fn missing_cluster_is_not_found_and_no_wait_is_pending() {
    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    let e = provider(&c, "nope").current().await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)), "{e:?}");

    create_cluster(&c, "prod", &["0.0.0.0/0"], false).await;
    let p = provider(&c, "prod");
    let o = ApplyOptions {
        wait: false,
        ..ApplyOptions::default()
    };
    let applied = p.apply(&set(&["140.82.112.0/20"]), &o).await.unwrap();
    assert!(applied.changed && applied.pending);
    assert_eq!(wire.updates(), 1);
}

// ---- The real factory path: default chain, per-target profile, AWS_ENDPOINT_URL[_EKS]. ----
// The process environment cannot be changed safely inside a test process, so the parent test
// re-runs this test binary with a prepared environment and runs one child test in it.

const CHILD: &str = "RANGEKEEPER_EKS_CHILD";

fn run_child(moto: &Moto, mode: &str, env: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "moto::factory_child",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for k in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_EKS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        cmd.env_remove(k);
    }
    cmd.env(CHILD, mode)
        .env("AWS_CONFIG_FILE", "/nonexistent/rangekeeper/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/rangekeeper/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RK_MOTO", &moto.endpoint);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "child {mode}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn child_passed(out: &std::process::Output) -> bool {
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed")
}

#[tokio::test]
async fn factory_honours_aws_endpoint_url_env_and_profiles() {
    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    create_cluster(&c, "prod", &["0.0.0.0/0"], false).await;
    let creds = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];

    // The service-specific variable.
    let mut env = creds.to_vec();
    env.push(("AWS_ENDPOINT_URL_EKS", moto.endpoint.as_str()));
    assert!(child_passed(&run_child(&moto, "env-eks", &env)));
    assert_eq!(
        c.describe_cluster()
            .name("prod")
            .send()
            .await
            .unwrap()
            .cluster()
            .unwrap()
            .resources_vpc_config()
            .unwrap()
            .public_access_cidrs(),
        ["140.82.112.0/20"]
    );

    // The generic variable.
    let mut env = creds.to_vec();
    env.push(("AWS_ENDPOINT_URL", moto.endpoint.as_str()));
    assert!(child_passed(&run_child(&moto, "env-generic", &env)));

    // A named profile (per-target `profile:`) carrying credentials and the endpoint.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile rk-test]\naws_access_key_id = testing\naws_secret_access_key = testing\nendpoint_url = {}\n",
            moto.endpoint
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    assert!(child_passed(&run_child(
        &moto,
        "profile",
        &[("AWS_CONFIG_FILE", config)]
    )));

    // No credentials anywhere: an Auth error, not a hang.
    let env = [("AWS_ENDPOINT_URL_EKS", moto.endpoint.as_str())];
    assert!(child_passed(&run_child(&moto, "no-credentials", &env)));
}

#[tokio::test]
#[ignore = "run by factory_honours_aws_endpoint_url_env_and_profiles in a prepared environment"]
async fn factory_child() {
    let mode = std::env::var(CHILD)
        .expect("only run as a child of factory_honours_aws_endpoint_url_env_and_profiles");
    let mut fields = serde_json::json!({"region": "eu-west-1", "cluster": "prod"});
    if mode == "profile" {
        fields["profile"] = "rk-test".into();
    }
    let cfg = TargetConfig {
        name: "prod-eks".into(),
        base_dir: ".".into(),
        fields: fields.as_object().cloned().unwrap(),
    };
    let p = factory(&cfg).unwrap();
    match mode.as_str() {
        "no-credentials" => {
            let e = p.current().await.unwrap_err();
            println!("error: {e}");
            assert!(matches!(e, ProviderError::Auth(_)), "{e:?}");
        }
        _ => {
            let st = p.current().await.unwrap();
            assert!(st.details.iter().any(|(k, _)| k == "endpointPublicAccess"));
            let desired = set(&["140.82.112.0/20"]);
            p.apply(&desired, &ApplyOptions::default()).await.unwrap();
            assert_eq!(
                p.current().await.unwrap().restriction,
                Restriction::Ranges(desired)
            );
        }
    }
}

#[tokio::test]
async fn passes_the_conformance_suite_against_moto() {
    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    create_cluster(&c, "conformance", &["0.0.0.0/0"], false).await;
    let p = provider(&c, "conformance");
    let a = set(&["140.82.112.0/20", "185.199.108.153"]);
    let b = set(&["151.101.0.0/16", "140.82.112.0/21", "20.33.4.0/23"]);
    let updates = || wire.updates();
    // A cluster the account does not have.
    let missing = provider(&c, "no-such-cluster");
    rangekeeper_provider::conformance::Suite::new(&p, &a, &b)
        .with_write_counter(&updates)
        .with_missing_target(&missing)
        .run()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wire.updates(), 5, "A, B, disable, A, B without waiting");
}

/// Discovery against moto: ListClusters followed page by page (one cluster a page here),
/// DescribeCluster for the tags, the tag filter applied, names stable and sorted.
#[tokio::test]
async fn discovery_lists_every_page_and_filters_by_tags_against_moto() {
    use rangekeeper_provider::Discoverer as _;
    use rangekeeper_provider_eks::discover::{EksDiscoverer, EksTemplate};

    let Some(moto) = start_moto() else { return };
    let wire = Wire::default();
    let c = client(&moto, &wire);
    for (name, env) in [("c-one", "prod"), ("a-two", "dev"), ("b-three", "prod")] {
        let vpc = VpcConfigRequest::builder()
            .subnet_ids("subnet-0a1b2c3d")
            .endpoint_public_access(true)
            .build();
        c.create_cluster()
            .name(name)
            .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
            .resources_vpc_config(vpc)
            .tags("env", env)
            .send()
            .await
            .expect("create cluster in moto");
    }
    let template = EksTemplate::from_config(&TargetConfig {
        name: "fleet".into(),
        base_dir: ".".into(),
        fields: serde_json::json!({"regions": ["eu-west-1"], "tags": {"env": "prod"}})
            .as_object()
            .cloned()
            .unwrap(),
    })
    .unwrap();
    let d = EksDiscoverer::with_clients(template, [("eu-west-1".to_owned(), c.clone())].into())
        .with_page_size(1)
        .with_tuning(Tuning::fast());
    let found = d.discover().await.unwrap();
    let names: Vec<&str> = found.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["eks/eu-west-1/b-three", "eks/eu-west-1/c-one"]);
    assert!(found.iter().all(|t| t.pending.is_none()), "{found:?}");
    let lists = wire
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET /clusters?") || r == &"GET /clusters")
        .count();
    assert_eq!(lists, 3, "three pages of one: {:?}", wire.0.lock().unwrap());
}
