//! The `rangekeeper` binary against a local EKS emulator (moto's server): plan, apply, an
//! in-sync re-plan and re-apply that send nothing, show and disable, with the endpoint given
//! the way users give it (`AWS_ENDPOINT_URL_EKS`) and fake credentials in the child's
//! environment only. moto's request recorder proves which calls were made.

use std::process::Output;
use std::time::Duration;

use crate::common::moto::Moto;
use crate::common::{Scratch, stderr, stdout};

const DECL: &str = "\
version: 1
sets:
  office: [81.2.69.160/28, {cidr: 81.2.69.142, note: VPN gateway}]
targets:
  prod-eks:
    provider: eks
    region: eu-west-1
    cluster: prod
    allow: [office, 140.82.112.0/20]
";

struct Run {
    s: Scratch,
    endpoint: String,
}

impl Run {
    fn new(moto: &Moto, decl: &str) -> Run {
        Run {
            s: Scratch::new(decl),
            endpoint: moto.endpoint(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = crate::common::rangekeeper(self.s.path());
        let out = crate::common::moto::aws_env(&mut cmd, self.s.path(), &self.endpoint)
            .args(args)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        eprintln!(
            "$ rangekeeper {}\n{}{}",
            args.join(" "),
            stdout(&out),
            stderr(&out)
        );
        out
    }
}

#[test]
fn eks_plan_apply_replan_show_disable_against_moto() {
    let Some(moto) = Moto::start() else { return };
    moto.create_cluster("prod");
    let r = Run::new(&moto, DECL);

    let plan = r.run(&["plan", "--target", "prod-eks", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "changes pending");
    let text = stdout(&plan);
    assert!(
        text.contains("unrestricted now") && text.contains("+ 140.82.112.0/20"),
        "{text}"
    );
    assert_eq!(moto.update_calls(), 0, "plan sends no update");

    let apply = r.run(&["apply", "--target", "prod-eks", "--yes"]);
    assert!(apply.status.success());
    assert_eq!(moto.update_calls(), 1);
    assert_eq!(
        moto.stored_cidrs("prod"),
        ["81.2.69.142/32", "81.2.69.160/28", "140.82.112.0/20"]
    );

    let replan = r.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(replan.status.code(), Some(0), "in sync after apply");
    let again = r.run(&["apply", "--yes"]);
    assert!(again.status.success());
    assert_eq!(
        moto.update_calls(),
        1,
        "an in-sync apply must send no UpdateClusterConfig"
    );

    let show = r.run(&["-o", "json", "show", "--target", "prod-eks"]);
    assert!(show.status.success());
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let t = &v["targets"][0];
    assert_eq!(t["unrestricted"], false);
    assert_eq!(
        t["ranges"],
        serde_json::json!(["81.2.69.142/32", "81.2.69.160/28", "140.82.112.0/20"])
    );
    assert_eq!(t["details"]["ipFamily"], "ipv4");

    let disable = r.run(&["disable", "--target", "prod-eks", "--yes"]);
    assert!(disable.status.success());
    assert_eq!(moto.stored_cidrs("prod"), ["0.0.0.0/0"]);
    assert_eq!(moto.update_calls(), 2);
    let show = r.run(&["show", "--target", "prod-eks"]);
    assert!(stdout(&show).contains("unrestricted"), "{}", stdout(&show));
}

#[test]
fn eks_refuses_reserved_ranges_no_wait_is_pending_and_missing_clusters_fail() {
    let Some(moto) = Moto::start() else { return };
    moto.create_cluster("prod");
    let private = DECL.replace("140.82.112.0/20", "10.20.0.0/16");
    let r = Run::new(&moto, &private);
    let apply = r.run(&["apply", "--yes"]);
    assert!(!apply.status.success());
    let all = format!("{}{}", stdout(&apply), stderr(&apply));
    assert!(all.contains("10.20.0.0/16"), "{all}");
    assert_eq!(
        moto.update_calls(),
        0,
        "moto would have accepted it: the refusal is ours"
    );
    assert_eq!(moto.stored_cidrs("prod"), ["0.0.0.0/0"]);

    // `--no-wait`: accepted and reported pending; the list is already there in moto.
    let r = Run::new(&moto, DECL);
    let apply = r.run(&["apply", "--yes", "--no-wait"]);
    assert!(apply.status.success());
    assert!(stdout(&apply).contains("pending"), "{}", stdout(&apply));
    assert_eq!(moto.update_calls(), 1);
    assert_eq!(
        moto.stored_cidrs("prod"),
        ["81.2.69.142/32", "81.2.69.160/28", "140.82.112.0/20"]
    );

    let missing = DECL.replace("cluster: prod", "cluster: nope");
    let r = Run::new(&moto, &missing);
    let show = r.run(&["show"]);
    assert!(!show.status.success());
    let all = format!("{}{}", stdout(&show), stderr(&show));
    assert!(all.contains("nope"), "{all}");
}

#[test]
fn eks_leases_are_cluster_tags_beside_the_list() {
    let Some(moto) = Moto::start() else { return };
    moto.create_cluster("prod");
    moto.tag("prod", &serde_json::json!({"team": "platform"}));
    let r = Run::new(&moto, DECL);
    assert!(r.run(&["apply", "--yes"]).status.success());

    let g = r.run(&[
        "grant",
        "-t",
        "prod-eks",
        "--ttl",
        "20m",
        "--ip",
        "81.2.70.9",
        "--reason",
        "deploy",
    ]);
    assert!(g.status.success(), "{}", stderr(&g));
    let id = stdout(&g).trim().to_owned();
    assert_eq!(
        moto.stored_cidrs("prod"),
        [
            "81.2.69.142/32",
            "81.2.69.160/28",
            "81.2.70.9/32",
            "140.82.112.0/20"
        ]
    );
    let tags = moto.tags("prod");
    assert_eq!(tags["team"], "platform", "other tags are kept");
    let value = tags[&format!("rangekeeper-lease-{id}")].as_str().unwrap();
    assert!(value.starts_with("81.2.70.9 "), "{value}");
    assert!(value.ends_with(" deploy"), "{value}");

    // The lease is the target's, not drift: an in-sync plan keeps it.
    let plan = r.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    let list = r.run(&["leases", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["address"], "81.2.70.9");

    let rv = r.run(&["revoke", "-t", "prod-eks", "--lease", &id]);
    assert!(rv.status.success(), "{}", stderr(&rv));
    assert_eq!(
        moto.stored_cidrs("prod"),
        ["81.2.69.142/32", "81.2.69.160/28", "140.82.112.0/20"]
    );
    let tags = moto.tags("prod");
    assert!(
        !tags.keys().any(|k| k.starts_with("rangekeeper-lease-")),
        "{tags:?}"
    );
    assert_eq!(tags["team"], "platform");

    // Fifty tags already: a lease does not fit, and says why.
    let many: serde_json::Map<String, serde_json::Value> = (0..49)
        .map(|i| (format!("t{i}"), serde_json::json!("x")))
        .collect();
    moto.tag("prod", &serde_json::Value::Object(many));
    let updates = moto.update_calls();
    let g = r.run(&[
        "grant",
        "-t",
        "prod-eks",
        "--ttl",
        "20m",
        "--ip",
        "81.2.70.9",
    ]);
    assert_eq!(g.status.code(), Some(1));
    assert!(
        stderr(&g).contains("50 tags per resource"),
        "{}",
        stderr(&g)
    );
    assert_eq!(moto.update_calls(), updates, "nothing sent");
}
