//! `aggregate_lines` (block reads, two threads, branch-free fast paths, radix sorts) checked
//! against the simple reference: split lines, strip `#` comments, trim, `parse` each entry,
//! `RangeSet::from_nets`. Inputs mix valid, near-valid (one-character mutations) and garbage
//! lines, CRLF endings, comments and padding, fed through readers of every chunk size.

use std::io::{BufReader, Read};

use proptest::prelude::*;
use rangekeeper_cidr::{
    IpNet, LineError, LinesTuning, ParseError, RangeSet, aggregate_lines_tuned, parse,
};

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok {
        set: RangeSet,
        entries: usize,
        warnings: Vec<(usize, String, IpNet)>,
    },
    Parse(usize, ParseError),
    HostBits(usize, String, IpNet),
}

fn reference(text: &[u8], strict: bool) -> Outcome {
    let text = String::from_utf8_lossy(text);
    let mut nets = Vec::new();
    let mut warnings = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Outcome::Ok {
            set: RangeSet::new(),
            entries: 0,
            warnings,
        };
    }
    for (i, raw) in body.split('\n').enumerate() {
        let line = i + 1;
        let s = raw.split('#').next().unwrap().trim();
        if s.is_empty() {
            continue;
        }
        match parse(s) {
            Err(e) => return Outcome::Parse(line, e),
            Ok(p) => {
                if p.host_bits {
                    if strict {
                        return Outcome::HostBits(line, s.to_owned(), p.net);
                    }
                    warnings.push((line, s.to_owned(), p.net));
                }
                nets.push(p.net);
            }
        }
    }
    Outcome::Ok {
        entries: nets.len(),
        set: RangeSet::from_nets(nets),
        warnings,
    }
}

/// A reader that returns at most `chunk` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn actual(text: &[u8], strict: bool, chunk: usize) -> Outcome {
    actual_tuned(text, strict, chunk, LinesTuning::default())
}

fn actual_tuned(text: &[u8], strict: bool, chunk: usize, tuning: LinesTuning) -> Outcome {
    let reader = BufReader::with_capacity(7, Trickle { data: text, chunk });
    match aggregate_lines_tuned(reader, strict, tuning) {
        Ok(a) => Outcome::Ok {
            set: a.set,
            entries: a.entries,
            warnings: a
                .host_bits
                .into_iter()
                .map(|w| (w.line, w.input, w.net))
                .collect(),
        },
        Err(LineError::Parse { line, error }) => Outcome::Parse(line, error),
        Err(LineError::HostBits { line, input, net }) => Outcome::HostBits(line, input, net),
        Err(LineError::Io(e)) => panic!("io error {e}"),
    }
}

const ALPHABET: &[u8] = b"0123456789abcdefABCDEF:./%# \t\r\nx-+";

fn valid_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        // IPv4 at a boundary or with host bits, with or without a length.
        (any::<u32>(), 0u8..=32, any::<bool>(), any::<bool>()).prop_map(|(a, l, trunc, bare)| {
            let a = if trunc {
                a & !(u32::MAX.checked_shr(u32::from(l)).unwrap_or(0))
            } else {
                a
            };
            let ip = std::net::Ipv4Addr::from(a);
            if bare {
                ip.to_string()
            } else {
                format!("{ip}/{l}")
            }
        }),
        // IPv6 in canonical, uppercase, fully expanded, and zero-heavy forms.
        (any::<u128>(), 0u8..=128, 0u8..4, any::<u8>()).prop_map(|(a, l, form, zeros)| {
            let mut a = a;
            for g in 0..8 {
                if zeros & (1 << g) != 0 {
                    a &= !(0xffffu128 << (16 * g));
                }
            }
            if form == 0 {
                a &= !(u128::MAX.checked_shr(u32::from(l)).unwrap_or(0));
            }
            let ip = std::net::Ipv6Addr::from(a);
            let text = match form {
                1 => ip.to_string().to_uppercase(),
                2 => ip
                    .segments()
                    .iter()
                    .map(|g| format!("{g:04x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                _ => ip.to_string(),
            };
            if form == 3 {
                text
            } else {
                format!("{text}/{l}")
            }
        }),
        Just("::ffff:1.2.3.4".to_owned()),
        Just("64:ff9b::1.2.3.4/128".to_owned()),
        Just("fe80::1%eth0".to_owned()),
        Just("010.0.0.1".to_owned()),
        Just("0.0.0.0/0".to_owned()),
        Just("::/0".to_owned()),
    ]
}

fn mutate(s: String, ops: Vec<(u8, usize, usize)>) -> String {
    let mut b = s.into_bytes();
    for (op, pos, ch) in ops {
        let c = ALPHABET[ch % ALPHABET.len()];
        if c == b'\n' {
            continue;
        }
        let pos = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match op % 3 {
            0 if pos < b.len() => b[pos] = c,
            1 => b.insert(pos, c),
            _ if pos < b.len() => {
                b.remove(pos);
            }
            _ => {}
        }
    }
    String::from_utf8(b).unwrap()
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => valid_entry(),
        3 => (valid_entry(), prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..3))
            .prop_map(|(s, ops)| mutate(s, ops)),
        1 => valid_entry().prop_map(|s| format!("  {s}\t# comment")),
        // Targeted near-misses: leading zeros and signs in lengths, octets and groups.
        2 => (valid_entry(), 0u8..6).prop_map(|(s, k)| match k {
            0 => s.replacen('/', "/0", 1),
            1 => s.replacen('/', "/+", 1),
            2 => s.replacen('.', ".0", 1),
            3 => s.replacen(':', ":0", 1),
            4 => format!("0{s}"),
            _ => s.replacen('/', "/1", 1),
        }),
        1 => valid_entry().prop_map(|s| format!("{s}\r")),
        1 => Just(String::new()),
        1 => Just("# only a comment".to_owned()),
        1 => prop::collection::vec(any::<usize>(), 0..12)
            .prop_map(|v| v.into_iter().map(|i| ALPHABET[i % ALPHABET.len()] as char).filter(|c| *c != '\n').collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn matches_reference(
        lines in prop::collection::vec(line(), 0..40),
        trailing_newline in any::<bool>(),
        strict in any::<bool>(),
        chunk in 1usize..64,
        (block, parallel_min, radix_min) in (1usize..96, 0usize..160, 0usize..48),
    ) {
        let mut text = lines.join("\n");
        if trailing_newline && !text.is_empty() {
            text.push('\n');
        }
        let text = text.into_bytes();
        prop_assert_eq!(actual(&text, strict, chunk), reference(&text, strict));
        prop_assert_eq!(actual(&text, strict, 1 << 20), reference(&text, strict));
        // Small blocks and thresholds: the same input crosses block, thread and sort
        // boundaries.
        let tuning = LinesTuning { block, parallel_min, radix_min };
        prop_assert_eq!(actual_tuned(&text, strict, chunk, tuning), reference(&text, strict));
    }

    /// Only valid lines (so the whole input stays on the fast paths and the parallel split).
    #[test]
    fn valid_only_matches_reference(lines in prop::collection::vec(valid_entry(), 0..200)) {
        let text = lines.join("\n").into_bytes();
        prop_assert_eq!(actual(&text, false, 4096), reference(&text, false));
    }
}

/// Large inputs: several 1 MiB blocks, the two-thread split, the radix sorts (more than
/// 4096 entries per family), an error planted deep inside a worker's half.
#[test]
fn large_inputs_match_reference() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut lines = Vec::new();
    for i in 0..150_000u32 {
        let r = next();
        let s = if i % 5 == 0 {
            let l = 40 + (r % 25) as u32;
            let a = (u128::from(next()) << 64) & !(u128::MAX >> l);
            format!("{}/{l}", std::net::Ipv6Addr::from(a))
        } else {
            let l = 16 + (r % 17) as u32;
            let a = (next() as u32) & !(u32::MAX.checked_shr(l).unwrap_or(0));
            format!("{}/{l}", std::net::Ipv4Addr::from(a))
        };
        lines.push(s);
    }
    // Some CRLF and comment lines, still valid.
    lines[1000].push('\r');
    lines[70_000] = format!("{} # note", lines[70_000]);
    let text = lines.join("\n").into_bytes();
    assert!(text.len() > 2 << 20);
    assert_eq!(actual(&text, true, 1 << 16), reference(&text, true));
    // An error in the second half of a block (the worker's part) and a host-bits line before.
    let mut bad = lines.clone();
    bad[40_000] = "10.1.2.3/8".to_owned();
    bad[120_000] = "1.2.3.256".to_owned();
    let text = bad.join("\n").into_bytes();
    let want = reference(&text, false);
    assert!(matches!(want, Outcome::Parse(120_001, _)));
    assert_eq!(actual(&text, false, 1 << 16), want);
    let want = reference(&text, true);
    assert!(matches!(want, Outcome::HostBits(40_001, _, _)));
    assert_eq!(actual(&text, true, 1 << 20), want);
}

/// Clustered inputs (every key sharing its top bytes, duplicates, nested and adjacent
/// prefixes, IPv6 longer than /120) take the radix sorts' skewed paths.
#[test]
fn clustered_large_inputs_match_reference() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut lines = Vec::new();
    for i in 0..60_000u32 {
        let r = next();
        let s = if i % 2 == 0 {
            // Inside 2001:db8::/32, lengths /33../128, some sharing every byte but the last.
            let l = 33 + (r % 96) as u32;
            let low = if i % 6 == 0 {
                u128::from(next() % 4096)
            } else {
                u128::from(next()) << 32 | u128::from(next() as u32)
            };
            let a = ((0x2001_0db8u128 << 96) | (low & ((1u128 << 96) - 1)))
                & !(u128::MAX.checked_shr(l).unwrap_or(0));
            format!("{}/{l}", std::net::Ipv6Addr::from(a))
        } else {
            // Inside 10.0.0.0/8, mostly small, many duplicates and neighbours.
            let l = 20 + (r % 13) as u32;
            let a = (0x0a00_0000 | (next() as u32 % 65_536) << 8)
                & !(u32::MAX.checked_shr(l).unwrap_or(0));
            format!("{}/{l}", std::net::Ipv4Addr::from(a))
        };
        lines.push(s);
    }
    let text = lines.join("\n").into_bytes();
    assert_eq!(actual(&text, true, 1 << 20), reference(&text, true));
}
