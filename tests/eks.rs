//! The `rangekeeper` binary against a local EKS emulator (moto's server): plan, apply, an
//! in-sync re-plan and re-apply that send nothing, show and disable, with the endpoint given
//! the way users give it (`AWS_ENDPOINT_URL_EKS`) and fake credentials in the child's
//! environment only. moto's request recorder proves which calls were made.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Scratch, stderr, stdout};

/// moto's server on 127.0.0.1 with its request recorder on; killed when dropped.
struct Moto {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// `None` (skip, with a message) when moto is not installed; a failure under `CI=true`.
    fn start() -> Option<Moto> {
        let bin = match std::env::var_os("RANGEKEEPER_MOTO_SERVER") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
        };
        if !bin.exists() {
            let msg = format!(
                "{} not found (run scripts/setup/40-moto.sh or set RANGEKEEPER_MOTO_SERVER)",
                bin.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}; CI=true requires it");
            }
            eprintln!("SKIP: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("moto_server exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, addr, dir })
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One plain HTTP/1.1 request (moto routes by the credential scope and checks no
    /// signature); returns the status code and body.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/eks/aws4_request, \
             SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn create_cluster(&self, name: &str) {
        let body = serde_json::json!({
            "name": name,
            "roleArn": "arn:aws:iam::123456789012:role/eks-cluster",
            "resourcesVpcConfig": {
                "subnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
                "endpointPublicAccess": true,
                "endpointPrivateAccess": true,
                "publicAccessCidrs": ["0.0.0.0/0"]
            }
        });
        let (status, body) = self.request("POST", "/clusters", &body.to_string());
        assert_eq!(status, 200, "{body}");
    }

    fn stored_cidrs(&self, name: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/clusters/{name}"), "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["cluster"]["resourcesVpcConfig"]["publicAccessCidrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    /// How many UpdateClusterConfig requests moto received.
    fn update_calls(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("recording"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/update-config"))
            .count()
    }
}

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
        let dir = self.s.path();
        let mut cmd = crate::common::rangekeeper(dir);
        for k in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_SESSION_TOKEN",
            "AWS_ROLE_ARN",
        ] {
            cmd.env_remove(k);
        }
        let out = cmd
            .args(args)
            .env("AWS_ENDPOINT_URL_EKS", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
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
