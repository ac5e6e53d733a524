//! Strict, hand-written CIDR parser (byte level, allocation-free on success).
//!
//! Library parsers are lenient in ways that matter for an allow-list (`ipnet` reads
//! `010.001.002.003` as `10.1.2.3`; others accept `/024` or `/+24`), so this module accepts
//! exactly: an IPv4 dotted quad of four plain decimal octets without leading zeros, or an
//! RFC 4291 IPv6 text form (with `::` compression and an embedded IPv4 tail), optionally
//! followed by `/` and a plain decimal prefix length. Everything else gets a precise reason.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a CIDR string was rejected. `Display` names the input and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", quoted(.input), tamed(.reason))]
pub struct ParseError {
    /// The offending input as given (trimmed).
    pub input: String,
    /// What is wrong, and where possible what to write instead.
    pub reason: String,
    /// What is wrong, as a value: compare kinds (not `reason` texts) to check that two
    /// readers reject an entry for the same reason.
    pub kind: ParseErrorKind,
}

/// The longest input an error message quotes whole, in characters.
const SHOWN_CHARS: usize = 64;

/// `text` with control characters escaped (never sent raw to a terminal), cut after `max`
/// characters; whether it was cut.
fn escaped(text: &str, max: usize) -> (String, bool) {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max {
            return (out, true);
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    (out, false)
}

/// An input as an error message quotes it, in backticks: escaped, and a long one cut with
/// its size said, so a 3 MB line is not echoed whole.
fn quoted(input: &str) -> String {
    match escaped(input, SHOWN_CHARS) {
        (shown, false) => format!("`{shown}`"),
        (shown, true) => format!("`{shown}…` ({} bytes)", input.len()),
    }
}

/// The reason as an error message shows it: escaped, and cut at a sane length (a reason
/// quotes part of the input, which may be huge).
fn tamed(reason: &str) -> String {
    match escaped(reason, 4 * SHOWN_CHARS) {
        (shown, false) => shown,
        (shown, true) => shown + "…",
    }
}

/// The kind of a [`ParseError`], without the input text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// Whitespace inside the entry.
    InnerSpace,
    /// More than one `/`.
    ExtraSlash,
    /// Nothing before the `/`.
    MissingAddress,
    /// Nothing after the `/`.
    MissingPrefixLength,
    /// The prefix length is not plain decimal digits.
    PrefixLengthNotDecimal,
    /// The prefix length has a leading zero.
    PrefixLengthLeadingZero,
    /// The prefix length exceeds the family's maximum (32 or 128).
    PrefixLengthOutOfRange { max: u8 },
    /// Neither an IPv4 nor an IPv6 address.
    NotAnAddress,
    /// An IPv4 address without exactly 4 parts (the number found).
    Ipv4Parts(usize),
    /// An empty IPv4 octet.
    Ipv4EmptyOctet,
    /// An IPv4 octet that is not decimal.
    Ipv4OctetNotDecimal,
    /// An IPv4 octet with a leading zero.
    Ipv4OctetLeadingZero,
    /// An IPv4 octet over 255.
    Ipv4OctetOutOfRange,
    /// An IPv6 zone id (`%eth0`).
    Ipv6Zone,
    /// `::` twice.
    Ipv6DoubleColonTwice,
    /// An empty IPv6 group.
    Ipv6EmptyGroup,
    /// An IPv6 group of more than 4 hex digits.
    Ipv6GroupTooLong,
    /// An IPv6 group that is not hexadecimal.
    Ipv6GroupNotHex,
    /// An IPv6 address with the wrong number of groups (the number found).
    Ipv6Groups(usize),
    /// `::` in an address that already has 8 groups.
    Ipv6DoubleColonNoGroup,
    /// An embedded IPv4 part that is not the last part.
    Ipv6EmbeddedIpv4NotLast,
    /// An embedded IPv4 part that is not a valid IPv4 address.
    Ipv6EmbeddedIpv4,
    /// An IPv4-mapped IPv6 address or prefix.
    Ipv6Mapped,
}

/// The one wording of a host-bits finding, for every place that reports one: `input` as
/// written and `net`, its network boundary; `strict` when the input is refused rather than
/// normalized.
pub fn host_bits_message(input: &str, net: &IpNet, strict: bool) -> String {
    if strict {
        format!("`{input}` has host bits set (strict mode rejects it: write `{net}`)")
    } else {
        format!("`{input}` has host bits set; using the network boundary `{net}`")
    }
}

/// A parsed CIDR: the network at its boundary, and whether the input had host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub net: IpNet,
    /// True when the input had host bits set (`137.117.106.90/29`); `net` is the boundary
    /// (`137.117.106.88/29`). Callers warn, or reject under `--strict`.
    pub host_bits: bool,
}

/// A successfully parsed entry in numeric form: the network boundary, its prefix length, and
/// whether the input had host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Raw {
    V4 { net: u32, len: u8, host_bits: bool },
    V6 { net: u128, len: u8, host_bits: bool },
}

impl Raw {
    pub(crate) fn host_bits(self) -> bool {
        match self {
            Raw::V4 { host_bits, .. } | Raw::V6 { host_bits, .. } => host_bits,
        }
    }

    pub(crate) fn net(self) -> IpNet {
        match self {
            Raw::V4 { net, len, .. } => IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(net), len)),
            Raw::V6 { net, len, .. } => IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(net), len)),
        }
    }
}

/// What is wrong with an entry, kept as byte ranges of the input so the success path never
/// allocates; rendered into a sentence only on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    Empty,
    InnerSpace,
    ExtraSlash,
    MissingAddr,
    MissingLen,
    LenNotDecimal(Span),
    LenLeadingZero(Span),
    LenRange { len: Span, max: u8 },
    NotAnAddress,
    V4Parts(usize),
    V4EmptyOctet,
    V4NotDecimal(Span),
    V4LeadingZero(Span),
    V4OctetRange(Span),
    V6Zone(Span),
    V6DoubleColonTwice,
    V6EmptyGroup,
    V6GroupTooLong(Span),
    V6GroupNotHex(Span),
    V6Groups(usize),
    V6DoubleColonNoGroup,
    V6Ipv4NotLast(Span),
    V6Ipv4Tail(Span, Box<Fault>),
    V6Mapped { v4: u32, len: Option<u8> },
}

/// A byte range of the (trimmed) input.
pub(crate) type Span = (usize, usize);

fn text(s: &[u8], span: Span) -> String {
    String::from_utf8_lossy(&s[span.0..span.1]).into_owned()
}

impl Fault {
    pub(crate) fn kind(&self) -> ParseErrorKind {
        use ParseErrorKind as K;
        match self {
            Fault::Empty => K::Empty,
            Fault::InnerSpace => K::InnerSpace,
            Fault::ExtraSlash => K::ExtraSlash,
            Fault::MissingAddr => K::MissingAddress,
            Fault::MissingLen => K::MissingPrefixLength,
            Fault::LenNotDecimal(_) => K::PrefixLengthNotDecimal,
            Fault::LenLeadingZero(_) => K::PrefixLengthLeadingZero,
            Fault::LenRange { max, .. } => K::PrefixLengthOutOfRange { max: *max },
            Fault::NotAnAddress => K::NotAnAddress,
            Fault::V4Parts(n) => K::Ipv4Parts(*n),
            Fault::V4EmptyOctet => K::Ipv4EmptyOctet,
            Fault::V4NotDecimal(_) => K::Ipv4OctetNotDecimal,
            Fault::V4LeadingZero(_) => K::Ipv4OctetLeadingZero,
            Fault::V4OctetRange(_) => K::Ipv4OctetOutOfRange,
            Fault::V6Zone(_) => K::Ipv6Zone,
            Fault::V6DoubleColonTwice => K::Ipv6DoubleColonTwice,
            Fault::V6EmptyGroup => K::Ipv6EmptyGroup,
            Fault::V6GroupTooLong(_) => K::Ipv6GroupTooLong,
            Fault::V6GroupNotHex(_) => K::Ipv6GroupNotHex,
            Fault::V6Groups(n) => K::Ipv6Groups(*n),
            Fault::V6DoubleColonNoGroup => K::Ipv6DoubleColonNoGroup,
            Fault::V6Ipv4NotLast(_) => K::Ipv6EmbeddedIpv4NotLast,
            Fault::V6Ipv4Tail(..) => K::Ipv6EmbeddedIpv4,
            Fault::V6Mapped { .. } => K::Ipv6Mapped,
        }
    }

    /// The public error for this fault in the (trimmed) entry `s`.
    pub(crate) fn error(&self, s: &[u8]) -> ParseError {
        ParseError {
            input: String::from_utf8_lossy(s).into_owned(),
            reason: self.reason(s),
            kind: self.kind(),
        }
    }

    pub(crate) fn reason(&self, s: &[u8]) -> String {
        match self {
            Fault::Empty => "empty entry".to_owned(),
            Fault::InnerSpace => {
                "unexpected whitespace inside the entry (one address or CIDR per entry, without spaces)".to_owned()
            }
            Fault::ExtraSlash => {
                "more than one `/`: expected ADDRESS or ADDRESS/PREFIX-LENGTH".to_owned()
            }
            Fault::MissingAddr => "missing address before `/`".to_owned(),
            Fault::MissingLen => "missing prefix length after `/`".to_owned(),
            Fault::LenNotDecimal(sp) => format!(
                "prefix length `{}` is not a plain decimal number (no sign, spaces or other characters)",
                text(s, *sp)
            ),
            Fault::LenLeadingZero(sp) => {
                let t = text(s, *sp);
                let trimmed = t.trim_start_matches('0');
                let suggestion = if trimmed.is_empty() { "0" } else { trimmed };
                format!("leading zero in prefix length `{t}`; write `/{suggestion}`")
            }
            Fault::LenRange { len, max } => {
                let fam = if *max == 32 { "IPv4" } else { "IPv6" };
                let addr = String::from_utf8_lossy(&s[..len.0.saturating_sub(1)]);
                format!(
                    "prefix length /{} is out of range: the {fam} maximum is /{max} (`{addr}/{max}` is the single address)",
                    text(s, *len)
                )
            }
            Fault::NotAnAddress => {
                "not an IP address: expected an IPv4 dotted quad (192.0.2.1) or an IPv6 address (2001:db8::1), optionally with /PREFIX-LENGTH".to_owned()
            }
            Fault::V4Parts(n) => format!(
                "an IPv4 address has exactly 4 dot-separated decimal octets; found {n}"
            ),
            Fault::V4EmptyOctet => {
                "empty IPv4 octet (two dots in a row, or a dot at the start or end)".to_owned()
            }
            Fault::V4NotDecimal(sp) => {
                format!("IPv4 octet `{}` is not a decimal number", text(s, *sp))
            }
            Fault::V4LeadingZero(sp) => {
                // The same address with every octet read as decimal, prefix kept.
                let entry = String::from_utf8_lossy(s);
                let (addr, len) = entry.split_once('/').map_or((&*entry, None), |(a, l)| (a, Some(l)));
                let decimal: Vec<&str> = addr
                    .split('.')
                    .map(|o| match o.trim_start_matches('0') {
                        "" => "0",
                        t => t,
                    })
                    .collect();
                let decimal = decimal.join(".") + &len.map(|l| format!("/{l}")).unwrap_or_default();
                format!(
                    "leading zero in IPv4 octet `{}` (ambiguous octal); write `{decimal}` if decimal was meant",
                    text(s, *sp)
                )
            }
            Fault::V4OctetRange(sp) => {
                format!("IPv4 octet `{}` is greater than 255", text(s, *sp))
            }
            Fault::V6Zone(sp) if !s[..sp.0].contains(&b':') => format!(
                "`{}` after an IPv4 address is not allowed: zone ids belong to IPv6 link-local addresses, and a zone is local to one host with no meaning in an allow-list; remove it",
                text(s, *sp)
            ),
            Fault::V6Zone(sp) => format!(
                "IPv6 zone id `{}` is not allowed: a zone is local to one host and has no meaning in an allow-list; remove it",
                text(s, *sp)
            ),
            Fault::V6DoubleColonTwice => {
                "`::` may appear only once in an IPv6 address".to_owned()
            }
            Fault::V6EmptyGroup => {
                "empty IPv6 group (a single `:` at the start or end, or `:::`)".to_owned()
            }
            Fault::V6GroupTooLong(sp) => {
                format!("IPv6 group `{}` has more than 4 hex digits", text(s, *sp))
            }
            Fault::V6GroupNotHex(sp) => {
                format!("IPv6 group `{}` is not hexadecimal", text(s, *sp))
            }
            Fault::V6Groups(n) => format!(
                "an IPv6 address has 8 groups (fewer only with `::`); found {n}"
            ),
            Fault::V6DoubleColonNoGroup => {
                "`::` must stand for at least one group, but the address already has 8".to_owned()
            }
            Fault::V6Ipv4NotLast(sp) => format!(
                "embedded IPv4 `{}` must be the last part of an IPv6 address",
                text(s, *sp)
            ),
            Fault::V6Ipv4Tail(sp, inner) => format!(
                "embedded IPv4 `{}`: {}",
                text(s, *sp),
                inner.reason(s)
            ),
            Fault::V6Mapped { v4, len } => {
                let a = Ipv4Addr::from(*v4);
                let form = match len {
                    Some(l) => format!("{a}/{l}"),
                    None => a.to_string(),
                };
                format!(
                    "IPv4-mapped IPv6 is not accepted (providers match IPv4 clients by their IPv4 address); write the IPv4 form `{form}` instead"
                )
            }
        }
    }
}

fn is_ws(b: u8) -> bool {
    b.is_ascii_whitespace()
}

/// Trim ASCII whitespace; returns the offset of the trimmed slice too.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_ws(s[a]) {
        a += 1;
    }
    while b > a && is_ws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// Parse one already-trimmed entry.
pub(crate) fn parse_raw(s: &[u8]) -> Result<Raw, Fault> {
    if s.is_empty() {
        return Err(Fault::Empty);
    }
    if s.iter().any(|&b| is_ws(b)) {
        return Err(Fault::InnerSpace);
    }
    let slash = s.iter().position(|&b| b == b'/');
    let (addr_end, len_span) = match slash {
        Some(i) => {
            if s[i + 1..].contains(&b'/') {
                return Err(Fault::ExtraSlash);
            }
            (i, Some((i + 1, s.len())))
        }
        None => (s.len(), None),
    };
    if addr_end == 0 {
        return Err(Fault::MissingAddr);
    }
    let addr = &s[..addr_end];
    let has_colon = addr.contains(&b':');
    if has_colon || addr.contains(&b'%') {
        let a = parse_v6(s, 0, addr_end)?;
        let len = match len_span {
            Some(sp) => parse_len(s, sp, 128)?,
            None => 128,
        };
        let mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        let net = a & !mask;
        if len >= 96 && (net >> 32) == 0xffff {
            return Err(Fault::V6Mapped {
                v4: a as u32,
                len: len_span.map(|_| len - 96),
            });
        }
        Ok(Raw::V6 {
            net,
            len,
            host_bits: net != a,
        })
    } else {
        if !addr.iter().all(|b| b.is_ascii_digit() || *b == b'.') && !addr.contains(&b'.') {
            return Err(Fault::NotAnAddress);
        }
        let a = parse_v4(s, 0, addr_end)?;
        let len = match len_span {
            Some(sp) => parse_len(s, sp, 32)?,
            None => 32,
        };
        let mask = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        let net = a & !mask;
        Ok(Raw::V4 {
            net,
            len,
            host_bits: net != a,
        })
    }
}

fn parse_len(s: &[u8], sp: Span, max: u8) -> Result<u8, Fault> {
    let d = &s[sp.0..sp.1];
    if d.is_empty() {
        return Err(Fault::MissingLen);
    }
    if !d.iter().all(u8::is_ascii_digit) {
        return Err(Fault::LenNotDecimal(sp));
    }
    if d.len() > 1 && d[0] == b'0' {
        return Err(Fault::LenLeadingZero(sp));
    }
    if d.len() > 3 {
        return Err(Fault::LenRange { len: sp, max });
    }
    let v = d
        .iter()
        .fold(0u16, |acc, &b| acc * 10 + u16::from(b - b'0'));
    if v > u16::from(max) {
        return Err(Fault::LenRange { len: sp, max });
    }
    Ok(v as u8)
}

/// Parse `s[start..end]` as a strict IPv4 dotted quad.
pub(crate) fn parse_v4(s: &[u8], start: usize, end: usize) -> Result<u32, Fault> {
    let mut value: u32 = 0;
    let mut parts = 0usize;
    let mut p = start;
    // Count the parts first so "1.2.3" and "1.2.3.4.5" are reported as such, not as an octet error.
    let dots = s[start..end].iter().filter(|&&b| b == b'.').count();
    if dots != 3 {
        return Err(Fault::V4Parts(dots + 1));
    }
    while parts < 4 {
        let mut q = p;
        while q < end && s[q] != b'.' {
            q += 1;
        }
        let oct = &s[p..q];
        if oct.is_empty() {
            return Err(Fault::V4EmptyOctet);
        }
        if !oct.iter().all(u8::is_ascii_digit) {
            return Err(Fault::V4NotDecimal((p, q)));
        }
        if oct.len() > 1 && oct[0] == b'0' {
            return Err(Fault::V4LeadingZero((p, q)));
        }
        if oct.len() > 3 {
            return Err(Fault::V4OctetRange((p, q)));
        }
        let v = oct
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
        if v > 255 {
            return Err(Fault::V4OctetRange((p, q)));
        }
        value = (value << 8) | v;
        parts += 1;
        p = q + 1;
    }
    Ok(value)
}

/// Parse `s[start..end]` as an RFC 4291 IPv6 address (no zone, no prefix).
fn parse_v6(s: &[u8], start: usize, end: usize) -> Result<u128, Fault> {
    let a = &s[start..end];
    if let Some(z) = a.iter().position(|&b| b == b'%') {
        return Err(Fault::V6Zone((start + z, end)));
    }
    // Locate `::`.
    let dc = a.windows(2).position(|w| w == b"::").map(|i| start + i);
    let (head, tail) = match dc {
        Some(i) => {
            // A second `::` (not overlapping the first, e.g. `1::2::3`).
            if s[i + 2..end].windows(2).any(|w| w == b"::") && !s[i + 2..end].starts_with(b":") {
                return Err(Fault::V6DoubleColonTwice);
            }
            ((start, i), Some((i + 2, end)))
        }
        None => ((start, end), None),
    };
    let mut head_groups = [0u16; 8];
    let mut tail_groups = [0u16; 8];
    let last_is_whole = tail.is_none();
    let nh = groups(s, head, &mut head_groups, last_is_whole)?;
    let nt = match tail {
        Some(t) => groups(s, t, &mut tail_groups, true)?,
        None => 0,
    };
    let total = nh + nt;
    match tail {
        None if total != 8 => return Err(Fault::V6Groups(total)),
        Some(_) if total > 7 => {
            return Err(if total == 8 {
                Fault::V6DoubleColonNoGroup
            } else {
                Fault::V6Groups(total)
            });
        }
        _ => {}
    }
    let mut v: u128 = 0;
    for (i, g) in head_groups[..nh].iter().enumerate() {
        v |= u128::from(*g) << (16 * (7 - i));
    }
    for (i, g) in tail_groups[..nt].iter().enumerate() {
        v |= u128::from(*g) << (16 * (nt - 1 - i));
    }
    Ok(v)
}

/// Split `s[span]` on `:` into 16-bit groups; when `ipv4_allowed`, the last part may be a
/// dotted quad (two groups). Returns the number of groups written. An empty span is zero groups.
fn groups(s: &[u8], span: Span, out: &mut [u16; 8], ipv4_allowed: bool) -> Result<usize, Fault> {
    let (start, end) = span;
    if start == end {
        return Ok(0);
    }
    let mut n = 0usize;
    let mut p = start;
    loop {
        let mut q = p;
        while q < end && s[q] != b':' {
            q += 1;
        }
        let g = &s[p..q];
        let last = q == end;
        if g.is_empty() {
            return Err(Fault::V6EmptyGroup);
        }
        if g.contains(&b'.') {
            if !(last && ipv4_allowed) {
                return Err(Fault::V6Ipv4NotLast((p, q)));
            }
            let v4 = parse_v4(s, p, q).map_err(|f| Fault::V6Ipv4Tail((p, q), Box::new(f)))?;
            if n + 2 > 8 {
                return Err(Fault::V6Groups(n + 2));
            }
            out[n] = (v4 >> 16) as u16;
            out[n + 1] = v4 as u16;
            n += 2;
            return Ok(n);
        }
        if g.len() > 4 {
            return Err(Fault::V6GroupTooLong((p, q)));
        }
        let mut v: u16 = 0;
        for &b in g {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(Fault::V6GroupNotHex((p, q))),
            };
            v = (v << 4) | u16::from(d);
        }
        if n >= 8 {
            // Count the rest for the message.
            let rest = s[q..end].iter().filter(|&&b| b == b':').count();
            return Err(Fault::V6Groups(n + 1 + rest));
        }
        out[n] = v;
        n += 1;
        if last {
            return Ok(n);
        }
        p = q + 1;
    }
}

/// Parse one IPv4/IPv6 CIDR or bare address (bare -> /32 or /128), trimming whitespace.
/// Rejects: empty input, octet > 255, leading zeros in an IPv4 octet, prefix length out of
/// range or not plain decimal (`/33`, `/129`, `/024`, `/+24`), missing or extra parts, IPv6
/// zone ids, IPv4-mapped IPv6 (naming the IPv4 form to write instead), anything else.
pub fn parse(input: &str) -> Result<Parsed, ParseError> {
    let s = trim(input.as_bytes());
    match parse_raw(s) {
        Ok(raw) => Ok(Parsed {
            net: raw.net(),
            host_bits: raw.host_bits(),
        }),
        Err(f) => Err(f.error(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> String {
        match parse(input) {
            Ok(p) => panic!("`{input}` unexpectedly parsed as {p:?}"),
            Err(e) => {
                assert_eq!(e.input, input.trim());
                e.reason
            }
        }
    }

    fn ok(input: &str) -> (String, bool) {
        let p = parse(input).unwrap_or_else(|e| panic!("`{input}`: {e}"));
        (p.net.to_string(), p.host_bits)
    }

    #[test]
    fn accepts_ipv4_forms() {
        assert_eq!(ok("1.2.3.4"), ("1.2.3.4/32".into(), false));
        assert_eq!(ok("  10.0.0.0/8 \t"), ("10.0.0.0/8".into(), false));
        assert_eq!(ok("0.0.0.0/0"), ("0.0.0.0/0".into(), false));
        assert_eq!(
            ok("255.255.255.255/32"),
            ("255.255.255.255/32".into(), false)
        );
        assert_eq!(ok("0.0.0.0"), ("0.0.0.0/32".into(), false));
        assert_eq!(ok("100.64.0.0/10"), ("100.64.0.0/10".into(), false));
    }

    #[test]
    fn host_bits_normalized_and_flagged() {
        assert_eq!(ok("137.117.106.90/29"), ("137.117.106.88/29".into(), true));
        assert_eq!(ok("1.2.3.4/0"), ("0.0.0.0/0".into(), true));
        assert_eq!(ok("2001:db8::1/64"), ("2001:db8::/64".into(), true));
        assert_eq!(ok("2001:db8::/64"), ("2001:db8::/64".into(), false));
    }

    #[test]
    fn accepts_ipv6_forms() {
        assert_eq!(ok("::"), ("::/128".into(), false));
        assert_eq!(ok("::/0"), ("::/0".into(), false));
        assert_eq!(ok("::1"), ("::1/128".into(), false));
        assert_eq!(ok("1::"), ("1::/128".into(), false));
        assert_eq!(ok("2001:DB8::/32"), ("2001:db8::/32".into(), false));
        assert_eq!(
            ok("2001:0db8:0000:0000:0000:0000:0000:0001"),
            ("2001:db8::1/128".into(), false)
        );
        assert_eq!(ok("1:2:3:4:5:6:7::"), ("1:2:3:4:5:6:7:0/128".into(), false));
        assert_eq!(ok("::2:3:4:5:6:7:8"), ("0:2:3:4:5:6:7:8/128".into(), false));
        assert_eq!(
            ok("64:ff9b::1.2.3.4"),
            ("64:ff9b::102:304/128".into(), false)
        );
        assert_eq!(ok("64:ff9b::/96"), ("64:ff9b::/96".into(), false));
        assert_eq!(
            ok("1:2:3:4:5:6:1.2.3.4"),
            ("1:2:3:4:5:6:102:304/128".into(), false)
        );
        assert_eq!(ok("::1.2.3.4"), ("::102:304/128".into(), false));
        assert_eq!(ok("fe80::/10"), ("fe80::/10".into(), false));
        // A prefix shorter than /96 whose network is outside the mapped block is fine.
        assert_eq!(ok("::ffff:1.2.3.4/64"), ("::/64".into(), true));
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(err(""), "empty entry");
        assert_eq!(err("   "), "empty entry");
    }

    #[test]
    fn rejects_leading_zero_octet() {
        assert_eq!(
            err("010.0.0.1"),
            "leading zero in IPv4 octet `010` (ambiguous octal); write `10.0.0.1` if decimal was meant"
        );
        assert!(err("010.001.002.003").contains("`010`"));
        assert!(err("1.2.3.00").contains("leading zero in IPv4 octet `00`"));
    }

    #[test]
    fn rejects_octet_over_255() {
        assert_eq!(err("256.0.0.1"), "IPv4 octet `256` is greater than 255");
        assert_eq!(err("1.2.3.1000/8"), "IPv4 octet `1000` is greater than 255");
        assert!(err("1.2.3.99999999999999999999").contains("greater than 255"));
    }

    #[test]
    fn rejects_missing_and_extra_parts() {
        assert!(err("1.2.3").contains("exactly 4") && err("1.2.3").contains("found 3"));
        assert!(err("1.2.3.4.5").contains("found 5"));
        assert_eq!(err("1.2.3.4/"), "missing prefix length after `/`");
        assert!(err("1.2.3.4/24/1").contains("more than one `/`"));
        assert_eq!(err("/24"), "missing address before `/`");
        assert!(err("1..2.3").contains("empty IPv4 octet"));
        assert!(err(".1.2.3").contains("empty IPv4 octet"));
        assert!(err("1.2.3.").contains("empty IPv4 octet"));
        assert!(err("12345").contains("found 1"));
    }

    #[test]
    fn rejects_bad_prefix_length() {
        assert!(err("1.2.3.0/024").contains("leading zero in prefix length `024`; write `/24`"));
        assert!(err("1.2.3.0/00").contains("leading zero in prefix length `00`; write `/0`"));
        assert!(err("1.2.3.0/+24").contains("prefix length `+24` is not a plain decimal"));
        assert!(err("1.2.3.0/-1").contains("`-1` is not a plain decimal"));
        assert!(err("1.2.3.0/ 24").contains("unexpected whitespace"));
        assert!(err("1.2.3.0/24a").contains("not a plain decimal"));
        assert_eq!(
            err("1.2.3.0/33"),
            "prefix length /33 is out of range: the IPv4 maximum is /32 (`1.2.3.0/32` is the single address)"
        );
        assert_eq!(
            err("2001:db8::/129"),
            "prefix length /129 is out of range: the IPv6 maximum is /128 (`2001:db8::/128` is the single address)"
        );
        assert!(err("1.2.3.0/99999999999").contains("out of range"));
    }

    /// #10.19: `1.2.3.4%eth0` was called an IPv6 zone id; `010.0.0.1` and `1.2.3.4/33` came
    /// without a suggestion; a 3 MB bad line was echoed whole, control bytes raw.
    #[test]
    fn messages_say_what_to_write_and_quote_inputs_safely() {
        let r = err("1.2.3.4%eth0");
        assert!(r.contains("`%eth0` after an IPv4 address"), "{r}");
        assert!(!r.contains("IPv6 zone id"), "{r}");
        let r = err("010.0.0.1");
        assert!(r.contains("write `10.0.0.1` if decimal was meant"), "{r}");
        let r = err("010.000.0.01/24");
        assert!(r.contains("write `10.0.0.1/24`"), "{r}");
        let r = err("1.2.3.4/33");
        assert!(r.contains("`1.2.3.4/32` is the single address"), "{r}");
        let r = err("2001:db8::1/129");
        assert!(r.contains("`2001:db8::1/128` is the single address"), "{r}");
        let long = "1".repeat(3_000_000);
        let shown = parse(&long).unwrap_err().to_string();
        assert!(shown.len() < 400, "{} bytes", shown.len());
        assert!(
            shown.starts_with(&format!("`{}…` (3000000 bytes): ", "1".repeat(64))),
            "{shown}"
        );
        let shown = parse("1.2.\u{1}3.4").unwrap_err().to_string();
        assert!(!shown.contains('\u{1}'), "{shown:?}");
    }

    #[test]
    fn rejects_zone_ids() {
        let r = err("fe80::1%eth0");
        assert!(r.contains("zone id `%eth0` is not allowed"), "{r}");
        assert!(err("fe80::1%eth0/64").contains("`%eth0`"));
    }

    #[test]
    fn rejects_ipv4_mapped() {
        assert!(
            err("::ffff:1.2.3.4").ends_with("write the IPv4 form `1.2.3.4` instead"),
            "{}",
            err("::ffff:1.2.3.4")
        );
        assert!(err("::ffff:102:304").contains("`1.2.3.4`"));
        assert!(err("::ffff:0:0/96").contains("write the IPv4 form `0.0.0.0/0` instead"));
        assert!(err("::ffff:10.0.0.0/104").contains("`10.0.0.0/8`"));
        assert!(err("::FFFF:1.2.3.4/128").contains("`1.2.3.4/32`"));
    }

    #[test]
    fn rejects_bad_ipv6() {
        assert!(err("1::2::3").contains("`::` may appear only once"));
        assert!(err("1:::2").contains("empty IPv6 group"));
        assert!(err(":1:2:3:4:5:6:7").contains("empty IPv6 group"));
        assert!(err("1:2:3:4:5:6:7:").contains("empty IPv6 group"));
        assert!(err("1:2:3:4:5:6:7").contains("found 7"));
        assert!(err("1:2:3:4:5:6:7:8:9").contains("found 9"));
        assert!(err("1:2:3:4::5:6:7:8").contains("at least one group"));
        assert!(err("12345::").contains("group `12345` has more than 4 hex digits"));
        assert!(err("2001:db8::g").contains("group `g` is not hexadecimal"));
        assert!(err("1.2.3.4::").contains("must be the last part"));
        assert!(err("::1.2.3.04").contains("embedded IPv4 `1.2.3.04`: leading zero"));
        assert!(err("::1.2.3.256").contains("greater than 255"));
        assert!(err("1:2:3:4:5:6:7:1.2.3.4").contains("found 9"));
    }

    #[test]
    fn rejects_anything_else() {
        assert!(err("hello").starts_with("not an IP address"));
        assert!(err("1.2.3.x").contains("octet `x` is not a decimal number"));
        assert!(err("0x1.2.3.4").contains("`0x1` is not a decimal"));
        assert!(err("1.2.3.4 /24").contains("unexpected whitespace"));
        assert!(err("1.2.3.4 5.6.7.8").contains("unexpected whitespace"));
        assert!(err("1.2.3.4,5").contains("`4,5` is not a decimal"));
    }

    #[test]
    fn errors_carry_their_kind() {
        let kind = |s: &str| parse(s).unwrap_err().kind;
        assert_eq!(kind(" "), ParseErrorKind::Empty);
        assert_eq!(kind("010.0.0.1"), ParseErrorKind::Ipv4OctetLeadingZero);
        assert_eq!(kind("1.2.3"), ParseErrorKind::Ipv4Parts(3));
        assert_eq!(
            kind("1.2.3.0/33"),
            ParseErrorKind::PrefixLengthOutOfRange { max: 32 }
        );
        assert_eq!(kind("::1.2.3.256"), ParseErrorKind::Ipv6EmbeddedIpv4);
        assert_eq!(kind("::ffff:1.2.3.4"), ParseErrorKind::Ipv6Mapped);
        assert_eq!(kind("fe80::1%eth0"), ParseErrorKind::Ipv6Zone);
        assert_eq!(kind("1:2:3:4:5:6:7"), ParseErrorKind::Ipv6Groups(7));
    }

    #[test]
    fn display_names_input() {
        let e = parse(" 010.0.0.1 ").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`010.0.0.1`: leading zero in IPv4 octet `010` (ambiguous octal); write `10.0.0.1` if decimal was meant"
        );
    }
}
