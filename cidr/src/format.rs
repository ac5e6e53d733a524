//! Fast text output of canonical prefix lists (the `normalize` hot path): hand-rolled decimal
//! and RFC 5952 hexadecimal formatting into one buffer, byte-identical to `IpNet`'s `Display`.

use std::io::{self, Write};
use std::net::Ipv6Addr;

use crate::set::{RangeSet, for_each_prefix};

/// Append `v` (< 1000) in decimal.
#[inline]
fn push_dec(out: &mut Vec<u8>, v: u32) {
    if v >= 100 {
        out.push(b'0' + (v / 100) as u8);
        out.push(b'0' + (v / 10 % 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    } else if v >= 10 {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    } else {
        out.push(b'0' + v as u8);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn push_hex_group(out: &mut Vec<u8>, g: u16) {
    let mut started = false;
    for shift in [12u32, 8, 4, 0] {
        let d = ((g >> shift) & 0xf) as usize;
        if d != 0 || started || shift == 0 {
            out.push(HEX[d]);
            started = true;
        }
    }
}

/// Append `a/len` for an IPv6 prefix, exactly as `Ipv6Net`'s `Display` (RFC 5952: lowercase,
/// no leading zeros, the longest run of two or more zero groups, leftmost on a tie, as `::`).
#[inline]
pub(crate) fn push_v6(out: &mut Vec<u8>, a: u128, len: u8) {
    // IPv4-mapped addresses get std's dotted form; rare, so delegate.
    if (a >> 32) == 0xffff {
        let _ = write!(out, "{}/{}", Ipv6Addr::from(a), len);
        return;
    }
    let g: [u16; 8] = std::array::from_fn(|i| (a >> (112 - 16 * i)) as u16);
    // Longest zero run (length >= 2), leftmost on ties.
    let (mut best_at, mut best_len) = (8usize, 0usize);
    let mut i = 0;
    while i < 8 {
        if g[i] == 0 {
            let start = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_at = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_at = 8;
        best_len = 0;
    }
    let mut first = true;
    let mut i = 0;
    while i < 8 {
        if i == best_at {
            out.extend_from_slice(b"::");
            i += best_len;
            first = true;
            continue;
        }
        if !first {
            out.push(b':');
        }
        push_hex_group(out, g[i]);
        first = false;
        i += 1;
    }
    out.push(b'/');
    push_dec(out, u32::from(len));
}

/// Decimal text of every octet value, 4 bytes each (unused tail zero) and its length.
const DEC: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let (h, te, o) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        t[v] = if v >= 100 {
            ([b'0' + h, b'0' + te, b'0' + o, 0], 3)
        } else if v >= 10 {
            ([b'0' + te, b'0' + o, 0, 0], 2)
        } else {
            ([b'0' + o, 0, 0, 0], 1)
        };
        v += 1;
    }
    t
};

/// Append `a/len\n` for an IPv4 prefix (no per-byte capacity checks).
#[inline]
fn push_v4_line(out: &mut Vec<u8>, a: u32, len: u8) {
    // Reserve a zeroed 24-byte slot with a constant-size store, write the bytes in place,
    // then cut the slot to length (writing into a stack line and copying it out would stall
    // on store forwarding).
    let start = out.len();
    out.extend_from_slice(&[0u8; 24]);
    let line = &mut out[start..start + 24];
    let mut n = 0usize;
    for (i, shift) in [24u32, 16, 8, 0].into_iter().enumerate() {
        let (d, l) = DEC[((a >> shift) & 0xff) as usize];
        line[n..n + 4].copy_from_slice(&d);
        n += l as usize;
        line[n] = if i < 3 { b'.' } else { b'/' };
        n += 1;
    }
    let (d, l) = DEC[len as usize];
    line[n..n + 4].copy_from_slice(&d);
    n += l as usize;
    line[n] = b'\n';
    out.truncate(start + n + 1);
}

/// Format the prefixes of `iv` into `out`, one per line.
fn format_v4(iv: &[(u32, u32)], out: &mut Vec<u8>) {
    for &(a, b) in iv {
        for_each_prefix(a, b, |s, l| push_v4_line(out, s, l));
    }
}

/// For each 8-bit mask of zero groups (bit `i` = group `i` is zero): where the `::` goes,
/// as (first group, groups) of the longest run of two or more, leftmost on ties; (8, 0) for
/// none (RFC 5952 section 4.2).
const ZERO_RUN: [(u8, u8); 256] = {
    let mut t = [(8u8, 0u8); 256];
    let mut m = 0;
    while m < 256 {
        let (mut best_at, mut best_len, mut run) = (8usize, 0usize, 0usize);
        let mut i = 0;
        while i < 8 {
            if m & (1 << i) != 0 {
                run += 1;
                if run > best_len {
                    best_len = run;
                    best_at = i + 1 - run;
                }
            } else {
                run = 0;
            }
            i += 1;
        }
        t[m] = if best_len >= 2 {
            (best_at as u8, best_len as u8)
        } else {
            (8, 0)
        };
        m += 1;
    }
    t
};

/// Append `a/len\n` for an IPv6 prefix (see [`push_v6`]), without per-byte capacity checks.
#[inline]
fn push_v6_line(out: &mut Vec<u8>, a: u128, len: u8) {
    if (a >> 32) == 0xffff {
        push_v6(out, a, len);
        out.push(b'\n');
        return;
    }
    let g: [u16; 8] = std::array::from_fn(|i| (a >> (112 - 16 * i)) as u16);
    let mut zeros = 0usize;
    for (i, &x) in g.iter().enumerate() {
        zeros |= usize::from(x == 0) << i;
    }
    let (best_at, best_len) = ZERO_RUN[zeros];
    let (best_at, best_len) = (usize::from(best_at), usize::from(best_len));
    let start = out.len();
    out.extend_from_slice(&[0u8; 64]);
    let line = &mut out[start..start + 64];
    let mut n = 0usize;
    let mut i = 0usize;
    while i < 8 {
        if i == best_at {
            line[n] = b':';
            line[n + 1] = b':';
            n += 2;
            i += best_len;
            continue;
        }
        if i > 0 && i != best_at + best_len {
            line[n] = b':';
            n += 1;
        }
        let v = g[i];
        let bits = 16 - v.leading_zeros() as usize;
        let nd = bits.div_ceil(4).max(1);
        let four = [
            HEX[usize::from(v >> 12)],
            HEX[usize::from((v >> 8) & 15)],
            HEX[usize::from((v >> 4) & 15)],
            HEX[usize::from(v & 15)],
        ];
        let shifted = u32::from_le_bytes(four) >> (8 * (4 - nd));
        line[n..n + 4].copy_from_slice(&shifted.to_le_bytes());
        n += nd;
        i += 1;
    }
    line[n] = b'/';
    n += 1;
    let (d, l) = DEC[len as usize];
    line[n..n + 4].copy_from_slice(&d);
    n += l as usize;
    line[n] = b'\n';
    out.truncate(start + n + 1);
}

fn format_v6(iv: &[(u128, u128)], out: &mut Vec<u8>) {
    for &(a, b) in iv {
        for_each_prefix(a, b, |s, l| push_v6_line(out, s, l));
    }
}

/// Format `iv` in blocks, each block's two halves on two threads, writing in order.
fn write_parallel<T: Sync>(
    iv: &[T],
    w: &mut impl Write,
    format: fn(&[T], &mut Vec<u8>),
) -> io::Result<()> {
    const BLOCK: usize = 1 << 15;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for block in iv.chunks(2 * BLOCK) {
        a.clear();
        b.clear();
        if block.len() <= BLOCK {
            format(block, &mut a);
        } else {
            let (x, y) = block.split_at(block.len() / 2);
            std::thread::scope(|sc| {
                let h = sc.spawn(|| format(y, &mut b));
                format(x, &mut a);
                if let Err(p) = h.join() {
                    std::panic::resume_unwind(p);
                }
            });
        }
        w.write_all(&a)?;
        w.write_all(&b)?;
    }
    Ok(())
}

impl RangeSet {
    /// Write the canonical prefix list, one prefix per line, to `w` (buffered internally;
    /// byte-identical to printing each prefix's `Display` followed by `\n`).
    pub fn write_lines<W: Write>(&self, mut w: W) -> io::Result<()> {
        write_parallel(&self.v4, &mut w, format_v4)?;
        write_parallel(&self.v6, &mut w, format_v6)?;
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn formats_like_display() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 33) as u8;
            let a = (x >> 20) as u32;
            let mut out = Vec::new();
            push_v4_line(&mut out, a, len);
            assert_eq!(out, format!("{}/{len}\n", Ipv4Addr::from(a)).into_bytes());
            // IPv6 with many zero groups: mask random groups to zero.
            let zero_mask = (x >> 3) as u8;
            let mut v: u128 = (u128::from(x) << 64) | u128::from(x.rotate_left(i % 64));
            for g in 0..8 {
                if zero_mask & (1 << g) != 0 {
                    v &= !(0xffffu128 << (16 * g));
                }
            }
            if i % 7 == 0 {
                v = (0xffff << 32) | u128::from(a);
            }
            let len6 = (x % 129) as u8;
            let mut out = Vec::new();
            push_v6(&mut out, v, len6);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{}/{len6}", Ipv6Addr::from(v))
            );
            let mut out = b"prefix ".to_vec();
            push_v6_line(&mut out, v, len6);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("prefix {}/{len6}\n", Ipv6Addr::from(v))
            );
        }
    }
}
