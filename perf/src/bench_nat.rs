//! `rampart-perf nat`: the cost of source NAT, measured on the pipeline itself, as
//! `rampart-perf stateful` measures connection tracking (one core, no packet I/O, bursts of 32
//! copied untimed into a small buffer and judged as a worker judges them).
//!
//! Inside clients (10.0.0.0/8) talk to outside servers; POSTROUTING translates their source to
//! one of 16 public addresses. For each table size:
//!
//! - new connections: each flow's first packet through the stateful filter, the nat table
//!   (PREROUTING, POSTROUTING), port allocation and entry creation, beside the same first
//!   packets without a nat table;
//! - established traffic: random flows, both directions (requests untranslated from inside,
//!   replies to the translated tuple from outside), every packet rewritten, beside the same
//!   flows tracked without NAT and the pass-through pipeline (parse and bridge, neither rules
//!   nor tracking), all in the same run over frames of the same sizes.

use crate::bench_stateful::{
    judge_all, load_average, pages_report, parse_count, tsc_hz, Arena, Figure, Pages, INSIDE,
    OUTSIDE,
};
use anyhow::{bail, Result};
use dataplane::classify::classbench::SplitMix64;
use dataplane::filter::Filter;
use dataplane::nat::Binding;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::Verdict;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use dataplane::wire::{ip_proto, FlowKey};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct NatArgs {
    /// Translated flows per case (K and M suffixes).
    #[arg(long, value_delimiter = ',', default_value = "1M")]
    pub flows: Vec<String>,
    /// Passes over the established packets per run.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write (or update in place) the results section of this markdown file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Which pages the conntrack table may take, as `rampart-perf stateful --hugepages`.
    #[arg(long, value_enum, default_value_t = Pages::Auto)]
    pub hugepages: Pages,
    /// Also measure the established SNAT traffic through router mode, the path a router-mode
    /// worker runs (ports with addresses, routes, resolved neighbours; `bench_route`).
    #[arg(long)]
    pub routed: bool,
    /// With `--routed`: which routed figures, the worker's path (`on`: conntrack's prefetch
    /// pass and hints), the same without the pass (`off`), or both.
    #[arg(long, value_enum, default_value_t = RoutePrefetch::Both)]
    pub route_prefetch: RoutePrefetch,
}

/// `--route-prefetch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoutePrefetch {
    On,
    Off,
    Both,
}

const RULES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.0.0.0/8 -o outside -j SNAT --to-source 203.0.113.1-203.0.113.16
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i inside -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";

fn filters(mode: control::config::Mode) -> Result<(Filter, Filter)> {
    let ports = ["inside".to_string(), "outside".to_string()];
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nat.rules");
    std::fs::write(&path, RULES)?;
    let files = control::load::RuleFiles {
        rules: Some(&path),
        ..Default::default()
    };
    let make: &control::load::MakeClassifier<'_> = &control::load::tree_classifier;
    let nat =
        control::load::load_filter(&files, &ports, control::rules::Hook::Forward, mode, make)?;
    if nat.nat.is_none() {
        bail!("the benchmark's nat table translates nothing");
    }
    let mut plain =
        control::load::load_filter(&files, &ports, control::rules::Hook::Forward, mode, make)?;
    plain.nat = None;
    Ok((nat, plain))
}

fn tcp(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, flags: Flags, seq: u32, ack: u32) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(s, d),
        L4Spec::tcp_segment(sp, dp, flags, seq, ack, b"0123"),
    )
    .build()
}

fn udp(s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(s, d), L4Spec::udp(sp, dp, b"0123")).build()
}

/// The wire tuple's addresses and ports of a key, for building frames.
fn ends(k: &FlowKey) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    (
        k.src.to_v4().expect("IPv4"),
        k.src_port,
        k.dst.to_v4().expect("IPv4"),
        k.dst_port,
    )
}

/// Opens a flow through `bridge` with `filter` (the request from inside, the reply from
/// outside to the tuple the binding says, the handshake's last ACK for TCP); returns its data
/// packets as they arrive, one per direction.
fn open(
    bridge: &Bridge,
    filter: &Filter,
    tables: &mut Tables,
    k: &FlowKey,
    now: u64,
) -> Option<[(Vec<u8>, u16); 2]> {
    let (s, sp, d, dp) = ends(k);
    let mut first = if k.proto == ip_proto::TCP {
        tcp(s, sp, d, dp, Flags::SYN, 100, 0)
    } else {
        udp(s, sp, d, dp)
    };
    let o = bridge.judge(filter, Some(tables), INSIDE, &mut first, now, |_, _, _| {});
    if !matches!(o.verdict, Verdict::Forward(_)) {
        return None;
    }
    let b = o.nat.map_or(Binding::identity(*k), |(b, _)| b);
    let (rs, rsp, rd, rdp) = ends(&b.reply);
    let tcp_flow = k.proto == ip_proto::TCP;
    let mut reply = if tcp_flow {
        tcp(rs, rsp, rd, rdp, Flags::SYN | Flags::ACK, 900, 101)
    } else {
        udp(rs, rsp, rd, rdp)
    };
    let o = bridge.judge(filter, Some(tables), OUTSIDE, &mut reply, now, |_, _, _| {});
    if !matches!(o.verdict, Verdict::Forward(_)) {
        return None;
    }
    if tcp_flow {
        let mut ack = tcp(s, sp, d, dp, Flags::ACK, 101, 901);
        bridge.judge(filter, Some(tables), INSIDE, &mut ack, now, |_, _, _| {});
        Some([
            (tcp(s, sp, d, dp, Flags::ACK, 101, 901), INSIDE),
            (tcp(rs, rsp, rd, rdp, Flags::ACK, 901, 101), OUTSIDE),
        ])
    } else {
        Some([
            (udp(s, sp, d, dp), INSIDE),
            (udp(rs, rsp, rd, rdp), OUTSIDE),
        ])
    }
}

/// A measurement over a table: [`judge_all`] with tables, out of line under its own name, so
/// that an instruction count (`valgrind --tool=callgrind --toggle-collect='*established_translated*'`)
/// can take one alone.
type Measure =
    fn(&Bridge, &Filter, &mut Tables, &Arena, Option<&[u32]>, u64, usize) -> (f64, usize);

macro_rules! measure {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[inline(never)]
        fn $name(
            bridge: &Bridge,
            filter: &Filter,
            tables: &mut Tables,
            arena: &Arena,
            order: Option<&[u32]>,
            now_ns: u64,
            passes: usize,
        ) -> (f64, usize) {
            // Its own name: identical bodies would be merged into one symbol.
            std::hint::black_box(stringify!($name));
            judge_all(bridge, filter, Some(tables), arena, order, now_ns, passes)
        }
    )*};
}

measure! {
    /// First packets, tracked without a nat table.
    new_tracked;
    /// First packets through the nat chains.
    new_translated;
    /// Established traffic, tracked without a nat table.
    established_tracked;
    /// Established traffic, every packet translated.
    established_translated;
}

/// A routed measurement ([`crate::bench_route::route_all`]), out of line under its own name.
type RoutedMeasure = fn(
    &mut crate::bench_route::Rig,
    &Filter,
    &mut Tables,
    &Arena,
    Option<&[u32]>,
    u64,
    usize,
) -> Result<(f64, usize)>;

macro_rules! routed_measure {
    ($($(#[$doc:meta])* $name:ident = $prefetch:literal;)*) => {$(
        $(#[$doc])*
        #[inline(never)]
        fn $name(
            rig: &mut crate::bench_route::Rig,
            filter: &Filter,
            tables: &mut Tables,
            arena: &Arena,
            order: Option<&[u32]>,
            now_ns: u64,
            passes: usize,
        ) -> Result<(f64, usize)> {
            crate::bench_route::route_all::<$prefetch>(
                rig, filter, tables, arena, order, now_ns, passes,
            )
        }
    )*};
}

routed_measure! {
    /// Established traffic, every packet translated, through router mode as a worker routes a
    /// burst: conntrack's prefetch pass, then each frame with its parse and hint
    /// (`valgrind --tool=callgrind --toggle-collect='*established_routed*'`).
    established_routed = true;
    /// The same without the prefetch pass: each frame parsed and judged in turn, as router
    /// mode ran before it had one (`--toggle-collect='*routed_unprefetched*'`).
    routed_unprefetched = false;
}

/// Opens every flow of `keys` through the router (the request from inside, the reply from
/// outside to the tuple the binding says, the handshake's last ACK for TCP); returns their
/// data packets as they arrive, one per direction each.
fn open_routed(
    rig: &mut crate::bench_route::Rig,
    filter: &Filter,
    tables: &mut Tables,
    keys: &[FlowKey],
    now: u64,
) -> Result<Arena> {
    use crate::bench_route::to_port;
    let mut data = Arena::with_capacity(2 * keys.len());
    for k in keys {
        let (s, sp, d, dp) = ends(k);
        let tcp_flow = k.proto == ip_proto::TCP;
        let first = if tcp_flow {
            tcp(s, sp, d, dp, Flags::SYN, 100, 0)
        } else {
            udp(s, sp, d, dp)
        };
        let Some((_, b)) = rig.one(filter, tables, INSIDE, to_port(first, INSIDE), now) else {
            bail!("routed: flow {k:?}: its first packet was not sent");
        };
        let b = b.unwrap_or(Binding::identity(*k));
        let (rs, rsp, rd, rdp) = ends(&b.reply);
        let reply = if tcp_flow {
            tcp(rs, rsp, rd, rdp, Flags::SYN | Flags::ACK, 900, 101)
        } else {
            udp(rs, rsp, rd, rdp)
        };
        if rig
            .one(filter, tables, OUTSIDE, to_port(reply, OUTSIDE), now)
            .is_none()
        {
            bail!("routed: flow {k:?}: its reply was not sent");
        }
        let pkts = if tcp_flow {
            let ack = tcp(s, sp, d, dp, Flags::ACK, 101, 901);
            if rig
                .one(filter, tables, INSIDE, to_port(ack, INSIDE), now)
                .is_none()
            {
                bail!("routed: flow {k:?}: its last ACK was not sent");
            }
            [
                tcp(s, sp, d, dp, Flags::ACK, 101, 901),
                tcp(rs, rsp, rd, rdp, Flags::ACK, 901, 101),
            ]
        } else {
            [udp(s, sp, d, dp), udp(rs, rsp, rd, rdp)]
        };
        let [out, back] = pkts;
        data.push(&to_port(out, INSIDE), INSIDE);
        data.push(&to_port(back, OUTSIDE), OUTSIDE);
    }
    if rig.take_emitted() != 0 {
        bail!("routed: the router sent frames of its own while the flows opened");
    }
    Ok(data)
}

struct CaseResult {
    flows: usize,
    pass_through: Figure,
    tracked: Figure,
    nat: Figure,
    /// Router mode (`--routed`): the worker's path, and the same without the prefetch pass.
    routed: Option<Figure>,
    routed_unprefetched: Option<Figure>,
    new_plain: Figure,
    new_nat: Figure,
    bytes_per_flow: f64,
    bindings: u64,
    /// The table's pages ([`pages_report`]).
    pages: String,
}

fn run_case(args: &NatArgs, flows: usize, hz: f64) -> Result<CaseResult> {
    eprintln!("rampart-perf: nat: {flows} flows: building");
    let (nat, plain) = filters(control::config::Mode::Bridge)?;
    let none = Filter::default();
    let bridge = Bridge::new(&[(INSIDE, OUTSIDE)], Policy::Forward, Policy::Drop);
    let mut rng = SplitMix64(0x6e61_7400 + flows as u64);
    let mut seen = std::collections::HashSet::with_capacity(flows);
    let mut keys = Vec::with_capacity(flows);
    while keys.len() < flows {
        let r = rng.next_u64();
        let src = Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff));
        let dst = Ipv4Addr::from(0xc633_0000 | ((r >> 24) as u32 & 0xffff));
        let proto = if r >> 63 == 0 {
            ip_proto::TCP
        } else {
            ip_proto::UDP
        };
        let sport = 1024 + ((r >> 40) as u16 % 60_000);
        let dport = [80, 443, 53, 123][(r >> 56) as usize % 4];
        let k = FlowKey::new_v4(src, dst, proto, sport, dport);
        if seen.insert(k) {
            keys.push(k);
        }
    }
    drop(seen);
    let mut cfg = TrackConfig::new(flows as u32);
    cfg.conntrack.nat = true;
    cfg.conntrack.hugepages = args.hugepages.policy();
    let mut tables = Tables::new(&cfg);
    let bytes_per_flow = tables.ct.memory_bytes() as f64 / flows as f64;
    let pages = pages_report(tables.ct.pages());
    eprintln!("rampart-perf: nat: table memory: {pages}");
    let now = 1_000_000_000u64;

    // New connections, with and without the nat table, into an empty table each run.
    let mut firsts = Arena::with_capacity(flows);
    for k in &keys {
        let (s, sp, d, dp) = ends(k);
        let f = if k.proto == ip_proto::TCP {
            tcp(s, sp, d, dp, Flags::SYN, 100, 0)
        } else {
            udp(s, sp, d, dp)
        };
        firsts.push(&f, INSIDE);
    }
    let (mut new_plain, mut new_nat) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        for (filter, out, measure) in [
            (&plain, &mut new_plain, new_tracked as Measure),
            (&nat, &mut new_nat, new_translated as Measure),
        ] {
            tables.ct.flush();
            let (c, fwd) = measure(&bridge, filter, &mut tables, &firsts, None, now, 1);
            if fwd != flows {
                bail!("only {fwd} of {flows} first packets forwarded");
            }
            out.push(hz / c / 1e6);
        }
    }
    drop(firsts);

    // Established traffic: the same flows opened once without and once with NAT.
    let mut order: Vec<u32> = (0..2 * flows as u32).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let run_est = |filter: &Filter, tables: &mut Tables| -> Result<(Arena, usize)> {
        tables.ct.flush();
        let mut data = Arena::with_capacity(2 * flows);
        for k in &keys {
            let Some(pkts) = open(&bridge, filter, tables, k, now) else {
                bail!("flow {k:?} did not open");
            };
            for (f, ingress) in &pkts {
                data.push(f, *ingress);
            }
        }
        Ok((data, tables.ct.len() as usize))
    };
    let (plain_data, _) = run_est(&plain, &mut tables)?;
    let (mut pt, mut tr, mut nt) = (Vec::new(), Vec::new(), Vec::new());
    let order = Some(order.as_slice());
    for _ in 0..args.runs {
        pt.push(judge_all(&bridge, &none, None, &plain_data, order, now, args.passes).0);
    }
    for _ in 0..args.runs {
        let (c, fwd) = established_tracked(
            &bridge,
            &plain,
            &mut tables,
            &plain_data,
            order,
            now,
            args.passes,
        );
        if fwd != plain_data.len() {
            bail!("tracked: {fwd} of {} forwarded", plain_data.len());
        }
        tr.push(c);
    }
    drop(plain_data);
    let (nat_data, _) = run_est(&nat, &mut tables)?;
    let bindings = tables.ct.stats().nat_live;
    for _ in 0..args.runs {
        let (c, fwd) = established_translated(
            &bridge,
            &nat,
            &mut tables,
            &nat_data,
            order,
            now,
            args.passes,
        );
        if fwd != nat_data.len() {
            bail!("NAT: {fwd} of {} forwarded", nat_data.len());
        }
        nt.push(c);
    }
    drop(nat_data);
    let (mut routed_on, mut routed_off) = (None, None);
    if args.routed {
        let (rnat, _) = filters(control::config::Mode::Router)?;
        let mut rig = crate::bench_route::Rig::new(now)?;
        tables.ct.flush();
        let data = open_routed(&mut rig, &rnat, &mut tables, &keys, now)?;
        let which = match args.route_prefetch {
            RoutePrefetch::On => &[true][..],
            RoutePrefetch::Off => &[false][..],
            RoutePrefetch::Both => &[true, false][..],
        };
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            for &prefetch in which {
                let (measure, out) = if prefetch {
                    (established_routed as RoutedMeasure, &mut on)
                } else {
                    (routed_unprefetched as RoutedMeasure, &mut off)
                };
                let (c, sent) =
                    measure(&mut rig, &rnat, &mut tables, &data, order, now, args.passes)?;
                if sent != data.len() || rig.take_emitted() != 0 {
                    bail!("routed: {sent} of {} sent", data.len());
                }
                out.push(c);
            }
        }
        routed_on = (!on.is_empty()).then(|| Figure::of(on));
        routed_off = (!off.is_empty()).then(|| Figure::of(off));
    }
    Ok(CaseResult {
        flows,
        pass_through: Figure::of(pt),
        tracked: Figure::of(tr),
        nat: Figure::of(nt),
        routed: routed_on,
        routed_unprefetched: routed_off,
        new_plain: Figure::of(new_plain),
        new_nat: Figure::of(new_nat),
        bytes_per_flow,
        bindings,
        pages,
    })
}

/// Issue 5's targets against the results, said plainly, one line each: SNAT's added cost
/// over plain forwarding at most 80 cycles a packet (with 1M flows), at least 2 M new
/// translated connections a second; and the memory a translated connection takes.
fn targets(results: &[CaseResult]) -> String {
    let met =
        |ok: &dyn Fn(&CaseResult) -> bool| crate::report::met_by_flows(results, |r| r.flows, ok);
    let each =
        |f: &dyn Fn(&CaseResult) -> String| crate::report::each_by_flows(results, |r| r.flows, f);
    let added = |r: &CaseResult| r.nat.0.median - r.pass_through.0.median;
    format!(
        "Targets (issue 5), each against the figures above:\n\n\
         - SNAT of established traffic at most 80 cycles per packet over plain forwarding: {} \
         ({}; of which tracking alone: {}; and the binding over tracking: {}).\n\
         - At least 2 M new translated connections per second per worker: {} ({}; without a \
         nat table: {}).\n\
         - Memory per connection with room for NAT bindings (no target of its own; issue 4's \
         is 128 B): {} (the stateful section's parts, with the translated reply tuple, 38, \
         and a second index reference at half load, 16).\n\n\
         Where the cycles go, and what was tried: `docs/design/conntrack.md`.\n",
        met(&|r| added(r) <= 80.0),
        each(&|r| format!("{:.0} cycles", added(r))),
        each(&|r| format!("{:.0} cycles", r.tracked.0.median - r.pass_through.0.median)),
        each(&|r| format!("{:.0} cycles", r.nat.0.median - r.tracked.0.median)),
        met(&|r| r.new_nat.0.median >= 2.0),
        each(&|r| format!("{:.2} M/s", r.new_nat.0.median)),
        each(&|r| format!("{:.2} M/s", r.new_plain.0.median)),
        each(&|r| format!("{:.0} B", r.bytes_per_flow)),
    )
}

/// The routed figures (`--routed`) beside the bridge's and pass-through, each row saying
/// which path it measures; empty without them.
fn routed_table(results: &[CaseResult], hz: f64) -> String {
    if results
        .iter()
        .all(|r| r.routed.is_none() && r.routed_unprefetched.is_none())
    {
        return String::new();
    }
    let mut t = String::from(
        "\nEstablished SNAT traffic by path (the same flows and frames; cycles per packet, Mpps per worker at the median):\n\n\
         | flows | path | what runs | cycles/pkt | Mpps per worker |\n|---|---|---|---|---|\n",
    );
    for r in results {
        let mut rows = vec![
            (
                "pass-through",
                "parse and bridge: no rules, no tracking",
                r.pass_through,
            ),
            (
                "bridge, tracked + SNAT",
                "conntrack's prefetch pass, then `Bridge::judge_verdict_parsed` (a stateful bridge worker's `handle_burst`)",
                r.nat,
            ),
        ];
        if let Some(f) = r.routed {
            rows.push((
                "router, tracked + SNAT",
                "conntrack's prefetch pass, then `Router::arrive` and `Router::judge_and_route_hinted` (a router-mode worker's `route_burst`): route lookup, TTL, the next hop's MACs",
                f,
            ));
        }
        if let Some(f) = r.routed_unprefetched {
            rows.push((
                "router, no prefetch pass",
                "each frame parsed, `Router::arrive`, `Router::judge_and_route` in turn (`route_burst` before its prefetch pass)",
                f,
            ));
        }
        for (path, what, f) in rows {
            t += &format!(
                "| {} | {path} | {what} | {} | {:.2} |\n",
                r.flows,
                f.show(1),
                hz / f.0.median / 1e6
            );
        }
    }
    t
}

pub fn run(args: &NatArgs) -> Result<()> {
    let load_before = load_average();
    let hz = tsc_hz();
    let mut results = Vec::new();
    for f in &args.flows {
        results.push(run_case(args, parse_count(f)?, hz)?);
    }
    let mut table = String::from(
        "| flows | bindings | pass-through (cycles/pkt) | tracked, no NAT | tracked + SNAT | added by SNAT over tracking | added over pass-through | Mpps per worker (pipeline, SNAT) | new connections, no NAT (M/s) | new connections with SNAT (M/s) | memory per flow |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &results {
        table += &format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {} | {} | {:.0} B |\n",
            r.flows,
            r.bindings,
            r.pass_through.show(1),
            r.tracked.show(1),
            r.nat.show(1),
            r.nat.0.median - r.tracked.0.median,
            r.nat.0.median - r.pass_through.0.median,
            hz / r.nat.0.median / 1e6,
            r.new_plain.show(2),
            r.new_nat.show(2),
            r.bytes_per_flow,
        );
    }
    let routed = routed_table(&results, hz);
    let targets = targets(&results);
    let pages: String = results
        .iter()
        .map(|r| format!("- {} flows: {}.\n", r.flows, r.pages))
        .collect();
    println!("TSC {:.0} MHz", hz / 1e6);
    print!("{table}");
    print!("{routed}");
    print!("\nThe table's memory:\n\n{pages}");
    println!("\n{targets}");
    if let Some(path) = &args.markdown {
        let body = format!(
            "## Source NAT: established traffic and new translated connections \
             (`rampart-perf nat`)\n\n\
             Command: `rampart-perf nat --flows {}{}`; commit {}.\n\nMachine: {}; load average \
             {:.1} when the run began, {:.1} when it ended.\n\n\
             The pipeline alone on one core (no packet I/O), as in the stateful benchmark: \
             bursts of 32 frames copied (untimed) into a small buffer and judged with \
             conntrack's prefetch. Inside clients (10.0.0.0/8, half TCP, half UDP) reach outside \
             servers; POSTROUTING SNATs them to 16 public addresses (ports kept when free). \
             Established traffic is random flows in both directions, every packet rewritten \
             (incremental checksums); the same flows are measured tracked without a nat table, \
             and through the pass-through pipeline (parse and bridge), in the same run. New \
             connections: first packets into an empty table (classification, nat chains, port \
             allocation with the uniqueness probe, entry creation). TSC {:.0} MHz; medians of {} \
             runs (min..max).\n\n{table}\nThe table's memory (`--hugepages`; the packets' \
             buffers are on small pages):\n\n{pages}\n{routed}{targets}",
            args.flows.join(","),
            args.hugepages.arg(),
            crate::report::commit(),
            crate::report::machine("no DPDK memory (the pipeline alone)"),
            load_before,
            load_average(),
            hz / 1e6,
            args.runs,
        );
        crate::report::replace_section(path, "nat", &body)?;
    }
    Ok(())
}
