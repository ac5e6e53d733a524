//! Every EKS call is bounded: a server on 127.0.0.1 that accepts connections and never
//! answers, or answers 503 forever, must end in a transient error after one bounded attempt
//! (retries belong to the binary's retry policy, so they never multiply).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_eks::Client;
use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use rangekeeper_provider::{Provider, ProviderError};
use rangekeeper_provider_eks::{EksProvider, Tuning, configure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn tuning() -> Tuning {
    Tuning {
        connect_timeout: Duration::from_millis(500),
        attempt_timeout: Duration::from_millis(400),
        ..Tuning::fast()
    }
}

fn provider(endpoint: &str) -> EksProvider {
    let conf = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint);
    EksProvider::with_client(
        "prod",
        Client::from_conf(configure(conf, &tuning()).build()),
    )
    .with_tuning(tuning())
}

/// Accepts connections, counts them, reads the request and never answers.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Hold the connection open without answering, for longer than any timeout.
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

/// Answers every request with 503.
async fn unavailable_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"message":"Service Unavailable"}"#;
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), served)
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_after_one_bounded_attempt() {
    let (endpoint, accepted) = silent_server().await;
    let p = provider(&endpoint);
    let start = Instant::now();
    let e = p.current().await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    assert!(e.to_string().contains("DescribeCluster"), "{e}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one attempt, one connection"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test]
async fn server_errors_are_reported_as_transient_after_one_attempt() {
    let (endpoint, served) = unavailable_server().await;
    let p = provider(&endpoint);
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
