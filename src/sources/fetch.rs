//! Fetching live sources: JSON lists over https (size-capped while streaming, timed out,
//! redirects checked), DNS A/AAAA records, and this machine's egress IP from echo endpoints
//! that must agree. Every fetched CIDR goes through the strict parser.

use std::net::IpAddr;
use std::time::Duration;

use rangekeeper_cidr::{IpNet, RangeSet};
use serde_json::Value;

use super::spec::{self, SourceKind, SourceSpec, UrlSource};

/// Why a fetch gave no usable value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {}", spec::format_duration(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Http(String),
    #[error("the response is larger than the cap of {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Invalid(String),
    #[error("returned no ranges")]
    Empty,
    #[error("{0}")]
    Dns(String),
    #[error("{0}")]
    Egress(String),
    /// The fetch task panicked (a bug); the source is refreshed again later.
    #[error("internal error (a bug, please report it): the fetch panicked: {0}")]
    Panicked(String),
}

impl FetchError {
    /// A short stable name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Http(_) => "http",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Invalid(_) => "invalid",
            FetchError::Empty => "empty",
            FetchError::Dns(_) => "dns",
            FetchError::Egress(_) => "egress",
            FetchError::Panicked(_) => "panic",
        }
    }
}

/// The most redirects a source may take.
const MAX_REDIRECTS: usize = 5;
/// The most bytes an echo endpoint may answer with.
const ECHO_MAX_BYTES: u64 = 1024;

/// HTTP clients and settings shared by every fetch.
#[derive(Clone)]
pub struct Fetcher {
    /// For https URLs: TLS verified (rustls, platform roots), system proxies honoured.
    client: reqwest::Client,
    /// For loopback URLs (tests, sidecars): never through a proxy.
    loopback: reqwest::Client,
    /// `--self-echo` endpoints: used by `self: true` sets and the lockout guard.
    pub self_echo: Vec<reqwest::Url>,
}

fn build_client(no_proxy: bool) -> anyhow::Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match spec::url_allowed(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(format!("refusing a redirect: {e}")),
        }
    });
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("rangekeeper/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .redirect(policy);
    if no_proxy {
        b = b.no_proxy();
    }
    Ok(b.build()?)
}

impl Fetcher {
    pub fn new(self_echo: Vec<reqwest::Url>) -> anyhow::Result<Fetcher> {
        Ok(Fetcher {
            client: build_client(false)?,
            loopback: build_client(true)?,
            self_echo,
        })
    }

    /// Fetch one source's current ranges. An empty result is an error ([`FetchError::Empty`]).
    pub async fn fetch(&self, spec: &SourceSpec) -> Result<RangeSet, FetchError> {
        let set = match &spec.kind {
            SourceKind::Url(u) => {
                let body = self.get(&u.url, spec.timeout, spec.max_bytes).await?;
                let (set, host_bits) = extract(&body, u)?;
                if host_bits > 0 {
                    tracing::warn!(
                        source = %spec.name,
                        "{host_bits} entries have host bits set; using their network boundaries"
                    );
                }
                set
            }
            SourceKind::Dns { host } => resolve(host, spec.timeout).await?,
            SourceKind::Egress { endpoints } => {
                let ip = self.egress(endpoints, spec.timeout).await?;
                RangeSet::from_nets([IpNet::from(ip)])
            }
        };
        if set.is_empty() {
            return Err(FetchError::Empty);
        }
        Ok(set)
    }

    /// GET a URL: status checked, body capped at `max` bytes while streaming, the whole
    /// exchange bounded by `timeout`.
    pub async fn get(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
        max: u64,
    ) -> Result<Vec<u8>, FetchError> {
        spec::url_allowed(url).map_err(FetchError::Http)?;
        let client = if spec::is_loopback(url) {
            &self.loopback
        } else {
            &self.client
        };
        let exchange = async {
            let mut resp = client
                .get(url.clone())
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| http_error(url, timeout, &e))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(FetchError::Http(format!(
                    "{} answered {status}",
                    spec::redact(url)
                )));
            }
            if resp.content_length().is_some_and(|n| n > max) {
                return Err(FetchError::TooLarge(max));
            }
            let mut body: Vec<u8> = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| http_error(url, timeout, &e))?
            {
                if (body.len() + chunk.len()) as u64 > max {
                    return Err(FetchError::TooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(timeout)),
        }
    }

    /// This machine's egress IP: every endpoint is asked; at least two (or the only one)
    /// must answer, and every answer must be the same address.
    pub async fn egress(
        &self,
        endpoints: &[reqwest::Url],
        timeout: Duration,
    ) -> Result<IpAddr, FetchError> {
        let endpoints: Vec<reqwest::Url> = if !endpoints.is_empty() {
            endpoints.to_vec()
        } else if !self.self_echo.is_empty() {
            self.self_echo.clone()
        } else {
            spec::DEFAULT_ECHO
                .iter()
                .filter_map(|u| reqwest::Url::parse(u).ok())
                .collect()
        };
        let answers = futures::future::join_all(endpoints.iter().map(|u| async move {
            let body = self.get(u, timeout, ECHO_MAX_BYTES).await?;
            parse_echo(&body).map_err(|e| FetchError::Egress(format!("{}: {e}", spec::redact(u))))
        }))
        .await;
        let mut ok: Vec<(&reqwest::Url, IpAddr)> = Vec::new();
        let mut failed = Vec::new();
        for (u, a) in endpoints.iter().zip(answers) {
            match a {
                Ok(ip) => ok.push((u, ip)),
                Err(e) => failed.push(format!("{}: {e}", spec::redact(u))),
            }
        }
        let needed = endpoints.len().min(2);
        if ok.len() < needed {
            return Err(FetchError::Egress(format!(
                "only {} of {} echo endpoints answered ({})",
                ok.len(),
                endpoints.len(),
                failed.join("; ")
            )));
        }
        let first = ok[0].1;
        if ok.iter().any(|(_, ip)| *ip != first) {
            let seen: Vec<String> = ok
                .iter()
                .map(|(u, ip)| format!("{} says {ip}", spec::redact(u)))
                .collect();
            return Err(FetchError::Egress(format!(
                "the echo endpoints disagree about this machine's egress IP: {}",
                seen.join(", ")
            )));
        }
        Ok(first)
    }
}

fn http_error(url: &reqwest::Url, timeout: Duration, e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout(timeout);
    }
    // The full chain says why (TLS, refused, reset); every URL in it is redacted, since a
    // source URL may carry credentials.
    let mut msg = format!("cannot fetch {}: {e}", spec::redact(url));
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    FetchError::Http(spec::redact_urls_in(&msg))
}

/// An echo endpoint's answer: the address as text, or `{"ip": "..."}`.
fn parse_echo(body: &[u8]) -> Result<IpAddr, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not text".to_owned())?;
    let text = text.trim();
    let candidate = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o
            .get("ip")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "the JSON answer has no `ip`".to_owned())?,
        _ => text.to_owned(),
    };
    candidate.parse::<IpAddr>().map_err(|_| {
        let shown: String = candidate.chars().take(60).collect();
        format!("the answer `{shown}` is not an IP address")
    })
}

/// Resolve a host name's A and AAAA records, each as a /32 or /128.
pub async fn resolve(host: &str, timeout: Duration) -> Result<RangeSet, FetchError> {
    let lookup = tokio::net::lookup_host((host, 0));
    let addrs = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => return Err(FetchError::Timeout(timeout)),
        Ok(Err(e)) => return Err(FetchError::Dns(format!("cannot resolve {host}: {e}"))),
        Ok(Ok(a)) => a,
    };
    Ok(RangeSet::from_nets(addrs.map(|a| IpNet::from(a.ip()))))
}

/// Find the CIDRs in a JSON document: `select` the list, keep the objects matching
/// `where`, take `field` of each (or each string item), and parse every one strictly.
/// Returns the set and how many entries had host bits set (normalized).
pub fn extract(body: &[u8], u: &UrlSource) -> Result<(RangeSet, usize), FetchError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| FetchError::Invalid(format!("the response is not JSON: {e}")))?;
    let list = doc.pointer(&u.select).ok_or_else(|| {
        FetchError::Invalid(format!("the document has nothing at `{}`", u.select))
    })?;
    let items = list.as_array().ok_or_else(|| {
        FetchError::Invalid(format!(
            "`{}` is not a list",
            if u.select.is_empty() { "/" } else { &u.select }
        ))
    })?;
    let mut nets = Vec::new();
    let mut host_bits = 0;
    for (i, item) in items.iter().enumerate() {
        let text = if u.field.is_some() || !u.filter.is_empty() {
            let Some(obj) = item.as_object() else {
                return Err(FetchError::Invalid(format!(
                    "item {i} of `{}` is not an object",
                    u.select
                )));
            };
            if !u.filter.iter().all(|(k, v)| obj.get(k) == Some(v)) {
                continue;
            }
            let Some(field) = &u.field else { continue };
            match obj.get(field) {
                Some(Value::String(s)) => s.as_str(),
                Some(_) => {
                    return Err(FetchError::Invalid(format!(
                        "item {i}: `{field}` is not a string"
                    )));
                }
                // A list mixing v4 and v6 objects: items without the field are skipped.
                None => continue,
            }
        } else {
            item.as_str().ok_or_else(|| {
                FetchError::Invalid(format!(
                    "item {i} of `{}` is not a string (set `field` to take one from objects)",
                    u.select
                ))
            })?
        };
        let parsed = rangekeeper_cidr::parse(text.trim())
            .map_err(|e| FetchError::Invalid(format!("item {i}: invalid CIDR {e}")))?;
        host_bits += usize::from(parsed.host_bits);
        nets.push(parsed.net);
    }
    Ok((RangeSet::from_nets(nets), host_bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_source(select: &str, filter: &[(&str, &str)], field: Option<&str>) -> UrlSource {
        UrlSource {
            url: reqwest::Url::parse("https://example.com/").unwrap(),
            select: select.into(),
            filter: filter
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect(),
            field: field.map(str::to_owned),
        }
    }

    #[test]
    fn plain_string_list() {
        let body = br#"{"actions": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]}"#;
        let (s, host_bits) = extract(body, &url_source("/actions", &[], None)).unwrap();
        assert_eq!(host_bits, 0);
        assert_eq!(
            s.to_string(),
            "192.0.2.0/24, 198.51.100.7/32, 2001:db8::/32"
        );
    }

    #[test]
    fn filtered_objects() {
        let body = br#"{"prefixes": [
            {"ip_prefix": "192.0.2.0/24", "service": "EC2", "region": "eu-west-1"},
            {"ip_prefix": "198.51.100.0/24", "service": "EC2", "region": "us-east-1"},
            {"ip_prefix": "203.0.113.0/24", "service": "AMAZON", "region": "eu-west-1"}]}"#;
        let (s, _) = extract(
            body,
            &url_source(
                "/prefixes",
                &[("service", "EC2"), ("region", "eu-west-1")],
                Some("ip_prefix"),
            ),
        )
        .unwrap();
        assert_eq!(s.to_string(), "192.0.2.0/24");
    }

    #[test]
    fn host_bits_are_normalized_and_counted() {
        let body = br#"["192.0.2.7/24", "198.51.100.0/24"]"#;
        let (s, host_bits) = extract(body, &url_source("", &[], None)).unwrap();
        assert_eq!(host_bits, 1);
        assert_eq!(s.to_string(), "192.0.2.0/24, 198.51.100.0/24");
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            extract(b"<html>", &url_source("/a", &[], None)),
            Err(FetchError::Invalid(_))
        ));
        assert!(matches!(
            extract(br#"{"a": ["1.2.3.4/33"]}"#, &url_source("/a", &[], None)),
            Err(FetchError::Invalid(_))
        ));
        assert!(matches!(
            extract(br#"{"a": {"b": 1}}"#, &url_source("/a", &[], None)),
            Err(FetchError::Invalid(_))
        ));
        assert!(matches!(
            extract(br#"{"a": [1]}"#, &url_source("/a", &[], None)),
            Err(FetchError::Invalid(_))
        ));
    }

    #[test]
    fn echo_answers() {
        assert_eq!(
            parse_echo(b"203.0.113.9\n").unwrap().to_string(),
            "203.0.113.9"
        );
        assert_eq!(
            parse_echo(br#"{"ip":"2001:db8::1"}"#).unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(parse_echo(b"<html>hi</html>").is_err());
    }
}
