//! `rangekeeper-provider-file-plugin`: rangekeeper's built-in `file` provider served as a
//! plugin, the whole of a Rust plugin's `main`. It proves that `serve()` turns any
//! `Provider` into a plugin, and lets `scripts/bench.sh` measure what the protocol costs
//! against the same provider built in.
//!
//! Build: `cargo build --release --example rangekeeper-provider-file-plugin`; use it with
//! `provider: file-plugin` and `plugin: path/to/rangekeeper-provider-file-plugin` on a target.

fn main() -> std::process::ExitCode {
    rangekeeper_provider::serve(
        rangekeeper_provider_file::capabilities,
        rangekeeper_provider_file::factory,
    )
}
