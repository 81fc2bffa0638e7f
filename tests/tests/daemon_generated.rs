//! The generated rule sets and traffic (`tests::gen`) through `rampart run` (bridge mode on
//! `net_af_packet` ports) as well as `rampart replay`: one pipeline, so the daemon must
//! forward exactly what replay forwards, and free every mbuf it took.

use dataplane::wire::{parse_frame, Fragment};
use tests::gen::{generate, INSIDE};
use tests::netfilter::{prefixes, rampart_replay, summarize, RampartDaemon};
use tests::root_or_skip;

/// IPv4 fragments are left out: DPDK's `net_af_packet` joins a `PACKET_FANOUT` group with
/// `PACKET_FANOUT_FLAG_DEFRAG`, so the kernel reassembles them before the daemon sees them
/// (`docs/conntrack-vs-netfilter.md`, "The daemon").
fn compared(frame: &[u8]) -> bool {
    match parse_frame(frame) {
        Ok(i) => !matches!(i.l3, dataplane::wire::L3::Ipv4) || matches!(i.frag, Fragment::None),
        Err(_) => true,
    }
}

/// `RAMPART_DAEMON_SEEDS=first..last` (inclusive) or one seed, else 1..4.
#[test]
fn generated_sets_through_the_daemon_match_replay() {
    through_the_daemon(
        "generated_sets_through_the_daemon_match_replay",
        "RAMPART_DAEMON_SEEDS",
        1..=4,
        1,
    );
}

/// The same with two workers: each frame's outcome against replay's (one table), matched by
/// frame (the harness matches what leaves to what went in, and sends a frame replay forwards
/// only once it came out or a second passed, so a frame the workers delay is not overtaken),
/// every mbuf back,
/// and at least one packet handed between the workers. `RAMPART_DAEMON_WORKERS_SEEDS=A..B`
/// runs others (default a few).
#[test]
fn generated_sets_through_two_workers_match_replay() {
    through_the_daemon(
        "generated_sets_through_two_workers_match_replay",
        "RAMPART_DAEMON_WORKERS_SEEDS",
        1..=3,
        2,
    );
}

/// The bridge seeds (`var`'s range, else `default`) through `rampart run` with `workers`
/// workers against replay, frame by frame, every mbuf back; with more than one worker each
/// frame replay forwards is awaited before the next is sent, and some packet must cross
/// between the workers.
fn through_the_daemon(
    test: &str,
    var: &str,
    default: std::ops::RangeInclusive<u64>,
    workers: usize,
) {
    if !root_or_skip(test) {
        return;
    }
    let seeds = tests::seeds_from_env(var, default);
    let started = std::time::Instant::now();
    let inside = prefixes(INSIDE);
    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    let (mut frames, mut answers, mut handed) = (0, 0, 0);
    for seed in seeds.clone() {
        let g = generate(seed);
        let (p4, p6) = (dir.path().join("r4"), dir.path().join("r6"));
        std::fs::write(&p4, &g.rampart4).unwrap();
        std::fs::write(&p6, &g.rampart6).unwrap();
        let pcap = dir.path().join("in.pcap");
        control::pcap::write_frames(&pcap, g.frames.iter().map(|f| f.as_slice())).unwrap();
        let replay = rampart_replay(&pcap, Some(&p4), Some(&p6), INSIDE);
        let daemon = RampartDaemon::start_workers(&g.rampart4, &g.rampart6, workers);
        let run = if workers > 1 {
            let forwarded: Vec<bool> = replay.iter().map(|o| o.forwarded).collect();
            daemon.run_waiting(&g.frames, &inside, &forwarded)
        } else {
            daemon.run(&g.frames, &inside)
        };
        let summary = daemon.stop();
        assert_eq!(
            summary["mbufs_in_use"]["start"], summary["mbufs_in_use"]["end"],
            "seed {seed}: mbuf leak: {summary}"
        );
        handed += summary["handed_off"].as_u64().unwrap_or(0);
        let mut rows = Vec::new();
        for (i, f) in g.frames.iter().enumerate() {
            if compared(f) && run.outcomes[i].forwarded != replay[i].forwarded {
                rows.push(format!(
                    "#{i} {} | {}: replay {}, daemon {}",
                    g.what[i],
                    summarize(f),
                    replay[i],
                    run.outcomes[i]
                ));
            }
        }
        // Frames that match no input are the daemon's REJECT answers (a bridge sends them
        // back toward the sender; Linux's bridge has no route for them), or a forwarded frame
        // changed on the way, whose own frame then counts as not forwarded above.
        frames += g.frames.len();
        answers += run.strays.len();
        if !rows.is_empty() {
            eprintln!(
                "-- seed {seed} ({var}={seed}):\n{}\ndrops: {}\n{}{}",
                rows.join("\n"),
                summary["drops"],
                g.rampart4,
                g.rampart6
            );
            failed.push(seed);
        }
    }
    eprintln!(
        "{test}: seeds {seeds:?}, {frames} frames, {answers} frames of the daemon's own (REJECT \
         answers), {handed} handed between workers, {} differ, {:.1} s",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "seeds where the daemon ({workers} workers) and replay differ: {failed:?}"
    );
    assert!(
        workers == 1 || handed > 0,
        "no packet crossed between the workers"
    );
}

/// `-m connlimit` with two workers: one outside source opens connections to eight inside
/// hosts, whose address pairs the workers share between them (steering is by address pair),
/// against a limit of three a source. The counts are shared by the workers, so the daemon
/// forwards what replay's one table forwards: the first three SYNs, then nothing until one of
/// them ends (its RST), then one more. Per-worker counts would let each worker admit three.
#[test]
fn connlimit_holds_across_two_workers() {
    use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
    use dataplane::wire::tcp::Flags;
    use std::net::Ipv4Addr;
    if !root_or_skip("connlimit_holds_across_two_workers") {
        return;
    }
    let rules4 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A FORWARD -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m connlimit --connlimit-above 3 -j DROP\n\
        -A FORWARD -p tcp -j ACCEPT\n\
        COMMIT\n";
    let rules6 =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let src = Ipv4Addr::new(203, 0, 113, 5);
    let host = |h: u8| Ipv4Addr::new(10, 1, 0, h);
    let seg = |out: bool, h: u8, flags, seq, ack| {
        let (ip, sp, dp) = if out {
            (IpSpec::v4(src, host(h)), 40000 + u16::from(h), 22)
        } else {
            (IpSpec::v4(host(h), src), 22, 40000 + u16::from(h))
        };
        FrameSpec::new(ip, L4Spec::tcp_segment(sp, dp, flags, seq, ack, &[])).build()
    };
    let mut frames = Vec::new();
    for h in 2..10 {
        frames.push(seg(true, h, Flags::SYN, 1000, 0));
    }
    // Host 2's connection completes and is reset by the client; then two more SYNs.
    frames.push(seg(false, 2, Flags::SYN | Flags::ACK, 5000, 1001));
    frames.push(seg(true, 2, Flags::ACK, 1001, 5001));
    frames.push(seg(true, 2, Flags::RST | Flags::ACK, 1001, 5001));
    frames.push(seg(true, 20, Flags::SYN, 1000, 0));
    frames.push(seg(true, 21, Flags::SYN, 1000, 0));
    let dir = tempfile::tempdir().unwrap();
    let (p4, p6) = (dir.path().join("r4"), dir.path().join("r6"));
    std::fs::write(&p4, rules4).unwrap();
    std::fs::write(&p6, rules6).unwrap();
    let pcap = dir.path().join("in.pcap");
    control::pcap::write_frames(&pcap, frames.iter().map(|f| f.as_slice())).unwrap();
    let replay = rampart_replay(&pcap, Some(&p4), Some(&p6), INSIDE);
    let forwarded: Vec<bool> = replay.iter().map(|o| o.forwarded).collect();
    let (t, f) = (true, false);
    assert_eq!(
        forwarded,
        [t, t, t, f, f, f, f, f, t, t, t, t, f],
        "replay's one table"
    );
    let daemon = RampartDaemon::start_workers(rules4, rules6, 2);
    let run = daemon.run_waiting(&frames, &prefixes(INSIDE), &forwarded);
    let summary = daemon.stop();
    assert_eq!(
        summary["mbufs_in_use"]["start"], summary["mbufs_in_use"]["end"],
        "mbuf leak: {summary}"
    );
    let daemon_fwd: Vec<bool> = run.outcomes.iter().map(|o| o.forwarded).collect();
    assert_eq!(
        daemon_fwd, forwarded,
        "two workers against replay: {summary}"
    );
    // The eight first connections' pairs are owned by both workers (steering by pair).
    let owners: std::collections::HashSet<Option<u16>> = (2..10u8)
        .map(|h| dataplane::steer::owner(&seg(true, h, Flags::SYN, 1000, 0), 2))
        .collect();
    assert_eq!(owners.len(), 2, "the connections land on both workers");
}
