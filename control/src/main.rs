#![forbid(unsafe_code)]
//! The `rampart` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use control::config::Config;
use control::load::{load_filter, RuleFiles};
use control::prefix::Prefix;
use control::replay::{replay, ReplayOptions};
use control::rules::{infer_family, Hook};
use control::run::{run, RunOptions};
use dataplane::wire::Family;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What a failed write to standard output says; [`main`] ends quietly when the cause is a
/// reader that went away.
const STDOUT: &str = "writing to standard output";

/// A line on standard output. A reader that has gone away (`rampart ctl conntrack list | head`)
/// ends the command quietly, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).context(STDOUT)?
    };
}

/// Rampart: a DPDK stateful firewall and NAT gateway.
#[derive(Parser)]
#[command(name = "rampart", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. EAL arguments come from the configuration; more may follow `--`.
    Run {
        /// The TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Stop once no packet has moved for this many milliseconds (for finite inputs such as
        /// net_pcap rx_pcap files).
        #[arg(long, value_name = "MS")]
        exit_when_idle_ms: Option<u64>,
        /// Print counters every this many milliseconds.
        #[arg(long, value_name = "MS")]
        stats_interval_ms: Option<u64>,
        /// Also write the final report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
        /// Extra EAL arguments.
        #[arg(last = true)]
        eal: Vec<String>,
    },
    /// Replay a capture through the pipeline, offline and deterministically (no EAL).
    Replay {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// One JSON line per input packet: index, ports, verdict, rule, ct_state, nat, reason.
        #[arg(long)]
        verdicts: Option<PathBuf>,
        /// Sources in these prefixes (comma-separated) arrive on the inside port.
        #[arg(long, value_delimiter = ',')]
        inside: Vec<Prefix>,
        /// A configuration giving port names, pairs and policies.
        #[arg(long)]
        config: Option<PathBuf>,
        /// iptables-save rules for IPv4 (filter FORWARD).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// ip6tables-save rules for IPv6 (filter FORWARD).
        #[arg(long)]
        rules6: Option<PathBuf>,
        /// Security groups (TOML), both families.
        #[arg(long)]
        groups: Option<PathBuf>,
        /// ipset sets for `-m set` (`ipset save` output).
        #[arg(long)]
        ipsets: Option<PathBuf>,
        /// Judge every packet as NEW, without connection tracking (as `[conntrack] enabled =
        /// false` does).
        #[arg(long)]
        no_conntrack: bool,
    },
    /// Rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Talk to a running daemon through its management socket.
    Ctl {
        #[arg(long, default_value = control::config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the daemon's JSON answer as is.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: CtlCommand,
    },
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Rule sets in force.
    Rules {
        #[command(subcommand)]
        command: CtlRules,
    },
    /// Counters per port, worker and drop reason.
    Stats,
    /// Connection tracking table.
    Conntrack {
        #[command(subcommand)]
        command: CtlConntrack,
    },
    /// NAT bindings.
    Nat {
        #[command(subcommand)]
        command: CtlNat,
    },
    /// The live ipset sets `-m set` tests, changed without a rule reload (as ipset(8) does);
    /// every change is in force on every worker when the command answers.
    Ipset {
        #[command(subcommand)]
        command: CtlIpset,
    },
    /// Accounting objects `-m nfacct` counts into, as nfacct(8) shows them.
    Nfacct {
        #[command(subcommand)]
        command: CtlNfacct,
    },
}

#[derive(Subcommand)]
enum CtlNfacct {
    /// `add NAME`: a new object, counting from 0.
    Add { name: String },
    /// `list [--reset]`: every object; `--reset` zeroes them after the read.
    List {
        #[arg(long)]
        reset: bool,
    },
    /// `get NAME [--reset]`: one object.
    Get {
        name: String,
        #[arg(long)]
        reset: bool,
    },
    /// `delete NAME`: refused while the rules in force name it.
    Delete { name: String },
    /// `flush`: deletes every object the rules in force do not name.
    Flush,
}

#[derive(Subcommand)]
enum CtlIpset {
    /// `add NAME ENTRY [timeout N] [nomatch] [-exist]`
    Add {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `del NAME ENTRY [-exist]`
    Del {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `test NAME ENTRY`: exit status 0 when the entry is in the set, 1 when not.
    Test {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `list [NAME]`: the sets as `ipset save` writes them (restorable).
    List { name: Option<String> },
    /// `save [NAME]`: the same as list.
    Save { name: Option<String> },
    /// `flush [NAME]`: remove every entry (of every set).
    Flush { name: Option<String> },
    /// `swap FROM TO`: exchange two sets' contents (of the same type).
    Swap { from: String, to: String },
    /// `restore [FILE] [-exist]`: add, del, flush, create and swap lines (stdin when no
    /// FILE), applied all or nothing.
    Restore {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// One ipset command line from its words (a word with blanks quoted).
fn ipset_line(cmd: &str, args: &[String]) -> String {
    let mut line = cmd.to_string();
    for a in args {
        line.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            line += &format!("\"{}\"", a.replace('"', ""));
        } else {
            line += a;
        }
    }
    line
}

/// The `ipset restore` request: `-exist` and a file (stdin when none).
fn ipset_restore(args: &[String]) -> Result<serde_json::Value> {
    let mut exist = false;
    let mut file = None;
    for a in args {
        match a.as_str() {
            "-exist" | "--exist" => exist = true,
            _ if file.is_none() => file = Some(PathBuf::from(a)),
            _ => anyhow::bail!("ipset restore takes one file ({a:?} is a second)"),
        }
    }
    Ok(match file {
        Some(f) => {
            serde_json::json!({"cmd": "ipset restore", "file": absolute(Some(f)), "exist": exist})
        }
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading stdin")?;
            if text.len() > control::mgmt::MAX_REQUEST_BYTES - 256 {
                anyhow::bail!("more than a request holds on stdin: give the lines as a FILE");
            }
            serde_json::json!({"cmd": "ipset restore", "text": text, "exist": exist})
        }
    })
}

#[derive(Subcommand)]
enum CtlRules {
    /// Compile and publish new rules; answers once every worker runs them. With no file, the
    /// configured files are reloaded.
    Load {
        /// iptables-save rules (IPv4).
        file: Option<PathBuf>,
        /// ip6tables-save rules (IPv6).
        #[arg(long)]
        rules6: Option<PathBuf>,
        /// Security groups.
        #[arg(long)]
        groups: Option<PathBuf>,
        /// ipset sets for `-m set` (`ipset save` output); the configured file when absent.
        #[arg(long)]
        ipsets: Option<PathBuf>,
    },
    /// Rules with their packet and byte counters.
    Show,
}

#[derive(Subcommand)]
enum CtlConntrack {
    /// Tracked connections, both directions, like `conntrack -L`: `[--max N] [FILTERS]`,
    /// FILTERS as conntrack's (-p, -s, -d, -r, -q, --mask-src, --mask-dst, --sport, --dport,
    /// --reply-port-src, --reply-port-dst, --state, -m, -u, -f, -n, -g, -j).
    List {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        filters: Vec<String>,
    },
    /// Forget every tracked connection.
    Flush,
    /// Forget the connections FILTERS select, like `conntrack -D` (none given: all).
    Delete {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        filters: Vec<String>,
    },
    /// How many connections FILTERS select (none given: all), like `conntrack -C`.
    Count {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        filters: Vec<String>,
    },
}

/// A conntrack filter from the command line, refused before anything is sent.
fn ct_filter(args: &[String], list: bool) -> Result<control::ctfilter::Parsed> {
    let p = control::ctfilter::parse_args(args, list).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &p.warnings {
        eprintln!("rampart: {w}");
    }
    Ok(p)
}

#[derive(Subcommand)]
enum CtlNat {
    /// Translated connections: original tuple, translated tuple, SNAT/DNAT.
    List {
        /// Most bindings to show.
        #[arg(long)]
        max: Option<u64>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Parse and compile a rule file (iptables-save, ip6tables-save or security groups, told
    /// apart by content); report every error as FILE:LINE:COL: message; exit non-zero on error.
    Check {
        file: PathBuf,
        /// Treat an iptables-save file as ip6tables-save.
        #[arg(long)]
        ipv6: bool,
        /// Port names for -i/-o (default: those of --config, else inside,outside).
        #[arg(long, value_delimiter = ',')]
        ports: Vec<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// ipset sets (`ipset save` output) the file's `-m set` names (default: the
        /// configuration's).
        #[arg(long)]
        ipsets: Option<PathBuf>,
    },
}

fn main() {
    if let Err(e) = real_main() {
        let closed = e.chain().any(|c| c.to_string() == STDOUT)
            && e.root_cause()
                .downcast_ref::<std::io::Error>()
                .map(|e| e.kind())
                == Some(std::io::ErrorKind::BrokenPipe);
        if closed {
            std::process::exit(0);
        }
        eprintln!("rampart: error: {e:#}");
        std::process::exit(1);
    }
}

/// Port names for -i/-o: the configuration's, else replay's default pair.
fn port_names(config: Option<&Config>) -> Vec<String> {
    match config {
        Some(c) => c.ports.iter().map(|p| p.name.clone()).collect(),
        None => vec!["inside".into(), "outside".into()],
    }
}

/// `rampart rules check`: exit status 1 and every error on stderr when the file is bad.
fn rules_check(
    file: &std::path::Path,
    ipv6: bool,
    ports: Vec<String>,
    config: Option<PathBuf>,
    ipsets: Option<PathBuf>,
) -> Result<()> {
    let config = config.map(|p| Config::load(&p)).transpose()?;
    let ipsets = ipsets.or_else(|| config.as_ref().and_then(|c| c.rules.ipsets.clone()));
    let sets = match ipsets {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            match control::rules::ipsets::parse_ipsets(&p.display().to_string(), &text)
                .map(dataplane::classify::ipset::SetsCell::new)
            {
                Ok(s) => Some(s),
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    anyhow::bail!("{}: {} error(s)", p.display(), errors.len());
                }
            }
        }
        None => None,
    };
    let ports = if ports.is_empty() {
        port_names(config.as_ref())
    } else {
        ports
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let name = file.display().to_string();
    if text.lines().any(|l| l.trim() == "[[group]]") {
        let v4 = control::groups::compile_groups(&name, &text, Family::V4)?;
        let v6 = control::groups::compile_groups(&name, &text, Family::V6)?;
        out!(
            "{name}: OK: security groups: {} IPv4 and {} IPv6 flat rules",
            v4.rules.len(),
            v6.rules.len()
        );
        return Ok(());
    }
    let family = if ipv6 {
        Family::V6
    } else {
        infer_family(&text)
    };
    // The configuration's mode and bridge name (`-m physdev`, `-i` with the bridge's name).
    let host = config
        .as_ref()
        .map(|c| control::load::NatSettings::of(c).host)
        .unwrap_or_default();
    let compiled =
        control::rules::parse_iptables_sets(&name, &text, family, &ports, &host, sets.as_ref())
            .and_then(|p| {
                Ok((
                    control::rules::compile_parsed(&p, Hook::Forward)?,
                    control::rules::compile_raw(&p)?,
                    control::rules::compile_nat(&p)?,
                    control::rules::compile_mangle(&p, Ok::<_, ()>)?
                        .ok()
                        .flatten(),
                ))
            });
    match compiled {
        Ok((rs, raw, nat, mangle)) => {
            let fam = if family == Family::V6 {
                "ip6tables"
            } else {
                "iptables"
            };
            let raw = raw.map_or(String::new(), |r| {
                format!(", raw PREROUTING to {}", r.rules.len())
            });
            let n = |c: &dataplane::nat::NatChain| c.rule_set().rules.len();
            let raw = if n(&nat.prerouting) + n(&nat.postrouting) > 2 {
                format!(
                    "{raw}, nat PREROUTING to {} and POSTROUTING to {}",
                    n(&nat.prerouting),
                    n(&nat.postrouting)
                )
            } else {
                raw
            };
            let raw = match mangle {
                Some(m) => {
                    let chains: Vec<String> = [
                        ("PREROUTING", &m.prerouting),
                        ("INPUT", &m.input),
                        ("FORWARD", &m.forward),
                        ("POSTROUTING", &m.postrouting),
                    ]
                    .iter()
                    .filter_map(|(n, c)| {
                        c.as_ref()
                            .map(|c| format!("{n} to {}", c.rules.rules.len()))
                    })
                    .collect();
                    format!("{raw}, mangle {}", chains.join(" and "))
                }
                None => raw,
            };
            out!(
                "{name}: OK: {fam}-save, filter FORWARD compiles to {} flat rules{raw}",
                rs.rules.len()
            );
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("{name}: {} error(s)", errors.len());
            std::process::exit(1);
        }
    }
}

/// Absolute paths, since the daemon may run in another directory.
fn absolute(p: Option<PathBuf>) -> Option<String> {
    p.map(|p| std::path::absolute(&p).unwrap_or(p).display().to_string())
}

/// One connection in `conntrack -L`'s layout.
fn conntrack_line(c: &serde_json::Value) -> String {
    // The zone as conntrack-tools shows it: `zone=N` after the mark, or a directional one
    // after its tuple; nothing for the default zone.
    let zone = c["zone"].as_u64().filter(|&z| z != 0);
    let zone_dir = c["zone_dir"].as_str().unwrap_or("both");
    let tuple = |t: &serde_json::Value, dir: usize| {
        let mut s = format!(
            "src={} dst={}",
            t["src"].as_str().unwrap_or("?"),
            t["dst"].as_str().unwrap_or("?")
        );
        if matches!(c["proto"].as_str(), Some("tcp" | "udp")) {
            s += &format!(" sport={} dport={}", t["sport"], t["dport"]);
        }
        if let Some(z) = zone.filter(|_| zone_dir == ["orig", "reply"][dir]) {
            s += &format!(" zone-{zone_dir}={z}");
        }
        s + &format!(" packets={} bytes={}", c["packets"][dir], c["bytes"][dir])
    };
    let mut line = format!(
        "{:<6} {:<4} {:>7} ",
        c["family"].as_str().unwrap_or("?"),
        c["proto"].as_str().unwrap_or("?"),
        c["timeout_s"]
    );
    if let Some(state) = c["state"].as_str() {
        line += state;
        line.push(' ');
    }
    line += &tuple(&c["orig"], 0);
    if c["seen_reply"] != true {
        line += " [UNREPLIED]";
    }
    line.push(' ');
    line += &tuple(&c["reply"], 1);
    if c["assured"] == true {
        line += " [ASSURED]";
    }
    // As `conntrack -L`: the connection mark after the flags.
    line += &format!(" mark={}", c["mark"]);
    if let Some(z) = zone.filter(|_| zone_dir == "both") {
        line += &format!(" zone={z}");
    }
    line + &format!(" worker={}", c["worker"])
}

/// One NAT binding: `PROTO ORIGINAL -> TRANSLATED [SNAT] [DNAT] worker=N`.
fn nat_line(c: &serde_json::Value) -> String {
    let ports = matches!(c["proto"].as_str(), Some("tcp" | "udp"));
    let end = |t: &serde_json::Value, side: &str| {
        let a = t[side].as_str().unwrap_or("?");
        let p = &t[if side == "src" { "sport" } else { "dport" }];
        match (ports, a.contains(':')) {
            (true, true) => format!("[{a}]:{p}"),
            (true, false) => format!("{a}:{p}"),
            (false, _) => a.to_string(),
        }
    };
    let (o, t) = (&c["orig"], &c["translated"]);
    let mut line = format!(
        "{:<4} {} > {}  ->  {} > {}",
        c["proto"].as_str().unwrap_or("?"),
        end(o, "src"),
        end(o, "dst"),
        end(t, "src"),
        end(t, "dst")
    );
    for k in ["snat", "dnat"] {
        if c[k] == true {
            line += &format!(" [{}]", k.to_uppercase());
        }
    }
    line + &format!(" worker={}", c["worker"])
}

fn ctl(socket: &std::path::Path, json: bool, command: CtlCommand) -> Result<()> {
    let req = match &command {
        CtlCommand::Rules {
            command:
                CtlRules::Load {
                    file,
                    rules6,
                    groups,
                    ipsets,
                },
        } => serde_json::json!({
            "cmd": "rules load", "file": absolute(file.clone()), "file6": absolute(rules6.clone()), "groups": absolute(groups.clone()), "ipsets": absolute(ipsets.clone()),
        }),
        CtlCommand::Rules {
            command: CtlRules::Show,
        } => serde_json::json!({"cmd": "rules show"}),
        CtlCommand::Stats => serde_json::json!({"cmd": "stats"}),
        CtlCommand::Conntrack {
            command: CtlConntrack::List { filters },
        } => {
            let p = ct_filter(filters, true)?;
            let mut req = serde_json::json!({"cmd": "conntrack list"});
            if let Some(max) = p.max {
                req["max"] = max.into();
            }
            // No filter, no field: the request an older daemon also reads.
            if p.filter != Default::default() {
                req["filter"] = control::ctfilter::to_json(&p.filter);
            }
            req
        }
        CtlCommand::Conntrack {
            command: CtlConntrack::Flush,
        } => serde_json::json!({"cmd": "conntrack flush"}),
        CtlCommand::Conntrack {
            command: CtlConntrack::Delete { filters },
        } => {
            let p = ct_filter(filters, false)?;
            serde_json::json!({"cmd": "conntrack delete", "filter": control::ctfilter::to_json(&p.filter)})
        }
        CtlCommand::Conntrack {
            command: CtlConntrack::Count { filters },
        } => {
            let p = ct_filter(filters, false)?;
            let mut req = serde_json::json!({"cmd": "conntrack count"});
            if p.filter != Default::default() {
                req["filter"] = control::ctfilter::to_json(&p.filter);
            }
            req
        }
        CtlCommand::Nat {
            command: CtlNat::List { max: Some(max) },
        } => serde_json::json!({"cmd": "nat list", "max": max}),
        CtlCommand::Nat {
            command: CtlNat::List { max: None },
        } => serde_json::json!({"cmd": "nat list"}),
        CtlCommand::Ipset { command: c } => match c {
            CtlIpset::Restore { args } => ipset_restore(args)?,
            c => {
                let line = match c {
                    CtlIpset::Add { args } => ipset_line("add", args),
                    CtlIpset::Del { args } => ipset_line("del", args),
                    CtlIpset::Test { args } => ipset_line("test", args),
                    CtlIpset::List { name } => ipset_line("list", name.as_slice()),
                    CtlIpset::Save { name } => ipset_line("save", name.as_slice()),
                    CtlIpset::Flush { name } => ipset_line("flush", name.as_slice()),
                    CtlIpset::Swap { from, to } => ipset_line("swap", &[from.clone(), to.clone()]),
                    CtlIpset::Restore { .. } => unreachable!(),
                };
                serde_json::json!({"cmd": "ipset", "line": line})
            }
        },
        CtlCommand::Nfacct { command: c } => {
            let (op, name, reset) = match c {
                CtlNfacct::Add { name } => ("add", Some(name), false),
                CtlNfacct::List { reset } => ("list", None, *reset),
                CtlNfacct::Get { name, reset } => ("get", Some(name), *reset),
                CtlNfacct::Delete { name } => ("delete", Some(name), false),
                CtlNfacct::Flush => ("flush", None, false),
            };
            serde_json::json!({"cmd": "nfacct", "op": op, "name": name, "reset": reset})
        }
    };
    let mut answer = control::mgmt::request(socket, &req, Duration::from_secs(30))
        .with_context(|| format!("no answer from the daemon at {}", socket.display()))?;
    // A daemon older than this client knows no conntrack filters: say so.
    if req.get("filter").is_some()
        || req["cmd"] == "conntrack delete"
        || req["cmd"] == "conntrack count"
    {
        let e = answer["error"].as_str().unwrap_or("");
        if e.contains("unknown command") || e.contains("unknown field \"filter\"") {
            answer["error"] = format!(
                "the daemon does not know conntrack filters (it is older than this rampart ctl): {e}"
            )
            .into();
        }
    }
    if json {
        out!("{answer}");
    } else if answer["ok"] != true {
        eprintln!(
            "rampart: {}",
            answer["error"].as_str().unwrap_or("request failed")
        );
    } else {
        match command {
            CtlCommand::Rules {
                command: CtlRules::Load { .. },
            } => {
                out!(
                    "rules loaded: every worker runs them after {} us",
                    answer["swap_us"]
                );
            }
            CtlCommand::Rules {
                command: CtlRules::Show,
            } => {
                out!("source: {}", answer["source"].as_str().unwrap_or(""));
                out!(
                    "{:>10} {:>12}  {:<6} {:>5}  rule",
                    "pkts",
                    "bytes",
                    "family",
                    "line"
                );
                for r in answer["rules"].as_array().into_iter().flatten() {
                    out!(
                        "{:>10} {:>12}  {:<6} {:>5}  {}",
                        r["packets"],
                        r["bytes"],
                        r["family"].as_str().unwrap_or(""),
                        r["line"],
                        r["rule"].as_str().unwrap_or("")
                    );
                }
            }
            CtlCommand::Conntrack {
                command: CtlConntrack::List { .. },
            } => {
                for c in answer["connections"].as_array().into_iter().flatten() {
                    out!("{}", conntrack_line(c));
                }
                let n = answer["count"].as_u64().unwrap_or(0);
                let more = if answer["truncated"] == true {
                    " (truncated: ask for more with --max)"
                } else {
                    ""
                };
                eprintln!("rampart: {n} connection(s) listed{more}");
            }
            CtlCommand::Conntrack {
                command: CtlConntrack::Flush,
            } => out!("{} connection(s) removed", answer["removed"]),
            CtlCommand::Conntrack {
                command: CtlConntrack::Delete { .. },
            } => out!("{} flow entries have been deleted.", answer["deleted"]),
            CtlCommand::Conntrack {
                command: CtlConntrack::Count { .. },
            } => out!("{}", answer["count"]),
            CtlCommand::Nat {
                command: CtlNat::List { .. },
            } => {
                for c in answer["bindings"].as_array().into_iter().flatten() {
                    out!("{}", nat_line(c));
                }
                let n = answer["count"].as_u64().unwrap_or(0);
                let more = if answer["truncated"] == true {
                    " (truncated: ask for more with --max)"
                } else {
                    ""
                };
                eprintln!("rampart: {n} binding(s) listed{more}");
            }
            CtlCommand::Ipset {
                command: CtlIpset::Test { .. },
            } => {
                let text = answer["text"].as_str().unwrap_or("");
                if answer["in_set"] == true {
                    out!("{text}");
                } else {
                    eprintln!("{text}");
                    std::process::exit(1);
                }
            }
            CtlCommand::Ipset {
                command: CtlIpset::List { .. } | CtlIpset::Save { .. },
            } => {
                write!(
                    std::io::stdout().lock(),
                    "{}",
                    answer["text"].as_str().unwrap_or("")
                )
                .context(STDOUT)?;
            }
            CtlCommand::Ipset { .. } => {}
            CtlCommand::Nfacct { .. } => {
                // nfacct(8)'s plain output: `{ pkts = %020llu, bytes = %020llu } = NAME;`.
                for o in answer["objects"].as_array().into_iter().flatten() {
                    out!(
                        "{{ pkts = {:020}, bytes = {:020} }} = {};",
                        o["pkts"].as_u64().unwrap_or(0),
                        o["bytes"].as_u64().unwrap_or(0),
                        o["name"].as_str().unwrap_or("")
                    );
                }
            }
            _ => out!("{}", serde_json::to_string_pretty(&answer)?),
        }
    }
    if answer["ok"] != true {
        std::process::exit(1);
    }
    Ok(())
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            exit_when_idle_ms,
            stats_interval_ms,
            summary_json,
            eal,
        } => {
            let cfg = Config::load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing signal handlers")?;
            }
            let opts = RunOptions {
                extra_eal_args: eal,
                exit_when_idle: exit_when_idle_ms.map(Duration::from_millis),
                stats_interval: stats_interval_ms.map(Duration::from_millis),
            };
            let summary = run(&cfg, &opts, stop)?;
            write!(std::io::stdout().lock(), "{}", summary.report()).context(STDOUT)?;
            if let Some(p) = summary_json {
                std::fs::write(&p, summary.to_json().to_string())
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if summary.mbufs_in_use_end != summary.mbufs_in_use_start {
                anyhow::bail!(
                    "mbuf leak: {} in use at start, {} at stop",
                    summary.mbufs_in_use_start,
                    summary.mbufs_in_use_end
                );
            }
            Ok(())
        }
        Command::Replay {
            input,
            output,
            verdicts,
            inside,
            config,
            rules,
            rules6,
            groups,
            ipsets,
            no_conntrack,
        } => {
            let config = config.map(|p| Config::load(&p)).transpose()?;
            let ct = config
                .as_ref()
                .map(|c| c.conntrack.clone())
                .unwrap_or_default();
            // A fixed seed: replay is deterministic.
            let track = (ct.enabled && !no_conntrack).then(|| ct.track_config(0x5eed));
            let ports = port_names(config.as_ref());
            // The configuration's mode, port addresses (MASQUERADE) and 1:1 mappings, as the
            // daemon compiles them.
            let settings = config
                .as_ref()
                .map(control::load::NatSettings::of)
                .unwrap_or_default();
            let mode = settings.mode;
            let nat = control::load::NatSettings {
                refuse: if no_conntrack {
                    Some("replay runs without connection tracking (--no-conntrack)".into())
                } else if !ct.enabled {
                    Some("connection tracking is off ([conntrack] enabled = false)".into())
                } else if !ct.nat {
                    Some("no room for NAT bindings ([conntrack] nat = false)".into())
                } else {
                    None
                },
                ..settings
            };
            let files = RuleFiles {
                rules: rules.as_deref(),
                rules6: rules6.as_deref(),
                groups: groups.as_deref(),
                ipsets: ipsets
                    .as_deref()
                    .or(config.as_ref().and_then(|c| c.rules.ipsets.as_deref())),
                live_sets: None,
                nat: nat.env(1),
            };
            let kind = config
                .as_ref()
                .map(|c| c.rules.classifier)
                .unwrap_or_default();
            let make: &control::load::MakeClassifier<'_> = match kind {
                control::config::ClassifierKind::Linear => {
                    &|_| Ok(Box::new(dataplane::classify::Linear))
                }
                control::config::ClassifierKind::Tree => &control::load::tree_classifier,
                control::config::ClassifierKind::RteAcl => {
                    eprintln!("rampart: replay runs without EAL, so it classifies with the tree instead of rte_acl");
                    &control::load::tree_classifier
                }
            };
            let filter = load_filter(&files, &ports, Hook::Forward, mode, make)?;
            nat.check(&filter).map_err(anyhow::Error::msg)?;
            if filter.v4.is_none() {
                eprintln!("rampart: no IPv4 rules: IPv4 traffic is not filtered");
            }
            if filter.v6.is_none() {
                eprintln!("rampart: no IPv6 rules: IPv6 traffic is not filtered");
            }
            let s = replay(&ReplayOptions {
                input,
                output,
                verdicts,
                inside,
                config,
                filter,
                track,
            })?;
            out!(
                "rampart: replayed {} packets: forwarded {}, dropped {}",
                s.packets,
                s.forwarded,
                s.dropped
            );
            if s.local + s.released + s.pending > 0 {
                out!(
                    "rampart: router: {} for the router itself, {} sent once a neighbour answered, {} still waiting for a neighbour",
                    s.local, s.released, s.pending
                );
            }
            for (reason, n) in &s.drops {
                out!("  drop {reason:<24} {n}");
            }
            Ok(())
        }
        Command::Rules {
            command:
                RulesCommand::Check {
                    file,
                    ipv6,
                    ports,
                    config,
                    ipsets,
                },
        } => rules_check(&file, ipv6, ports, config, ipsets),
        Command::Ctl {
            socket,
            json,
            command,
        } => ctl(&socket, json, command),
    }
}
