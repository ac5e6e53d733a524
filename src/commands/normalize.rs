//! `rangekeeper normalize`: CIDRs from arguments, files or stdin -> the canonical aggregate.

use std::io::Write;

use anyhow::Context as _;
use rangekeeper_cidr::{Aggregated, LineError, RangeSet, aggregate_lines};

use crate::cli::{Global, ListFormat, NormalizeArgs};
use crate::commands::Outcome;

/// Buffer size for writing a large list as JSON. (Input is read without a buffer of ours:
/// `aggregate_lines` reads in blocks of its own.)
const WRITE_BUF: usize = 1 << 20;

pub fn run(global: &Global, args: &NormalizeArgs) -> anyhow::Result<Outcome> {
    crate::commands::reject_github(global, "normalize")?;
    let mut set = RangeSet::new();
    let mut absorb = |agg: Aggregated, source: &str| {
        for w in &agg.host_bits {
            tracing::warn!(
                "{source}:{}: {}",
                w.line,
                rangekeeper_cidr::host_bits_message(&w.input, &w.net, false)
            );
        }
        set = if set.is_empty() {
            agg.set
        } else {
            set.union(&agg.set)
        };
    };
    let locate = |source: &str, e: LineError| -> anyhow::Error {
        match e {
            LineError::Io(e) => anyhow::anyhow!("cannot read {source}: {e}"),
            LineError::Parse { line, error } => {
                anyhow::anyhow!("{source}:{line}: invalid CIDR {error}; nothing was printed")
            }
            LineError::HostBits { line, input, net } => anyhow::anyhow!(
                "{source}:{line}: {}; nothing was printed",
                rangekeeper_cidr::host_bits_message(&input, &net, true)
            ),
        }
    };
    if !args.cidrs.is_empty() {
        let text = args.cidrs.join("\n");
        let agg =
            aggregate_lines(text.as_bytes(), global.strict).map_err(|e| locate("argument", e))?;
        absorb(agg, "argument");
    }
    let inputs: Vec<std::path::PathBuf> = if args.inputs.is_empty() && args.cidrs.is_empty() {
        vec!["-".into()]
    } else {
        args.inputs.clone()
    };
    for input in &inputs {
        if input.as_os_str() == "-" {
            let stdin = std::io::stdin().lock();
            let agg = aggregate_lines(stdin, global.strict).map_err(|e| locate("stdin", e))?;
            absorb(agg, "stdin");
        } else {
            let name = input.display().to_string();
            let f = std::fs::File::open(input).with_context(|| format!("cannot open {name}"))?;
            let agg = aggregate_lines(f, global.strict).map_err(|e| locate(&name, e))?;
            absorb(agg, &name);
        }
    }
    if let Some(k) = args.max_ranges {
        anyhow::ensure!(k > 0, "--max-ranges must be at least 1");
        if set.len() > k {
            let cover = rangekeeper_cidr::cover(&set, k)
                .map_err(|e| anyhow::anyhow!("--max-ranges {k}: {e}"))?;
            let report = crate::guard::CoverReport {
                declared_ranges: set.len(),
                limit: k,
                cover,
            };
            tracing::info!("{}", report.summary());
            for m in report.merges() {
                tracing::debug!("  {m}");
            }
            set = report.cover.set;
        }
    }
    let format = args.format.unwrap_or(match global.output {
        crate::cli::OutputFormat::Json => ListFormat::Json,
        _ => ListFormat::Plain,
    });
    write_list(&set, format)?;
    Ok(Outcome::Success)
}

/// Write a set as a list on stdout. The plain list is formatted in large blocks by
/// `write_lines` and written straight to stdout (another buffer would only copy it again).
pub fn write_list(set: &RangeSet, format: ListFormat) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match format {
        ListFormat::Plain => set.write_lines(stdout.lock()),
        ListFormat::Json => {
            let mut out = std::io::BufWriter::with_capacity(WRITE_BUF, stdout.lock());
            serde_json::to_writer(&mut out, set)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
                .and_then(|()| out.flush())
        }
    }
    .context("cannot write to stdout")
}
