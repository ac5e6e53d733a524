//! In-process benchmarks of the engine: `aggregate_lines` on seeded random IPv4 and IPv6
//! inputs, the canonical list output, set algebra, and the optimal cover of the GitHub
//! Actions list. The whole-process comparison with other tools is `scripts/bench.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rangekeeper_cidr::{CostModel, RangeSet, aggregate_lines, cover, cover_with, greedy_cover};

/// The same generator as `examples/gen_cidrs.rs` (SplitMix64).
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

fn gen_v4(count: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::new();
    for _ in 0..count {
        let r = rng.next();
        let len = 24 + (rng.next() % 9) as u32;
        let a = (r as u32) & !(u32::MAX.checked_shr(len).unwrap_or(0));
        writeln!(out, "{}/{len}", Ipv4Addr::from(a)).unwrap();
    }
    out
}

fn gen_v6(count: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::new();
    for _ in 0..count {
        let r = rng.next();
        let len = 40 + (rng.next() % 25) as u32;
        let a = (u128::from(r) << 64) & !(u128::MAX >> len);
        writeln!(out, "{}/{len}", Ipv6Addr::from(a)).unwrap();
    }
    out
}

fn github_actions() -> RangeSet {
    let text = include_str!("../tests/data/github-actions.txt");
    aggregate_lines(text.as_bytes(), false).unwrap().set
}

fn benches(c: &mut Criterion) {
    let v4 = gen_v4(1_000_000, 42);
    let v6 = gen_v6(200_000, 43);

    let mut g = c.benchmark_group("aggregate_lines");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(v4.len() as u64));
    g.bench_function("ipv4_1m", |b| {
        b.iter(|| aggregate_lines(black_box(&v4[..]), false).unwrap())
    });
    g.throughput(Throughput::Bytes(v6.len() as u64));
    g.bench_function("ipv6_200k", |b| {
        b.iter(|| aggregate_lines(black_box(&v6[..]), false).unwrap())
    });
    g.finish();

    let set4 = aggregate_lines(&v4[..], false).unwrap().set;
    let set6 = aggregate_lines(&v6[..], false).unwrap().set;
    let mut g = c.benchmark_group("write_lines");
    g.sample_size(20);
    g.bench_function("ipv4_1m", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(v4.len());
            set4.write_lines(&mut out).unwrap();
            out
        })
    });
    g.bench_function("ipv6_200k", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(v6.len());
            set6.write_lines(&mut out).unwrap();
            out
        })
    });
    g.finish();

    let mut g = c.benchmark_group("set_algebra");
    g.sample_size(20);
    g.bench_function("union_ipv4_1m_ipv6_200k", |b| {
        b.iter(|| black_box(&set4).union(black_box(&set6)))
    });
    g.bench_function("difference_ipv4_1m_halves", |b| {
        let half = aggregate_lines(&v4[..v4.len() / 2], false).unwrap().set;
        b.iter(|| black_box(&set4).difference(black_box(&half)))
    });
    g.finish();

    let gh = github_actions();
    let mut g = c.benchmark_group("cover_github_actions");
    for k in [40usize, 50, 200] {
        g.bench_function(format!("optimal_k{k}"), |b| {
            b.iter(|| cover(black_box(&gh), k))
        });
    }
    g.bench_function("optimal_k40_addresses_model", |b| {
        b.iter(|| cover_with(black_box(&gh), 40, CostModel::Addresses))
    });
    g.bench_function("greedy_k40", |b| {
        b.iter(|| greedy_cover(black_box(&gh), 40))
    });
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
