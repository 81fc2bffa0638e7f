//! `rampart-perf swap`: rule swap latency in a running daemon, from the `rules load` request to
//! every worker running the new rules, for rule sets of 1K, 10K and 100K rules and a one-rule
//! change, with traffic flowing. The baseline is the same daemon, same rules and same traffic
//! with `classifier = "rte_acl"` (a full rte_acl build per change), measured in the same run.

use crate::report;
use anyhow::{bail, Context, Result};
use dataplane::classify::classbench::{synth_rules, SynthConfig};
use dataplane::classify::FlatRule;
use dataplane::wire::{ip_proto, Family};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of `rampart-perf swap`.
#[derive(clap::Args, Debug)]
pub struct SwapArgs {
    /// Rule-set sizes.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub sizes: Vec<usize>,
    /// Swaps per case (rte_acl at 100K rules is capped at 5: each build takes seconds).
    #[arg(long, default_value_t = 40)]
    pub swaps: usize,
    /// Leave out the rte_acl baseline.
    #[arg(long)]
    pub skip_acl: bool,
    /// Write (or replace) the swap section of this markdown file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// The rampart binary (default: next to this one).
    #[arg(long)]
    pub rampart: Option<PathBuf>,
    /// Time the phases of a rule load in this process instead (no daemon, no EAL).
    #[arg(long)]
    pub phases: bool,
}

/// One measured case.
struct Row {
    rules: usize,
    classifier: &'static str,
    change: Change,
    start: Duration,
    server_us: (f64, f64),
    client_us: (f64, f64),
    /// The daemon's compile (median); the rest of a swap is publication and waiting for every
    /// worker.
    compile_us: f64,
    /// Loads that took the incremental path.
    incremental: usize,
    swaps: usize,
}

/// What the two alternating rule files differ by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// One rule's protocol and destination port.
    OneRule,
    /// Everything: two unrelated rule sets of the same size.
    Unrelated,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::OneRule => "one rule",
            Change::Unrelated => "whole file",
        }
    }
}

/// An iptables-save text for `rules` (IPv4), FORWARD policy ACCEPT. Rules whose protocol is
/// "any" but whose ports are constrained become one line per TCP and UDP.
pub fn iptables_text(rules: &[FlatRule]) -> String {
    let mut s =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    let addr = |flag: &str,
                (lo, hi): (dataplane::wire::IpAddr128, dataplane::wire::IpAddr128)|
     -> String {
        let (lo, hi) = (
            u32::from(lo.to_v4().unwrap_or(0.into())),
            u32::from(hi.to_v4().unwrap_or(0.into())),
        );
        if lo == 0 && hi == u32::MAX {
            return String::new();
        }
        let span = hi.wrapping_sub(lo).wrapping_add(1);
        if span.is_power_of_two() && lo % span == 0 {
            format!(
                " {flag} {}/{}",
                std::net::Ipv4Addr::from(lo),
                32 - span.trailing_zeros()
            )
        } else if span == 0 {
            String::new()
        } else {
            let opt = if flag == "-s" {
                "--src-range"
            } else {
                "--dst-range"
            };
            format!(
                " -m iprange {opt} {}-{}",
                std::net::Ipv4Addr::from(lo),
                std::net::Ipv4Addr::from(hi)
            )
        }
    };
    let ports = |flag: &str, (lo, hi): (u16, u16)| -> String {
        match (lo, hi) {
            (0, u16::MAX) => String::new(),
            (a, b) if a == b => format!(" {flag} {a}"),
            (a, b) => format!(" {flag} {a}:{b}"),
        }
    };
    for r in rules.iter().filter(|r| r.family == Family::V4) {
        let base = format!("-A FORWARD{}{}", addr("-s", r.src), addr("-d", r.dst));
        let l4 = format!("{}{}", ports("--sport", r.sport), ports("--dport", r.dport));
        let protos: Vec<u8> = match r.proto {
            (0, 255) if l4.is_empty() => vec![],
            (0, 255) => vec![ip_proto::TCP, ip_proto::UDP],
            (p, q) if p == q => vec![p],
            _ => vec![ip_proto::TCP, ip_proto::UDP],
        };
        if protos.is_empty() {
            let _ = writeln!(s, "{base} -j ACCEPT");
        }
        for p in protos {
            let l4 = if matches!(p, ip_proto::TCP | ip_proto::UDP) {
                l4.as_str()
            } else {
                ""
            };
            let _ = writeln!(s, "{base} -p {p}{l4} -j ACCEPT");
        }
    }
    s + "COMMIT\n"
}

fn request(socket: &Path, req: &Value) -> Result<Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    writeln!(s, "{req}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(
    rampart: &Path,
    dir: &Path,
    rules: &Path,
    classifier: &str,
    tag: &str,
) -> Result<(Daemon, Duration)> {
    let socket = dir.join(format!("{tag}.sock"));
    let prefix = format!("rpswap{}{tag}", std::process::id());
    let mem = if classifier == "rte_acl" { 8192 } else { 512 };
    let cfg = format!(
        r#"[eal]
args = ["--no-huge", "-m", "{mem}", "--no-pci", "--no-shconf", "--file-prefix", "{prefix}", "--lcores=0@0,1@1", "--log-level", "*:warning"]
[[port]]
name = "a"
device = "net_null{prefix}a"
[[port]]
name = "b"
device = "net_null{prefix}b"
[bridge]
pairs = [["a", "b"]]
non_ip = "forward"
[rules]
ipv4 = "{rules}"
classifier = "{classifier}"
[management]
socket = "{socket}"
"#,
        rules = rules.display(),
        socket = socket.display()
    );
    let cfg_path = dir.join(format!("{tag}.toml"));
    std::fs::write(&cfg_path, cfg)?;
    let t0 = Instant::now();
    let child = Command::new(rampart)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", rampart.display()))?;
    let mut d = Daemon { child, socket };
    let deadline = Instant::now() + Duration::from_secs(600);
    while UnixStream::connect(&d.socket).is_err() {
        if let Some(s) = d.child.try_wait()? {
            bail!(
                "rampart exited {s} at start ({classifier}, {})",
                rules.display()
            );
        }
        if Instant::now() > deadline {
            bail!("rampart did not start within 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((d, t0.elapsed()))
}

fn case(
    args: &SwapArgs,
    rampart: &Path,
    dir: &Path,
    size: usize,
    classifier: &'static str,
    change: Change,
) -> Result<Row> {
    let mut rules = synth_rules(&SynthConfig {
        rules: size,
        family: Family::V4,
        seed: size as u64,
        default_rule: false,
    });
    let a = dir.join(format!("{size}-a.rules"));
    let b = dir.join(format!("{size}-b.rules"));
    std::fs::write(&a, iptables_text(&rules))?;
    match change {
        Change::OneRule => {
            // The one-rule change: the first rule's destination port moves.
            rules[0].dport = (4242, 4242);
            rules[0].proto = (ip_proto::TCP, ip_proto::TCP);
        }
        Change::Unrelated => {
            rules = synth_rules(&SynthConfig {
                rules: size,
                family: Family::V4,
                seed: size as u64 + 1,
                default_rule: false,
            });
        }
    }
    std::fs::write(&b, iptables_text(&rules))?;
    let tag = format!("{size}{classifier}{}", change as u8);
    let (d, start_time) = start(rampart, dir, &a, classifier, &tag)?;
    let swaps = if classifier == "rte_acl" && size >= 100_000 {
        args.swaps.min(5)
    } else if change == Change::Unrelated {
        args.swaps.min(10)
    } else {
        args.swaps
    };
    let (mut server, mut client) = (Vec::new(), Vec::new());
    let mut incremental = 0;
    let mut compile = Vec::new();
    for i in 0..swaps {
        let file = if i % 2 == 0 { &b } else { &a };
        let t0 = Instant::now();
        let v = request(
            &d.socket,
            &json!({"cmd": "rules load", "file": file.display().to_string()}),
        )?;
        let rtt = t0.elapsed();
        if v["ok"] != true {
            bail!("swap failed: {v}");
        }
        server.push(v["swap_us"].as_f64().unwrap_or(0.0));
        client.push(rtt.as_secs_f64() * 1e6);
        compile.push(v["compile_us"].as_f64().unwrap_or(f64::NAN));
        let reload = &v["reload"];
        incremental += usize::from(reload["incremental"].as_u64().unwrap_or(0) > 0);
    }
    Ok(Row {
        rules: size,
        classifier,
        change,
        start: start_time,
        server_us: percentiles(server),
        client_us: percentiles(client),
        compile_us: percentiles(compile).0,
        incremental,
        swaps,
    })
}

/// The phases of loads through [`control::reload::Reloader`], in this process: a full load (a
/// fresh reloader: what a reload of an unrelated file costs), the one-rule change of the daemon
/// benchmark, and one rule inserted in the middle of the chain.
fn phases(args: &SwapArgs) -> Result<Vec<PhaseRow>> {
    use control::config::ClassifierKind;
    use control::load::{tree_classifier, RuleFiles};
    use control::reload::Reloader;
    use control::rules::Hook;
    let dir = tempfile::tempdir()?;
    let mut out = Vec::new();
    for &size in &args.sizes {
        let mut rules = synth_rules(&SynthConfig {
            rules: size,
            family: Family::V4,
            seed: size as u64,
            default_rule: false,
        });
        let text_a = iptables_text(&rules);
        let a = dir.path().join(format!("{size}-a.rules"));
        std::fs::write(&a, &text_a)?;
        rules[0].dport = (4242, 4242);
        rules[0].proto = (ip_proto::TCP, ip_proto::TCP);
        let b = dir.path().join(format!("{size}-b.rules"));
        std::fs::write(&b, iptables_text(&rules))?;
        // One more rule in the middle of the chain.
        let mut lines: Vec<&str> = text_a.lines().collect();
        let mid = lines.len() / 2;
        lines.insert(mid, "-A FORWARD -s 10.9.8.0/24 -p tcp --dport 4242 -j DROP");
        let c = dir.path().join(format!("{size}-c.rules"));
        std::fs::write(&c, lines.join("\n") + "\n")?;
        let files = |p: &Path| RuleFiles {
            rules: Some(p.to_path_buf().leak()),
            ..RuleFiles::default()
        };
        let load = |r: &mut Reloader, p: &Path| -> Result<[f64; 7]> {
            let t0 = Instant::now();
            let f = r
                .load_filter(
                    &files(p),
                    &[],
                    Hook::Forward,
                    ClassifierKind::Tree,
                    &tree_classifier,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let snap = dataplane::filter::FilterSnapshot::new(f, String::new(), 1);
            let total = t0.elapsed().as_secs_f64() * 1e6;
            drop(snap);
            let rep = r.report();
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            Ok([
                total,
                us(rep.read),
                us(rep.parse),
                us(rep.flatten),
                us(rep.classifier),
                rep.trees_built as f64,
                rep.flats_patched as f64,
            ])
        };
        let runs = args.swaps.max(2);
        let mut cases: Vec<(&str, Vec<[f64; 7]>)> = Vec::new();
        let mut full = Vec::new();
        for _ in 0..runs.min(10) {
            full.push(load(&mut Reloader::new(), &a)?);
        }
        cases.push(("full load", full));
        for (label, other) in [("one rule changed", &b), ("one rule inserted", &c)] {
            let mut r = Reloader::new();
            load(&mut r, &a)?;
            let mut v = Vec::new();
            for i in 0..runs {
                v.push(load(&mut r, if i % 2 == 0 { other } else { &a })?);
            }
            cases.push((label, v));
        }
        for (label, v) in cases {
            let med = |i: usize| percentiles(v.iter().map(|r| r[i]).collect());
            let row = PhaseRow {
                rules: size,
                load: label,
                total_us: med(0),
                read_us: med(1).0,
                parse_us: med(2).0,
                flatten_us: med(3).0,
                classifier_us: med(4).0,
                trees_built: v.iter().map(|r| r[5]).sum::<f64>() as usize,
                patched: v.iter().map(|r| r[6]).sum::<f64>() as usize,
                runs: v.len(),
            };
            println!(
                "{size:>7} rules, {label:<18}: total {:>8.0} us (p99 {:>8.0})  read {:>6.0}  parse {:>8.0}  flatten {:>8.0}  classifier {:>8.0}  trees built {}/{}  patched {}",
                row.total_us.0, row.total_us.1, row.read_us, row.parse_us, row.flatten_us,
                row.classifier_us, row.trees_built, row.runs, row.patched
            );
            out.push(row);
        }
    }
    Ok(out)
}

/// One row of the in-process phase table.
struct PhaseRow {
    rules: usize,
    load: &'static str,
    total_us: (f64, f64),
    read_us: f64,
    parse_us: f64,
    flatten_us: f64,
    classifier_us: f64,
    trees_built: usize,
    /// Flat rule sets patched rather than flattened again.
    patched: usize,
    runs: usize,
}

/// Runs the swap benchmark.
pub fn run(args: &SwapArgs) -> Result<()> {
    if args.phases {
        phases(args)?;
        return Ok(());
    }
    let rampart = match &args.rampart {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("rampart"),
    };
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for &size in &args.sizes {
        for (classifier, change) in [
            ("tree", Change::OneRule),
            ("rte_acl", Change::OneRule),
            ("tree", Change::Unrelated),
        ] {
            if classifier == "rte_acl" && args.skip_acl {
                continue;
            }
            let r = case(args, &rampart, dir.path(), size, classifier, change)?;
            println!(
                "{:>7} rules {:<8} {:<10} start {:>8.1} ms  swap median {:>10.0} us  p99 {:>10.0} us  compile {:>8.0} us  incremental {}/{}  (client {:>10.0} / {:>10.0} us)",
                r.rules,
                r.classifier,
                r.change.name(),
                r.start.as_secs_f64() * 1e3,
                r.server_us.0,
                r.server_us.1,
                r.compile_us,
                r.incremental,
                r.swaps,
                r.client_us.0,
                r.client_us.1,
            );
            rows.push(r);
        }
    }
    let phase_rows = phases(args)?;
    if let Some(p) = &args.markdown {
        let mut s = String::from("## Rule swap latency: tree against rte_acl\n\n");
        s += "Rule files published to a running daemon through `rampart ctl rules load`, with traffic flowing (one worker forwarding between two `net_null` ports), alternating between two files. Changes: *one rule* (one rule's protocol and destination port) and *whole file* (two unrelated rule sets of the same size: a load that shares nothing with the rules in force). Swap = request received to every worker running the new rules (reading the file, parsing and flattening it, incrementally when only rule lines changed, the classifier's update or build, publication, and every worker's quiescent state), as the daemon reports it; compile = the part before publication (median); client = the socket round trip. The rest of a swap is waiting for the worker's next quiescent point: its lcore shares a core with other processes on this machine, so that wait is the scheduler's as much as Rampart's. Incremental: loads that took the incremental path (see docs/design/control-plane.md; for a whole-file change it still parses every rule line). Rule sets: Rampart's ClassBench-like synthetic IPv4 sets written as iptables-save. The baseline is the same daemon with `classifier = \"rte_acl\"`, which rebuilds the rte_acl context on every change (its parse and flattening are incremental too).\n\n";
        let _ = writeln!(
            s,
            "- machine: {}",
            report::machine("no hugepages (--no-huge)")
        );
        let _ = writeln!(s, "- commit: {}", report::commit());
        let _ = writeln!(
            s,
            "- command: `rampart-perf swap --swaps {} --markdown {}`\n",
            args.swaps,
            p.display()
        );
        s += "| rules | classifier | change | swap median | swap p99 | compile | incremental | client median | swaps | daemon start |\n|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
        let ms = |us: f64| format!("{:.2} ms", us / 1e3);
        for r in &rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {:.0} ms |",
                r.rules,
                if r.classifier == "tree" {
                    "tree (Rampart)"
                } else {
                    "rte_acl (baseline)"
                },
                r.change.name(),
                ms(r.server_us.0),
                ms(r.server_us.1),
                ms(r.compile_us),
                r.incremental,
                r.swaps,
                ms(r.client_us.0),
                r.swaps,
                r.start.as_secs_f64() * 1e3
            );
        }
        s += "\nThe same loads in one process, without a daemon, EAL or traffic (`rampart-perf swap --phases`: `control::reload::Reloader` timing its phases; *full load* is a fresh reloader each time, i.e. a file that shares nothing with the rules in force; *one rule inserted* adds a rule in the middle of the chain, which moves every later rule's line and number). Medians; total includes the snapshot the daemon would publish.\n\n";
        s += "| rules | load | total median | total p99 | read | parse | flatten | classifier | trees built | flat sets patched |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for r in &phase_rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}/{} |",
                r.rules,
                r.load,
                ms(r.total_us.0),
                ms(r.total_us.1),
                ms(r.read_us),
                ms(r.parse_us),
                ms(r.flatten_us),
                ms(r.classifier_us),
                r.trees_built,
                r.runs,
                r.patched,
                r.runs
            );
        }
        s += "\nTarget: at most 10 ms for 10K rules, compilation of a one-rule change included.";
        for (change, what) in [
            (Change::OneRule, "One-rule change"),
            (Change::Unrelated, "Whole-file change"),
        ] {
            let Some(r) = rows
                .iter()
                .find(|r| r.rules == 10_000 && r.classifier == "tree" && r.change == change)
            else {
                continue;
            };
            let met = r.server_us.0 <= 10_000.0 && r.server_us.1 <= 10_000.0;
            let _ = write!(
                s,
                " {what} at 10K rules: **{}** (median {}, p99 {}).",
                if met { "met" } else { "not met" },
                ms(r.server_us.0),
                ms(r.server_us.1)
            );
        }
        s += "\n";
        report::replace_section(p, "rampart-perf swap", &s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_sets_become_loadable_iptables_text() {
        let rules = synth_rules(&SynthConfig {
            rules: 300,
            family: Family::V4,
            seed: 7,
            default_rule: false,
        });
        let text = iptables_text(&rules);
        let rs = control::rules::compile_iptables(
            "t",
            &text,
            Family::V4,
            &[],
            control::rules::Hook::Forward,
        )
        .unwrap_or_else(|e| panic!("{}", e[0]));
        assert!(rs.rules.len() >= rules.len());
    }
}
