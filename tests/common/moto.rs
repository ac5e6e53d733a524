//! moto's EKS server as a test peer: started on a free loopback port, killed when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// moto's server on 127.0.0.1 with its request recorder on; killed when dropped.
pub struct Moto {
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
    pub fn start() -> Option<Moto> {
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

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One plain HTTP/1.1 request (moto routes by the credential scope and checks no
    /// signature); returns the status code and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.request_in("eu-west-1", method, path, body)
    }

    /// [`Moto::request`] in `region` (moto keeps each region's clusters apart, by the
    /// region of the request's credential scope).
    pub fn request_in(&self, region: &str, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/eks/aws4_request, \
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

    pub fn create_cluster(&self, name: &str) {
        self.create_cluster_with(name, &["0.0.0.0/0"]);
    }

    /// A cluster whose public endpoint allows `cidrs` (moto stores them as given).
    pub fn create_cluster_with(&self, name: &str, cidrs: &[&str]) {
        let body = serde_json::json!({
            "name": name,
            "roleArn": "arn:aws:iam::123456789012:role/eks-cluster",
            "resourcesVpcConfig": {
                "subnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
                "endpointPublicAccess": true,
                "endpointPrivateAccess": true,
                "publicAccessCidrs": cidrs
            }
        });
        let (status, body) = self.request("POST", "/clusters", &body.to_string());
        assert_eq!(status, 200, "{body}");
    }

    /// A cluster in `region` with these tags, its endpoint open to everyone.
    pub fn create_tagged_cluster_in(&self, region: &str, name: &str, tags: &serde_json::Value) {
        let body = serde_json::json!({
            "name": name,
            "roleArn": "arn:aws:iam::123456789012:role/eks-cluster",
            "resourcesVpcConfig": {
                "subnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
                "endpointPublicAccess": true,
                "publicAccessCidrs": ["0.0.0.0/0"]
            },
            "tags": tags
        });
        let (status, body) = self.request_in(region, "POST", "/clusters", &body.to_string());
        assert_eq!(status, 200, "{body}");
    }

    /// The public access CIDRs of a cluster in `region`.
    pub fn stored_cidrs_in(&self, region: &str, name: &str) -> Vec<String> {
        let (status, body) = self.request_in(region, "GET", &format!("/clusters/{name}"), "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["cluster"]["resourcesVpcConfig"]["publicAccessCidrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    pub fn stored_cidrs(&self, name: &str) -> Vec<String> {
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

    /// The cluster's tags as moto stores them.
    pub fn tags(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        let (status, body) = self.request("GET", &format!("/clusters/{name}"), "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["cluster"]["tags"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// Tag the cluster (TagResource by its ARN).
    pub fn tag(&self, name: &str, tags: &serde_json::Value) {
        let (status, body) = self.request("GET", &format!("/clusters/{name}"), "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let arn = v["cluster"]["arn"]
            .as_str()
            .unwrap()
            .replace(':', "%3A")
            .replace('/', "%2F");
        let (status, body) = self.request(
            "POST",
            &format!("/tags/{arn}"),
            &serde_json::json!({ "tags": tags }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// How many UpdateClusterConfig requests moto received.
    pub fn update_calls(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("recording"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/update-config"))
            .count()
    }
}

/// The AWS SDK settings for a child that talks to moto at `endpoint`: fake credentials, no
/// profile or metadata lookups, nothing from the caller's environment.
pub fn aws_env<'a>(
    cmd: &'a mut assert_cmd::Command,
    dir: &std::path::Path,
    endpoint: &str,
) -> &'a mut assert_cmd::Command {
    for k in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("AWS_ENDPOINT_URL_EKS", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
}
