//! Stand-in for `rangekeeper normalize` in benchmarks: CIDRs on stdin (or files given as
//! arguments), one per line, aggregated with `aggregate_lines`, the canonical list on stdout.
//! Usage: `normalize [--strict] [FILE...]`

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::process::ExitCode;

use rangekeeper_cidr::{RangeSet, aggregate_lines};

fn main() -> ExitCode {
    let mut strict = false;
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--strict" {
            strict = true;
        } else {
            files.push(a);
        }
    }
    match run(strict, &files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("normalize: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(strict: bool, files: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    const CAP: usize = 1 << 20;
    let mut set = RangeSet::new();
    let mut aggregate = |r: Box<dyn Read>| -> Result<(), Box<dyn std::error::Error>> {
        let a = aggregate_lines(BufReader::with_capacity(CAP, r), strict)?;
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
    set.write_lines(io::stdout().lock())?;
    Ok(())
}
