//! rte_acl against the native tree and the linear reference: every packet's first match must be
//! the same from all three. EAL starts once, in this process (`--no-huge`), so every rte_acl check
//! lives in the one test below.

use dataplane::classify::{classbench, ct, Action, Classifier, FlatRule, Linear, PacketMeta, Tree};
use dataplane::dpdk::{AclAlgorithm, AclClassifier, AclConfig, Eal};
use dataplane::wire::{Family, IpAddr128};
use tests::{corpus_dir, root_or_skip, test_eal_args, unique};

fn answers(c: &dyn Classifier, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32]) -> Vec<u32> {
    let mut out = vec![0; pkts.len()];
    c.classify(rules, pkts, from, &mut out);
    out
}

/// Checks the three classifiers agree; returns how many packets were compared.
fn agree(eal: &Eal, what: &str, rules: &[FlatRule], pkts: &[PacketMeta], from: &[u32]) -> usize {
    let acl = AclClassifier::new(eal, rules, &AclConfig::default())
        .unwrap_or_else(|e| panic!("{what}: rte_acl build: {e}"));
    let tree = Tree::new(rules);
    let want = answers(&Linear, rules, pkts, from);
    let got_acl = answers(&acl, rules, pkts, from);
    let got_tree = answers(&tree, rules, pkts, from);
    for i in 0..pkts.len() {
        assert_eq!(
            got_acl[i], want[i],
            "{what}: rte_acl, packet {i} {:?} from {}",
            pkts[i], from[i]
        );
        assert_eq!(
            got_tree[i], want[i],
            "{what}: tree, packet {i} {:?} from {}",
            pkts[i], from[i]
        );
    }
    let st = acl.stats();
    println!(
        "{what}: {} rules ({} rte_acl rules), {} packets agree; rte_acl {:?}, build {:?}, {} KB",
        rules.len(),
        st.acl_rules,
        pkts.len(),
        st.algorithm,
        st.build_time,
        st.heap_bytes / 1024
    );
    pkts.len()
}

/// A synthetic set with the awkward cases mixed in: arbitrary (non-prefix) address and protocol
/// ranges, and rules with conntrack-state, TCP-flag, interface and fragment conditions.
fn awkward_set(family: Family, seed: u64) -> Vec<FlatRule> {
    let mut rules = classbench::synth_rules(&classbench::SynthConfig {
        rules: 1000,
        family,
        seed,
        default_rule: true,
    });
    let mut rng = classbench::SplitMix64(seed ^ 0xac1);
    let n = rules.len() - 1;
    for i in (0..n).step_by(7) {
        let r = &mut rules[i];
        match rng.below(6) {
            0 => r.ct_states = ct::ESTABLISHED | ct::RELATED,
            1 => r.tcp_flags = Some((0x12, 0x02)),
            2 => r.in_ports = 0b10,
            3 => r.frag = dataplane::classify::FragMatch::LaterOnly,
            4 => {
                // An arbitrary address range around the rule's source.
                let lo = u128::from_be_bytes(r.src.0 .0);
                let (a, b) = (lo.saturating_sub(1000), lo.saturating_add(2345));
                let fix = |v: u128| match family {
                    Family::V4 => IpAddr128::from_v4_octets((v as u32).to_be_bytes()),
                    Family::V6 => IpAddr128(v.to_be_bytes()),
                };
                let top = match family {
                    Family::V4 => 0xffff_ffff_ffff,
                    Family::V6 => u128::MAX,
                };
                r.src = (fix(a.max(0xffff_0000_0000 & top)), fix(b.min(top)));
            }
            _ => r.proto = (1, 17),
        }
    }
    rules
}

/// Packets whose conntrack state, flags, port and fragment bit vary, and `from` that is sometimes
/// past 0.
fn vary(pkts: &mut [PacketMeta], rules: usize, seed: u64) -> Vec<u32> {
    let mut rng = classbench::SplitMix64(seed);
    pkts.iter_mut()
        .map(|p| {
            let x = rng.next_u64();
            p.ct_state = 1 << (x % 5);
            p.tcp_flags = (x >> 8) as u8;
            p.in_port = (x >> 16) as u8 & 1;
            p.later_fragment = (x >> 20) & 7 == 0;
            if matches!((x >> 24) % 5, 0) {
                ((x >> 32) % (rules as u64 + 1)) as u32
            } else {
                0
            }
        })
        .collect()
}

#[test]
fn rte_acl_tree_and_linear_agree() {
    if !root_or_skip("rte_acl_tree_and_linear_agree") {
        return;
    }
    let mut args = vec!["rampart-acl-test".to_string()];
    args.extend(test_eal_args(&unique("acl"), "0@0"));
    let eal = Eal::init(&args).expect("EAL init");

    // Empty and one-family sets.
    let p4 = classbench::synth_trace(&[FlatRule::any(Family::V4, Action::Accept, 0)], 1, 10);
    agree(&eal, "empty", &[], &p4, &[0; 10]);
    let any6 = vec![FlatRule::any(Family::V6, Action::Accept, 0)];
    agree(&eal, "v6 only, v4 packets", &any6, &p4, &[0; 10]);

    // Synthetic ClassBench-like sets, plain and awkward, IPv4 and IPv6.
    for (family, seed) in [
        (Family::V4, 1u64),
        (Family::V4, 2),
        (Family::V6, 3),
        (Family::V6, 4),
    ] {
        let rules = classbench::synth_rules(&classbench::SynthConfig {
            rules: 2000,
            family,
            seed,
            default_rule: seed % 2 == 1,
        });
        let pkts = classbench::synth_trace(&rules, seed + 100, 20_000);
        agree(
            &eal,
            &format!("synthetic {family:?} seed {seed}"),
            &rules,
            &pkts,
            &vec![0; pkts.len()],
        );

        let rules = awkward_set(family, seed);
        let mut pkts = classbench::synth_trace(&rules, seed + 200, 20_000);
        let from = vary(&mut pkts, rules.len(), seed);
        agree(
            &eal,
            &format!("awkward {family:?} seed {seed}"),
            &rules,
            &pkts,
            &from,
        );
    }

    // Both families in one rule set, packets of both.
    let mut mixed = awkward_set(Family::V4, 5);
    mixed.extend(awkward_set(Family::V6, 6));
    let mut pkts = classbench::synth_trace(&mixed[..1001], 7, 5000);
    pkts.extend(classbench::synth_trace(&mixed[1001..], 8, 5000));
    let from = vary(&mut pkts, mixed.len(), 9);
    agree(&eal, "mixed families", &mixed, &pkts, &from);

    // Every forced algorithm this CPU supports gives the same answers.
    let rules = awkward_set(Family::V4, 11);
    let pkts = classbench::synth_trace(&rules, 12, 5000);
    let from = vec![0; pkts.len()];
    let want = answers(&Linear, &rules, &pkts, &from);
    let mut tried = Vec::new();
    for alg in AclAlgorithm::BEST_FIRST {
        let cfg = AclConfig {
            algorithm: Some(alg),
            ..AclConfig::default()
        };
        if let Ok(acl) = AclClassifier::new(&eal, &rules, &cfg) {
            assert_eq!(acl.stats().algorithm, Some(alg));
            assert_eq!(answers(&acl, &rules, &pkts, &from), want, "{alg:?}");
            tried.push(alg);
        }
    }
    println!("forced algorithms agree: {tried:?}");
    assert!(tried.contains(&AclAlgorithm::Scalar));

    // The WUSTL ClassBench 1K sets and their traces.
    let Some(corpus) = corpus_dir() else {
        println!("SKIPPED ClassBench corpus part: ../shared/corpus not found");
        return;
    };
    let dir = corpus.join("classbench/wustl-original");
    for set in ["acl1_1K", "fw1_1K", "ipc1_1K"] {
        let read = |p: std::path::PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let rules = classbench::parse_rules(&read(dir.join("rules").join(set))).unwrap();
        let trace = classbench::parse_trace(&read(dir.join("traces").join(format!("{set}_trace"))))
            .unwrap();
        let pkts: Vec<PacketMeta> = trace.iter().map(|t| t.meta).collect();
        agree(&eal, set, &rules, &pkts, &vec![0; pkts.len()]);
    }
}
