//! The provider against scripted EKS answers on the wire (a loopback HTTP server speaking the
//! EKS REST-JSON protocol): error codes as EKS sends them (`x-amzn-ErrorType`), a 409 while
//! another update runs, DescribeUpdate polling, throttling, 5xx, and credential failures, so the
//! mapping is proven on real responses rather than on hand-built SDK errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_eks::Client;
use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use rangekeeper_provider::{ApplyOptions, Provider, ProviderError, RangeSet};
use rangekeeper_provider_eks::{EksProvider, Tuning, configure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer: status, `x-amzn-ErrorType` (for errors) and JSON body.
#[derive(Clone)]
struct Answer {
    status: u16,
    error_type: Option<&'static str>,
    body: String,
}

fn ok(body: serde_json::Value) -> Answer {
    Answer {
        status: 200,
        error_type: None,
        body: body.to_string(),
    }
}

fn err(status: u16, error_type: &'static str, message: &str) -> Answer {
    Answer {
        status,
        error_type: Some(error_type),
        body: serde_json::json!({ "message": message }).to_string(),
    }
}

/// A request the fake received: `METHOD /path` and the JSON body.
#[derive(Debug, Clone)]
struct Seen {
    route: String,
    body: String,
}

/// Answers per route (`GET /clusters/prod`, ...), in order; the last one repeats.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<HashMap<String, Vec<Answer>>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Script {
    fn on(self, route: &str, answers: Vec<Answer>) -> Self {
        self.answers
            .lock()
            .unwrap()
            .insert(route.to_owned(), answers);
        self
    }

    fn answer(&self, route: &str) -> Answer {
        let mut all = self.answers.lock().unwrap();
        match all.get_mut(route) {
            Some(list) if list.len() > 1 => list.remove(0),
            Some(list) if !list.is_empty() => list[0].clone(),
            _ => err(
                404,
                "ResourceNotFoundException",
                &format!("no script for {route}"),
            ),
        }
    }

    fn count(&self, route: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.route == route)
            .count()
    }

    fn bodies(&self, route: &str) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.route == route)
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect()
    }

    /// Serve on 127.0.0.1; returns the endpoint URL.
    async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = self.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head_end, content_len) = loop {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + content_len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut parts = head.split_whitespace();
                    let method = parts.next().unwrap_or("");
                    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
                    let route = format!("{method} {path}");
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + content_len])
                        .into_owned();
                    script.seen.lock().unwrap().push(Seen {
                        route: route.clone(),
                        body,
                    });
                    let a = script.answer(&route);
                    let mut resp = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        a.status,
                        a.body.len()
                    );
                    if let Some(t) = a.error_type {
                        resp.push_str(&format!("x-amzn-ErrorType: {t}\r\n"));
                    }
                    resp.push_str("\r\n");
                    resp.push_str(&a.body);
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }
}

fn cluster(cidrs: &[&str]) -> Answer {
    ok(serde_json::json!({"cluster": {
        "name": "prod",
        "status": "ACTIVE",
        "kubernetesNetworkConfig": {"ipFamily": "ipv4", "serviceIpv4Cidr": "172.20.0.0/16"},
        "resourcesVpcConfig": {
            "subnetIds": ["subnet-0a1b2c3d"],
            "endpointPublicAccess": true,
            "endpointPrivateAccess": true,
            "publicAccessCidrs": cidrs
        }
    }}))
}

fn update(id: &str, status: &str) -> Answer {
    ok(serde_json::json!({"update": {
        "id": id, "status": status, "type": "EndpointAccessUpdate", "params": [], "errors": []
    }}))
}

fn provider(endpoint: &str) -> EksProvider {
    let conf = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint);
    EksProvider::with_client(
        "prod",
        Client::from_conf(configure(conf, &Tuning::fast()).build()),
    )
    .with_tuning(Tuning::fast())
}

fn set(s: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        s.iter()
            .map(|c| rangekeeper_provider::cidr::parse(c).unwrap().net),
    )
}

const DESCRIBE: &str = "GET /clusters/prod";
const UPDATE: &str = "POST /clusters/prod/update-config";

#[tokio::test]
async fn conflict_on_the_wire_is_typed_and_the_rerun_succeeds() {
    // One attempt per call: the 409 comes back as a conflict (formerly the provider waited
    // for u0 itself); the retry policy's re-run (done here by hand) reads again and updates
    // with the same token.
    let script = Script::default()
        .on(
            DESCRIBE,
            vec![
                cluster(&["93.184.216.0/24"]),
                cluster(&["93.184.216.0/24"]),
                cluster(&["140.82.112.0/20"]),
            ],
        )
        .on(
            UPDATE,
            vec![
                err(
                    409,
                    "ResourceInUseException",
                    "Cannot EndpointAccessUpdate because cluster prod currently has update u0 in progress",
                ),
                update("u1", "InProgress"),
            ],
        )
        .on("GET /clusters/prod/updates", vec![ok(serde_json::json!({"updateIds": ["u0"]}))])
        .on(
            "GET /clusters/prod/updates/u0",
            vec![update("u0", "InProgress"), update("u0", "InProgress"), update("u0", "Successful")],
        )
        .on(
            "GET /clusters/prod/updates/u1",
            vec![update("u1", "InProgress"), update("u1", "Successful")],
        );
    let endpoint = script.serve().await;
    let p = provider(&endpoint);
    let desired = set(&["140.82.112.0/20"]);
    let e = p
        .apply(&desired, &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Conflict(m) if m.contains("u0 in progress")),
        "{e:?}"
    );
    let applied = p.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert!(applied.changed);
    assert_eq!(script.count(UPDATE), 2);
    assert_eq!(script.count("GET /clusters/prod/updates"), 0);
    assert_eq!(script.count("GET /clusters/prod/updates/u0"), 0);
    assert_eq!(script.count("GET /clusters/prod/updates/u1"), 2);
    let bodies = script.bodies(UPDATE);
    assert_eq!(
        bodies[0],
        serde_json::json!({
            "resourcesVpcConfig": {"publicAccessCidrs": ["140.82.112.0/20"]},
            "clientRequestToken": bodies[0]["clientRequestToken"].clone()
        }),
        "only publicAccessCidrs and the token are sent"
    );
    assert_eq!(
        bodies[0]["clientRequestToken"],
        bodies[1]["clientRequestToken"]
    );
}

#[tokio::test]
async fn wire_error_codes_map_to_typed_errors() {
    // Throttled, then unavailable, then answered: one attempt per call, typed for the
    // retry policy (which makes the calls again in the binary).
    let script = Script::default().on(
        DESCRIBE,
        vec![
            err(429, "ThrottlingException", "Rate exceeded"),
            err(503, "ServiceUnavailableException", "try again"),
            cluster(&["93.184.216.0/24"]),
        ],
    );
    let p = provider(&script.serve().await);
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Throttled { .. }), "{e:?}");
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    p.current().await.unwrap();
    assert_eq!(script.count(DESCRIBE), 3);

    let script = Script::default().on(
        DESCRIBE,
        vec![err(
            403,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: eks:DescribeCluster",
        )],
    );
    let e = provider(&script.serve().await).current().await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Auth(m) if m.contains("eks:DescribeCluster")),
        "{e:?}"
    );
    assert_eq!(script.count(DESCRIBE), 1);

    let script = Script::default().on(
        DESCRIBE,
        vec![err(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )],
    );
    let e = provider(&script.serve().await).current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth(_)), "{e:?}");

    let script = Script::default().on(
        DESCRIBE,
        vec![err(
            404,
            "ResourceNotFoundException",
            "No cluster found for name: prod.",
        )],
    );
    let e = provider(&script.serve().await).current().await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::NotFound(m) if m.contains("No cluster found")),
        "{e:?}"
    );

    let script = Script::default()
        .on(DESCRIBE, vec![cluster(&["93.184.216.0/24"])])
        .on(
            UPDATE,
            vec![err(
                400,
                "InvalidParameterException",
                "The following CIDRs are invalid in publicAccessCidrs: [151.101.0.0/16]",
            )],
        );
    let e = provider(&script.serve().await)
        .apply(&set(&["151.101.0.0/16"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("invalid in publicAccessCidrs: [151.101.0.0/16]")),
        "{e:?}"
    );
    assert_eq!(script.count(UPDATE), 1);

    // A failed update reports EKS's own errors.
    let failed = ok(serde_json::json!({"update": {
        "id": "u1", "status": "Failed", "type": "EndpointAccessUpdate",
        "errors": [{"errorCode": "InsufficientFreeAddresses", "errorMessage": "No free addresses", "resourceIds": ["subnet-0a1b2c3d"]}]
    }}));
    let script = Script::default()
        .on(DESCRIBE, vec![cluster(&["93.184.216.0/24"])])
        .on(UPDATE, vec![update("u1", "InProgress")])
        .on(
            "GET /clusters/prod/updates/u1",
            vec![update("u1", "InProgress"), failed],
        );
    let e = provider(&script.serve().await)
        .apply(&set(&["151.101.0.0/16"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("u1")
            && msg.contains("InsufficientFreeAddresses")
            && msg.contains("subnet-0a1b2c3d"),
        "{msg}"
    );
}
