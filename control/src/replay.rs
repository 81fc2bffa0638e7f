//! `rampart replay`: each frame of a capture, in order, through the same pipeline the workers
//! run; single-threaded and deterministic, no EAL.

use crate::config::{Config, Mode};
use crate::pcap::{read_frames, FrameWriter, PcapError};
use crate::prefix::Prefix;
use dataplane::classify::RuleSet;
use dataplane::conntrack::frag::{FragError, HoldLimits, Reassembly};
use dataplane::filter::Filter;
use dataplane::pipeline::{Bridge, Policy};
use dataplane::router::{Arrival, Fate, RouterDrop, RouterState};
use dataplane::track::{Tables, TrackConfig};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::{IpAddr128, MacAddr};
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
    /// Router mode: frames for the router itself (ARP/NDP, pings to its addresses, other
    /// packets to it that the INPUT chain accepted).
    pub local: u64,
    /// Router mode: packets that waited for a neighbour and were sent once it answered.
    pub released: u64,
    /// Router mode: packets still waiting for a neighbour at the end of the capture.
    pub pending: u64,
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

/// Where a replay's results go: the output capture, the verdict log, the counts.
struct Sink {
    out: FrameWriter,
    log: Option<(PathBuf, std::io::BufWriter<std::fs::File>)>,
    drops: [u64; DropReason::COUNT],
    sum: ReplaySummary,
    /// Verdict lines wait here until every earlier frame has its own: a fragment held for its
    /// first fragment gets its line when it is released, and the log stays in frame order.
    waiting: std::collections::BTreeMap<usize, serde_json::Value>,
    next_line: usize,
}

/// A frame held until its datagram is whole: its index, bytes (as it arrived, with the
/// ingress MAC of router mode written) and ingress port.
type HeldFrame = (usize, Vec<u8>, u16);

/// Fragments held for reassembly, as a worker holds them.
type Held = Reassembly<HeldFrame>;

/// The hold of a replay: the worker's limits, none without tracking.
fn new_held(tables: Option<&Tables>) -> Held {
    Reassembly::new(tables.map_or(
        HoldLimits {
            fragments: 0,
            bytes: 0,
            timeout_ns: 0,
        },
        |t| t.hold,
    ))
}

/// Writes the lines of the fragments the hold dropped.
fn dropped_lines(
    sink: &mut Sink,
    names: &[String],
    dropped: Vec<(HeldFrame, FragError)>,
) -> Result<(), ReplayError> {
    for ((i, _, ing), why) in dropped {
        sink.frag_dropped(i, &names[usize::from(ing)], why)?;
    }
    Ok(())
}

/// Holds `held`, a fragment judged before its datagram is whole; writes the lines of what the
/// hold drops for it.
/// Gathers a whole datagram's bytes for the rules that read the payload (`-m string`),
/// as the worker does before judging it; whether it did.
fn gather_payload(opts: &ReplayOptions, whole: &[HeldFrame]) -> bool {
    let payload = opts.filter.reads_payload();
    if payload {
        dataplane::classify::payload::gather(whole.iter().map(|h| &h.1[..]));
    }
    payload
}

fn hold(
    store: &mut Held,
    sink: &mut Sink,
    names: &[String],
    held: HeldFrame,
    now_ns: u64,
) -> Result<(), ReplayError> {
    let mut dropped = Vec::new();
    match dataplane::wire::parse_frame(&held.1) {
        Ok(info) => store.hold(
            held,
            |h| &h.1,
            &info,
            now_ns,
            |h, why| dropped.push((h, why)),
        ),
        Err(_) => dropped.push((held, FragError::NotAFragment)),
    }
    dropped_lines(sink, names, dropped)
}

/// Gives up the datagrams whose time is up at `now_ns`, writing their lines.
fn expire(
    store: &mut Held,
    sink: &mut Sink,
    names: &[String],
    now_ns: u64,
) -> Result<(), ReplayError> {
    let mut dropped = Vec::new();
    store.expire(now_ns, |h, why| dropped.push((h, why)));
    dropped_lines(sink, names, dropped)
}

/// [`expire`] in router mode: a datagram given up at the timeout is answered as the worker
/// answers it ([`dataplane::router::Router::reassembly_timed_out`]), the error going out with
/// the frames the router sends before the next frame's; its first fragment's line names the
/// port in `sent`.
#[allow(clippy::too_many_arguments)]
fn expire_routed(
    store: &mut Held,
    sink: &mut Sink,
    names: &[String],
    router: &dataplane::router::Router,
    st: &mut RouterState<Vec<u8>>,
    now_ns: u64,
    sent: &mut Vec<(u16, Vec<u8>)>,
) -> Result<(), ReplayError> {
    let mut dropped = Vec::new();
    store.expire(now_ns, |h, why| dropped.push((h, why)));
    for ((i, frame, ing), why) in dropped {
        let before = sent.len();
        if why == FragError::Timeout {
            router.reassembly_timed_out(st, ing, &frame, now_ns, sent);
        }
        let to: Vec<serde_json::Value> = sent[before..]
            .iter()
            .map(|(port, _)| names[usize::from(*port)].clone().into())
            .collect();
        let reason = DropReason::Fragment(why);
        sink.drop(reason);
        sink.line(serde_json::json!({
            "index": i, "ingress": &names[usize::from(ing)], "verdict": "drop", "egress": null,
            "rule": null, "ct_state": null, "nat": null, "reason": reason.name(), "log": [],
            "sent": to,
        }))?;
    }
    Ok(())
}

/// Gives up everything still held at the end of a replay, writing the lines.
fn drain(store: &mut Held, sink: &mut Sink, names: &[String]) -> Result<(), ReplayError> {
    let mut dropped = Vec::new();
    store.drain(|h, why| dropped.push((h, why)));
    dropped_lines(sink, names, dropped)
}

impl Sink {
    fn new(opts: &ReplayOptions, link: crate::pcap::Link) -> Result<Sink, ReplayError> {
        Ok(Sink {
            out: FrameWriter::create(&opts.output, link)?,
            log: match &opts.verdicts {
                Some(p) => Some((p.clone(), std::io::BufWriter::new(create(p)?))),
                None => None,
            },
            drops: [0; DropReason::COUNT],
            sum: ReplaySummary::default(),
            waiting: std::collections::BTreeMap::new(),
            next_line: 0,
        })
    }

    fn drop(&mut self, reason: DropReason) {
        self.sum.dropped += 1;
        self.drops[reason.index()] += 1;
    }

    /// Writes frame `line["index"]`'s verdict line once the lines of the frames before it are
    /// written.
    fn line(&mut self, line: serde_json::Value) -> Result<(), ReplayError> {
        let index = line["index"]
            .as_u64()
            .map_or(self.next_line, |i| i as usize);
        self.waiting.insert(index, line);
        while let Some(line) = self.waiting.remove(&self.next_line) {
            self.next_line += 1;
            if let Some((path, w)) = self.log.as_mut() {
                writeln!(w, "{line}").map_err(|source| ReplayError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The line of a held fragment given up (its datagram never became whole, or an
    /// overlapping fragment dropped it), or of a fragment that could not be held.
    fn frag_dropped(
        &mut self,
        index: usize,
        ingress: &str,
        why: FragError,
    ) -> Result<(), ReplayError> {
        let reason = DropReason::Fragment(why);
        self.drop(reason);
        self.line(serde_json::json!({
            "index": index, "ingress": ingress, "verdict": "drop", "egress": null,
            "rule": null, "ct_state": null, "nat": null, "reason": reason.name(), "log": [],
        }))
    }

    fn finish(mut self) -> Result<ReplaySummary, ReplayError> {
        // Every frame has its line by now; this only keeps a gap from losing the rest.
        let rest = std::mem::take(&mut self.waiting);
        if let Some((path, w)) = self.log.as_mut() {
            for line in rest.values() {
                writeln!(w, "{line}").map_err(|source| ReplayError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        self.out.finish()?;
        if let Some((path, mut w)) = self.log {
            w.flush()
                .map_err(|source| ReplayError::Io { path, source })?;
        }
        let drops = self.drops;
        self.sum.drops = DropReason::all()
            .filter(|r| drops[r.index()] > 0)
            .map(|r| (r.name(), drops[r.index()]))
            .collect();
        Ok(self.sum)
    }
}

/// The verdict log's `rule` and `ct_state` for a packet the filter saw as `meta` (`None`:
/// never judged): the rule's origin in the rule set its verdict came from (raw, INPUT or
/// FORWARD), and the conntrack state (NEW for every packet without tracking).
fn rule_and_state(
    opts: &ReplayOptions,
    state: Option<dataplane::conntrack::CtState>,
    meta: Option<&dataplane::classify::PacketMeta>,
    fv: dataplane::filter::FilterVerdict,
    (raw, input): (bool, bool),
) -> (serde_json::Value, serde_json::Value) {
    let (mut rule, mut ct_state) = (serde_json::Value::Null, serde_json::Value::Null);
    if let Some(state) = state {
        ct_state = state.name().into();
    }
    if let (Some(meta), Some(r)) = (meta, fv.rule()) {
        if opts.track.is_none() {
            // Without tracking every packet is judged as NEW.
            ct_state = "NEW".into();
        }
        let family = meta.key.family;
        let rs = if raw {
            opts.filter.raw(family)
        } else if input {
            opts.filter.input(family)
        } else {
            opts.filter.rules(family)
        };
        if let Some(rs) = rs {
            rule = rule_json(rs, r);
        }
    }
    (rule, ct_state)
}

/// The verdict log's `ct_mark`: the mark (CONNMARK) of the connection `frame` belongs to after
/// its judgement, by its tuple as it arrived; 0 (left out of the line) without one.
fn conn_mark(tables: Option<&Tables>, frame: &[u8], now_ns: u64) -> u32 {
    let key = dataplane::wire::parse_frame(frame)
        .ok()
        .and_then(|i| i.flow);
    match (tables, key) {
        (Some(t), Some(k)) => t.ct.mark_of(&k, now_ns),
        _ => 0,
    }
}

/// Replays `opts.input`; writes forwarded frames to `opts.output` and, if asked, one JSON verdict
/// line per input frame. A router-mode configuration replays through the router
/// ([`replay_routed`]); anything else through the bridge.
pub fn replay(opts: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    if let Some(cfg) = opts.config.as_ref().filter(|c| c.mode == Mode::Router) {
        return replay_routed(opts, cfg);
    }
    let topo = Topology::new(opts.config.as_ref())?;
    let frames = read_frames(&opts.input)?;
    let link = frames
        .first()
        .map(|f| f.link)
        .unwrap_or(crate::pcap::Link::Ethernet);
    let mut sink = Sink::new(opts, link)?;
    let mut tables = opts.track.as_ref().map(Tables::new);
    let mut held = new_held(tables.as_ref());
    for (index, f) in frames.iter().enumerate() {
        let src = dataplane::wire::parse_frame(&f.data)
            .ok()
            .and_then(|i| i.flow)
            .map(|k| k.src.to_std());
        let ingress = topo.ingress(f.interface, src, &opts.inside);
        let now_ns = u64::try_from(f.timestamp.as_nanos()).unwrap_or(u64::MAX);
        if let Some(t) = tables.as_mut() {
            t.expire(now_ns, u32::MAX);
        }
        expire(&mut held, &mut sink, &topo.names, now_ns)?;
        sink.sum.packets += 1;
        let frame = (index, f.data.clone(), ingress);
        if let Some(h) = bridge_one(
            opts,
            &topo,
            tables.as_mut(),
            &mut sink,
            frame,
            now_ns,
            f.timestamp,
        )? {
            hold(&mut held, &mut sink, &topo.names, h, now_ns)?;
        }
        // A datagram it made whole: judged from its first fragment, the others after it.
        let mut whole = Vec::new();
        while let Some(w) = held.take_whole(usize::MAX, |h| whole.push(h)) {
            let Some(t) = tables.as_mut() else { break };
            t.whole = Some(w);
            let payload = gather_payload(opts, &whole);
            for h in whole.drain(..) {
                let left = bridge_one(
                    opts,
                    &topo,
                    Some(&mut *t),
                    &mut sink,
                    h,
                    now_ns,
                    f.timestamp,
                );
                debug_assert!(
                    !matches!(left, Ok(Some(_))),
                    "a whole datagram is never held"
                );
                left?;
            }
            t.whole = None;
            if payload {
                dataplane::classify::payload::clear();
            }
        }
    }
    drain(&mut held, &mut sink, &topo.names)?;
    sink.finish()
}

/// Judges one frame of a bridge replay and writes what it gives; gives the frame back when it
/// is a non-first fragment to hold for its first fragment (nothing written for it yet).
fn bridge_one(
    opts: &ReplayOptions,
    topo: &Topology,
    tables: Option<&mut Tables>,
    sink: &mut Sink,
    (index, mut data, ingress): HeldFrame,
    now_ns: u64,
    timestamp: std::time::Duration,
) -> Result<Option<HeldFrame>, ReplayError> {
    let tracking = tables.is_some();
    let mut tables = tables;
    let arrived = data.clone();
    {
        let mut logs = Vec::new();
        let judged = topo.bridge.judge(
            &opts.filter,
            tables.as_deref_mut(),
            ingress,
            &mut data,
            now_ns,
            |_, spec: &dataplane::classify::LogSpec, meta: &dataplane::classify::PacketMeta| {
                logs.push((spec.lead(), *meta));
            },
        );
        let verdict = judged.verdict;
        if tracking && verdict == Verdict::Drop(DropReason::Fragment(FragError::Incomplete)) {
            return Ok(Some((index, arrived, ingress)));
        }
        let (rule, ct_state) = rule_and_state(
            opts,
            judged.state,
            judged.meta.as_ref(),
            judged.filter,
            (judged.raw, false),
        );
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
        let ingress_name = &topo.names[usize::from(ingress)];
        let nat = judged
            .nat
            .map_or(serde_json::Value::Null, |(b, dir)| nat_json(&b, dir));
        let mark = conn_mark(tables.as_deref(), &arrived, now_ns);
        let mut line = match verdict {
            Verdict::Forward(port) => {
                sink.sum.forwarded += 1;
                sink.out.write(timestamp, &data)?;
                serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "forward",
                    "egress": topo.names[usize::from(port)], "rule": rule, "ct_state": ct_state, "nat": nat,
                    "reason": null, "log": logs,
                })
            }
            Verdict::Local => {
                sink.sum.dropped += 1;
                serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "local",
                    "egress": null, "rule": rule, "ct_state": ct_state, "nat": nat,
                    "reason": null, "log": logs,
                })
            }
            Verdict::Drop(reason) => {
                sink.drop(reason);
                serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "drop",
                    "egress": null, "rule": rule, "ct_state": ct_state, "nat": null, "reason": reason.name(),
                    "log": logs,
                })
            }
        };
        if mark != 0 {
            line["ct_mark"] = mark.into();
        }
        sink.line(line)?;
    }
    Ok(None)
}

/// The MAC address a router port has in replay: its configured `mac`, else a locally
/// administered address numbered after the port (`02:00:00:00:00:01` for the first).
fn replay_mac(index: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, (index >> 8) as u8, (index & 0xff) as u8 + 1])
}

/// The sender's address of a frame: an IP packet's source, an ARP message's sender.
fn sender_of(frame: &[u8], info: &dataplane::wire::PacketInfo) -> Option<IpAddr128> {
    match info.l3 {
        dataplane::wire::L3::Arp => {
            let spa = usize::from(info.l3_offset) + 14;
            let b = frame.get(spa..spa + 4)?;
            Some(IpAddr128::from_v4_octets([b[0], b[1], b[2], b[3]]))
        }
        _ => info.flow.map(|k| k.src),
    }
}

/// Router mode: each frame through the same two steps a worker runs ([`Router::arrive`],
/// then [`Router::judge_and_route`]), with one worker's neighbour table and conntrack
/// table, the capture's timestamps as the clock.
///
/// - A frame arrives on its pcapng interface when the capture names one (interface ids are
///   port indexes), otherwise on the port the router would use to reach its sender (the
///   connected subnet or route toward the source; port 0 when there is none).
/// - The ports' MAC addresses are the configured ones (`mac`), else `02:00:00:00:00:01`, `..02`
///   and so on; a unicast frame's destination MAC is taken to be its ingress port's, so a
///   capture taken anywhere on the path replays as if sent to the router.
/// - The output holds every frame the router transmits, in order: packets forwarded (with
///   their new Ethernet addresses), and the router's own (ARP/NDP, ICMP errors, echo replies,
///   REJECT's resets). Next hops resolve as on the wire: from `[[neighbour]]` entries, or from
///   the capture's own ARP/NDP answers; a packet waiting for a neighbour that never answers is
///   dropped when its resolution fails (`neigh_failed`), or counted as `pending` at the end.
fn replay_routed(opts: &ReplayOptions, cfg: &Config) -> Result<ReplaySummary, ReplayError> {
    if !opts.inside.is_empty() {
        return Err(ReplayError::Config(
            "--inside is for bridge mode: in router mode a frame arrives on its pcapng interface, \
             else on the port toward its sender"
                .into(),
        ));
    }
    let names: Vec<String> = cfg.ports.iter().map(|p| p.name.clone()).collect();
    let macs: Vec<MacAddr> = (0..names.len()).map(replay_mac).collect();
    let router = crate::router_conf::build_router(cfg, &macs)
        .map_err(|e| ReplayError::Config(format!("router: {e}")))?;
    let Some(track) = opts.track.as_ref() else {
        return Err(ReplayError::Config(
            "router mode tracks connections: replay it without --no-conntrack".into(),
        ));
    };
    let frames = read_frames(&opts.input)?;
    let mut sink = Sink::new(opts, crate::pcap::Link::Ethernet)?;
    let mut tables = Tables::new(track);
    let start_ns = frames.first().map_or(0, |f| {
        u64::try_from(f.timestamp.as_nanos()).unwrap_or(u64::MAX)
    });
    let mut st: RouterState<Vec<u8>> = router.new_state(start_ns);
    let mut last_tick = start_ns;
    // Frames the router sends (port, frame), and packets handed back by a failed resolution.
    let mut sent: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut failed = 0u64;
    let mut queued = 0u64;
    let mut held = new_held(Some(&tables));
    for (index, f) in frames.iter().enumerate() {
        let now_ns = u64::try_from(f.timestamp.as_nanos()).unwrap_or(u64::MAX);
        tables.expire(now_ns, u32::MAX);
        if now_ns.saturating_sub(last_tick) >= 1_000_000 {
            last_tick = now_ns;
            router.tick(&mut st, now_ns, &mut sent, |_p| {
                failed += 1;
            });
        }
        let mut data = f.data.clone();
        let parsed = dataplane::wire::parse_frame(&data);
        let ingress = match f.interface {
            i if i > 0 && (i as usize) < names.len() => i as u16,
            _ => parsed
                .as_ref()
                .ok()
                .and_then(|i| sender_of(&data, i))
                .and_then(|src| {
                    match router.decide(
                        if src.is_v4() {
                            dataplane::wire::Family::V4
                        } else {
                            dataplane::wire::Family::V6
                        },
                        &src,
                    ) {
                        dataplane::router::Egress::Forward(h) => Some(u16::from(h.port)),
                        _ => None,
                    }
                })
                .unwrap_or(0),
        };
        if data.len() >= 6 && data[0] & 1 == 0 {
            data[..6].copy_from_slice(&macs[usize::from(ingress)].0);
        }
        expire_routed(
            &mut held, &mut sink, &names, &router, &mut st, now_ns, &mut sent,
        )?;
        sink.sum.packets += 1;
        let mut r = RoutedReplay {
            opts,
            names: &names,
            router: &router,
            st: &mut st,
            tables: &mut tables,
            sent: &mut sent,
            queued: &mut queued,
        };
        if let Some(h) = r.one(&mut sink, (index, data, ingress), &[], now_ns, f.timestamp)? {
            hold(&mut held, &mut sink, &names, h, now_ns)?;
        }
        let mut whole = Vec::new();
        while let Some(w) = held.take_whole(usize::MAX, |h| whole.push(h)) {
            r.tables.whole = Some(w);
            let payload = gather_payload(opts, &whole);
            let mut frames = std::mem::take(&mut whole).into_iter();
            while let Some(h) = frames.next() {
                // The fragments after it: a REJECT of the first answers about them all.
                let rest: Vec<&[u8]> = frames.as_slice().iter().map(|h| &h.1[..]).collect();
                let left = r.one(&mut sink, h, &rest, now_ns, f.timestamp);
                debug_assert!(
                    !matches!(left, Ok(Some(_))),
                    "a whole datagram is never held"
                );
                left?;
            }
            r.tables.whole = None;
            if payload {
                dataplane::classify::payload::clear();
            }
        }
    }
    drain(&mut held, &mut sink, &names)?;
    // Packets still waiting for a neighbour when the capture ends.
    sink.sum.dropped += failed;
    sink.drops[DropReason::Router(RouterDrop::NeighFailed).index()] += failed;
    sink.sum.pending = queued.saturating_sub(failed + sink.sum.released);
    sink.finish()
}

/// What a routed replay judges each frame with.
struct RoutedReplay<'a> {
    opts: &'a ReplayOptions,
    names: &'a [String],
    router: &'a dataplane::router::Router,
    st: &'a mut RouterState<Vec<u8>>,
    tables: &'a mut Tables,
    /// Frames the router sends (port, frame).
    sent: &'a mut Vec<(u16, Vec<u8>)>,
    queued: &'a mut u64,
}

impl RoutedReplay<'_> {
    /// Judges and routes one frame (its ingress MAC written) and writes what it gives; gives the
    /// frame back when it is a non-first fragment to hold for its first fragment (nothing
    /// written for it yet).
    fn one(
        &mut self,
        sink: &mut Sink,
        (index, data, ingress): HeldFrame,
        rest: &[&[u8]],
        now_ns: u64,
        timestamp: std::time::Duration,
    ) -> Result<Option<HeldFrame>, ReplayError> {
        let RoutedReplay {
            opts,
            names,
            router,
            st,
            tables,
            sent,
            queued,
        } = self;
        let (opts, names, router) = (*opts, *names, *router);
        let parsed = dataplane::wire::parse_frame(&data);
        let ingress_name = names[usize::from(ingress)].as_str();
        let before = sent.len();
        let info = match parsed {
            Ok(mut i) => {
                i.l4_csum = dataplane::wire::RxCsum::Unchecked;
                i
            }
            Err(e) => {
                let reason = DropReason::Parse(e);
                sink.drop(reason);
                sink.line(serde_json::json!({
                    "index": index, "ingress": ingress_name, "verdict": "drop", "egress": null,
                    "rule": null, "ct_state": null, "nat": null, "reason": reason.name(),
                    "log": [], "sent": [],
                }))?;
                return Ok(None);
            }
        };
        let arrived = data.clone();
        let mut released = Vec::new();
        let arrival = router.arrive(st, ingress, &data, &info, now_ns, *sent, |port, p| {
            released.push((port, p))
        });
        sink.sum.forwarded += released.len() as u64;
        sink.sum.released += released.len() as u64;
        sent.extend(released);
        let mut line = serde_json::json!({
            "index": index, "ingress": ingress_name, "verdict": "drop", "egress": null,
            "rule": null, "ct_state": null, "nat": null, "reason": null, "log": [],
        });
        match arrival {
            Arrival::Ip(key) => {
                let mut logs = Vec::new();
                let (j, fate) = router.judge_and_route(
                    st,
                    &opts.filter,
                    tables,
                    ingress,
                    data,
                    &info,
                    key,
                    now_ns,
                    *sent,
                    |_,
                     spec: &dataplane::classify::LogSpec,
                     meta: &dataplane::classify::PacketMeta| {
                        logs.push((spec.lead(), *meta));
                    },
                );
                let (rule, ct_state) = rule_and_state(
                    opts,
                    j.state,
                    j.judged.then_some(&j.meta),
                    j.filter,
                    (j.raw, j.input),
                );
                let logs: Vec<String> = logs
                    .iter()
                    .map(|(prefix, meta)| {
                        log_line(prefix, names, ingress, meta.out_port.into(), meta)
                    })
                    .collect();
                for l in &logs {
                    eprintln!("{l}");
                }
                line["rule"] = rule;
                line["ct_state"] = ct_state;
                line["log"] = logs.into();
                let local = j.verdict == Verdict::Local;
                if !matches!(fate, Fate::Dropped(..) | Fate::Reject { .. }) {
                    line["nat"] = j
                        .nat
                        .map_or(serde_json::Value::Null, |(b, dir)| nat_json(&b, dir));
                }
                match fate {
                    Fate::Send { port, pkt } if !local => {
                        sink.sum.forwarded += 1;
                        line["verdict"] = "forward".into();
                        line["egress"] = names[usize::from(port)].clone().into();
                        sent.insert(before, (port, pkt));
                    }
                    Fate::Send { port, pkt } => {
                        // An echo reply to the router's own address.
                        sink.sum.local += 1;
                        line["verdict"] = "local".into();
                        sent.push((port, pkt));
                    }
                    Fate::Queued => {
                        **queued += 1;
                        line["verdict"] = "queued".into();
                        if let dataplane::track::Route::Forward(h) = j.route {
                            line["egress"] = names[usize::from(h.port)].clone().into();
                        }
                    }
                    Fate::Dropped(_, DropReason::Fragment(FragError::Incomplete)) => {
                        for (_, frame) in sent.drain(..) {
                            sink.out.write(timestamp, &frame)?;
                        }
                        return Ok(Some((index, arrived, ingress)));
                    }
                    Fate::Dropped(_, why) => {
                        sink.drop(why);
                        line["reason"] = why.name().into();
                    }
                    Fate::Reject { pkt, with } => {
                        sink.drop(DropReason::RuleReject);
                        line["reason"] = DropReason::RuleReject.name().into();
                        let whole = (tables.whole, rest);
                        router.reject(st, ingress, &pkt, whole, with, now_ns, *sent);
                    }
                }
            }
            Arrival::Consumed => {
                sink.sum.local += 1;
                line["verdict"] = "consumed".into();
            }
            Arrival::Drop(why) => {
                sink.drop(why);
                line["reason"] = why.name().into();
            }
        }
        let mark = conn_mark(Some(&**tables), &arrived, now_ns);
        if mark != 0 {
            line["ct_mark"] = mark.into();
        }
        let out: Vec<serde_json::Value> = sent[before..]
            .iter()
            .map(|(port, _)| names[usize::from(*port)].clone().into())
            .collect();
        line["sent"] = out.into();
        for (_, frame) in sent.drain(..) {
            sink.out.write(timestamp, &frame)?;
        }
        sink.line(line)?;
        Ok(None)
    }
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
