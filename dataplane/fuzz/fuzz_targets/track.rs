//! Fuzz the stateful pipeline on untrusted frame sequences.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run track` from `dataplane/`. The input is a sequence
//! of frames, each a control byte (bit 0: arrives on port 1; bits 1..7: milliseconds since the
//! previous frame, times 16) and a length byte, then the frame. Frames are taken in bursts of
//! 32 through the worker's path (the prefetch pass, then `judge_verdict_parsed` with what it
//! parsed, at the burst's time) and one by one through the replay's path (`judge`, full
//! parser), each with its own small tables (so they fill, evict and expire), under a stateful
//! rule set. Besides "never panics": both paths give the same verdict for every frame, the
//! tables never exceed their capacity, and the owner of a frame's connection is in range.

#![no_main]

use dataplane::classify::{ct, Action, FlatRule, Origin, RuleSet};
use dataplane::filter::Filter;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::wire::Family;
use libfuzzer_sys::fuzz_target;

fn rules(family: Family) -> RuleSet {
    let mut est = FlatRule::any(family, Action::Accept, 0);
    est.ct_states = ct::ESTABLISHED | ct::RELATED | ct::UNTRACKED;
    let mut new_in = FlatRule::any(family, Action::Accept, 1);
    new_in.ct_states = ct::NEW;
    new_in.in_ports = 1;
    let rules = vec![est, new_in, FlatRule::any(family, Action::Drop, 2)];
    let origins = (0..3)
        .map(|i| Origin {
            file: "fuzz".into(),
            line: i,
            label: format!("rule {i}"),
        })
        .collect();
    RuleSet::new(family, rules, origins, Vec::new())
}

fuzz_target!(|data: &[u8]| {
    let filter = Filter {
        v4: Some(rules(Family::V4)),
        v6: Some(rules(Family::V6)),
        ..Filter::default()
    };
    let bridge = Bridge::new(&[(0, 1)], Policy::Forward, Policy::Drop);
    let mut cfg = TrackConfig::new(16);
    cfg.frag_datagrams = 4;
    let mut worker = Tables::new(&cfg);
    let mut replay = Tables::new(&cfg);
    let mut now = 1_000_000_000u64;
    // Frames in bursts of up to 32, as a worker takes them.
    let mut frames: Vec<(u16, u64, &[u8])> = Vec::new();
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(n);
        rest = next;
        now += u64::from(control >> 1) * 16_000_000;
        frames.push((u16::from(control & 1), now, frame));
    }
    for burst in frames.chunks(dataplane::dpdk::MAX_BURST) {
        let burst_now = burst[0].1;
        worker.expire(burst_now, 64);
        // The worker's path: one prefetch pass over the burst, then each frame with what the
        // pass parsed.
        let mut parsed = [None; dataplane::dpdk::MAX_BURST];
        let mut hints = [dataplane::conntrack::Hint::default(); dataplane::dpdk::MAX_BURST];
        dataplane::track::prefetch_burst(&worker, burst.iter().map(|f| f.2), &mut parsed, &mut hints);
        for (j, &(ingress, _, frame)) in burst.iter().enumerate() {
            let (mut fa, mut fb) = (frame.to_vec(), frame.to_vec());
            assert_eq!(
                parsed[j],
                dataplane::wire::parse::parse_common(frame),
                "the prefetch pass parses as the straight-line parser does"
            );
            let a = match &parsed[j] {
                Some(info) => bridge.judge_verdict_parsed(
                    &filter,
                    Some(&mut worker),
                    ingress,
                    &mut fa,
                    info,
                    hints[j],
                    burst_now,
                    |_, _, _| {},
                    |_, _| {},
                ),
                None => bridge.judge_verdict(
                    &filter,
                    Some(&mut worker),
                    ingress,
                    &mut fa,
                    burst_now,
                    |_, _, _| {},
                    |_, _| {},
                ),
            };
            replay.expire(burst_now, u32::MAX);
            let b = bridge.judge(&filter, Some(&mut replay), ingress, &mut fb, burst_now, |_, _, _| {});
            assert_eq!(a, b.verdict, "worker and replay paths disagree");
            assert_eq!(fa, fb, "worker and replay paths write the same bytes");
            assert!(worker.ct.len() <= worker.ct.capacity());
            if let Some(w) = dataplane::steer::owner(frame, 3) {
                assert!(w < 3);
            }
        }
    }
});
