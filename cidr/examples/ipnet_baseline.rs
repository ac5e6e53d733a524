//! The baseline `normalize` is measured against: the obvious implementation with the `ipnet`
//! crate (`IpNet::from_str` per line, `IpNet::aggregate`, `Display` per prefix, buffered).
//! Reads the files given as arguments (or stdin), writes the aggregate to stdout.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};

use ipnet::IpNet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    let readers: Vec<Box<dyn BufRead>> = if files.is_empty() {
        vec![Box::new(io::stdin().lock())]
    } else {
        files
            .iter()
            .map(|f| Ok(Box::new(BufReader::new(File::open(f)?)) as Box<dyn BufRead>))
            .collect::<io::Result<_>>()?
    };
    let mut nets: Vec<IpNet> = Vec::new();
    for line in readers.into_iter().flat_map(|r| r.lines()) {
        let line = line?;
        let s = line.split('#').next().unwrap_or("").trim();
        if s.is_empty() {
            continue;
        }
        let net = match s.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => IpNet::from(s.parse::<std::net::IpAddr>()?),
        };
        nets.push(net);
    }
    let agg = IpNet::aggregate(&nets);
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    for n in agg {
        writeln!(out, "{n}")?;
    }
    out.flush()?;
    Ok(())
}
