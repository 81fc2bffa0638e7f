//! FAST PATH: no allocation, lock, syscall or log.
//!
//! What becomes of a packet: forwarded out of a port, or dropped for a named reason. Every drop
//! reason indexes a per-worker counter, so each lost packet is accounted for.

use crate::conntrack::frag::FragError;
use crate::nat::{NatError, RewriteError};
use crate::router::RouterDrop;
use crate::wire::ParseError;

/// Why a packet was dropped. Parse failures keep the parser's own reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Malformed or truncated: the parser's reason.
    Parse(ParseError),
    /// A non-IP, non-ARP frame while the bridge's `non_ip` policy is `drop`.
    NonIpPolicy,
    /// An ARP frame while the bridge's `arp` policy is `drop`.
    ArpPolicy,
    /// The ingress port has no peer to forward to.
    NoPeer,
    /// A multi-segment frame that could not be made contiguous.
    Unlinearizable,
    /// A DROP rule (or a chain policy of DROP) matched.
    RuleDrop,
    /// A REJECT rule matched.
    RuleReject,
    /// The rules accepted a new connection but the conntrack table is full and nothing could be
    /// evicted (Linux's `nf_conntrack: table full, dropping packet`).
    CtFull,
    /// The ring to the worker that owns the packet's connection was full.
    HandoffFull,
    /// An IP fragment that virtual reassembly refuses: the fragment table's reason.
    Fragment(FragError),
    /// Router mode: no route to the destination.
    NoRoute,
    /// A new connection NAT could not translate (ports exhausted, a clash, ...): the
    /// allocator's reason. Existing connections are unaffected.
    Nat(NatError),
    /// A translated connection's packet that could not be rewritten (truncated, a bad quote
    /// in an ICMP error).
    Rewrite(RewriteError),
    /// Router mode: the router stage's reason (not for us, TTL expired, no neighbour, ...).
    Router(RouterDrop),
}

/// Drop reasons that are not parse errors, in index order after the parse errors.
const POLICY: [DropReason; 9] = [
    DropReason::NonIpPolicy,
    DropReason::ArpPolicy,
    DropReason::NoPeer,
    DropReason::Unlinearizable,
    DropReason::RuleDrop,
    DropReason::RuleReject,
    DropReason::CtFull,
    DropReason::HandoffFull,
    DropReason::NoRoute,
];

/// Index of the first fragment reason.
const FRAG_BASE: usize = ParseError::COUNT + POLICY.len();
/// Index of the first NAT reason.
const NAT_BASE: usize = FRAG_BASE + FragError::COUNT;
/// Index of the first rewrite reason.
const REWRITE_BASE: usize = NAT_BASE + NatError::COUNT;
/// Index of the first router reason.
const ROUTER_BASE: usize = REWRITE_BASE + RewriteError::COUNT;

impl DropReason {
    /// Number of distinct reasons (the length of a drop counter array).
    pub const COUNT: usize = ROUTER_BASE + RouterDrop::COUNT;

    /// Dense index into a drop counter array.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            DropReason::Parse(e) => e.index(),
            DropReason::NonIpPolicy => ParseError::COUNT,
            DropReason::ArpPolicy => ParseError::COUNT + 1,
            DropReason::NoPeer => ParseError::COUNT + 2,
            DropReason::Unlinearizable => ParseError::COUNT + 3,
            DropReason::RuleDrop => ParseError::COUNT + 4,
            DropReason::RuleReject => ParseError::COUNT + 5,
            DropReason::CtFull => ParseError::COUNT + 6,
            DropReason::HandoffFull => ParseError::COUNT + 7,
            DropReason::NoRoute => ParseError::COUNT + 8,
            DropReason::Fragment(e) => FRAG_BASE + e.index(),
            DropReason::Nat(e) => NAT_BASE + e.index(),
            DropReason::Rewrite(e) => REWRITE_BASE + e.index(),
            DropReason::Router(e) => ROUTER_BASE + e as usize,
        }
    }

    /// The reason at `index` (inverse of [`DropReason::index`]).
    pub fn from_index(index: usize) -> Option<DropReason> {
        if index < ParseError::COUNT {
            Some(DropReason::Parse(ParseError::ALL[index]))
        } else if index < FRAG_BASE {
            POLICY.get(index - ParseError::COUNT).copied()
        } else if index < NAT_BASE {
            FragError::ALL
                .get(index - FRAG_BASE)
                .copied()
                .map(DropReason::Fragment)
        } else if index < REWRITE_BASE {
            NatError::ALL
                .get(index - NAT_BASE)
                .copied()
                .map(DropReason::Nat)
        } else if index < ROUTER_BASE {
            RewriteError::ALL
                .get(index - REWRITE_BASE)
                .copied()
                .map(DropReason::Rewrite)
        } else {
            RouterDrop::ALL
                .get(index - ROUTER_BASE)
                .copied()
                .map(DropReason::Router)
        }
    }

    /// Every reason, in index order.
    pub fn all() -> impl Iterator<Item = DropReason> {
        (0..Self::COUNT).filter_map(Self::from_index)
    }

    /// A stable snake_case name, used in logs, verdict files and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Parse(e) => e.name(),
            DropReason::NonIpPolicy => "non_ip_policy",
            DropReason::ArpPolicy => "arp_policy",
            DropReason::NoPeer => "no_peer",
            DropReason::Unlinearizable => "unlinearizable",
            DropReason::RuleDrop => "rule_drop",
            DropReason::RuleReject => "rule_reject",
            DropReason::CtFull => "ct_full",
            DropReason::HandoffFull => "handoff_full",
            DropReason::Fragment(e) => e.name(),
            DropReason::NoRoute => "no_route",
            DropReason::Nat(e) => e.name(),
            DropReason::Rewrite(e) => e.name(),
            DropReason::Router(RouterDrop::NoRoute) => "router_no_route",
            DropReason::Router(e) => e.name(),
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send out of the port with this index (index into the configured port list).
    Forward(u16),
    /// Router mode: addressed to Rampart itself and accepted by the filter INPUT chain.
    Local,
    Drop(DropReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_dense_and_invertible() {
        let all: Vec<_> = DropReason::all().collect();
        assert_eq!(all.len(), DropReason::COUNT);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(DropReason::from_index(i), Some(*r));
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
        let mut names: Vec<_> = all.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT, "names are unique");
    }
}
