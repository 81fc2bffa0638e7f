//! Seeded nat tables and traffic (`tests::natgen`) through a Linux router namespace and
//! `rampart replay` in router mode: each step's frames out of each port compared, translated
//! addresses, ports, identifiers and the quotes of ICMP errors included.

use tests::natgen::{compare, generate, rampart_run, show, show_step, LinuxRouter};
use tests::root_or_skip;

/// The daemon busy-polls both CPUs: the two tests of this file run one at a time, so the
/// Linux router's timing is not disturbed.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `RAMPART_NATGEN_SEEDS=first..last` (inclusive) or one seed, else the default range.
fn seeds() -> std::ops::RangeInclusive<u64> {
    tests::seeds_from_env("RAMPART_NATGEN_SEEDS", 1..=200)
}

/// A seed that differs is printed with its rule sets and every step (Linux's output,
/// Rampart's); `RAMPART_NATGEN_SEEDS=N` runs it alone.
#[test]
fn generated_nat_matches_linux_router() {
    if !root_or_skip("generated_nat_matches_linux_router") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let mut linux = LinuxRouter::create();
    let mut failed = Vec::new();
    let (mut steps, mut frames) = (0usize, 0usize);
    let seeds = seeds();
    for seed in seeds.clone() {
        let g = generate(seed);
        if let Err(e) = linux.load(&g.linux4, &g.linux6) {
            eprintln!(
                "-- seed {seed}: Linux refuses the rule set (a generator bug): {e}\n{}{}",
                g.linux4, g.linux6
            );
            failed.push(seed);
            continue;
        }
        let rampart = match rampart_run(&g, &g.rampart4, &g.rampart6) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("-- seed {seed}: Rampart: {e}\n{}{}", g.rampart4, g.rampart6);
                failed.push(seed);
                continue;
            }
        };
        let expect: Vec<usize> = rampart
            .iter()
            .map(|o| o.as_ref().map_or(0, Vec::len))
            .collect();
        let out = linux.run(&g.steps, &expect);
        steps += g.steps.len();
        frames += out.iter().flatten().map(Vec::len).sum::<usize>();
        let diffs = compare(&g, &out, &rampart);
        if diffs.is_empty() {
            continue;
        }
        failed.push(seed);
        let mut report = String::new();
        for i in 0..g.steps.len() {
            report += &format!(
                "#{i} {}\n    in:      {}\n    linux:   {}\n    rampart: {}\n",
                g.what[i],
                show_step(&g, &out, i),
                show(&out[i]),
                show(&rampart[i])
            );
        }
        eprintln!(
            "-- seed {seed} (RAMPART_NATGEN_SEEDS={seed} reproduces it):\n{}\n{report}-- rules (Rampart's; Linux's name ri/ro):\n{}{}",
            diffs.join("\n"),
            g.rampart4,
            g.rampart6
        );
    }
    eprintln!(
        "generated_nat_matches_linux_router: seeds {seeds:?}, {steps} steps, {frames} frames out of Linux, {} differ, {:.1} s",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "seeds that differ: {failed:?}");
}

/// The generated NAT seeds through `rampart run` in router mode (`net_af_packet`, one worker)
/// as well as replay: one pipeline, so the same frames out of the same ports, translations
/// held to the same rules as against Linux (the daemon's allocator draws its own ports), and
/// every mbuf back at the end. `RAMPART_NATGEN_DAEMON_SEEDS=A..B` runs others (default 1..3).
#[test]
fn generated_nat_through_the_daemon_matches_replay() {
    through_the_daemon(
        "generated_nat_through_the_daemon_matches_replay",
        "RAMPART_NATGEN_DAEMON_SEEDS",
        1,
    );
}

/// The generated NAT seeds through `rampart run` in router mode with two workers, against
/// replay (one table): the port a worker chooses must bring the replies back to it, and every
/// packet another worker's connection owns crosses by the hand-off rings (at least one must).
/// Each step is sent alone and its frames awaited, so reordering between workers cannot mix
/// steps; a step's frames are compared by side, as against Linux. A worker translates with
/// ports from its own share, so a source port one table keeps may be moved here (a
/// difference from Linux the design names): the comparison takes every source translation as
/// `--random` for the kept-or-moved test, and holds the rest (the ranges, one mapping per
/// connection, every other field) as against Linux. `RAMPART_NATGEN_WORKERS_SEEDS=A..B` runs
/// others (default 1..3).
#[test]
fn generated_nat_through_two_workers_matches_replay() {
    through_the_daemon(
        "generated_nat_through_two_workers_matches_replay",
        "RAMPART_NATGEN_WORKERS_SEEDS",
        2,
    );
}

/// The generated NAT seeds (`var`'s range, default 1..3) through `rampart run` in router mode
/// with `workers` workers, against replay, each step's frames awaited; with more than one
/// worker every source translation counts as `--random` and some packet must cross between
/// the workers (the two tests above say why).
fn through_the_daemon(test: &str, var: &str, workers: usize) {
    if !root_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let seeds = tests::seeds_from_env(var, 1..=3);
    let mut helper = LinuxRouter::create_bare();
    let mut failed = Vec::new();
    let (mut frames, mut handed) = (0, 0);
    for seed in seeds.clone() {
        let mut g = generate(seed);
        let replay = rampart_run(&g, &g.rampart4, &g.rampart6).expect("replay");
        let expect: Vec<usize> = replay
            .iter()
            .map(|o| o.as_ref().map_or(0, Vec::len))
            .collect();
        let daemon = tests::natgen::RampartRouter::start_workers(
            helper.router_ns(),
            &g.rampart4,
            &g.rampart6,
            workers,
        );
        daemon.wait_ready(&mut helper);
        let out = helper.run(&g.steps, &expect);
        let summary = daemon.stop();
        frames += out.iter().flatten().map(Vec::len).sum::<usize>();
        handed += summary["handed_off"].as_u64().unwrap_or(0);
        assert_eq!(
            summary["mbufs_in_use"]["start"], summary["mbufs_in_use"]["end"],
            "seed {seed}: mbuf leak: {summary}"
        );
        if workers > 1 {
            for l in &mut g.loose {
                l.random = true;
            }
        }
        let diffs = compare(&g, &out, &replay);
        if !diffs.is_empty() {
            let mut report = String::new();
            for i in 0..g.steps.len() {
                report += &format!(
                    "#{i} {}\n    daemon:  {}\n    replay:  {}\n",
                    g.what[i],
                    show(&out[i]),
                    show(&replay[i])
                );
            }
            eprintln!(
                "-- seed {seed} ({var}={seed}):\n{}\ndrops: {}\n{report}-- rules:\n{}{}",
                diffs.join("\n"),
                summary["drops"],
                g.rampart4,
                g.rampart6
            );
            failed.push(seed);
        }
    }
    eprintln!(
        "{test}: seeds {seeds:?}, {frames} frames out of the daemon, {handed} handed between \
         workers, {} differ, {:.1} s",
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
