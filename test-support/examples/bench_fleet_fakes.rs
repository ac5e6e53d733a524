//! The peers of `scripts/bench-fleet.sh`: a fake ARM and a fake EKS on loopback with the
//! same latency added to every request, seeded with a fleet of clusters (AKS and EKS) that
//! already hold the allow-list of the declaration it writes, so a `reconcile --once` over it
//! is one in-sync pass.
//!
//! ```text
//! bench_fleet_fakes --aks 500 --eks 500 --latency-ms 50 --subscriptions 4 --out DIR/fleet.yaml
//! ```
//!
//! The AKS clusters are spread over `--subscriptions` subscriptions (default 4) and the EKS
//! clusters over three regions of one account, as a real fleet spans several: each is a
//! quota scope of its own (`reconcile --concurrency-per-scope`).
//!
//! Prints one JSON line once serving (`{"arm": url, "eks": url, "token": ..., "accessKey":
//! ..., "scopes": n}`), then reads commands on stdin: `stats` prints one JSON line with the
//! requests each fake saw per target (total, min, max, not-2xx, requests for no target) and
//! the most requests of one scope in flight at once, and clears the requests; end of input
//! stops it.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use rangekeeper_test_support::{fake_arm, fake_eks};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token-not-a-secret";
const ACCESS_KEY: &str = "AKIABENCHFLEETFAKE00";
/// The subscriptions' ids: this prefix and a number.
const SUBSCRIPTION_PREFIX: &str = "00000000-0000-0000-0000-00000000b";
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-southeast-2"];
/// The allow-list every target declares and every cluster already holds.
const ALLOW: &[&str] = &[
    "81.2.69.142/32",
    "81.2.69.160/28",
    "140.82.112.0/20",
    "185.199.108.0/22",
    "192.30.252.0/22",
];

struct Args {
    aks: usize,
    eks: usize,
    subscriptions: usize,
    latency: Duration,
    out: std::path::PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        aks: 500,
        eks: 500,
        subscriptions: 4,
        latency: Duration::from_millis(50),
        out: "fleet.yaml".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--aks" => args.aks = usize::try_from(number()?).map_err(|e| e.to_string())?,
            "--eks" => args.eks = usize::try_from(number()?).map_err(|e| e.to_string())?,
            "--latency-ms" => args.latency = Duration::from_millis(number()?),
            "--subscriptions" => {
                args.subscriptions = usize::try_from(number()?)
                    .map_err(|e| e.to_string())?
                    .clamp(1, 999)
            }
            "--out" => args.out = value.into(),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn aks_subscription(args: &Args, i: usize) -> String {
    format!("{SUBSCRIPTION_PREFIX}{:03}", i % args.subscriptions)
}

fn aks_group(i: usize) -> String {
    format!("rg-{:02}", i % 20)
}

fn aks_name(i: usize) -> String {
    format!("aks-{i:05}")
}

fn eks_region(i: usize) -> &'static str {
    REGIONS[i % REGIONS.len()]
}

fn eks_name(i: usize) -> String {
    format!("eks-{i:05}")
}

fn declaration(args: &Args, arm: &str) -> String {
    let mut out = String::with_capacity((args.aks + args.eks) * 200);
    out.push_str("version: 1\nsets:\n  office: [");
    out.push_str(&ALLOW.join(", "));
    out.push_str("]\ntargets:\n");
    for i in 0..args.aks {
        out.push_str(&format!(
            "  aks-{i:05}:\n    provider: aks\n    subscription: {}\n    resourceGroup: {}\n    cluster: {}\n    armEndpoint: {arm}\n    allow: [office]\n",
            aks_subscription(args, i),
            aks_group(i),
            aks_name(i)
        ));
    }
    for i in 0..args.eks {
        out.push_str(&format!(
            "  eks-{i:05}:\n    provider: eks\n    region: {}\n    cluster: {}\n    allow: [office]\n",
            eks_region(i),
            eks_name(i)
        ));
    }
    out
}

/// Requests per target: total, min, max over the targets, how many were not 2xx, and how
/// many named no target.
fn tally(per_target: &HashMap<String, u64>, targets: usize, failed: u64, other: u64) -> Value {
    let total: u64 = per_target.values().sum();
    let max = per_target.values().copied().max().unwrap_or(0);
    let min = if per_target.len() < targets {
        0
    } else {
        per_target.values().copied().min().unwrap_or(0)
    };
    json!({
        "targets": targets,
        "requests": total + other,
        "min": min,
        "max": max,
        "not2xx": failed,
        "other": other,
    })
}

fn stats(arm: &fake_arm::FakeArm, eks: &fake_eks::FakeEks, args: &Args) -> Value {
    let mut per: HashMap<String, u64> = HashMap::new();
    let (mut failed, mut other) = (0, 0);
    for r in arm.requests() {
        if !(200..300).contains(&r.status) {
            failed += 1;
        }
        let p = r.path.to_ascii_lowercase();
        match p
            .strip_prefix("/subscriptions/")
            .and_then(|rest| rest.split_once("/resourcegroups/"))
            .and_then(|(_, rest)| {
                rest.split_once("/providers/microsoft.containerservice/managedclusters/")
            }) {
            Some((_, name)) if !name.contains('/') => *per.entry(name.to_owned()).or_default() += 1,
            _ => other += 1,
        }
    }
    let aks = tally(&per, args.aks, failed, other);
    let mut per: HashMap<String, u64> = HashMap::new();
    let (mut failed, mut other) = (0, 0);
    for r in eks.requests() {
        if !(200..300).contains(&r.status) {
            failed += 1;
        }
        match r.path.strip_prefix("/clusters/") {
            Some(name) if !name.contains('/') => {
                *per.entry(format!("{}/{name}", r.region)).or_default() += 1;
            }
            _ => other += 1,
        }
    }
    let eks_tally = tally(&per, args.eks, failed, other);
    arm.clear_requests();
    eks.clear_requests();
    let most = |m: HashMap<String, usize>| m.into_values().max().unwrap_or(0);
    json!({
        "aks": aks,
        "eks": eks_tally,
        "mostInFlightPerScope": most(arm.most_in_flight()).max(most(eks.most_in_flight())),
        "throttled": arm.throttled() + eks.throttled(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let arm = fake_arm::FakeArm::start(TOKEN).await?;
    let eks = fake_eks::FakeEks::start(ACCESS_KEY).await?;
    let ranges: Vec<Value> = ALLOW.iter().map(|r| json!(r)).collect();
    let mut body = fake_arm::example_cluster();
    body["properties"]["apiServerAccessProfile"] = json!({ "authorizedIPRanges": ranges });
    for i in 0..args.aks {
        let path = fake_arm::FakeArm::cluster_path(
            &aks_subscription(&args, i),
            &aks_group(i),
            &aks_name(i),
        );
        arm.insert_cluster(&path, body.clone());
    }
    for i in 0..args.eks {
        let (region, name) = (eks_region(i), eks_name(i));
        eks.insert_cluster(
            region,
            &name,
            fake_eks::example_cluster(region, &name, ALLOW),
        );
    }
    arm.set_latency(args.latency);
    eks.set_latency(args.latency);
    std::fs::write(&args.out, declaration(&args, &arm.endpoint()))?;
    let ready = json!({
        "arm": arm.endpoint(),
        "eks": eks.endpoint(),
        "token": TOKEN,
        "accessKey": ACCESS_KEY,
        "scopes": args.subscriptions.min(args.aks) + REGIONS.len().min(args.eks),
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    // Commands arrive on a blocking reader; the fakes keep serving on the runtime.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(cmd) = rx.recv().await {
        match cmd.trim() {
            "stats" => writeln!(stdout, "{}", stats(&arm, &eks, &args))?,
            other => writeln!(
                stdout,
                "{}",
                json!({ "error": format!("unknown command {other}") })
            )?,
        }
        stdout.flush()?;
    }
    Ok(())
}
