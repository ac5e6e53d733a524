//! `rangekeeper import` through the binary: a skeleton in, a declaration out that validates
//! and plans in sync for every imported target, against every built-in provider's test peer
//! (files, the fake ARM server, moto, nftables in a network namespace), with fleets of mixed
//! overlap.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::{Scratch, code, seen, stderr, stdout};

/// Ranges every target of the fleets allows (office egress and the VPN gateway).
const OFFICE: [&str; 3] = ["81.2.69.160/28", "81.2.69.142/32", "140.82.112.0/20"];
const REGIONS: [&str; 5] = ["eu", "us", "ap", "sa", "af"];

/// What file target `i` of the generated fleet holds: the office, its region's two ranges,
/// a monitoring range every seventh target shares, an IPv6 range every third shares, and a
/// range of its own.
fn fleet_ranges(i: usize) -> Vec<String> {
    let r = i % REGIONS.len();
    let mut v: Vec<String> = OFFICE.iter().map(|s| (*s).to_owned()).collect();
    v.push(format!("34.{}.0.0/16", 10 + r));
    v.push(format!("35.{}.10.0/24", 10 + r));
    if i.is_multiple_of(7) {
        v.push("185.199.108.0/22".into());
    }
    if i.is_multiple_of(3) {
        v.push("2a01:111:f403:c000::/50".into());
    }
    v.push(format!("45.{i}.0.0/16"));
    v
}

fn file_target_name(i: usize) -> String {
    format!("edge-{}-{}", REGIONS[i % REGIONS.len()], i / REGIONS.len())
}

/// A skeleton of `n` file targets (lists written into `s`); target 7 also holds a range
/// broader than /8 and target 13 has no file yet (unrestricted).
fn file_fleet(s: &Scratch, n: usize, skeleton: &mut String) {
    std::fs::create_dir_all(s.path().join("lists")).unwrap();
    for i in 0..n {
        let name = file_target_name(i);
        if i != 13 {
            let mut ranges = fleet_ranges(i);
            if i == 7 {
                ranges.push("16.0.0.0/6".into());
            }
            std::fs::write(
                s.path().join(format!("lists/{name}.conf")),
                ranges.join("\n") + "\n",
            )
            .unwrap();
        }
        let _ = write!(
            skeleton,
            "  {name}:\n    provider: file\n    path: lists/{name}.conf\n    format: plain\n"
        );
    }
}

/// The name of the set that holds the VPN gateway.
fn office_set(decl: &serde_json::Value) -> String {
    decl["sets"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v.as_array().unwrap().iter().any(|e| e == "81.2.69.142/32"))
        .map(|(k, _)| k.clone())
        .unwrap()
}

fn run(s: &Scratch, args: &[&str]) -> Output {
    s.cmd()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// `import` the skeleton in `rangekeeper.yaml` into `imported.yaml`, then validate and plan
/// it: every imported target must be in sync. Returns the imported text.
fn import_and_plan(dir: &Path, run: &dyn Fn(&[&str]) -> Output) -> String {
    let out = run(&["import"]);
    assert_eq!(code(&out), 0, "{}", seen(&out));
    let text = stdout(&out);
    std::fs::write(dir.join("imported.yaml"), &text).unwrap();
    let v = run(&["-f", "imported.yaml", "validate"]);
    assert_eq!(code(&v), 0, "{}\n{text}", seen(&v));
    let p = run(&["-f", "imported.yaml", "plan", "--detailed-exitcode"]);
    assert_eq!(code(&p), 0, "{}\n{text}", seen(&p));
    assert!(stdout(&p).contains("Plan: 0 to change"), "{}", seen(&p));
    text
}

#[test]
fn a_fleet_of_fifty_files_imports_in_sync_with_shared_sets() {
    let s = Scratch::new("");
    let mut skeleton = "version: 1\ntargets:\n".to_owned();
    file_fleet(&s, 50, &mut skeleton);
    s.write("rangekeeper.yaml", &skeleton);
    let text = import_and_plan(s.path(), &|a| run(&s, a));
    // The office is one set used by all 49 restricted targets; each region has its set.
    let decl: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let sets = decl["sets"].as_object().unwrap();
    let office = office_set(&decl);
    let targets = decl["targets"].as_object().unwrap();
    assert_eq!(targets.len(), 49, "the unrestricted target is a comment");
    for (name, t) in targets {
        let allow = t["allow"].as_array().unwrap();
        assert!(allow.contains(&office.clone().into()), "{name}: {allow:?}");
        assert!(
            !allow.iter().any(|e| e == "81.2.69.142/32"),
            "{name} repeats an office range"
        );
    }
    assert!(sets.len() >= 5, "{sets:?}");
    assert!(text.contains("  # edge-sa-2:\n"), "{text}");
    assert_eq!(targets["edge-ap-1"]["allowBroad"], true);
    // Stable from run to run.
    assert_eq!(stdout(&run(&s, &["import"])), text);
}

#[test]
fn import_snapshot() {
    let s = Scratch::new("");
    std::fs::create_dir_all(s.path().join("lists")).unwrap();
    let lists: [(&str, &[&str]); 5] = [
        (
            "hq",
            &[
                "81.2.69.160/28",
                "81.2.69.142",
                "140.82.112.0/20",
                "10.20.0.0/16",
            ],
        ),
        (
            "branch",
            &[
                "81.2.69.160/28",
                "81.2.69.142",
                "140.82.112.0/20",
                "2a01:111:f403:c000::/50",
            ],
        ),
        (
            "lab-1",
            &[
                "81.2.69.160/28",
                "81.2.69.142",
                "140.82.112.0/20",
                "192.0.2.0/24",
                "198.51.100.0/24",
                "203.0.113.0/24",
            ],
        ),
        (
            "lab-2",
            &[
                "81.2.69.160/28",
                "81.2.69.142",
                "140.82.112.0/20",
                "192.0.2.0/24",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "16.0.0.0/6",
            ],
        ),
        (
            "lab-3",
            &["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"],
        ),
    ];
    for (name, ranges) in lists {
        std::fs::write(
            s.path().join(format!("lists/{name}.conf")),
            ranges.join("\n") + "\n",
        )
        .unwrap();
    }
    s.write(
        "rangekeeper.yaml",
        "\
# The API-server proxies of our sites.
version: 1

# Sets we already had.
sets:
  partners: [93.184.216.0/24]

targets:
  # Headquarters (nginx)
  hq:
    provider: file
    path: lists/hq.conf   # reloaded by systemd
    format: plain
    allow:
      - {cidr: 81.2.69.142, note: VPN gateway}
  branch:
    format: plain
    provider: file
    path: lists/branch.conf

  lab-1:
    provider: file
    path: lists/lab-1.conf
    format: plain
  lab-2:
    provider: file
    path: lists/lab-2.conf
    format: plain
  lab-3:
    provider: file
    path: lists/lab-3.conf
    format: plain
  new-site:
    provider: file
    path: lists/new-site.conf
    format: plain
",
    );
    let out = run(&s, &["import"]);
    insta::assert_snapshot!("import_yaml", seen(&out));
    s.write("imported.yaml", &stdout(&out));
    let p = run(&s, &["-f", "imported.yaml", "plan", "--detailed-exitcode"]);
    assert_eq!(code(&p), 0, "{}", seen(&p));

    // `-o json` is a JSON declaration that plans in sync too.
    let out = run(&s, &["-o", "json", "import"]);
    assert_eq!(code(&out), 0, "{}", seen(&out));
    insta::assert_snapshot!("import_json", stdout(&out));
    s.write("imported.json", &stdout(&out));
    let p = run(&s, &["-f", "imported.json", "plan", "--detailed-exitcode"]);
    assert_eq!(code(&p), 0, "{}", seen(&p));

    // `--target` imports only the named targets; the others are left as they are.
    let out = run(&s, &["import", "--target", "lab-1", "--target", "lab-3"]);
    assert_eq!(code(&out), 0, "{}", seen(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "  lab-2:\n    provider: file\n    path: lists/lab-2.conf\n    format: plain\n"
        ),
        "{text}"
    );
    assert!(stderr(&out).contains("not complete"), "{}", seen(&out));
}

#[test]
fn import_errors_name_the_target_and_print_nothing() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  ok:\n    provider: file\n    path: ok.conf\n  broken:\n    provider: file\n    path: adir\n",
    );
    s.write("ok.conf", "81.2.69.142\n");
    std::fs::create_dir_all(s.path().join("adir")).unwrap();
    let out = run(&s, &["import"]);
    assert_eq!(code(&out), 1, "{}", seen(&out));
    assert_eq!(stdout(&out), "");
    insta::assert_snapshot!("import_unreadable", seen(&out));

    let out = run(&s, &["import", "--target", "brokn"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("did you mean `broken`"),
        "{}",
        seen(&out)
    );

    s.write(
        "rangekeeper.yaml",
        "version: 1\ntargets:\n  x:\n    provider: nope\n",
    );
    let out = run(&s, &["import"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("rangekeeper.yaml:4:"),
        "{}",
        seen(&out)
    );
}

// --- every built-in provider in one fleet -------------------------------------------------
#[cfg(all(feature = "aks", feature = "eks", feature = "gke", feature = "hostfw"))]
mod every_builtin_provider {
    use std::net::Ipv4Addr;

    use super::*;

    /// How many targets reference set `name`.
    fn users_of(decl: &serde_json::Value, name: &str) -> usize {
        decl["targets"]
            .as_object()
            .unwrap()
            .values()
            .filter(|t| t["allow"].as_array().unwrap().iter().any(|e| e == name))
            .count()
    }

    const TOKEN: &str = "test-token-not-a-secret";
    const SUB: &str = "00000000-0000-0000-0000-000000000000";
    const EGRESS1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip1";
    const EGRESS2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip2";

    fn root_with_nft() -> bool {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
        root && std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    struct Netns(String);

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }

    const GKE_TOKEN: &str = "ya29.import-test-token";
    const GKE_PROJECT: &str = "test-project";
    const GKE_LOCATION: &str = "europe-west1";

    /// 50 file targets, four AKS clusters on the fake ARM server (one allowing only its own
    /// outbound IP, one unrestricted), three EKS clusters on moto (one with host bits set in a
    /// stored CIDR), three GKE clusters on the fake GKE API (one with authorized networks
    /// disabled) and three hostfw tables in a network namespace (one not created yet), all
    /// sharing the office ranges: import, validate, plan in sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fleet_of_every_builtin_provider_imports_in_sync() {
        use crate::common::moto::Moto;
        use rangekeeper_test_support::fake_arm::{FakeArm, example_cluster};

        if !root_with_nft() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must run this test as root with nft installed"
            );
            eprintln!("SKIP: needs root and nft for the hostfw targets");
            return;
        }
        let Some(moto) = Moto::start() else { return };
        let arm = FakeArm::start(TOKEN).await.unwrap();
        arm.insert_public_ip(EGRESS1, Some(Ipv4Addr::new(20, 1, 2, 3)));
        arm.insert_public_ip(EGRESS2, Some(Ipv4Addr::new(20, 1, 2, 4)));
        let aks: [(&str, Vec<&str>); 4] = [
            (
                "aks-prod-1",
                [
                    &OFFICE[..],
                    &["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"],
                ]
                .concat(),
            ),
            (
                "aks-prod-2",
                [
                    &OFFICE[..],
                    &["20.1.2.3/32", "20.1.2.4/32", "52.161.0.0/16"],
                ]
                .concat(),
            ),
            ("aks-own", vec!["0.0.0.0/32"]),
            ("aks-open", vec![]),
        ];
        for (name, ranges) in &aks {
            let mut body = example_cluster();
            body["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] =
                serde_json::json!(ranges);
            arm.insert_cluster(&FakeArm::cluster_path(SUB, "rg1", name), body);
        }
        moto.create_cluster_with("eks-a", &[&OFFICE[..], &["3.120.0.0/14"]].concat());
        moto.create_cluster_with(
            "eks-b",
            &[&OFFICE[..], &["3.120.0.0/14", "18.184.0.1/15"]].concat(),
        );
        moto.create_cluster_with("eks-open", &["0.0.0.0/0"]);
        let gke = rangekeeper_test_support::gke::FakeGke::start()
            .await
            .unwrap();
        gke.accept_token(GKE_TOKEN);
        let blocks = |extra: &[&str]| -> serde_json::Value {
            OFFICE
                .iter()
                .chain(extra)
                .map(|c| serde_json::json!({"displayName": "office", "cidrBlock": c}))
                .collect()
        };
        for (name, enabled, networks) in [
            ("gke-a", true, blocks(&["35.187.0.0/17"])),
            ("gke-b", true, blocks(&["35.187.0.0/17", "2600:1900::/28"])),
            ("gke-open", false, blocks(&[])),
        ] {
            let mut body =
                rangekeeper_test_support::gke::example_cluster(GKE_PROJECT, GKE_LOCATION, name);
            let config = &mut body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"];
            config["enabled"] = serde_json::json!(enabled);
            config["cidrBlocks"] = networks;
            gke.insert_cluster(GKE_PROJECT, GKE_LOCATION, name, body);
        }

        let ns = format!("rk-import-{}", std::process::id());
        assert!(
            std::process::Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .unwrap()
                .success()
        );
        let _ns = Netns(ns.clone());

        let s = Scratch::new("");
        // Seed the host firewall tables through the binary itself.
        let hostfw = |name: &str| {
            format!(
                "    provider: hostfw\n    netns: {ns}\n    table: rk{}\n    ports: [6443]\n",
                name.replace('-', "")
            )
        };
        let mut seed = "version: 1\ntargets:\n".to_owned();
        for (name, extra) in [("fw-a", "10.0.0.0/8"), ("fw-b", "172.16.0.0/12")] {
            let _ = write!(
                seed,
                "  {name}:\n{}    allow: [{}, {extra}]\n",
                hostfw(name),
                OFFICE.join(", ")
            );
        }
        s.write("seed.yaml", &seed);
        let o = run(&s, &["-f", "seed.yaml", "apply", "--yes"]);
        assert_eq!(code(&o), 0, "{}", seen(&o));

        let mut skeleton = "# every built-in provider\nversion: 1\ntargets:\n".to_owned();
        file_fleet(&s, 50, &mut skeleton);
        for (name, _) in &aks {
            let _ = write!(
                skeleton,
                "  {name}:\n    provider: aks\n    subscription: {SUB}\n    resourceGroup: rg1\n    cluster: {name}\n    armEndpoint: {}\n",
                arm.endpoint()
            );
        }
        for name in ["eks-a", "eks-b", "eks-open"] {
            let _ = write!(
                skeleton,
                "  {name}:\n    provider: eks\n    region: eu-west-1\n    cluster: {name}\n"
            );
        }
        for name in ["gke-a", "gke-b", "gke-open"] {
            let _ = write!(
                skeleton,
                "  {name}:\n    provider: gke\n    project: {GKE_PROJECT}\n    location: {GKE_LOCATION}\n    cluster: {name}\n    endpoint: {}\n",
                gke.endpoint()
            );
        }
        for name in ["fw-a", "fw-b", "fw-new"] {
            let _ = write!(skeleton, "  {name}:\n{}", hostfw(name));
        }
        s.write("rangekeeper.yaml", &skeleton);

        let dir = s.path().to_path_buf();
        let endpoint = moto.endpoint();
        let text = tokio::task::spawn_blocking(move || {
            let runner = |args: &[&str]| -> Output {
                let mut cmd = crate::common::rangekeeper(&dir);
                crate::common::moto::aws_env(&mut cmd, &dir, &endpoint)
                    .env("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN)
                    .env("GOOGLE_OAUTH_ACCESS_TOKEN", GKE_TOKEN)
                    .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
                    .env("NO_GCE_CHECK", "true")
                    .args(args)
                    .timeout(Duration::from_secs(300))
                    .output()
                    .unwrap()
            };
            import_and_plan(&dir, &runner)
        })
        .await
        .unwrap();
        let decl: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let targets = decl["targets"].as_object().unwrap();
        for gone in ["aks-open", "eks-open", "gke-open", "fw-new", "edge-sa-2"] {
            assert!(
                !targets.contains_key(gone),
                "{gone} should be a comment:\n{text}"
            );
            assert!(text.contains(&format!("  # {gone}:\n")), "{text}");
        }
        // One office set across providers; AKS keeps 0.0.0.0/32; the EKS host bits are noted.
        // 49 files, 2 AKS, 2 EKS, 2 GKE, 2 hostfw.
        assert_eq!(users_of(&decl, &office_set(&decl)), 57, "{text}");
        assert!(
            targets["gke-b"]["allow"].as_array().unwrap().len() <= 3,
            "{text}"
        );
        assert!(text.contains("0.0.0.0/32"), "{text}");
        assert!(text.contains("18.184.0.1/15 has host bits set"), "{text}");
        assert_eq!(
            targets["fw-a"]["allow"].as_array().unwrap().len(),
            2,
            "{text}"
        );
    }
}
