//! FAST PATH: no allocation, lock, syscall or log.
//!
//! The per-packet stages, written over plain byte slices so the same code runs in a worker on
//! mbufs, in `rampart replay` over a pcap, and in unit tests.
//!
//! The pipeline is a filtering bridge: parse (malformed frames dropped with their reason), apply
//! the non-IP policies, judge IP packets by the rule set of their family ([`Bridge::judge`]), and
//! forward to the ingress port's peer.

use crate::classify::{LogSpec, PacketMeta};
use crate::filter::{packet_meta, Filter, FilterVerdict};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{self, PacketInfo, L3};

/// Everything known about one judged packet.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    pub info: Option<PacketInfo>,
    /// What the filter looked at (IP packets the bridge would forward).
    pub meta: Option<PacketMeta>,
    pub filter: FilterVerdict,
}

/// What to do with a class of frames the bridge does not filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Forward,
    Drop,
}

/// The most ports a pipeline handles (DPDK's default RTE_MAX_ETHPORTS).
pub const MAX_PORTS: usize = 32;

/// Bridge mode: port pairs; IP frames that parse are forwarded to the peer port.
#[derive(Clone, Debug)]
pub struct Bridge {
    peer: [Option<u16>; MAX_PORTS],
    arp: Policy,
    non_ip: Policy,
}

impl Bridge {
    /// A bridge over `pairs` of port indexes. Each port may appear in one pair only; the caller
    /// (configuration) checks that and the indexes' range.
    pub fn new(pairs: &[(u16, u16)], arp: Policy, non_ip: Policy) -> Bridge {
        let mut peer = [None; MAX_PORTS];
        for &(a, b) in pairs {
            peer[usize::from(a)] = Some(b);
            peer[usize::from(b)] = Some(a);
        }
        Bridge { peer, arp, non_ip }
    }

    /// The peer of `port`, if it is paired.
    pub fn peer(&self, port: u16) -> Option<u16> {
        self.peer.get(usize::from(port)).copied().flatten()
    }

    /// The verdict alone for one frame that arrived on port index `ingress` (what a worker
    /// needs; the same decision as [`Bridge::process`]).
    #[inline(always)]
    pub fn verdict(&self, ingress: u16, frame: &[u8]) -> Verdict {
        self.process(ingress, frame).0
    }

    /// Judges one frame by the bridge and then by `filter`; `on_log` is called for each LOG rule
    /// the packet passes (rule index and its spec).
    #[inline]
    pub fn judge(
        &self,
        filter: &Filter,
        ingress: u16,
        frame: &[u8],
        on_log: impl FnMut(u32, &LogSpec),
    ) -> Outcome {
        let (verdict, info) = self.process(ingress, frame);
        let mut out = Outcome {
            verdict,
            info,
            meta: None,
            filter: FilterVerdict::Unfiltered,
        };
        let (Verdict::Forward(egress), Some(info)) = (verdict, info) else {
            return out;
        };
        let Some(meta) = packet_meta(frame, &info, ingress, egress) else {
            return out;
        };
        out.meta = Some(meta);
        out.filter = filter.judge(&meta, on_log);
        out.verdict = match out.filter {
            FilterVerdict::Unfiltered | FilterVerdict::Accept { .. } => verdict,
            FilterVerdict::Drop { .. } => Verdict::Drop(DropReason::RuleDrop),
            FilterVerdict::Reject { .. } => Verdict::Drop(DropReason::RuleReject),
        };
        out
    }

    /// Judges one frame that arrived on port index `ingress` by the bridge alone.
    #[inline]
    pub fn process(&self, ingress: u16, frame: &[u8]) -> (Verdict, Option<PacketInfo>) {
        let info = match wire::parse_frame(frame) {
            Ok(info) => info,
            Err(e) => return (Verdict::Drop(DropReason::Parse(e)), None),
        };
        let policy = match info.l3 {
            L3::Ipv4 | L3::Ipv6 => Policy::Forward,
            L3::Arp => self.arp,
            L3::Other => self.non_ip,
        };
        let verdict = match (policy, self.peer(ingress)) {
            (Policy::Drop, _) if info.l3 == L3::Arp => Verdict::Drop(DropReason::ArpPolicy),
            (Policy::Drop, _) => Verdict::Drop(DropReason::NonIpPolicy),
            (Policy::Forward, Some(out)) => Verdict::Forward(out),
            (Policy::Forward, None) => Verdict::Drop(DropReason::NoPeer),
        };
        (verdict, Some(info))
    }
}
