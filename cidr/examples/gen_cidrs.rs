//! Seeded benchmark inputs: `gen_cidrs v4|v6 COUNT SEED` prints COUNT random prefixes at
//! their network boundary, one per line: IPv4 /24-/32 or IPv6 /40-/64 over the whole space.
//! A fixed SplitMix64 generator keeps the files identical on every machine.

use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 || !(args[1] == "v4" || args[1] == "v6") {
        return Err("usage: gen_cidrs v4|v6 COUNT SEED".into());
    }
    let count: usize = args[2].parse()?;
    let mut rng = SplitMix64(args[3].parse()?);
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    for _ in 0..count {
        let r = rng.next();
        if args[1] == "v4" {
            let len = 24 + (rng.next() % 9) as u32;
            let a = (r as u32) & !(u32::MAX.checked_shr(len).unwrap_or(0));
            writeln!(out, "{}/{len}", Ipv4Addr::from(a))?;
        } else {
            let len = 40 + (rng.next() % 25) as u32;
            let a = (u128::from(r) << 64) & !(u128::MAX >> len);
            writeln!(out, "{}/{len}", Ipv6Addr::from(a))?;
        }
    }
    out.flush()?;
    Ok(())
}
