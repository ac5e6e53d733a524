//! The plugin side of the exec protocol: [`serve`] turns any [`Provider`] into a plugin
//! executable, so a Rust plugin's `main` is one line:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     rangekeeper_provider::serve(my_plugin::capabilities, my_plugin::factory)
//! }
//! ```

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use crate::protocol::{self, Checked, Hello, Operation, Reply, Request, WireTarget};
use crate::{
    ApplyOptions, Capabilities, Progress, Provider, ProviderError, ProviderFactory,
    parse_wire_ranges,
};

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Serve requests from stdin until it closes, building providers with `factory`. Exit code 0
/// when stdin closed, 1 when stdout or the runtime failed (the reason is on stderr).
///
/// `capabilities` answers a `capabilities` request that names no target (what the plugin
/// can do in general, for `rangekeeper providers`); requests about a target ask the provider
/// `factory` built for it.
pub fn serve(capabilities: fn() -> Capabilities, factory: ProviderFactory) -> ExitCode {
    let stdin = io::stdin();
    match serve_io(capabilities, factory, stdin.lock(), Box::new(io::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rangekeeper plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

/// [`serve`] over any reader and writer (for tests and embedding).
pub fn serve_io(
    capabilities: fn() -> Capabilities,
    factory: ProviderFactory,
    input: impl BufRead,
    output: Box<dyn Write + Send>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out: Out = Arc::new(Mutex::new(output));
    send(
        &out,
        &Hello {
            v: protocol::VERSIONS.to_vec(),
        },
    )?;
    // The provider of the last target asked about, rebuilt when the target changes.
    let mut bound: Option<(WireTarget, Box<dyn Provider>)> = None;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Err(ProviderError::Invalid(format!(
                "cannot read the request: {e}"
            ))),
            Ok(req) if !protocol::VERSIONS.contains(&req.v) => {
                Reply::Err(ProviderError::Invalid(format!(
                    "protocol version {} is not one this plugin speaks ({:?})",
                    req.v,
                    protocol::VERSIONS
                )))
            }
            Ok(Request {
                op: Operation::Capabilities,
                target: None,
                ..
            }) => match to_value(Ok(capabilities())) {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::Err(e),
            },
            Ok(Request { target: None, .. }) => Reply::Err(ProviderError::Invalid(
                "the request has no `target`; only `capabilities` may omit it".into(),
            )),
            Ok(Request {
                op,
                target: Some(target),
                ..
            }) => {
                if bound.as_ref().is_none_or(|(t, _)| t != &target) {
                    bound = None;
                    match factory(&target.to_config()) {
                        Ok(p) => bound = Some((target, p)),
                        Err(e) => {
                            send(&out, &Reply::<()>::Err(e))?;
                            continue;
                        }
                    }
                }
                match &bound {
                    Some((_, p)) => rt.block_on(answer(p.as_ref(), op, &out)),
                    None => Reply::Err(ProviderError::Other("no provider".into())),
                }
            }
        };
        send(&out, &reply)?;
    }
    Ok(())
}

async fn answer(p: &dyn Provider, op: Operation, out: &Out) -> Reply<serde_json::Value> {
    let opts = |wait| ApplyOptions {
        wait,
        progress: Arc::new(WireProgress(out.clone())),
    };
    let r: Result<serde_json::Value, ProviderError> = match op {
        Operation::Capabilities => to_value(Ok(p.capabilities())),
        Operation::Check { ranges } => match parse_wire_ranges(&ranges) {
            Ok(set) => to_value(Ok(Checked {
                violations: p.check(&set),
            })),
            Err(e) => Err(ProviderError::Invalid(e)),
        },
        Operation::Current => to_value(p.current().await),
        Operation::Apply { ranges, wait } => match parse_wire_ranges(&ranges) {
            Ok(set) => to_value(p.apply(&set, &opts(wait)).await),
            Err(e) => Err(ProviderError::Invalid(e)),
        },
        Operation::Disable { wait } => to_value(p.disable(&opts(wait)).await),
        Operation::Preflight { ranges, current } => match parse_wire_ranges(&ranges) {
            Ok(set) => to_value(
                p.preflight(&set, &current)
                    .await
                    .map(|violations| Checked { violations }),
            ),
            Err(e) => Err(ProviderError::Invalid(e)),
        },
        Operation::ApplyLeased {
            ranges,
            leases,
            version,
            wait,
        } => match parse_wire_ranges(&ranges) {
            Ok(set) => to_value(
                p.apply_leased(&set, &leases, version.as_deref(), &opts(wait))
                    .await,
            ),
            Err(e) => Err(ProviderError::Invalid(e)),
        },
        Operation::Unknown => Err(ProviderError::Unknown {
            kind: protocol::UNSUPPORTED.into(),
            message: "this plugin does not know the operation".into(),
        }),
    };
    match r {
        Ok(v) => Reply::Ok(v),
        Err(e) => Reply::Err(e),
    }
}

fn to_value<T: serde::Serialize>(
    r: Result<T, ProviderError>,
) -> Result<serde_json::Value, ProviderError> {
    r.and_then(|v| {
        serde_json::to_value(v).map_err(|e| ProviderError::Other(format!("cannot encode: {e}")))
    })
}

fn send<T: serde::Serialize>(out: &Out, msg: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut w = out
        .lock()
        .map_err(|_| io::Error::other("stdout lock poisoned"))?;
    w.write_all(&line)?;
    w.flush()
}

/// Progress messages become `{"progress":"..."}` lines before the reply.
struct WireProgress(Out);

impl Progress for WireProgress {
    fn message(&self, msg: &str) {
        // A progress line that cannot be written is not worth failing the operation for;
        // the reply's own write reports a broken stdout.
        let _ = send(&self.0, &Reply::<()>::Progress(msg.to_owned()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Applied, RangeSet, State, TargetConfig};

    struct Fixed;

    #[async_trait::async_trait]
    impl Provider for Fixed {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new("fixed", "for tests")
        }
        async fn current(&self) -> Result<State, ProviderError> {
            Ok(State::new(crate::Restriction::Unrestricted))
        }
        async fn apply(&self, _: &RangeSet, o: &ApplyOptions) -> Result<Applied, ProviderError> {
            o.progress.message("working");
            Ok(Applied::changed())
        }
        async fn disable(&self, _: &ApplyOptions) -> Result<Applied, ProviderError> {
            Ok(Applied::unchanged())
        }
    }

    fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
        if cfg.fields.contains_key("bad") {
            return Err(ProviderError::Config("`bad` is not a field".into()));
        }
        Ok(Box::new(Fixed))
    }

    fn caps() -> Capabilities {
        Capabilities::new("fixed", "in general")
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn serve_answers_every_request_and_survives_bad_ones() {
        let t = r#""target":{"name":"t","baseDir":"/"}"#;
        let input = [
            r#"{"v":1,"kind":"capabilities"}"#.to_owned(),
            format!(r#"{{"v":1,"kind":"current",{t}}}"#),
            format!(r#"{{"v":1,"kind":"apply","ranges":["192.0.2.0/24"],"wait":true,{t}}}"#),
            format!(r#"{{"v":1,"kind":"apply","ranges":["192.0.2.1/24"],"wait":true,{t}}}"#),
            format!(r#"{{"v":1,"kind":"lease",{t}}}"#),
            format!(r#"{{"v":2,"kind":"current",{t}}}"#),
            r#"{"v":1,"kind":"current"}"#.to_owned(),
            r#"{"v":1,"kind":"current","target":{"name":"t","baseDir":"/","fields":{"bad":1}}}"#
                .to_owned(),
            "not json".to_owned(),
        ]
        .join("\n");
        let out = Buf::default();
        serve_io(caps, factory, input.as_bytes(), Box::new(out.clone())).unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"v":[1]}"#);
        assert!(
            lines[1].contains(r#""description":"in general""#),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            r#"{"Ok":{"restriction":{"kind":"unrestricted"},"details":[],"warnings":[]}}"#
        );
        assert_eq!(lines[3], r#"{"progress":"working"}"#);
        assert_eq!(
            lines[4],
            r#"{"Ok":{"changed":true,"pending":false,"notes":[]}}"#
        );
        assert!(lines[5].contains("send `192.0.2.0/24`"), "{}", lines[5]);
        assert!(lines[6].contains(r#""kind":"unsupported""#), "{}", lines[6]);
        assert!(lines[7].contains("protocol version 2"), "{}", lines[7]);
        assert!(lines[8].contains("has no `target`"), "{}", lines[8]);
        assert!(lines[9].contains(r#""kind":"config""#), "{}", lines[9]);
        assert!(
            lines[10].contains("cannot read the request"),
            "{}",
            lines[10]
        );
        assert_eq!(lines.len(), 11);
    }
}
