//! Network address translation with netfilter's meaning: the `nat` table's rules, the choice of
//! a connection's translated tuple, and the rewriting of its packets.
//!
//! - [`rules`]: the compiled PREROUTING (DNAT) and POSTROUTING (SNAT, MASQUERADE) chains, judged
//!   once, on a connection's first packet, plus 1:1 (floating) address mappings.
//! - [`alloc`]: tuple selection as Linux's `nf_nat_core` does it (keep the original port when it
//!   is free and in range, else search), over the ports the worker owns.
//! - [`steer`]: which worker owns a NAT address's port, and which worker a packet belongs to, so
//!   that replies reach the worker holding the connection without any lock.
//! - [`mod@rewrite`]: per-packet rewriting of addresses, ports and ICMP identifiers with incremental
//!   checksums, and of the packet quoted inside ICMP errors.
//!
//! # The binding
//!
//! A connection's NAT decision is a [`Binding`]: the tuple of its first packet as it arrived
//! (`orig`) and the tuple replies carry on the wire (`reply`). Without NAT, `reply ==
//! orig.reply()`; with NAT, `reply` is the inverse of the translated original tuple. A
//! conntrack table stores both and finds a packet by either, which is exactly what it needs to
//! classify replies to a translated address; the same `reply` tuple is what the allocator's
//! `in_use` probe asks about, since two connections must never share a reply tuple.
//!
//! Invariants:
//! - `Binding::identity(k).is_identity()`; [`Binding::inverse`] is an involution.
//! - For a packet with the wire tuple `binding.translation(dir).0`, [`rewrite::rewrite`] makes
//!   its tuple `binding.translation(dir).1` and leaves every checksum that was correct correct
//!   (and every incorrect one incorrect).

pub mod alloc;
pub mod rewrite;
pub mod rules;
pub mod steer;

pub use alloc::{Addrs, Allocator, Manip, NatError, NatRange, Prepared};
pub use rewrite::{rewrite, RewriteError, V4Fields};
pub use rules::{NatChain, NatChoice, NatKind, NatRules, NatTarget, OneToOne};
pub use steer::Steering;

use crate::conntrack::Dir;
use crate::wire::{ip_proto, FlowKey};

/// The nat table of both families and the steering tables derived from it: part of a rule
/// set snapshot, read-only on the workers.
#[derive(Debug)]
pub struct NatTables {
    pub v4: Option<NatRules>,
    pub v6: Option<NatRules>,
    pub steering: Steering,
}

impl NatTables {
    /// The rules of `family`, if it has any.
    #[inline]
    pub fn rules(&self, family: crate::wire::Family) -> Option<&NatRules> {
        match family {
            crate::wire::Family::V4 => self.v4.as_ref(),
            crate::wire::Family::V6 => self.v6.as_ref(),
        }
    }
}

/// A connection's translation: its original tuple and the tuple its replies carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The first packet's tuple, as it arrived.
    pub orig: FlowKey,
    /// The tuple of replies as they arrive (the inverse of the translated original tuple).
    pub reply: FlowKey,
}

impl Binding {
    /// No translation. A TCP or UDP tuple's reply (the ends swapped) is made here in line,
    /// the others' by [`FlowKey::reply`] (every new connection of a nat table starts from
    /// this binding; the call was not inlined).
    #[inline(always)]
    pub fn identity(orig: FlowKey) -> Binding {
        let reply = if matches!(orig.proto, ip_proto::TCP | ip_proto::UDP) {
            FlowKey {
                src: orig.dst,
                dst: orig.src,
                src_port: orig.dst_port,
                dst_port: orig.src_port,
                ..orig
            }
        } else {
            orig.reply()
        };
        Binding { orig, reply }
    }

    /// [`Binding::identity`] made where it stays: both tuples written as `orig`, then a TCP
    /// or UDP reply's ends swapped in place (built whole and moved, the 80 bytes went
    /// through two temporaries on the stack).
    #[inline(always)]
    pub fn identity_in(slot: &mut Option<(Binding, Dir)>, orig: FlowKey) -> &mut Binding {
        // The TCP/UDP reply first, in one straight-line value (no join of two paths to copy
        // from); another protocol's reply is made again over it.
        let (b, _) = slot.insert((
            Binding {
                orig,
                reply: FlowKey {
                    src: orig.dst,
                    dst: orig.src,
                    src_port: orig.dst_port,
                    dst_port: orig.src_port,
                    ..orig
                },
            },
            Dir::Orig,
        ));
        if !matches!(orig.proto, ip_proto::TCP | ip_proto::UDP) {
            b.reply = orig.reply();
        }
        b
    }

    /// Whether neither direction is translated.
    #[inline]
    pub fn is_identity(&self) -> bool {
        self.reply == self.orig.reply()
    }

    /// Whether the destination side is translated (a DNAT: Linux's `IPS_DST_NAT`, what
    /// `--ctstate DNAT` tests): the original direction's destination address, or its port
    /// (ICMP aside, whose key ports are the identifier and the type), changed.
    #[inline]
    pub fn translates_destination(&self) -> bool {
        let t = self.translated_orig();
        t.dst != self.orig.dst || (!self.orig.is_icmp() && t.dst_port != self.orig.dst_port)
    }

    /// The original direction's tuple after translation.
    #[inline]
    pub fn translated_orig(&self) -> FlowKey {
        self.reply.reply()
    }

    /// The wire tuple of a `dir` packet before and after translation.
    #[inline]
    pub fn translation(&self, dir: Dir) -> (FlowKey, FlowKey) {
        match dir {
            Dir::Orig => (self.orig, self.reply.reply()),
            Dir::Reply => (self.reply, self.orig.reply()),
        }
    }

    /// The binding that undoes this one: its original tuple is this one's translated original.
    #[inline]
    pub fn inverse(&self) -> Binding {
        Binding {
            orig: self.reply.reply(),
            reply: self.orig.reply(),
        }
    }

    /// Whether the source side (address or port) of `dir` packets is rewritten (Linux's
    /// `IPS_SRC_NAT` for `Orig`, `IPS_DST_NAT` seen from the reply for `Reply`). An ICMP
    /// identifier belongs to neither side: it counts for neither.
    #[inline]
    pub fn rewrites_src(&self, dir: Dir) -> bool {
        let (a, b) = self.translation(dir);
        a.src != b.src || (!a.is_icmp() && a.src_port != b.src_port)
    }

    /// Whether the destination side of `dir` packets is rewritten.
    #[inline]
    pub fn rewrites_dst(&self, dir: Dir) -> bool {
        let (a, b) = self.translation(dir);
        a.dst != b.dst || (!a.is_icmp() && a.dst_port != b.dst_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn snat_binding_directions() {
        let orig = FlowKey::new_v4(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(198, 51, 100, 7),
            6,
            40000,
            80,
        );
        let translated = FlowKey::new_v4(
            Ipv4Addr::new(203, 0, 113, 1),
            Ipv4Addr::new(198, 51, 100, 7),
            6,
            50000,
            80,
        );
        let b = Binding {
            orig,
            reply: translated.reply(),
        };
        assert!(!b.is_identity());
        assert_eq!(b.translation(Dir::Orig), (orig, translated));
        assert_eq!(
            b.translation(Dir::Reply),
            (translated.reply(), orig.reply())
        );
        assert!(b.rewrites_src(Dir::Orig) && !b.rewrites_dst(Dir::Orig));
        assert!(b.rewrites_dst(Dir::Reply) && !b.rewrites_src(Dir::Reply));
        assert_eq!(b.inverse().inverse(), b);
        assert_eq!(b.inverse().translation(Dir::Orig), (translated, orig));
        assert!(Binding::identity(orig).is_identity());
    }

    /// The identity made in place is the identity, for every protocol (TCP and UDP swap their
    /// ends in line, the others go through `FlowKey::reply`), over a slot empty or holding
    /// another binding.
    #[test]
    fn identity_in_place() {
        let v4 = |proto, sport, dport| {
            FlowKey::new_v4(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(8, 8, 8, 8),
                proto,
                sport,
                dport,
            )
        };
        let keys = [
            v4(ip_proto::TCP, 50000, 80),
            v4(ip_proto::UDP, 5353, 53),
            v4(ip_proto::ICMP, 0x1234, 0x0800),
            v4(47, 0, 0),
            FlowKey::new_v6(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                ip_proto::ICMPV6,
                7,
                0x8000,
            ),
        ];
        for k in keys {
            let other = Binding::identity(keys[0]);
            for start in [None, Some((other, Dir::Reply))] {
                let mut slot = start;
                let b = *Binding::identity_in(&mut slot, k);
                assert_eq!(b, Binding::identity(k), "{k:?}");
                assert_eq!(slot, Some((Binding::identity(k), Dir::Orig)));
                assert!(b.is_identity());
            }
        }
    }
}
