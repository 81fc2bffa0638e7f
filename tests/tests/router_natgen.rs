//! Seeded nat tables and traffic (`tests::natgen`) through a Linux router namespace and
//! `rampart replay` in router mode: each step's frames out of each port compared, translated
//! addresses, ports, identifiers and the quotes of ICMP errors included.

use tests::natgen::{compare, generate, rampart_run, show, show_step, LinuxRouter};
use tests::root_or_skip;

/// `RAMPART_NATGEN_SEEDS=first..last` (inclusive) or one seed, else the default range.
fn seeds() -> std::ops::RangeInclusive<u64> {
    const DEFAULT: std::ops::RangeInclusive<u64> = 1..=200;
    let Ok(v) = std::env::var("RAMPART_NATGEN_SEEDS") else {
        return DEFAULT;
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("RAMPART_NATGEN_SEEDS {v:?}: {e}"))
    };
    match v.split_once("..") {
        Some((a, b)) => parse(a)..=parse(b.trim_start_matches('=')),
        None => parse(&v)..=parse(&v),
    }
}

/// A seed that differs is printed with its rule sets and every step (Linux's output,
/// Rampart's); `RAMPART_NATGEN_SEEDS=N` runs it alone.
#[test]
fn generated_nat_matches_linux_router() {
    if !root_or_skip("generated_nat_matches_linux_router") {
        return;
    }
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
