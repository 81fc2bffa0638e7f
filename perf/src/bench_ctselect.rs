//! How long a worker stops forwarding for one answer to a conntrack management request
//! (`rampart ctl conntrack list|delete|count|flush`): a full table of UDP connections, walked
//! a chunk at a time as the worker walks it, each chunk timed. The longest chunk is the pause
//! a request adds to a worker's poll loop.

use anyhow::Result;
use clap::Args;
use dataplane::conntrack::filter::{CtFilter, Net};
use dataplane::conntrack::{Config, ConnInfo, Conntrack};
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::parse_frame;
use dataplane::worker::{FLUSH_CHUNK, LIST_CHUNK, REMOVE_BUDGET, SELECT_CHUNK};
use std::net::Ipv4Addr;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct CtSelectArgs {
    /// Connections in the (full) table (K and M suffixes).
    #[arg(long, default_value = "1M")]
    pub flows: String,
    /// Walks of each kind; the longest chunk over all of them is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// A table of `n` UDP connections, full.
fn fill(n: u32) -> Conntrack {
    let mut ct = Conntrack::new(Config::new(n));
    for i in 0..n {
        let src = Ipv4Addr::from(0x0a00_0000 | (i >> 8));
        let f = FrameSpec::new(
            IpSpec::v4(src, Ipv4Addr::new(192, 0, 2, 1)),
            L4Spec::udp(1024 + (i & 0xff) as u16, 53, b"q"),
        )
        .build();
        let info = parse_frame(&f).expect("parses");
        let mut t = ct.track(&f, &info, 1);
        ct.confirm(&mut t, 1).expect("room");
    }
    assert_eq!(ct.len(), n);
    ct
}

/// Times each call of `step` until it says the table is done: (longest, median, total) in µs.
fn chunks(mut step: impl FnMut(u32) -> Option<u32>) -> (f64, f64, f64) {
    let mut times = Vec::new();
    let mut from = Some(0);
    let t0 = Instant::now();
    while let Some(f) = from {
        let t = Instant::now();
        from = step(f);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let total = t0.elapsed().as_secs_f64() * 1e6;
    times.sort_by(f64::total_cmp);
    (times[times.len() - 1], times[times.len() / 2], total)
}

pub fn run(a: &CtSelectArgs) -> Result<()> {
    let n = crate::bench_stateful::parse_count(&a.flows)? as u32;
    let now = 2;
    let none = CtFilter {
        orig_src: Some(Net::new(Ipv4Addr::new(192, 0, 2, 200).into(), 32)),
        ..CtFilter::default()
    };
    let all = CtFilter::default();
    println!(
        "{n} connections; chunks of {SELECT_CHUNK} slots (list, count, delete), {FLUSH_CHUNK} (flush), \
         lists of at most {LIST_CHUNK}, at most {REMOVE_BUDGET} removed; µs per chunk: longest, \
         median; whole walk"
    );
    let mut ct = fill(n);
    let report = |what: &str, r: Vec<(f64, f64, f64)>| {
        let max = r.iter().map(|x| x.0).fold(0.0, f64::max);
        let mut med: Vec<f64> = r.iter().map(|x| x.1).collect();
        med.sort_by(f64::total_cmp);
        let mut tot: Vec<f64> = r.iter().map(|x| x.2).collect();
        tot.sort_by(f64::total_cmp);
        println!(
            "{what:<40} longest {max:8.1}  median {:8.1}  walk {:10.0}",
            med[med.len() / 2],
            tot[tot.len() / 2]
        );
    };
    let mut buf: Vec<ConnInfo> = Vec::with_capacity(LIST_CHUNK);
    let r = (0..a.runs)
        .map(|_| {
            chunks(|f| {
                buf.clear();
                ct.list_from(f, SELECT_CHUNK, &all, &mut buf, now)
            })
        })
        .collect();
    report("list, every connection", r);
    let r = (0..a.runs)
        .map(|_| {
            chunks(|f| {
                buf.clear();
                ct.list_from(f, SELECT_CHUNK, &none, &mut buf, now)
            })
        })
        .collect();
    report("list, a filter selecting none", r);
    let r = (0..a.runs)
        .map(|_| {
            chunks(|f| {
                ct.select_from(f, SELECT_CHUNK, &all, false, REMOVE_BUDGET, now)
                    .1
            })
        })
        .collect();
    report("count, every connection", r);
    let r = (0..a.runs)
        .map(|_| {
            chunks(|f| {
                ct.select_from(f, SELECT_CHUNK, &none, true, REMOVE_BUDGET, now)
                    .1
            })
        })
        .collect();
    report("delete, a filter selecting none", r);
    let mut r = Vec::new();
    for _ in 0..a.runs {
        let mut full = fill(n);
        r.push(chunks(|f| {
            full.select_from(f, SELECT_CHUNK, &all, true, REMOVE_BUDGET, now)
                .1
        }));
        assert!(full.is_empty());
    }
    report("delete, every connection", r);
    let mut r = Vec::new();
    for _ in 0..a.runs {
        let mut full = fill(n);
        r.push(chunks(|f| full.flush_from(f, FLUSH_CHUNK, REMOVE_BUDGET).1));
    }
    report("flush", r);
    Ok(())
}
