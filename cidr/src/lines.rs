//! Line-oriented aggregation: the streaming `normalize` path over one-CIDR-per-line text.

use std::io::Read;

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

/// Sizes that decide how [`aggregate_lines_tuned`] splits its work; the result never depends
/// on them. The defaults are what [`aggregate_lines`] uses. Tests and fuzzing set them small
/// so that short inputs cross block, thread and sort boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinesTuning {
    /// Bytes read per block (a line longer than the block grows it); at least 1.
    pub block: usize,
    /// A block of at least this many bytes is parsed on two threads.
    pub parallel_min: usize,
    /// A family with at least this many entries is sorted by the two-thread radix sort.
    pub radix_min: usize,
}

impl Default for LinesTuning {
    fn default() -> Self {
        LinesTuning {
            block: 1 << 20,
            parallel_min: 256 * 1024,
            radix_min: 4096,
        }
    }
}

/// An error in line-oriented input: the 1-based line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line {line}: {error}")]
    Parse { line: usize, error: ParseError },
    #[error("line {line}: {}", crate::host_bits_message(.input, .net, true))]
    HostBits {
        line: usize,
        input: String,
        net: IpNet,
    },
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Raw intervals collected from lines, in input order, with histograms of their top bytes
/// (counted while parsing, on whichever thread parsed them, for the radix sort).
pub(crate) struct Keys {
    hist4: [usize; 256],
    hist6: [usize; 256],
    /// IPv4 intervals packed as `start << 32 | end`, so sorting the keys sorts by start.
    v4: Vec<u64>,
    /// IPv6 prefixes of length <= 120 packed as `start | len` (the low 8 bits of such a
    /// start are zero), so sorting the keys sorts by start.
    v6: Vec<u128>,
    /// IPv6 prefixes longer than /120, as intervals.
    v6_long: Vec<(u128, u128)>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            hist4: [0; 256],
            hist6: [0; 256],
            v4: Vec::new(),
            v6: Vec::new(),
            v6_long: Vec::new(),
        }
    }
}

impl Keys {
    #[inline]
    fn push_v4(&mut self, k: u64) {
        self.hist4[top(k)] += 1;
        self.v4.push(k);
    }

    #[inline]
    fn push_v6(&mut self, net: u128, len: u8) {
        if len <= 120 {
            self.hist6[(net >> 120) as usize] += 1;
            self.v6.push(net | u128::from(len));
        } else {
            let mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            self.v6_long.push((net, net | mask));
        }
    }
}

/// Accumulates parsed lines into raw intervals.
pub(crate) struct Collector {
    keys: Keys,
    /// Keys parsed by the helper thread, one piece per block, in input order.
    parts: Vec<Keys>,
    entries: usize,
    host_bits: Vec<HostBitsWarning>,
    strict: bool,
}

impl Collector {
    pub(crate) fn new(strict: bool) -> Self {
        Collector {
            keys: Keys::default(),
            parts: Vec::new(),
            entries: 0,
            host_bits: Vec::new(),
            strict,
        }
    }

    #[inline]
    fn push_v4(&mut self, net: u32, len: u8) {
        let mask = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        self.keys
            .push_v4((u64::from(net) << 32) | u64::from(net | mask));
    }

    /// Handle one raw line (without its newline). `line` is 1-based.
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
            error: f.error(s),
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
            Raw::V4 { net, len, .. } => self.push_v4(net, len),
            Raw::V6 { net, len, .. } => self.keys.push_v6(net, len),
        }
        Ok(())
    }

    pub(crate) fn finish(self, radix_min: usize) -> Aggregated {
        // The keys stay in the pieces the parsing threads produced: the main thread's, and
        // the helper's (one per block). The radix scatter reads them where they are (no
        // concatenation copy), the main thread's and the helper's on two threads.
        let (hist4_main, hist6_main) = (self.keys.hist4, self.keys.hist6);
        let (mut hist4_help, mut hist6_help) = ([0usize; 256], [0usize; 256]);
        let mut v4_help = Vec::with_capacity(self.parts.len());
        let mut v6_help = Vec::with_capacity(self.parts.len());
        let mut v6_long = self.keys.v6_long;
        for p in self.parts {
            for i in 0..256 {
                hist4_help[i] += p.hist4[i];
                hist6_help[i] += p.hist6[i];
            }
            v4_help.push(p.v4);
            v6_help.push(p.v6);
            v6_long.extend_from_slice(&p.v6_long);
        }
        let v4 = sort_and_coalesce_v4(
            Split {
                main: self.keys.v4,
                main_hist: hist4_main,
                help: v4_help,
                help_hist: hist4_help,
            },
            radix_min,
        );
        let v6 = sort_and_coalesce_v6(
            Split {
                main: self.keys.v6,
                main_hist: hist6_main,
                help: v6_help,
                help_hist: hist6_help,
            },
            v6_long,
            radix_min,
        );
        Aggregated {
            set: RangeSet::from_canonical(v4, v6),
            entries: self.entries,
            host_bits: self.host_bits,
        }
    }
}

/// Top-level radix digit of a packed key: the top 8 bits of the interval start (256 write
/// heads for the scatter: few enough that the TLB and cache keep up with them).
const TOP_BITS: u32 = 8;

#[inline]
fn top(k: u64) -> usize {
    (k >> (64 - TOP_BITS)) as usize
}

/// Keys as parsed: the main thread's piece and the helper thread's pieces, each with the
/// histogram of their top bytes.
struct Split<K> {
    main: Vec<K>,
    main_hist: [usize; 256],
    help: Vec<Vec<K>>,
    help_hist: [usize; 256],
}

impl<K: Copy + Send> Split<K> {
    fn len(&self) -> usize {
        self.main.len() + self.help.iter().map(Vec::len).sum::<usize>()
    }

    fn concat(self) -> Vec<K> {
        let mut v = self.main;
        for p in self.help {
            v.extend_from_slice(&p);
        }
        v
    }

    /// MSD radix scatter on the top byte into a new buffer of `T`, on two threads: the
    /// buffer is cut (safely, by `split_at_mut`) into per-bucket, per-thread slots from the
    /// two histograms, so each thread writes only its own slots, and the page faults of
    /// the fresh buffer are taken on both cores. Returns the buffer grouped by bucket and
    /// the bucket boundaries (257 offsets). Each piece is freed once read.
    fn scatter<T: Copy + Default + Send>(
        self,
        bucket: impl Fn(K) -> usize + Sync,
        conv: impl Fn(K) -> T + Sync,
    ) -> (Vec<T>, Vec<usize>) {
        let Split {
            main,
            main_hist,
            help,
            help_hist,
        } = self;
        let mut offsets = vec![0usize; 257];
        for i in 0..256 {
            offsets[i + 1] = offsets[i] + main_hist[i] + help_hist[i];
        }
        let mut out = vec![T::default(); offsets[256]];
        let mut slots_main: Vec<&mut [T]> = Vec::with_capacity(256);
        let mut slots_help: Vec<&mut [T]> = Vec::with_capacity(256);
        let mut rest: &mut [T] = &mut out;
        for i in 0..256 {
            let (m, r) = rest.split_at_mut(main_hist[i]);
            let (h, r) = r.split_at_mut(help_hist[i]);
            slots_main.push(m);
            slots_help.push(h);
            rest = r;
        }
        fn fill<K, T>(
            mut slots: Vec<&mut [T]>,
            keys: impl Iterator<Item = K>,
            bucket: &impl Fn(K) -> usize,
            conv: &impl Fn(K) -> T,
        ) where
            K: Copy,
        {
            let mut cur = [0usize; 256];
            for k in keys {
                let b = bucket(k);
                slots[b][cur[b]] = conv(k);
                cur[b] += 1;
            }
        }
        let (bucket, conv) = (&bucket, &conv);
        std::thread::scope(|sc| {
            let h = sc.spawn(move || fill(slots_help, help.into_iter().flatten(), bucket, conv));
            fill(slots_main, main.into_iter(), bucket, conv);
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        });
        (out, offsets)
    }
}

/// Run `f` over the buckets of `v` (given by `offsets`), split into two halves of about equal
/// size, one per thread.
fn par_buckets<T: Send>(
    v: &mut [T],
    offsets: &[usize],
    f: impl Fn(&mut [T], &[usize], usize) + Sync,
) {
    let n = v.len();
    let nb = offsets.len() - 1;
    let mid_bucket = offsets.partition_point(|&o| o < n / 2).min(nb);
    let mid = offsets[mid_bucket];
    let (lo, hi) = v.split_at_mut(mid);
    let (off_lo, off_hi) = (&offsets[..=mid_bucket], &offsets[mid_bucket..]);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| f(hi, off_hi, mid));
        f(lo, off_lo, 0);
        if let Err(p) = h.join() {
            std::panic::resume_unwind(p);
        }
    });
}

/// Sort packed IPv4 keys by start (an MSD scatter on the top 8 bits into the interval
/// buffer, streaming and cache-friendly, then each bucket sorted in cache by the remaining 24
/// bits, the buckets split between two threads) and coalesce in place into canonical
/// intervals. Peak memory: the keys and the intervals, 16 bytes per entry.
fn sort_and_coalesce_v4(keys: Split<u64>, radix_min: usize) -> Vec<(u32, u32)> {
    let unpack = |k: u64| ((k >> 32) as u32, k as u32);
    let mut iv: Vec<(u32, u32)> = if keys.len() < radix_min {
        let mut keys = keys.concat();
        keys.sort_unstable();
        keys.into_iter().map(unpack).collect()
    } else {
        let (mut iv, offsets) = keys.scatter(top, unpack);
        par_buckets(&mut iv, &offsets, sort_buckets);
        iv
    };
    // Coalesce in place: the output is never longer than the input.
    let mut w = 0usize;
    for r in 0..iv.len() {
        let (s, e) = iv[r];
        if w > 0 {
            let last = &mut iv[w - 1];
            if u64::from(s) <= u64::from(last.1) + 1 {
                if e > last.1 {
                    last.1 = e;
                }
                continue;
            }
        }
        iv[w] = (s, e);
        w += 1;
    }
    iv.truncate(w);
    iv
}

/// Sort each bucket `data[offsets[i] - base .. offsets[i + 1] - base]` (whose starts share
/// their top 8 bits) by the remaining 24 start bits: LSD radix, 3 passes of 8 bits through a
/// small reused scratch buffer.
fn sort_buckets(data: &mut [(u32, u32)], offsets: &[usize], base: usize) {
    let mut scratch: Vec<(u32, u32)> = Vec::new();
    for w in offsets.windows(2) {
        let x = &mut data[w[0] - base..w[1] - base];
        if x.len() <= 48 {
            x.sort_unstable();
            continue;
        }
        scratch.clear();
        scratch.resize(x.len(), (0, 0));
        radix_pass(x, &mut scratch, 0);
        radix_pass(&scratch, x, 8);
        radix_pass(x, &mut scratch, 16);
        x.copy_from_slice(&scratch);
    }
}

#[inline]
fn radix_pass(src: &[(u32, u32)], dst: &mut [(u32, u32)], shift: u32) {
    let mut count = [0usize; 256];
    for &k in src {
        count[((k.0 >> shift) & 255) as usize] += 1;
    }
    let mut sum = 0;
    for c in count.iter_mut() {
        let v = *c;
        *c = sum;
        sum += v;
    }
    for &k in src {
        let d = ((k.0 >> shift) & 255) as usize;
        dst[count[d]] = k;
        count[d] += 1;
    }
}

/// Sort packed IPv6 keys and coalesce them into canonical intervals: an MSD scatter on the
/// top 8 bits straight into the interval buffer (as `(key, 0)` pairs), each bucket sorted by
/// key on one of two threads, then decoded and coalesced in place; the rare prefixes longer
/// than /120 are merged in at the end. Peak memory: the keys and the intervals.
fn sort_and_coalesce_v6(
    keys: Split<u128>,
    mut long: Vec<(u128, u128)>,
    radix_min: usize,
) -> Vec<(u128, u128)> {
    const TOP6: u32 = 8;
    let mut iv: Vec<(u128, u128)> = if keys.len() < radix_min {
        let mut keys = keys.concat();
        keys.sort_unstable();
        keys.into_iter().map(|k| (k, 0)).collect()
    } else {
        let (mut iv, offsets) = keys.scatter(|k| (k >> (128 - TOP6)) as usize, |k| (k, 0));
        par_buckets(&mut iv, &offsets, |data, offs, base| {
            let mut scratch = Vec::new();
            for w in offs.windows(2) {
                msd_sort_pairs(
                    &mut data[w[0] - base..w[1] - base],
                    &mut scratch,
                    128 - TOP6,
                );
            }
        });
        iv
    };
    // Decode `start | len` and coalesce in place.
    let mut w = 0usize;
    for r in 0..iv.len() {
        let k = iv[r].0;
        let start = k & !0xff;
        let end = start | u128::MAX.checked_shr((k & 0xff) as u32).unwrap_or(0);
        if w > 0 {
            let last = &mut iv[w - 1];
            if last.1.checked_add(1).is_none_or(|e| start <= e) {
                if end > last.1 {
                    last.1 = end;
                }
                continue;
            }
        }
        iv[w] = (start, end);
        w += 1;
    }
    iv.truncate(w);
    if long.is_empty() {
        iv
    } else {
        long.sort_unstable();
        crate::set::union(&iv, &crate::set::coalesce_sorted(long))
    }
}

/// Sort `x` by `.0`, whose keys agree on every bit above `bits`: MSD radix on the next byte
/// through `scratch` (in cache), recursing into each sub-bucket; small slices are sorted
/// directly.
fn msd_sort_pairs(x: &mut [(u128, u128)], scratch: &mut Vec<(u128, u128)>, bits: u32) {
    if x.len() <= 32 || bits == 0 {
        x.sort_unstable_by_key(|p| p.0);
        return;
    }
    let shift = bits.saturating_sub(8);
    let mask = (1u128 << (bits - shift)) - 1;
    let digit = |k: u128| ((k >> shift) & mask) as usize;
    let mut offsets = [0usize; 257];
    for p in x.iter() {
        offsets[digit(p.0) + 1] += 1;
    }
    for i in 0..256 {
        offsets[i + 1] += offsets[i];
    }
    if offsets.windows(2).any(|o| o[1] - o[0] == x.len()) {
        // Every key shares this byte.
        return msd_sort_pairs(x, scratch, shift);
    }
    scratch.clear();
    scratch.resize(x.len(), (0, 0));
    let mut heads = offsets;
    for p in x.iter() {
        let d = digit(p.0);
        scratch[heads[d]] = *p;
        heads[d] += 1;
    }
    x.copy_from_slice(scratch);
    for o in offsets.windows(2) {
        if o[1] - o[0] > 1 {
            msd_sort_pairs(&mut x[o[0]..o[1]], scratch, shift);
        }
    }
}

#[inline]
fn digit(buf: &[u8], i: usize) -> Option<u32> {
    match buf.get(i) {
        Some(&b) if b.is_ascii_digit() => Some(u32::from(b - b'0')),
        _ => None,
    }
}

/// The fast path: a line that is exactly `a.b.c.d` or `a.b.c.d/len` (canonical decimal, no
/// spaces, no comment) followed by `\n` or `\r\n`, with no host bits. Returns the packed
/// interval key and the index after the line. Anything else (including every error) returns
/// `None` and goes through the full parser, which accepts these same lines identically.
#[inline]
fn fast_v4(buf: &[u8], p: usize) -> Option<(u64, usize)> {
    let mut i = p;
    let mut addr = 0u32;
    for octet in 0..4 {
        let d0 = digit(buf, i)?;
        i += 1;
        let mut v = d0;
        if d0 != 0
            && let Some(d) = digit(buf, i)
        {
            v = v * 10 + d;
            i += 1;
            if let Some(d) = digit(buf, i) {
                v = v * 10 + d;
                i += 1;
                if v > 255 {
                    return None;
                }
            }
        }
        addr = (addr << 8) | v;
        if octet < 3 {
            if *buf.get(i)? != b'.' {
                return None;
            }
            i += 1;
        }
    }
    let mut len = 32u32;
    if buf.get(i) == Some(&b'/') {
        i += 1;
        let d0 = digit(buf, i)?;
        i += 1;
        len = d0;
        if d0 != 0
            && let Some(d) = digit(buf, i)
        {
            len = d0 * 10 + d;
            i += 1;
        }
        if len > 32 {
            return None;
        }
    }
    match buf.get(i) {
        Some(b'\n') => i += 1,
        Some(b'\r') if buf.get(i + 1) == Some(&b'\n') => i += 2,
        _ => return None,
    }
    let mask = u32::MAX.checked_shr(len).unwrap_or(0);
    if addr & mask != 0 {
        return None;
    }
    Some(((u64::from(addr) << 32) | u64::from(addr | mask), i))
}

/// Bytes a fast-path line may span ("255.255.255.255/32\r\n" is 20) plus look-ahead.
const WINDOW: usize = 24;

/// One octet at `w[i..]`: (value, digits, valid). Branch-free: the digit count and value
/// are selected arithmetically, and validity (1-3 digits, no leading zero, <= 255) is a flag.
#[inline(always)]
fn octet(w: &[u8; WINDOW], i: usize) -> (u32, usize, bool) {
    let d0 = w[i].wrapping_sub(b'0');
    let d1 = w[i + 1].wrapping_sub(b'0');
    let d2 = w[i + 2].wrapping_sub(b'0');
    let d3 = w[i + 3].wrapping_sub(b'0');
    let g0 = d0 < 10;
    let g1 = g0 & (d1 < 10);
    let g2 = g1 & (d2 < 10);
    let g3 = g2 & (d3 < 10);
    let n = usize::from(g0) + usize::from(g1) + usize::from(g2);
    let v1 = u32::from(d0);
    let v2 = v1 * 10 + u32::from(d1);
    let v3 = v2 * 10 + u32::from(d2);
    let v = if g2 {
        v3
    } else if g1 {
        v2
    } else {
        v1
    };
    let ok = g0 & !g3 & (v <= 255) & !(d0 == 0 && g1);
    (v, n, ok)
}

/// [`fast_v4`] over a fixed window (the line must end inside it): the same language, with
/// almost no data-dependent branches.
#[inline(always)]
fn fast_v4_window(w: &[u8; WINDOW]) -> Option<(u64, usize)> {
    let (a, n0, ok0) = octet(w, 0);
    let mut i = n0;
    // Leave early on anything that does not start like IPv4 (IPv6 lines come through here).
    if !(ok0 & (w[i] == b'.')) {
        return None;
    }
    let mut ok = true;
    i += 1;
    let (b, n1, ok1) = octet(w, i);
    i += n1;
    ok &= ok1 & (w[i] == b'.');
    i += 1;
    let (c, n2, ok2) = octet(w, i);
    i += n2;
    ok &= ok2 & (w[i] == b'.');
    i += 1;
    let (d, n3, ok3) = octet(w, i);
    i += n3;
    ok &= ok3;
    if !ok {
        return None;
    }
    let addr = (a << 24) | (b << 16) | (c << 8) | d;
    let mut len = 32u32;
    if w[i] == b'/' {
        let d0 = w[i + 1].wrapping_sub(b'0');
        let d1 = w[i + 2].wrapping_sub(b'0');
        let two = d1 < 10;
        if d0 >= 10 || (d0 == 0 && two) {
            return None;
        }
        len = if two {
            u32::from(d0) * 10 + u32::from(d1)
        } else {
            u32::from(d0)
        };
        if len > 32 {
            return None;
        }
        i += 2 + usize::from(two);
    }
    if w[i] == b'\n' {
        i += 1;
    } else if w[i] == b'\r' && w[i + 1] == b'\n' {
        i += 2;
    } else {
        return None;
    }
    let mask = u32::MAX.checked_shr(len).unwrap_or(0);
    if addr & mask != 0 {
        return None;
    }
    Some(((u64::from(addr) << 32) | u64::from(addr | mask), i))
}

/// Hex digit values; 16 for anything else.
const HEX: [u8; 256] = {
    let mut t = [16u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[inline(always)]
fn hex(b: u8) -> u32 {
    u32::from(HEX[b as usize])
}

/// The IPv6 fast path: a line that is exactly an IPv6 address of hex groups with at most one
/// `::` (no embedded IPv4, no zone), optionally `/len`, then `\n` or `\r\n`, no host bits,
/// not IPv4-mapped. Returns the interval and the index after the line; anything else is
/// `None` and goes through the full parser (which accepts these same lines identically).
#[inline]
fn fast_v6(buf: &[u8], p: usize) -> Option<(u128, u8, usize)> {
    let at = |i: usize| buf.get(i).copied().unwrap_or(0);
    let mut i = p;
    let (mut head, mut nh) = (0u128, 0u32);
    let (mut tail, mut nt) = (0u128, 0u32);
    let mut dc = false;
    let mut just_dc = false;
    if at(i) == b':' {
        if at(i + 1) != b':' {
            return None;
        }
        dc = true;
        just_dc = true;
        i += 2;
    }
    loop {
        let mut v = 0u32;
        let mut nd = 0;
        loop {
            let h = hex(at(i));
            if h > 15 {
                break;
            }
            v = (v << 4) | h;
            nd += 1;
            i += 1;
            if nd > 4 {
                return None;
            }
        }
        if nd == 0 {
            if just_dc {
                break;
            }
            return None;
        }
        if dc {
            tail = (tail << 16) | u128::from(v);
            nt += 1;
        } else {
            head = (head << 16) | u128::from(v);
            nh += 1;
        }
        if nh + nt > 8 {
            return None;
        }
        if at(i) != b':' {
            break;
        }
        if at(i + 1) == b':' {
            if dc {
                return None;
            }
            dc = true;
            just_dc = true;
            i += 2;
        } else {
            just_dc = false;
            i += 1;
        }
    }
    let addr = if dc {
        if nh + nt > 7 {
            return None;
        }
        head.checked_shl(16 * (8 - nh)).unwrap_or(0) | tail
    } else if nh == 8 {
        head
    } else {
        return None;
    };
    let mut len = 128u32;
    if at(i) == b'/' {
        i += 1;
        let d0 = u32::from(at(i).wrapping_sub(b'0'));
        if d0 > 9 {
            return None;
        }
        len = d0;
        i += 1;
        let mut nd = 1;
        loop {
            let d = u32::from(at(i).wrapping_sub(b'0'));
            if d > 9 {
                break;
            }
            if d0 == 0 || nd == 3 {
                return None;
            }
            len = len * 10 + d;
            nd += 1;
            i += 1;
        }
        if len > 128 {
            return None;
        }
    }
    match at(i) {
        b'\n' => i += 1,
        b'\r' if at(i + 1) == b'\n' => i += 2,
        _ => return None,
    }
    let mask = u128::MAX.checked_shr(len).unwrap_or(0);
    if addr & mask != 0 || (len >= 96 && (addr >> 32) == 0xffff) {
        return None;
    }
    Some((addr, len as u8, i))
}

/// Run the fast paths over `buf` from `p` while they accept lines; returns the stop position
/// and the number of lines taken.
#[inline]
fn fast_run(buf: &[u8], mut p: usize, keys: &mut Keys) -> (usize, usize) {
    let mut lines = 0;
    loop {
        if p + WINDOW <= buf.len() {
            if let Ok(w) = <&[u8; WINDOW]>::try_from(&buf[p..p + WINDOW])
                && let Some((k, n)) = fast_v4_window(w)
            {
                keys.push_v4(k);
                lines += 1;
                p += n;
                continue;
            }
        } else if let Some((k, next)) = fast_v4(buf, p) {
            keys.push_v4(k);
            lines += 1;
            p = next;
            continue;
        }
        match fast_v6(buf, p) {
            Some((net, len, next)) => {
                keys.push_v6(net, len);
                lines += 1;
                p = next;
            }
            None => return (p, lines),
        }
    }
}

/// Parse complete lines `buf` (ending in `\n`, or the final unterminated line at EOF) in
/// order, fast path first and the full parser for anything else; `line` counts lines.
fn serial(c: &mut Collector, buf: &[u8], line: &mut usize) -> Result<(), LineError> {
    let mut p = 0;
    while p < buf.len() {
        let (q, n) = fast_run(buf, p, &mut c.keys);
        c.entries += n;
        *line += n;
        p = q;
        if p >= buf.len() {
            break;
        }
        let end = buf[p..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| p + i);
        *line += 1;
        c.line(&buf[p..end], *line)?;
        p = end + 1;
    }
    Ok(())
}

/// Parse a block of complete lines, the second half on another thread (fast path only; the
/// main thread finishes whatever it could not take, so errors keep their order and lines).
fn parse_block(
    c: &mut Collector,
    buf: &[u8],
    line: &mut usize,
    parallel_min: usize,
) -> Result<(), LineError> {
    if buf.len() < parallel_min {
        return serial(c, buf, line);
    }
    let mid = match buf[buf.len() / 2..].iter().position(|&b| b == b'\n') {
        Some(i) => buf.len() / 2 + i + 1,
        None => return serial(c, buf, line),
    };
    let (first, second) = buf.split_at(mid);
    let (stop, lines, keys) = std::thread::scope(|sc| {
        let worker = sc.spawn(|| {
            // Room for a typical line length of either family; capacity that is never
            // written costs no memory, and a denser block just grows the vectors.
            let mut keys = Keys {
                v4: Vec::with_capacity(second.len() / 14),
                v6: Vec::with_capacity(second.len() / 20),
                ..Keys::default()
            };
            let (stop, lines) = fast_run(second, 0, &mut keys);
            (stop, lines, keys)
        });
        let res = serial(c, first, line);
        match worker.join() {
            Ok(r) => res.map(|()| r),
            Err(p) => std::panic::resume_unwind(p),
        }
    })?;
    c.parts.push(keys);
    c.entries += lines;
    *line += lines;
    serial(c, &second[stop..], line)
}

/// Read one CIDR per line (surrounding whitespace trimmed; blank lines, and everything from
/// `#` to the end of a line, skipped) and aggregate into a canonical set. Streaming and fast:
/// this is `rangekeeper normalize`. With `strict`, a host-bits entry is an error.
///
/// Reads in 1 MiB blocks of its own, parses each block on two threads without per-line
/// allocation, and sorts with a radix sort. Memory is about 16 bytes per IPv4 entry and 32 per
/// IPv6 entry at the peak of the sort. Give it the file (or stdin) itself: a `BufReader` in
/// between would only copy every byte once more, through a buffer of its own.
pub fn aggregate_lines<R: Read>(reader: R, strict: bool) -> Result<Aggregated, LineError> {
    aggregate_lines_tuned(reader, strict, LinesTuning::default())
}

/// [`aggregate_lines`] with explicit block size and thresholds (the same result for any
/// tuning; for tests and fuzzing, which set them small to reach the boundaries).
pub fn aggregate_lines_tuned<R: Read>(
    mut reader: R,
    strict: bool,
    tuning: LinesTuning,
) -> Result<Aggregated, LineError> {
    let mut c = Collector::new(strict);
    let mut buf = vec![0u8; tuning.block.max(1)];
    let mut filled = 0usize;
    let mut line = 0usize;
    loop {
        // Fill the block (a line longer than the block grows it).
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            parse_block(&mut c, &buf[..filled], &mut line, tuning.parallel_min)?;
            break;
        }
        filled += n;
        if filled < buf.len() {
            // Keep reading until the block is full (pipes deliver 64 KiB at a time).
            continue;
        }
        let Some(last_nl) = buf[..filled].iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        parse_block(&mut c, &buf[..=last_nl], &mut line, tuning.parallel_min)?;
        buf.copy_within(last_nl + 1..filled, 0);
        filled -= last_nl + 1;
    }
    Ok(c.finish(tuning.radix_min))
}
