//! `rampart replay`: each frame of a capture, in order, through the same pipeline the workers
//! run; single-threaded and deterministic, no EAL.

use crate::config::Config;
use crate::pcap::{read_frames, FrameWriter, PcapError};
use crate::prefix::Prefix;
use dataplane::classify::RuleSet;
use dataplane::filter::Filter;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::{DropReason, Verdict};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What to replay and where the results go.
#[derive(Debug, Default)]
pub struct ReplayOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    pub verdicts: Option<PathBuf>,
    /// Sources in these prefixes arrive on the inside port.
    pub inside: Vec<Prefix>,
    pub config: Option<Config>,
    /// The rule sets; a family without one is not filtered.
    pub filter: Filter,
    /// Connection tracking's settings; `None` judges every packet as NEW (stateless).
    pub track: Option<TrackConfig>,
}

/// Replay errors.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
}

/// Counts of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub packets: u64,
    pub forwarded: u64,
    pub dropped: u64,
    /// Drops by reason name, in reason order, non-zero only.
    pub drops: Vec<(&'static str, u64)>,
}

/// The replay topology: port names and which is inside/outside.
struct Topology {
    names: Vec<String>,
    inside: u16,
    outside: u16,
    bridge: Bridge,
}

impl Topology {
    fn new(config: Option<&Config>) -> Result<Topology, ReplayError> {
        match config {
            None => Ok(Topology {
                names: vec!["inside".into(), "outside".into()],
                inside: 0,
                outside: 1,
                bridge: Bridge::new(&[(0, 1)], Policy::Forward, Policy::Drop),
            }),
            Some(c) => {
                let &(inside, outside) = c.pair_indexes().first().ok_or_else(|| {
                    ReplayError::Config(
                        "replay needs at least one bridge pair (inside, outside)".into(),
                    )
                })?;
                Ok(Topology {
                    names: c.ports.iter().map(|p| p.name.clone()).collect(),
                    inside,
                    outside,
                    bridge: c.bridge(),
                })
            }
        }
    }

    fn ingress(&self, interface: u32, src: Option<IpAddr>, inside: &[Prefix]) -> u16 {
        if !inside.is_empty() {
            return match src {
                Some(ip) if inside.iter().any(|p| p.contains(ip)) => self.inside,
                _ => self.outside,
            };
        }
        if interface > 0 && (interface as usize) < self.names.len() {
            return interface as u16;
        }
        self.outside
    }
}

/// Replays `opts.input`; writes forwarded frames to `opts.output` and, if asked, one JSON verdict
/// line per input frame.
pub fn replay(opts: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    let topo = Topology::new(opts.config.as_ref())?;
    let frames = read_frames(&opts.input)?;
    let link = frames
        .first()
        .map(|f| f.link)
        .unwrap_or(crate::pcap::Link::Ethernet);
    let mut out = FrameWriter::create(&opts.output, link)?;
    let mut log = match &opts.verdicts {
        Some(p) => Some((p.clone(), std::io::BufWriter::new(create(p)?))),
        None => None,
    };
    let mut drops = [0u64; DropReason::COUNT];
    let mut sum = ReplaySummary::default();
    let mut tables = opts.track.as_ref().map(Tables::new);
    for (index, f) in frames.iter().enumerate() {
        let src = dataplane::wire::parse_frame(&f.data)
            .ok()
            .and_then(|i| i.flow)
            .map(|k| k.src.to_std());
        let ingress = topo.ingress(f.interface, src, &opts.inside);
        let mut logs = Vec::new();
        let now_ns = u64::try_from(f.timestamp.as_nanos()).unwrap_or(u64::MAX);
        if let Some(t) = tables.as_mut() {
            t.expire(now_ns, u32::MAX);
        }
        let mut data = f.data.clone();
        let judged = topo.bridge.judge(
            &opts.filter,
            tables.as_mut(),
            ingress,
            &mut data,
            now_ns,
            |_, spec: &dataplane::classify::LogSpec, meta: &dataplane::classify::PacketMeta| {
                logs.push((spec.prefix.clone(), *meta));
            },
        );
        let verdict = judged.verdict;
        let (mut rule, mut ct_state) = (serde_json::Value::Null, serde_json::Value::Null);
        if let Some(state) = judged.state {
            ct_state = state.name().into();
        }
        if let (Some(meta), Some(r)) = (judged.meta, judged.filter.rule()) {
            if tables.is_none() {
                // Without tracking every packet is judged as NEW.
                ct_state = "NEW".into();
            }
            let rs = if judged.raw {
                opts.filter.raw(meta.key.family)
            } else {
                opts.filter.rules(meta.key.family)
            };
            if let Some(rs) = rs {
                rule = rule_json(rs, r);
            }
        }
        // Each as its rule saw the packet.
        let logs: Vec<String> = logs
            .iter()
            .map(|(prefix, meta)| {
                log_line(prefix, &topo.names, ingress, meta.out_port.into(), meta)
            })
            .collect();
        for l in &logs {
            eprintln!("{l}");
        }
        sum.packets += 1;
        let ingress_name = &topo.names[usize::from(ingress)];
        let nat = judged
            .nat
            .map_or(serde_json::Value::Null, |(b, dir)| nat_json(&b, dir));
        let line = match verdict {
            Verdict::Forward(port) => {
                sum.forwarded += 1;
                out.write(f.timestamp, &data)?;
                serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "forward",
                    "egress": topo.names[usize::from(port)], "rule": rule, "ct_state": ct_state, "nat": nat,
                    "reason": null, "log": logs,
                })
            }
            Verdict::Local => {
                sum.dropped += 1;
                serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "local",
                    "egress": null, "rule": rule, "ct_state": ct_state, "nat": nat,
                    "reason": null, "log": logs,
                })
            }
            Verdict::Drop(reason) => {
                sum.dropped += 1;
                drops[reason.index()] += 1;
                serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "drop",
                    "egress": null, "rule": rule, "ct_state": ct_state, "nat": null, "reason": reason.name(),
                    "log": logs,
                })
            }
        };
        if let Some((path, w)) = log.as_mut() {
            writeln!(w, "{line}").map_err(|source| ReplayError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    out.finish()?;
    if let Some((path, mut w)) = log {
        w.flush()
            .map_err(|source| ReplayError::Io { path, source })?;
    }
    sum.drops = DropReason::all()
        .filter(|r| drops[r.index()] > 0)
        .map(|r| (r.name(), drops[r.index()]))
        .collect();
    Ok(sum)
}

/// The verdict log's description of a translation: the packet's tuple before and after, and
/// which sides changed (`SNAT`: the source, `DNAT`: the destination, as Linux's conntrack
/// names them for this packet's direction).
fn nat_json(b: &dataplane::nat::Binding, dir: dataplane::conntrack::Dir) -> serde_json::Value {
    let (from, to) = b.translation(dir);
    let side = |src: bool| {
        let t = |k: &dataplane::wire::FlowKey| {
            if src {
                (k.src, k.src_port)
            } else {
                (k.dst, k.dst_port)
            }
        };
        let (a, p) = t(&from);
        let (c, q) = t(&to);
        if a == c && (p == q || from.is_icmp()) {
            return serde_json::Value::Null;
        }
        let ports = matches!(from.proto, 6 | 17);
        let fmt = |ip: dataplane::wire::IpAddr128, port: u16| match (ports, ip.to_std()) {
            (true, std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
            (true, v4) => format!("{v4}:{port}"),
            (false, ip) => ip.to_string(),
        };
        serde_json::json!({ "from": fmt(a, p), "to": fmt(c, q) })
    };
    serde_json::json!({
        "dir": match dir {
            dataplane::conntrack::Dir::Orig => "original",
            dataplane::conntrack::Dir::Reply => "reply",
        },
        "src": side(true),
        "dst": side(false),
    })
}

/// The verdict log's description of a rule: where it came from.
fn rule_json(rs: &RuleSet, idx: u32) -> serde_json::Value {
    let Some(r) = rs.rules.get(idx as usize) else {
        return serde_json::Value::Null;
    };
    match rs.origins.get(r.origin as usize) {
        Some(o) => serde_json::json!({ "file": o.file, "line": o.line, "label": o.label }),
        None => serde_json::json!({ "index": idx }),
    }
}

/// A LOG record in the kernel's format: `PREFIX IN=.. OUT=.. SRC=.. DST=.. PROTO=.. SPT=.. DPT=..`.
fn log_line(
    prefix: &str,
    names: &[String],
    ingress: u16,
    egress: u16,
    m: &dataplane::classify::PacketMeta,
) -> String {
    use dataplane::wire::ip_proto;
    let k = &m.key;
    let proto = match k.proto {
        ip_proto::TCP => "TCP".to_string(),
        ip_proto::UDP => "UDP".to_string(),
        ip_proto::ICMP => "ICMP".to_string(),
        ip_proto::ICMPV6 => "ICMPv6".to_string(),
        p => p.to_string(),
    };
    let mut s = format!(
        "{prefix}IN={} OUT={} SRC={} DST={} PROTO={proto}",
        names[usize::from(ingress)],
        names[usize::from(egress)],
        k.src.to_std(),
        k.dst.to_std()
    );
    if matches!(k.proto, ip_proto::TCP | ip_proto::UDP) && !m.later_fragment {
        s += &format!(" SPT={} DPT={}", k.src_port, k.dst_port);
    }
    s
}

fn create(p: &Path) -> Result<std::fs::File, ReplayError> {
    std::fs::File::create(p).map_err(|source| ReplayError::Io {
        path: p.into(),
        source,
    })
}
