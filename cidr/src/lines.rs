//! Line-oriented aggregation: the streaming `normalize` path over one-CIDR-per-line text.

use std::io::BufRead;

use ipnet::IpNet;

use crate::parse::{self, ParseError, Raw};
use crate::set::RangeSet;

/// A host-bits warning from [`aggregate_lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBitsWarning {
    pub line: usize,
    pub input: String,
    pub net: IpNet,
}

/// The result of [`aggregate_lines`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregated {
    pub set: RangeSet,
    /// Number of CIDR entries read.
    pub entries: usize,
    pub host_bits: Vec<HostBitsWarning>,
}

/// An error in line-oriented input: the 1-based line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line {line}: {error}")]
    Parse { line: usize, error: ParseError },
    #[error(
        "line {line}: {input} has host bits set (network boundary: {net}); strict mode rejects it"
    )]
    HostBits {
        line: usize,
        input: String,
        net: IpNet,
    },
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Accumulates parsed lines into raw intervals.
#[derive(Default)]
pub(crate) struct Collector {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    entries: usize,
    host_bits: Vec<HostBitsWarning>,
    strict: bool,
}

impl Collector {
    /// Handle one raw line (without its newline). `line` is 1-based.
    #[inline]
    pub(crate) fn line(&mut self, raw_line: &[u8], line: usize) -> Result<(), LineError> {
        let content = match raw_line.iter().position(|&b| b == b'#') {
            Some(i) => &raw_line[..i],
            None => raw_line,
        };
        let s = parse::trim(content);
        if s.is_empty() {
            return Ok(());
        }
        let raw = parse::parse_raw(s).map_err(|f| LineError::Parse {
            line,
            error: ParseError {
                input: String::from_utf8_lossy(s).into_owned(),
                reason: f.reason(s),
            },
        })?;
        self.entries += 1;
        if raw.host_bits() {
            let input = String::from_utf8_lossy(s).into_owned();
            if self.strict {
                return Err(LineError::HostBits {
                    line,
                    input,
                    net: raw.net(),
                });
            }
            self.host_bits.push(HostBitsWarning {
                line,
                input,
                net: raw.net(),
            });
        }
        match raw {
            Raw::V4 { net, len, .. } => {
                let mask = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                self.v4.push((net, net | mask));
            }
            Raw::V6 { net, len, .. } => {
                let mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                self.v6.push((net, net | mask));
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Aggregated {
        Aggregated {
            set: RangeSet::from_intervals(self.v4, self.v6),
            entries: self.entries,
            host_bits: self.host_bits,
        }
    }
}

/// Read one CIDR per line (surrounding whitespace trimmed; blank lines, and everything from
/// `#` to the end of a line, skipped) and aggregate into a canonical set. Streaming and fast:
/// this is `rangekeeper normalize`. With `strict`, a host-bits entry is an error.
pub fn aggregate_lines<R: BufRead>(mut reader: R, strict: bool) -> Result<Aggregated, LineError> {
    let mut c = Collector {
        strict,
        ..Collector::default()
    };
    let mut buf = Vec::with_capacity(256);
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line += 1;
        let l = buf.strip_suffix(b"\n").unwrap_or(&buf);
        c.line(l, line)?;
    }
    Ok(c.finish())
}
