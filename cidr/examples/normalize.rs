//! Stand-in for `rangekeeper normalize` in benchmarks: CIDRs on stdin (or files given as
//! arguments), one per line, aggregated with `aggregate_lines`, the canonical list on stdout;
//! with `--max-ranges K`, the optimal cover of at most K prefixes (its cost on stderr).
//! Usage: `normalize [--strict] [--max-ranges K] [[-i] FILE...]`

use std::fs::File;
use std::io::{self, Read};
use std::process::ExitCode;

use rangekeeper_cidr::{RangeSet, aggregate_lines, cover};

fn main() -> ExitCode {
    let mut strict = false;
    let mut max_ranges = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--strict" => strict = true,
            "-i" | "--input" => files.extend(args.next()),
            "--max-ranges" => match args.next().map(|k| k.parse::<usize>()) {
                Some(Ok(k)) => max_ranges = Some(k),
                _ => {
                    eprintln!("normalize: --max-ranges needs a number");
                    return ExitCode::FAILURE;
                }
            },
            _ => files.push(a),
        }
    }
    match run(strict, max_ranges, &files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("normalize: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    strict: bool,
    max_ranges: Option<usize>,
    files: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut set = RangeSet::new();
    let mut aggregate = |r: Box<dyn Read>| -> Result<(), Box<dyn std::error::Error>> {
        let a = aggregate_lines(r, strict)?;
        for w in &a.host_bits {
            eprintln!(
                "warning: line {}: {} has host bits set; using {}",
                w.line, w.input, w.net
            );
        }
        set = if set.is_empty() {
            a.set
        } else {
            set.union(&a.set)
        };
        Ok(())
    };
    if files.is_empty() {
        aggregate(Box::new(io::stdin().lock()))?;
    } else {
        for f in files {
            aggregate(Box::new(File::open(f)?))?;
        }
    }
    if let Some(k) = max_ranges
        && set.len() > k
    {
        let c = cover(&set, k)?;
        eprintln!(
            "cover of {} prefixes by {}: extra IPv4 {} (x{:.3}), extra IPv6 {} (x{:.3}), widest {:?} / {:?}",
            set.len(),
            c.set.len(),
            c.extra.v4,
            c.extra_multiple_v4.unwrap_or(0.0),
            c.extra.v6,
            c.extra_multiple_v6.unwrap_or(0.0),
            c.widest_v4.map(|n| n.to_string()),
            c.widest_v6.map(|n| n.to_string()),
        );
        set = c.set;
    }
    set.write_lines(io::stdout().lock())?;
    Ok(())
}
