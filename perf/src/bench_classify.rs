//! `rampart-perf classify`: Rampart's decision tree against DPDK's `rte_acl` on ClassBench acl1,
//! fw1 and ipc1 at 1K, 10K and 100K rules, in the same process and run.
//!
//! Sets come from `../shared/corpus/classbench` when present (`wustl-original` for 1K and 10K,
//! `generated-100K` for 100K, each with its own trace), else from Rampart's ClassBench-like
//! generator (`classify::classbench::synth_rules`, one seed per set name) with a generated trace;
//! the report says which. Per set:
//!
//! - lookup Mpps on one core: the trace in its own order, bursts of 32 through
//!   `Classifier::classify`, `from` = 0, for `--seconds` of wall-clock time (or, with
//!   `--cpu-time`, of the thread's own CPU time, so that time spent preempted on a shared machine
//!   does not count); Tree and rte_acl runs alternate so that noise from other work on the
//!   machine hits both, and the median of `--runs` is reported. Tree / rte_acl is the median of
//!   the ratios of each Tree run to the rte_acl run right after it. The tree uses the widest
//!   leaf-scan kernel the CPU has, or at most `--simd`;
//! - build time, and peak build memory: growth of the process's peak RSS (`VmHWM`, reset through
//!   `/proc/self/clear_refs`) over its RSS before the build. For rte_acl, run-time tries placed
//!   in DPDK heap pages that were already resident (an earlier set's freed context) do not raise
//!   RSS, so its heap bytes beyond the RSS growth are added back; for the tree, the larger of the
//!   RSS growth and the build's own accounting (`TreeStats::build_bytes`);
//! - a one-rule change made visible to a lookup thread: clone the [`Updatable`] (its compiled
//!   tree is shared), insert or delete one rule, publish it through `rcu::Publisher`, and have a
//!   reader pick it up; median and 99th percentile over `--changes` alternating inserts and
//!   deletes at random positions, none rebuilt in between.
//!
//! `--shape` also prints each tree's shape and the mean work per trace packet (trees walked,
//! nodes visited, leaf entries read).
//!
//! EAL runs in-process with `--no-huge` (or, with `--huge`, on the reserved hugepages) and
//! `--force-max-simd-bitwidth=512`, so rte_acl takes its fastest implementation this CPU has;
//! the table names it.

use anyhow::{bail, Context, Result};
use dataplane::classify::classbench::{self, SplitMix64, SynthConfig};
use dataplane::classify::{Classifier, FlatRule, PacketMeta, Tree, TreeConfig, Updatable};
use dataplane::dpdk::simd::{Simd, SimdLevel};
use dataplane::dpdk::{AclClassifier, AclConfig, Eal};
use dataplane::rcu::Publisher;
use dataplane::wire::Family;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `rampart-perf classify`.
#[derive(clap::Args, Clone, Debug)]
pub struct ClassifyArgs {
    /// Set families to measure.
    #[arg(long, value_delimiter = ',', default_value = "acl1,fw1,ipc1")]
    pub sets: Vec<String>,
    /// Sizes to measure (1K, 10K, 100K).
    #[arg(long, value_delimiter = ',', default_value = "1K,10K,100K")]
    pub sizes: Vec<String>,
    /// Seconds of each lookup run.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Lookup runs per classifier; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// One-rule changes timed per set (alternating inserts and deletes).
    #[arg(long, default_value_t = 1000)]
    pub changes: usize,
    /// ClassBench corpus directory (default: `../shared/corpus/classbench` beside the project).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Use Rampart's generated sets even when the corpus is present.
    #[arg(long)]
    pub synthetic: bool,
    /// Sets not to build with rte_acl (e.g. `fw1_100K`, whose rte_acl build needs about 11 GB).
    #[arg(long, value_delimiter = ',')]
    pub skip_acl: Vec<String>,
    /// rte_acl's `max_size` in MiB (0: unbounded, as DPDK's default).
    #[arg(long, default_value_t = 0)]
    pub acl_max_size_mib: usize,
    /// Memory the EAL reserves, in MiB (lazily backed: `--no-huge`; ignored with `--huge`).
    #[arg(long, default_value_t = 16384)]
    pub eal_memory_mib: usize,
    /// Run the EAL on the hugepages reserved on the machine (`--in-memory`) instead of
    /// `--no-huge`; rte_acl builds that do not fit in them fail and are reported as such.
    #[arg(long)]
    pub huge: bool,
    /// Also write the table to this markdown file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Rate lookups by the lookup thread's own CPU time (`/proc/thread-self/schedstat`) rather
    /// than wall-clock time, so that time the thread spends preempted by other work on a shared
    /// machine does not count (cache lines that work evicts still do).
    #[arg(long)]
    pub cpu_time: bool,
    /// Widest leaf-scan kernel the tree may use (it takes the widest this CPU has up to it).
    #[arg(long, value_enum, default_value_t = SimdArg::Avx512)]
    pub simd: SimdArg,
    /// Also print each set's tree shape (`Tree::stats`) and the mean work per trace packet
    /// (`Tree::lookup_cost`: trees walked, nodes visited, leaf entries read).
    #[arg(long)]
    pub shape: bool,
}

/// `--simd`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdArg {
    Portable,
    Avx2,
    Avx512,
}

impl SimdArg {
    fn level(self) -> SimdLevel {
        match self {
            SimdArg::Portable => SimdLevel::Portable,
            SimdArg::Avx2 => SimdLevel::Avx2,
            SimdArg::Avx512 => SimdLevel::Avx512,
        }
    }
}

/// One set's rules and trace, and where they came from.
struct Set {
    name: String,
    rules: Vec<FlatRule>,
    trace: Vec<PacketMeta>,
    source: &'static str,
}

/// The figures of one set.
#[derive(Default)]
struct Row {
    name: String,
    rules: usize,
    source: &'static str,
    tree_mpps: f64,
    acl_mpps: Option<f64>,
    /// Median over runs of the Tree / rte_acl rate ratio of a run and the rte_acl run right
    /// after it (less sensitive to the machine's load drifting than the ratio of the medians).
    ratio: Option<f64>,
    tree_build: Duration,
    acl_build: Option<Duration>,
    tree_peak: usize,
    acl_peak: Option<usize>,
    tree_bytes: usize,
    acl_heap: Option<usize>,
    insert_us: (f64, f64),
    delete_us: (f64, f64),
    acl_note: String,
}

pub fn run(args: &ClassifyArgs) -> Result<()> {
    let corpus = if args.synthetic {
        None
    } else {
        args.corpus
            .clone()
            .or_else(|| {
                Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/classbench"))
            })
            .filter(|p| p.is_dir())
    };
    let prefix = format!("rampart-perf-classify-{}", std::process::id());
    let mut eal_args = vec!["rampart-perf".to_string()];
    if args.huge {
        eal_args.push("--in-memory".into());
    } else {
        eal_args.extend([
            "--no-huge".into(),
            "-m".into(),
            args.eal_memory_mib.to_string(),
            "--no-shconf".into(),
        ]);
    }
    eal_args.extend([
        "--no-pci".into(),
        "--file-prefix".into(),
        prefix,
        "--log-level".into(),
        "*:warning".into(),
        "--lcores=0@0".into(),
        "--force-max-simd-bitwidth=512".into(),
    ]);
    let eal = Eal::init(&eal_args).context("EAL initialisation (rte_acl needs it; run as root)")?;
    let acl_cfg = AclConfig {
        max_size_bytes: args.acl_max_size_mib << 20,
        algorithm: None,
    };
    let mut rows = Vec::new();
    let mut algorithm = None;
    for size in &args.sizes {
        for set in &args.sets {
            let s = load(corpus.as_deref(), set, size)?;
            eprintln!(
                "{}: {} rules, {} trace packets ({})",
                s.name,
                s.rules.len(),
                s.trace.len(),
                s.source
            );
            let row = measure(&eal, &s, args, &acl_cfg, &mut algorithm)?;
            print_row(&row);
            rows.push(row);
        }
    }
    drop(eal);
    let table = render(&rows, args, algorithm);
    println!("\n{table}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &table).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn size_rules(size: &str) -> Result<usize> {
    Ok(match size {
        "1K" => 1000,
        "10K" => 10_000,
        "100K" => 100_000,
        _ => bail!("unknown size {size:?} (want 1K, 10K or 100K)"),
    })
}

fn load(corpus: Option<&Path>, set: &str, size: &str) -> Result<Set> {
    let n = size_rules(size)?;
    let name = format!("{set}_{size}");
    if let Some(dir) = corpus {
        let (rules, trace) = if size == "100K" {
            let d = dir.join("generated-100K");
            (d.join(&name), d.join(format!("{name}_trace")))
        } else {
            let d = dir.join("wustl-original");
            (
                d.join("rules").join(&name),
                d.join("traces").join(format!("{name}_trace")),
            )
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let rules = classbench::parse_rules(&read(&rules)?)?;
        let trace = classbench::parse_trace(&read(&trace)?)?
            .into_iter()
            .map(|t| t.meta)
            .collect();
        return Ok(Set {
            name,
            rules,
            trace,
            source: if size == "100K" {
                "corpus generated-100K"
            } else {
                "corpus wustl-original"
            },
        });
    }
    let seed = match set {
        "acl1" => 1,
        "fw1" => 2,
        "ipc1" => 3,
        _ => bail!("unknown set {set:?} (want acl1, fw1 or ipc1)"),
    } * 1000
        + n as u64;
    let rules = classbench::synth_rules(&SynthConfig {
        rules: n,
        family: Family::V4,
        seed,
        default_rule: true,
    });
    let trace = classbench::synth_trace(&rules, seed ^ 0x5eed, (n * 10).clamp(10_000, 100_000));
    Ok(Set {
        name,
        rules,
        trace,
        source: "Rampart synthetic (no corpus)",
    })
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn status_bytes(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `build`, returning its result, wall time, peak RSS growth and RSS growth kept after it.
fn measured<T>(build: impl FnOnce() -> T) -> (T, Duration, usize, usize) {
    // "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_bytes("VmRSS:");
    let t = Instant::now();
    let out = build();
    let took = t.elapsed();
    let peak = status_bytes("VmHWM:").saturating_sub(before);
    let kept = status_bytes("VmRSS:").saturating_sub(before);
    (out, took, peak, kept)
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`, first field), or
/// `None` where the file is missing.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Packets per second of `c` over the trace, bursts of 32, for `seconds` (of the thread's CPU
/// time with `cpu_time`, else of wall-clock time).
fn lookup_rate(
    c: &dyn Classifier,
    rules: &[FlatRule],
    trace: &[PacketMeta],
    seconds: f64,
    cpu_time: bool,
) -> f64 {
    const BURST: usize = 32;
    let from = [0u32; BURST];
    let mut out = [0u32; BURST];
    let mut sum = 0u64;
    let mut pkts = 0u64;
    let budget = Duration::from_secs_f64(seconds);
    let cpu0 = if cpu_time { thread_cpu_ns() } else { None };
    let start = Instant::now();
    let elapsed = || match cpu0 {
        Some(c0) => Duration::from_nanos(thread_cpu_ns().unwrap_or(c0).saturating_sub(c0)),
        None => start.elapsed(),
    };
    loop {
        for chunk in trace.chunks(BURST) {
            let n = chunk.len();
            c.classify(
                rules,
                std::hint::black_box(chunk),
                &from[..n],
                &mut out[..n],
            );
            sum = sum.wrapping_add(u64::from(out[0]));
        }
        pkts += trace.len() as u64;
        if elapsed() >= budget {
            break;
        }
    }
    std::hint::black_box(sum);
    pkts as f64 / elapsed().as_secs_f64() / 1e6
}

/// `(median, 99th percentile)` in microseconds.
fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let p99 = v[((v.len() * 99) / 100).min(v.len() - 1)];
    (v[v.len() / 2], p99)
}

fn measure(
    eal: &Eal,
    s: &Set,
    args: &ClassifyArgs,
    acl_cfg: &AclConfig,
    algorithm: &mut Option<dataplane::dpdk::AclAlgorithm>,
) -> Result<Row> {
    let mut row = Row {
        name: s.name.clone(),
        rules: s.rules.len(),
        source: s.source,
        ..Row::default()
    };
    let cfg = TreeConfig {
        simd: args.simd.level(),
        ..TreeConfig::default()
    };
    let (tree, took, peak, _) = measured(|| Tree::with_config(&s.rules, &cfg));
    row.tree_build = took;
    let st = tree.stats();
    // Small builds fit in heap pages already resident: take the build's own accounting too.
    row.tree_peak = peak.max(st.v4.build_bytes + st.v6.build_bytes);
    row.tree_bytes = st.v4.bytes + st.v6.bytes;
    if args.shape {
        print_shape(&tree, s);
    }

    let acl = if args.skip_acl.iter().any(|x| x == &s.name) {
        row.acl_note = "skipped (--skip-acl)".into();
        None
    } else {
        let (acl, took, peak, kept) = measured(|| AclClassifier::new(eal, &s.rules, acl_cfg));
        match acl {
            Ok(a) => {
                let heap = a.stats().heap_bytes;
                row.acl_build = Some(took);
                // Heap bytes that did not raise RSS sat in pages already resident.
                row.acl_peak = Some(peak + heap.saturating_sub(kept));
                row.acl_heap = Some(heap);
                *algorithm = a.stats().algorithm.or(*algorithm);
                Some(a)
            }
            Err(e) => {
                row.acl_note = format!("build failed: {e}");
                None
            }
        }
    };

    // Sanity: both give the same answers on the first packets.
    let probe = &s.trace[..s.trace.len().min(4096)];
    let from = vec![0u32; probe.len()];
    let mut want = vec![0u32; probe.len()];
    tree.classify(&s.rules, probe, &from, &mut want);
    if let Some(a) = &acl {
        let mut got = vec![0u32; probe.len()];
        a.classify(&s.rules, probe, &from, &mut got);
        if got != want {
            bail!("{}: rte_acl and the tree disagree", s.name);
        }
    }

    let (mut t, mut a) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        t.push(lookup_rate(
            &tree,
            &s.rules,
            &s.trace,
            args.seconds,
            args.cpu_time,
        ));
        if let Some(acl) = &acl {
            a.push(lookup_rate(
                acl,
                &s.rules,
                &s.trace,
                args.seconds,
                args.cpu_time,
            ));
        }
    }
    row.tree_mpps = crate::report::median(&t);
    row.acl_mpps = (!a.is_empty()).then(|| crate::report::median(&a));
    let ratios: Vec<f64> = t.iter().zip(&a).map(|(t, a)| t / a).collect();
    row.ratio = (!ratios.is_empty()).then(|| crate::report::median(&ratios));
    drop(acl);
    drop(tree);

    let (ins, del) = change_latency(s, args.changes);
    row.insert_us = ins;
    row.delete_us = del;
    Ok(row)
}

/// Times one-rule changes made visible through RCU publication: `(insert, delete)` as
/// `(median, p99)` microseconds.
fn change_latency(s: &Set, changes: usize) -> ((f64, f64), (f64, f64)) {
    let mut publisher = Publisher::new(Updatable::new(s.rules.clone()), 1);
    let mut reader = publisher.reader().expect("one reader");
    let mut rng = SplitMix64(0x0c4a_96e5);
    let pool = classbench::synth_rules(&SynthConfig {
        rules: changes.max(1),
        family: Family::V4,
        seed: 77,
        default_rule: false,
    });
    let (mut ins, mut del) = (Vec::new(), Vec::new());
    for i in 0..changes {
        let current = publisher.current();
        let len = current.len();
        let t = Instant::now();
        let mut next = (*current).clone();
        if i % 2 == 0 {
            let at = rng.below(len as u64 + 1) as usize;
            next.insert(at, pool[i % pool.len()].clone())
                .expect("index in range");
        } else {
            let at = rng.below(len as u64) as usize;
            next.delete(at).expect("index in range");
        }
        publisher.publish(next);
        reader.quiesce();
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(reader.get().len(), len + 1 - 2 * (i % 2));
        if i % 2 == 0 {
            ins.push(us);
        } else {
            del.push(us);
        }
        drop(current);
        publisher.reclaim();
    }
    (percentiles(ins), percentiles(del))
}

/// The tree's shape and its mean work per packet of the trace.
fn print_shape(tree: &Tree, s: &Set) {
    let st = tree.stats();
    eprintln!("{}: v4 {:?}", s.name, st.v4);
    if st.v6.partitions > 0 {
        eprintln!("{}: v6 {:?}", s.name, st.v6);
    }
    let (mut trees, mut nodes, mut entries) = (0usize, 0usize, 0usize);
    for p in &s.trace {
        let c = tree.lookup_cost(&s.rules, p, 0);
        trees += c.trees;
        nodes += c.nodes;
        entries += c.entries;
    }
    let n = s.trace.len().max(1) as f64;
    eprintln!(
        "{}: per packet {:.2} trees, {:.2} nodes, {:.2} leaf entries",
        s.name,
        trees as f64 / n,
        nodes as f64 / n,
        entries as f64 / n
    );
}

fn mb(b: usize) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn print_row(r: &Row) {
    eprintln!(
        "{}: tree {:.1} Mpps / rte_acl {} ({}); build {} / {}; peak {} / {}; change insert {:.1} us, delete {:.1} us {}",
        r.name,
        r.tree_mpps,
        r.acl_mpps.map_or("-".into(), |v| format!("{v:.1} Mpps")),
        r.ratio.map_or("-".into(), |v| format!("{:.0} %", 100.0 * v)),
        ms(r.tree_build),
        r.acl_build.map_or("-".into(), ms),
        mb(r.tree_peak),
        r.acl_peak.map_or("-".into(), mb),
        r.insert_us.0,
        r.delete_us.0,
        r.acl_note
    );
}

fn render(rows: &[Row], args: &ClassifyArgs, alg: Option<dataplane::dpdk::AclAlgorithm>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Lookups: one core, bursts of 32, trace order, median of {} runs of {} s of {} time, Tree and \
         rte_acl runs alternating (Tree / rte_acl: the median of the runs' ratios); EAL memory: {}; \
         Tree leaf kernel: {:?}; rte_acl classify: {}. Changes: one rule inserted or deleted and \
         published to a reader, median (p99) of {} alternating changes, no rebuild in between.\n",
        args.runs,
        args.seconds,
        if args.cpu_time {
            "the thread's CPU"
        } else {
            "wall-clock"
        },
        if args.huge {
            "2 MB hugepages"
        } else {
            "--no-huge"
        },
        Simd::detect_up_to(args.simd.level()).level(),
        alg.map_or("-".into(), |a| format!("{a:?}")),
        args.changes
    );
    let _ = writeln!(
        t,
        "| set | rules | source | Tree Mpps | rte_acl Mpps | Tree / rte_acl | Tree build | rte_acl build | Tree peak build memory | rte_acl peak build memory | Tree arenas / rte_acl heap | one-rule insert visible | one-rule delete visible |"
    );
    let _ = writeln!(
        t,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let ratio = r
            .ratio
            .map_or("-".into(), |v| format!("{:.0} %", 100.0 * v));
        let dash = |s: Option<String>| s.unwrap_or_else(|| format!("- {}", r.acl_note));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} / {} | {:.1} us ({:.1}) | {:.1} us ({:.1}) |",
            r.name,
            r.rules,
            r.source,
            r.tree_mpps,
            dash(r.acl_mpps.map(|v| format!("{v:.1}"))),
            ratio,
            ms(r.tree_build),
            dash(r.acl_build.map(ms)),
            mb(r.tree_peak),
            dash(r.acl_peak.map(mb)),
            mb(r.tree_bytes),
            r.acl_heap.map_or("-".into(), mb),
            r.insert_us.0,
            r.insert_us.1,
            r.delete_us.0,
            r.delete_us.1,
        );
    }
    t
}
