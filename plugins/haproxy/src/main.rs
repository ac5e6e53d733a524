//! `rangekeeper-provider-haproxy`: the HAProxy plugin's executable. rangekeeper starts it for
//! a target with `provider: haproxy` (found on PATH) and talks the plugin protocol
//! (docs/plugin-protocol.md) over its stdin and stdout.

fn main() -> std::process::ExitCode {
    rangekeeper_provider::serve(
        rangekeeper_provider_haproxy::capabilities,
        rangekeeper_provider_haproxy::factory,
    )
}
