//! `discover:` through the binary: AKS clusters listed by the fake ARM (paged with
//! `nextLink`, filtered by tags, one still being created, one overridden by a declared
//! target, a list call that fails), EKS clusters listed by moto in two regions, and the
//! reconcile loop following a fleet that changes (a new cluster, a provisioning one that
//! becomes ready, a vanished one, a failing list call that keeps the last good list), and GKE
//! clusters listed by the fake GKE API in every location of a project (labels, pending
//! statuses, `missingZones` failing the listing, a bad template refused offline).

#[cfg(feature = "aks")]
mod aks {
    use std::net::Ipv4Addr;
    use std::process::{Child, Output, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::{Scratch, seen, stdout};
    use rangekeeper_test_support::fake_arm::{FakeArm, Fault, example_cluster};
    use serde_json::{Value, json};

    const TOKEN: &str = "test-token-not-a-secret";
    const SUB: &str = "00000000-0000-0000-0000-000000000000";
    const EGRESS1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip1";
    const EGRESS2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip2";

    fn path(rg: &str, name: &str) -> String {
        FakeArm::cluster_path(SUB, rg, name)
    }

    fn name(rg: &str, cluster: &str) -> String {
        format!("aks/{SUB}/{rg}/{cluster}")
    }

    /// A cluster of the example with these tags and provisioning state.
    fn cluster(tags: Value, state: &str) -> Value {
        let mut c = example_cluster();
        c["tags"] = tags;
        c["properties"]["provisioningState"] = Value::String(state.to_owned());
        c
    }

    /// c1, c2 (prod, ready), c3 (prod, being created) and c4 (dev); two per page.
    async fn fleet() -> FakeArm {
        let fake = FakeArm::start(TOKEN).await.unwrap();
        fake.insert_cluster(
            &path("rg1", "c1"),
            cluster(json!({"env": "prod"}), "Succeeded"),
        );
        fake.insert_cluster(
            &path("rg1", "c2"),
            cluster(json!({"Env": "prod"}), "Succeeded"),
        );
        fake.insert_cluster(
            &path("rg2", "c3"),
            cluster(json!({"env": "prod"}), "Creating"),
        );
        fake.insert_cluster(
            &path("rg2", "c4"),
            cluster(json!({"env": "dev"}), "Succeeded"),
        );
        fake.insert_public_ip(EGRESS1, Some(Ipv4Addr::new(20, 1, 2, 3)));
        fake.insert_public_ip(EGRESS2, Some(Ipv4Addr::new(20, 1, 2, 4)));
        fake.set_lro(1, Duration::from_millis(200), 0);
        fake.set_page_size(2);
        fake
    }

    /// A template over the subscription, prod only, and `c2` declared explicitly.
    fn declaration(endpoint: &str, interval: &str) -> String {
        format!(
            r#"version: 1
sets:
  office: [52.160.0.0/16, 20.1.2.3, 20.1.2.4]
discover:
  interval: {interval}
  templates:
    prod-aks:
      provider: aks
      subscription: {SUB}
      tags: {{env: prod}}
      armEndpoint: {endpoint}
      allow: [office]
targets:
  aks/{SUB}/rg1/c2:
    provider: aks
    subscription: {SUB}
    resourceGroup: rg1
    cluster: c2
    armEndpoint: {endpoint}
    allow: [office, 52.161.0.0/16]
"#
        )
    }

    /// Run the binary off the async runtime, so the fake keeps serving meanwhile.
    async fn run(dir: &std::path::Path, args: &[&str]) -> Output {
        let mut c = crate::common::rangekeeper(dir);
        c.env("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN).args(args);
        crate::common::output_off_runtime(c).await
    }

    fn ranges(fake: &FakeArm, rg: &str, c: &str) -> Option<Value> {
        fake.cluster(&path(rg, c)).and_then(|c| {
            c.pointer("/properties/apiServerAccessProfile/authorizedIPRanges")
                .cloned()
        })
    }

    /// The port of the fake changes per run.
    fn stable(text: &str, endpoint: &str) -> String {
        text.replace(endpoint, "http://127.0.0.1:PORT")
    }

    fn lists(fake: &FakeArm) -> Vec<rangekeeper_test_support::fake_arm::Recorded> {
        fake.requests()
            .into_iter()
            .filter(|r| {
                r.path
                    .to_ascii_lowercase()
                    .ends_with("/providers/microsoft.containerservice/managedclusters")
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aks_templates_list_pages_filter_by_tags_and_yield_to_declared_targets() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint, "5m"));

        let validate = run(s.path(), &["validate"]).await;
        assert_eq!(validate.status.code(), Some(0), "{}", seen(&validate));
        assert!(fake.requests().is_empty(), "validate makes no call");
        insta::assert_snapshot!("discovery_validate", stable(&seen(&validate), &endpoint));

        let plan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
        assert_eq!(plan.status.code(), Some(2), "{}", seen(&plan));
        insta::assert_snapshot!("discovery_aks_plan", stable(&seen(&plan), &endpoint));
        // Every page was read, each with the api-version and the token: 4 clusters, 2 a page.
        let listed = lists(&fake);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(
            listed
                .iter()
                .all(|r| r.authorized && r.api_version.is_some())
        );
        assert!(fake.puts().is_empty(), "plan changes nothing");

        let json = run(s.path(), &["plan", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&json.stdout).unwrap();
        let plans = v["plans"].as_array().unwrap();
        let by = |n: &str| plans.iter().find(|p| p["target"] == n).cloned();
        assert_eq!(by(&name("rg1", "c1")).unwrap()["discoveredBy"], "prod-aks");
        let declared = by(&name("rg1", "c2")).unwrap();
        assert!(declared.get("discoveredBy").is_none(), "{declared}");
        assert!(
            by(&name("rg2", "c3")).is_none(),
            "a cluster being created is not planned"
        );
        assert!(by(&name("rg2", "c4")).is_none(), "the tags filter dev out");
        insta::assert_json_snapshot!("discovery_aks_plan_json", v["discovery"]);

        let markdown = run(s.path(), &["plan", "-o", "markdown"]).await;
        insta::assert_snapshot!(
            "discovery_aks_plan_markdown",
            stable(&stdout(&markdown), &endpoint)
        );

        let apply = run(s.path(), &["apply", "--yes"]).await;
        assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
        assert_eq!(
            ranges(&fake, "rg1", "c1"),
            Some(json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"]))
        );
        assert_eq!(
            ranges(&fake, "rg1", "c2"),
            Some(json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/15"])),
            "the declared target's list wins"
        );
        assert_eq!(ranges(&fake, "rg2", "c3"), None, "pending: untouched");
        assert_eq!(ranges(&fake, "rg2", "c4"), None, "filtered out: untouched");

        let show = run(s.path(), &["show"]).await;
        assert_eq!(show.status.code(), Some(0), "{}", seen(&show));
        insta::assert_snapshot!("discovery_aks_show", stable(&seen(&show), &endpoint));
        let show = run(s.path(), &["show", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&show.stdout).unwrap();
        let c1 = v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == name("rg1", "c1"))
            .unwrap();
        assert_eq!(c1["discoveredBy"], "prod-aks");
        assert_eq!(v["discovery"][0]["pending"][0]["target"], name("rg2", "c3"));

        let replan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
        assert_eq!(replan.status.code(), Some(0), "in sync: {}", seen(&replan));

        // `disable` reaches a discovered target by its name; a pending one is refused.
        let pending = run(s.path(), &["disable", "-t", &name("rg2", "c3"), "--yes"]).await;
        assert_eq!(pending.status.code(), Some(1), "{}", seen(&pending));
        assert!(seen(&pending).contains("is pending"), "{}", seen(&pending));
        let disable = run(s.path(), &["disable", "-t", &name("rg1", "c1"), "--yes"]).await;
        assert_eq!(disable.status.code(), Some(0), "{}", seen(&disable));
        let c1 = ranges(&fake, "rg1", "c1");
        assert!(c1.is_none() || c1 == Some(json!([])), "{c1:?}");
        for o in [&plan, &json, &apply, &show, &replan, &disable] {
            assert!(!seen(o).contains(TOKEN));
        }
    }

    /// Every problem of the section is found offline, located at file:line:column. Its
    /// templates use `eks` too, whose absence is another error (tested in that build by
    /// `cli`'s feature tests), and its message lists every provider that can discover, so
    /// it needs `gke` as well.
    #[cfg(all(feature = "eks", feature = "gke"))]
    #[test]
    fn validate_locates_every_problem_of_the_discover_section() {
        let s = Scratch::new(
            "version: 1
sets:
  office: [52.160.0.0/16]
discover:
  interval: 0s
  templates:
    prod-aks:
      provider: aks
      subscription: not-a-guid
      tags: {env: prod}
      allow: [office]
    files:
      provider: file
      path: x.txt
      allow: [office]
    eks-fleet:
      provider: eks
      regions: [eu-west-1]
      allow: [ofice]
    empty:
      provider: eks
      regions: [eu-west-1]
      allow: []
    bad name:
      provider: eks
      regions: [eu-west-1]
      allow: [office]
",
        );
        let o = s.run(&["validate"]);
        assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
        insta::assert_snapshot!("discovery_validate_errors", seen(&o));
        let o = s.run(&["validate", "-o", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        insta::assert_json_snapshot!("discovery_validate_errors_json", v["diagnostics"]);
        // No section at all with no targets either: still "no targets".
        let s = Scratch::new("version: 1\ndiscover:\n  templates: {}\n");
        let o = s.run(&["validate"]);
        assert!(
            seen(&o).contains("`discover` has no `templates`"),
            "{}",
            seen(&o)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_list_call_fails_plan_and_apply_changes_nothing() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint, "5m"));
        // Refused: not retried, and named.
        fake.inject_list(
            Fault::Status(
                403,
                "AuthorizationFailed".into(),
                "The client does not have authorization to perform action 'Microsoft.ContainerService/managedClusters/read'.".into(),
            ),
            1,
        );
        let plan = run(s.path(), &["plan"]).await;
        assert_eq!(plan.status.code(), Some(1), "{}", seen(&plan));
        insta::assert_snapshot!(
            "discovery_aks_list_refused",
            stable(&seen(&plan), &endpoint)
        );
        assert_eq!(lists(&fake).len(), 1, "an auth error is not retried");

        fake.inject_list(
            Fault::Status(403, "AuthorizationFailed".into(), "no".into()),
            1,
        );
        let apply = run(s.path(), &["apply", "--yes"]).await;
        assert_eq!(apply.status.code(), Some(1), "{}", seen(&apply));
        assert!(
            seen(&apply).contains("nothing was applied: discovery failed for template `prod-aks`"),
            "{}",
            seen(&apply)
        );
        assert!(
            fake.puts().is_empty(),
            "nothing is applied, not even the declared target"
        );

        // A server error is retried by the one retry owner, and the listing then succeeds.
        fake.clear_requests();
        fake.inject_list(Fault::ServerError, 1);
        let plan = run(s.path(), &["plan"]).await;
        assert_eq!(plan.status.code(), Some(0), "{}", seen(&plan));
        assert_eq!(lists(&fake).len(), 3, "one failed page, then two pages");
        assert!(stdout(&plan).contains(&name("rg1", "c1")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconcile_once_reconciles_the_discovered_targets_and_fails_on_a_failed_listing() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint, "5m"));
        let once = run(s.path(), &["reconcile", "--once", "--state-dir", "state"]).await;
        assert_eq!(once.status.code(), Some(0), "{}", seen(&once));
        insta::assert_snapshot!(
            "discovery_reconcile_once",
            stable(&stdout(&once), &endpoint)
        );
        assert!(ranges(&fake, "rg1", "c1").is_some() && ranges(&fake, "rg1", "c2").is_some());
        assert_eq!(ranges(&fake, "rg2", "c3"), None, "pending: untouched");

        let json = run(
            s.path(),
            &["reconcile", "--once", "--state-dir", "state", "-o", "json"],
        )
        .await;
        let v: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["discovery"][0]["pending"][0]["target"], name("rg2", "c3"));
        assert!(
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["result"] == "in-sync"),
            "{v}"
        );

        fake.inject_list(
            Fault::Status(403, "AuthorizationFailed".into(), "no".into()),
            1,
        );
        let failed = run(s.path(), &["reconcile", "--once", "--state-dir", "state"]).await;
        assert_eq!(failed.status.code(), Some(1), "{}", seen(&failed));
        assert!(
            seen(&failed).contains("discovery failed for template `prod-aks`"),
            "{}",
            seen(&failed)
        );
    }

    /// The reconcile loop, its stderr in `loop.log`.
    fn spawn(s: &Scratch, metrics: &str) -> Child {
        let log = std::fs::File::create(s.path().join("loop.log")).unwrap();
        crate::common::rangekeeper_std(s.path())
            .env("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN)
            .args([
                "reconcile",
                "--state-dir",
                "state",
                "--interval",
                "1s",
                "--metrics-addr",
                metrics,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cond()
    }

    fn free_addr() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}")
    }

    fn metrics(addr: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    }

    fn sample(text: &str, sample: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconcile_follows_the_fleet_and_keeps_the_last_good_list_when_listing_fails() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint, "1s"));
        let addr = free_addr();
        let mut child = spawn(&s, &addr);
        let log = || s.read_or_empty("loop.log");
        let tp = r#"{template="prod-aks"}"#;

        // The first listing: c1 is discovered and restricted; c3 is pending.
        assert!(
            wait_until(Duration::from_secs(60), || ranges(&fake, "rg1", "c1")
                .is_some())
            .await,
            "{}",
            log()
        );
        let m = metrics(&addr);
        assert_eq!(
            sample(&m, &format!("rangekeeper_discovery_pending{tp}")),
            Some(1.0),
            "{m}"
        );
        assert_eq!(ranges(&fake, "rg2", "c3"), None);

        // c3 finishes provisioning: picked up (pending clusters are looked at again).
        fake.modify_cluster(&path("rg2", "c3"), |c| {
            c["properties"]["provisioningState"] = "Succeeded".into();
        });
        assert!(
            wait_until(Duration::from_secs(60), || ranges(&fake, "rg2", "c3")
                .is_some())
            .await,
            "{}",
            log()
        );
        // A new cluster appears: picked up.
        fake.insert_cluster(
            &path("rg3", "c5"),
            cluster(json!({"env": "prod"}), "Succeeded"),
        );
        assert!(
            wait_until(Duration::from_secs(60), || ranges(&fake, "rg3", "c5")
                .is_some())
            .await,
            "{}",
            log()
        );
        // c1 is deleted: dropped, counted and logged, never an error.
        fake.remove_cluster(&path("rg1", "c1"));
        let c1 = name("rg1", "c1");
        assert!(
            wait_until(Duration::from_secs(60), || {
                sample(
                    &metrics(&addr),
                    &format!("rangekeeper_discovery_vanished_total{tp}"),
                ) == Some(1.0)
            })
            .await,
            "{}",
            log()
        );
        let m = metrics(&addr);
        assert!(
            !m.contains(&format!("target=\"{c1}\"")),
            "a vanished target has no metrics: {m}"
        );
        assert!(
            log().contains(&format!("`{c1}` vanished from template `prod-aks`")),
            "{}",
            log()
        );

        // Listing fails from now on: the last good list stays in force, the failure is
        // named in the log and the metrics, and a target changed meanwhile is still repaired.
        fake.inject_list(Fault::ServerError, 1000);
        assert!(
            wait_until(Duration::from_secs(60), || {
                sample(
                    &metrics(&addr),
                    r#"rangekeeper_discovery_errors_total{template="prod-aks",kind="transient"}"#,
                )
                .is_some_and(|n| n >= 2.0)
            })
            .await,
            "{}",
            log()
        );
        let m = metrics(&addr);
        assert_eq!(
            sample(&m, &format!("rangekeeper_discovery_up{tp}")),
            Some(0.0),
            "{m}"
        );
        assert_eq!(
            sample(&m, &format!("rangekeeper_discovery_targets{tp}")),
            Some(2.0),
            "{m}"
        );
        let c5 = name("rg3", "c5");
        fake.modify_cluster(&path("rg3", "c5"), |c| {
            c["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] = json!(["1.2.3.4/32"]);
        });
        assert!(
            wait_until(Duration::from_secs(60), || {
                ranges(&fake, "rg3", "c5")
                    == Some(json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"]))
            })
            .await,
            "drift on `{c5}` is repaired while listing fails: {}",
            log()
        );
        assert!(
            log().contains("discovery by template `prod-aks` failed")
                && log().contains("its last good list stays in force"),
            "{}",
            log()
        );

        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
            .await
            .unwrap();
        assert_eq!(code, Some(0), "{}", log());
        assert!(!log().contains(TOKEN));
    }
}

#[cfg(feature = "eks")]
mod eks {
    use std::time::Duration;

    use crate::common::moto::Moto;
    use crate::common::{Scratch, seen};

    const DECL: &str = "\
version: 1
sets:
  office: [81.2.69.160/28]
discover:
  templates:
    fleet:
      provider: eks
      regions: [eu-west-1, us-east-1]
      tags: {env: prod}
      allow: [office]
";

    fn run(moto: &Moto, s: &Scratch, args: &[&str]) -> std::process::Output {
        let mut cmd = crate::common::rangekeeper(s.path());
        crate::common::moto::aws_env(&mut cmd, s.path(), &moto.endpoint())
            .args(args)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    }

    #[test]
    fn eks_templates_list_clusters_in_every_region_by_tags() {
        let Some(moto) = Moto::start() else { return };
        moto.create_tagged_cluster_in("eu-west-1", "a", &serde_json::json!({"env": "prod"}));
        moto.create_tagged_cluster_in("eu-west-1", "b", &serde_json::json!({"env": "dev"}));
        moto.create_tagged_cluster_in("us-east-1", "c", &serde_json::json!({"env": "prod"}));
        let s = Scratch::new(DECL);

        let plan = run(&moto, &s, &["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(2), "{}", seen(&plan));
        // stderr names the scratch directory (the AWS SDK's notes on its config files).
        insta::assert_snapshot!("discovery_eks_plan", crate::common::stdout(&plan));

        let apply = run(&moto, &s, &["apply", "--yes"]);
        assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
        assert_eq!(moto.stored_cidrs_in("eu-west-1", "a"), ["81.2.69.160/28"]);
        assert_eq!(moto.stored_cidrs_in("us-east-1", "c"), ["81.2.69.160/28"]);
        assert_eq!(
            moto.stored_cidrs_in("eu-west-1", "b"),
            ["0.0.0.0/0"],
            "the tags filter dev out"
        );

        let show = run(&moto, &s, &["show", "-o", "json"]);
        assert_eq!(show.status.code(), Some(0), "{}", seen(&show));
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        let names: Vec<&str> = v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["eks/eu-west-1/a", "eks/us-east-1/c"]);
        assert!(
            v["targets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["discoveredBy"] == "fleet")
        );
        insta::assert_json_snapshot!("discovery_eks_show_json", v["discovery"]);
    }
}

#[cfg(feature = "gke")]
mod gke {
    use std::process::Output;
    use std::time::Duration;

    use crate::common::{Scratch, seen, stdout};
    use rangekeeper_test_support::gke::{FakeGke, Fault, On, example_cluster};
    use serde_json::{Value, json};

    const TOKEN: &str = "ya29.discovery-binary-token-3e9c";
    const PROJECT: &str = "test-project";

    fn name(location: &str, cluster: &str) -> String {
        format!("gke/{PROJECT}/{location}/{cluster}")
    }

    /// a (prod, RUNNING), b (prod, RECONCILING: an operation running, in a zone), c (prod,
    /// PROVISIONING), d (dev) and e (prod, declared in `targets:` too).
    async fn fleet() -> FakeGke {
        let fake = FakeGke::start().await.unwrap();
        fake.accept_token(TOKEN);
        for (loc, c, env, status) in [
            ("europe-west1", "a", "prod", "RUNNING"),
            ("europe-west1-b", "b", "prod", "RECONCILING"),
            ("us-central1", "c", "prod", "PROVISIONING"),
            ("europe-west1", "d", "dev", "RUNNING"),
            ("europe-west1", "e", "prod", "RUNNING"),
        ] {
            let mut body = example_cluster(PROJECT, loc, c);
            body["resourceLabels"] = json!({"env": env});
            body["status"] = Value::String(status.to_owned());
            fake.insert_cluster(PROJECT, loc, c, body);
        }
        fake.set_operation(0, 1, Duration::from_secs(30));
        fake
    }

    fn declaration(endpoint: &str) -> String {
        format!(
            r#"version: 1
sets:
  office: [198.51.100.0/24, 192.0.2.0/24]
discover:
  templates:
    prod-gke:
      provider: gke
      project: {PROJECT}
      labels: {{env: prod}}
      endpoint: {endpoint}
      allow: [office]
targets:
  gke/{PROJECT}/europe-west1/e:
    provider: gke
    project: {PROJECT}
    location: europe-west1
    cluster: e
    endpoint: {endpoint}
    allow: [office, 203.0.113.0/24]
"#
        )
    }

    /// Run the binary off the async runtime (so the fake keeps serving), with the fake's token
    /// and no other Google credentials.
    async fn run(dir: &std::path::Path, args: &[&str]) -> Output {
        let mut c = crate::common::rangekeeper(dir);
        c.env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("GCE_METADATA_HOST")
            .env("CLOUDSDK_CONFIG", dir.join("no-gcloud"))
            .env("NO_GCE_CHECK", "true")
            .env("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN)
            .args(args);
        crate::common::output_off_runtime(c).await
    }

    /// The port of the fake changes per run, and so does the time retries took (`gave up
    /// after 4 attempts in 2.2s`).
    fn stable(text: &str, endpoint: &str) -> String {
        let text = text.replace(endpoint, "http://127.0.0.1:PORT");
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(" attempts in ") {
            let (head, tail) = rest.split_at(at + " attempts in ".len());
            out.push_str(head);
            out.push_str("<time>");
            rest = tail.trim_start_matches(|c: char| {
                c.is_ascii_digit() || c == '.' || c == 'm' || c == 's'
            });
        }
        out.push_str(rest);
        out
    }

    /// The CIDR blocks a cluster holds now.
    fn blocks(fake: &FakeGke, location: &str, cluster: &str) -> Vec<String> {
        let c = fake.cluster(PROJECT, location, cluster).unwrap();
        c.pointer(
            "/controlPlaneEndpointsConfig/ipEndpointsConfig/authorizedNetworksConfig/cidrBlocks",
        )
        .and_then(Value::as_array)
        .map(|b| {
            b.iter()
                .filter_map(|b| b["cidrBlock"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gke_templates_list_every_location_filter_by_labels_and_yield_to_declared_targets() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint));

        let validate = run(s.path(), &["validate"]).await;
        assert_eq!(validate.status.code(), Some(0), "{}", seen(&validate));
        assert!(fake.requests().is_empty(), "validate makes no call");

        let plan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
        assert_eq!(plan.status.code(), Some(2), "{}", seen(&plan));
        insta::assert_snapshot!("discovery_gke_plan", stable(&seen(&plan), &endpoint));
        let lists = fake.lists();
        assert_eq!(lists.len(), 1, "one call for every location: {lists:?}");
        assert_eq!(
            lists[0].path,
            format!("/v1/projects/{PROJECT}/locations/-/clusters")
        );
        assert!(fake.updates().is_empty(), "plan changes nothing");

        let json = run(s.path(), &["plan", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&json.stdout).unwrap();
        let plans = v["plans"].as_array().unwrap();
        let by = |n: &str| plans.iter().find(|p| p["target"] == n).cloned();
        assert_eq!(
            by(&name("europe-west1", "a")).unwrap()["discoveredBy"],
            "prod-gke"
        );
        assert_eq!(
            by(&name("europe-west1-b", "b")).unwrap()["discoveredBy"],
            "prod-gke",
            "a RECONCILING cluster is a target"
        );
        let declared = by(&name("europe-west1", "e")).unwrap();
        assert!(declared.get("discoveredBy").is_none(), "{declared}");
        assert!(
            by(&name("us-central1", "c")).is_none(),
            "PROVISIONING: not planned"
        );
        assert!(
            by(&name("europe-west1", "d")).is_none(),
            "the labels filter dev out"
        );
        insta::assert_json_snapshot!("discovery_gke_plan_json", v["discovery"]);

        let apply = run(s.path(), &["apply", "--yes"]).await;
        assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
        assert_eq!(
            blocks(&fake, "europe-west1", "a"),
            ["192.0.2.0/24", "198.51.100.0/24"]
        );
        assert_eq!(
            blocks(&fake, "europe-west1-b", "b"),
            ["192.0.2.0/24", "198.51.100.0/24"]
        );
        assert_eq!(
            blocks(&fake, "europe-west1", "e"),
            ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"],
            "the declared target's list wins"
        );
        assert_eq!(
            blocks(&fake, "us-central1", "c"),
            ["198.51.100.0/24"],
            "pending: untouched"
        );
        assert_eq!(
            blocks(&fake, "europe-west1", "d"),
            ["198.51.100.0/24"],
            "filtered out: untouched"
        );

        let show = run(s.path(), &["show"]).await;
        assert_eq!(show.status.code(), Some(0), "{}", seen(&show));
        insta::assert_snapshot!("discovery_gke_show", stable(&seen(&show), &endpoint));

        let replan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
        assert_eq!(replan.status.code(), Some(0), "in sync: {}", seen(&replan));
        for o in [&plan, &json, &apply, &show, &replan] {
            assert!(!seen(o).contains(TOKEN));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_zones_or_a_refused_listing_fail_plan_and_apply_changes_nothing() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint));

        // GKE could not reach a location: the list is incomplete and not acted on, even
        // after the retries (the error is transient).
        fake.set_missing_zones(&["us-central1"]);
        let plan = run(s.path(), &["plan"]).await;
        assert_eq!(plan.status.code(), Some(1), "{}", seen(&plan));
        // stdout only: stderr has the retries' random delays.
        insta::assert_snapshot!(
            "discovery_gke_missing_zones",
            stable(&stdout(&plan), &endpoint)
        );
        assert!(
            seen(&plan).contains("error: discovery failed for template `prod-gke`"),
            "{}",
            seen(&plan)
        );
        assert!(fake.lists().len() > 1, "a transient failure is retried");
        let apply = run(s.path(), &["apply", "--yes"]).await;
        assert_eq!(apply.status.code(), Some(1), "{}", seen(&apply));
        assert!(
            seen(&apply).contains("nothing was applied: discovery failed for template `prod-gke`"),
            "{}",
            seen(&apply)
        );
        assert!(fake.updates().is_empty(), "not even the declared target");

        // Refused: not retried, and named.
        fake.set_missing_zones(&[]);
        fake.clear_requests();
        fake.inject(
            Fault::Status(
                403,
                "PERMISSION_DENIED".into(),
                "Required \"container.clusters.list\" permission(s) for \"projects/test-project\"."
                    .into(),
            ),
            On::ListClusters,
            1,
        );
        let plan = run(s.path(), &["plan"]).await;
        assert_eq!(plan.status.code(), Some(1), "{}", seen(&plan));
        assert!(
            seen(&plan).contains("discovery failed for template `prod-gke`")
                && seen(&plan).contains("PERMISSION_DENIED"),
            "{}",
            seen(&plan)
        );
        assert_eq!(fake.lists().len(), 1, "an auth error is not retried");

        // A server error is retried by the one retry owner, and the listing then succeeds.
        fake.clear_requests();
        fake.inject(Fault::Unavailable, On::ListClusters, 1);
        let plan = run(s.path(), &["plan"]).await;
        assert_eq!(plan.status.code(), Some(0), "{}", seen(&plan));
        assert_eq!(fake.lists().len(), 2);
        assert!(stdout(&plan).contains(&name("europe-west1", "a")));
    }

    /// Our own update puts a cluster in RECONCILING until its Operation is DONE: the next
    /// listing must keep it a target, not drop it from the fleet as pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_reconciling_after_our_own_update_stays_a_target() {
        let fake = fleet().await;
        let endpoint = fake.endpoint();
        let s = Scratch::new(&declaration(&endpoint));
        let apply = run(s.path(), &["apply", "--yes", "--no-wait"]).await;
        assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
        let a = fake.cluster(PROJECT, "europe-west1", "a").unwrap();
        assert_eq!(a["status"], "RECONCILING", "the update is still running");

        let json = run(s.path(), &["plan", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&json.stdout).unwrap();
        let d = &v["discovery"][0];
        assert_eq!(
            d["targets"],
            json!([name("europe-west1-b", "b"), name("europe-west1", "a")]),
            "{v}"
        );
        assert_eq!(d["pending"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(d["pending"][0]["target"], name("us-central1", "c"));
    }

    /// A bad template is refused offline, each problem located at the field it names.
    #[test]
    fn validate_locates_the_problems_of_gke_templates() {
        let s = Scratch::new(
            "version: 1
sets:
  office: [198.51.100.0/24]
discover:
  templates:
    bad-project:
      provider: gke
      project: Not_A_Project
      allow: [office]
    bad-location:
      provider: gke
      project: test-project
      location: europe
      allow: [office]
    bad-labels:
      provider: gke
      project: test-project
      labels: {env: []}
      allow: [office]
    tags-not-labels:
      provider: gke
      project: test-project
      tags: {env: prod}
      allow: [office]
    bad-endpoint:
      provider: gke
      project: test-project
      endpoint: http://example.com
      allow: [office]
",
        );
        let o = s.run(&["validate"]);
        assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
        insta::assert_snapshot!("discovery_gke_validate_errors", seen(&o));
    }
}
