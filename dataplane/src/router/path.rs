//! FAST PATH: no allocation, lock, syscall or log (the ICMP errors and ARP/NDP it may send are
//! the router's cold paths, written into its preallocated scratch buffers).
//!
//! One packet's way through router mode, the sequence in the [`crate::router`] module docs, in
//! two steps so that the caller may act between them: the worker hands a packet to the worker
//! owning its connection after [`Router::arrive`] (neighbour answers are learnt by every
//! worker, so they are copied first), and `rampart replay` runs both steps back to back. Both
//! run exactly this code, over owning mbufs in the worker and byte vectors in replay.

use super::{Emit, Forwarded, L2Action, Router, RouterDrop, RouterState};
use crate::classify::{LogSpec, PacketMeta, RejectWith};
use crate::conntrack::Hint;
use crate::filter::{Filter, FilterVerdict};
use crate::route::icmp::RouterError;
use crate::route::NextHop;
use crate::track::{
    judge_lean, judge_resumed, judge_tracked, Forwarding, IpJudgement, Route, Tables,
};
use crate::verdict::{DropReason, Verdict};
use crate::wire::{Family, FlowKey, Fragment, IpAddr128, PacketInfo};

/// What the first look at a received frame made of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// An IP packet with this tuple, from an acceptable source: continue with
    /// [`Router::judge_and_route`].
    Ip(FlowKey),
    /// Handled here (ARP, neighbour discovery): free the frame.
    Consumed,
    /// Dropped; the caller counts the reason and frees the frame.
    Drop(DropReason),
}

/// The fate of an IP packet after the stateful stage and the routing decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate<P> {
    /// Transmit `pkt` on `port` (translated, TTL decremented, Ethernet addresses rewritten).
    Send { port: u16, pkt: P },
    /// Held by the neighbour table until its next hop resolves (a request went out when the
    /// resolution started).
    Queued,
    /// Dropped: the caller counts the reason and frees the packet. Any ICMP error the router
    /// owed the sender (time exceeded, unreachable, fragmentation needed, a REJECT's
    /// `icmp-*`) has gone out through the [`Emit`] sink.
    Dropped(P, DropReason),
    /// Dropped by a REJECT whose answer comes from the rejected packet's destination rather
    /// than from the router (a TCP reset, as Linux's `nf_send_reset`, or a reject type with no
    /// ICMP code for this family), or by any REJECT of a first fragment (a datagram judged
    /// whole, its TTL already decremented when forwarded), whose answer is about the
    /// reassembled datagram: the caller counts `rule_reject` and answers with
    /// [`Router::reject`](super::Router::reject).
    Reject { pkt: P, with: RejectWith },
}

/// Router mode's forwarding decisions for the stateful stage.
struct Routed<'a, P, E> {
    router: &'a Router,
    st: &'a mut RouterState<P>,
    emit: &'a mut E,
    ingress: u16,
    now_ns: u64,
    /// The next hop of the last decision that was out of a port: the lean path's answer
    /// ([`crate::track::Lean`]) names the port only, and a packet it forwards was routed
    /// exactly once, there.
    hop: NextHop,
    /// Whether `check` passed for the last decision (`route` clears it): the forwarding
    /// checks then need not run again on the translated packet.
    checked: bool,
}

impl<'a, P, E> Routed<'a, P, E> {
    /// The router's side of one packet's judgement, before any routing decision.
    #[inline(always)]
    fn new(
        router: &'a Router,
        st: &'a mut RouterState<P>,
        emit: &'a mut E,
        ingress: u16,
        now_ns: u64,
    ) -> Self {
        Routed {
            router,
            st,
            emit,
            ingress,
            now_ns,
            hop: NO_HOP,
            checked: false,
        }
    }
}

impl<P, E: Emit> Forwarding for Routed<'_, P, E> {
    const HOPS_TAKEN: u8 = 1;

    #[inline]
    fn route(&mut self, _ingress: u16, key: &FlowKey) -> Route {
        self.checked = false;
        match self.router.decide(key.family, &key.dst) {
            super::Egress::Local => Route::Local,
            super::Egress::Forward(h) => {
                self.hop = h;
                Route::Forward(h)
            }
            super::Egress::Unreachable | super::Egress::Martian => Route::Unreachable,
        }
    }

    #[inline]
    fn masquerade_source(&mut self, port: u16, key: &FlowKey) -> Option<IpAddr128> {
        self.router.source_for(port, key.family, &key.dst)
    }

    #[inline]
    fn redirect_destination(&self, ingress: u16, key: &FlowKey) -> Option<IpAddr128> {
        self.router.redirect_to(ingress, key.family, &key.dst)
    }

    #[inline]
    fn port_mtu(&self, port: u16) -> u32 {
        self.router.port(port).map_or(super::DEFAULT_MTU, |p| p.mtu)
    }

    /// The route back to the source, as `tcpmss_reverse_mtu` looks it up (by destination
    /// alone): its port's MTU; no route (or a martian), no limit.
    #[inline]
    fn reverse_mtu(&self, family: Family, src: &IpAddr128, _ingress: u16) -> u32 {
        match self.router.decide(family, src) {
            super::Egress::Forward(h) => self.port_mtu(u16::from(h.port)),
            _ => u32::MAX,
        }
    }

    #[inline]
    fn check(&mut self, frame: &[u8], info: &PacketInfo, hop: &NextHop) -> Result<(), DropReason> {
        if self.router.forward_checks_pass_v4(frame, info, hop) {
            self.checked = true;
            return Ok(());
        }
        self.router
            .check_forward(
                self.st,
                self.ingress,
                frame,
                info,
                hop,
                self.now_ns,
                self.emit,
            )
            .map_err(DropReason::Router)?;
        self.checked = true;
        Ok(())
    }
}

impl Router {
    /// The first step for a frame received on `ingress` (parsed as `info`):
    /// [`Router::input_l2`] (frames not for us, tagged frames, ARP and neighbour discovery:
    /// answered and learnt, packets waiting for the address learnt go to `release` ready to
    /// send on the port given), then the martian source check, before any NAT.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn arrive<P: AsMut<[u8]>>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        frame: &[u8],
        info: &PacketInfo,
        now_ns: u64,
        emit: &mut impl Emit,
        release: impl FnMut(u16, P),
    ) -> Arrival {
        match self.input_l2(st, ingress, frame, info, now_ns, emit, release) {
            L2Action::Ip => {}
            L2Action::Consumed => return Arrival::Consumed,
            L2Action::Drop(why) => return Arrival::Drop(DropReason::Router(why)),
        }
        let Some(key) = info.flow else {
            return Arrival::Drop(DropReason::Router(RouterDrop::NonIp));
        };
        if !self.accept_source(key.family, &key.src, false) {
            self.note_martian(st);
            return Arrival::Drop(DropReason::Router(RouterDrop::Martian));
        }
        Arrival::Ip(key)
    }

    /// The second step for an IP packet [`Router::arrive`] let through: the stateful stage
    /// (reassembly, raw, conntrack, nat PREROUTING, the routing decision, the forwarding
    /// checks, filter FORWARD or INPUT, nat POSTROUTING, confirmation), the translation, then
    /// forwarding by the next hop, local delivery (echo replies), or the drop with the ICMP
    /// error a router owes (no route, a REJECT's `icmp-*` from the router's address). Returns
    /// the judgement (for rule counters and the verdict log) and the packet's fate.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn judge_and_route<P: AsRef<[u8]> + AsMut<[u8]>, E: Emit>(
        &self,
        st: &mut RouterState<P>,
        filter: &Filter,
        tables: &mut Tables,
        ingress: u16,
        mut pkt: P,
        info: &PacketInfo,
        key: FlowKey,
        now_ns: u64,
        emit: &mut E,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> (IpJudgement, Fate<P>) {
        let (j, checked) = {
            let mut fwd = Routed::new(self, &mut *st, &mut *emit, ingress, now_ns);
            let j = judge_tracked(
                filter,
                tables,
                pkt.as_mut(),
                info,
                key,
                ingress,
                &mut fwd,
                now_ns,
                on_log,
            );
            (j, fwd.checked)
        };
        let fate = self.translated_fate(
            st, ingress, pkt, info, key.family, &j, checked, now_ns, emit,
        );
        (j, fate)
    }

    /// [`Router::judge_and_route`] for a frame the worker's prefetch pass parsed (`info`, by
    /// reference, as [`crate::track::prefetch_burst`] left it) with `hint`, what that pass
    /// learnt of its tuple ([`crate::pipeline::Bridge::judge_verdict_parsed`]'s contract: this
    /// frame's; `None` for a frame the pass did not see): the lean path first
    /// ([`judge_lean`]: an ESTABLISHED packet with a cached verdict is tracked on the hint and
    /// translated from its entry, no judgement built), the rest as `judge_and_route` judges
    /// it. The same fate, tables and ICMP errors as `judge_and_route`; instead of the
    /// judgement, the filter verdict whose rule counts the packet (`Unfiltered`: none).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn judge_and_route_hinted<P: AsRef<[u8]> + AsMut<[u8]>, E: Emit>(
        &self,
        st: &mut RouterState<P>,
        filter: &Filter,
        tables: &mut Tables,
        ingress: u16,
        mut pkt: P,
        info: &PacketInfo,
        key: &FlowKey,
        hint: Option<Hint>,
        now_ns: u64,
        emit: &mut E,
        on_log: impl FnMut(u32, &LogSpec, &PacketMeta),
    ) -> (FilterVerdict, Fate<P>) {
        let hint = match hint {
            Some(h) => h,
            None => tables.ct.hint_of(key),
        };
        let mut fwd = Routed::new(self, &mut *st, &mut *emit, ingress, now_ns);
        let resume = match judge_lean(
            filter,
            tables,
            pkt.as_ref(),
            info,
            key,
            hint,
            ingress,
            &mut fwd,
            now_ns,
        ) {
            Ok(l) => {
                // Only a packet routed out of a port has a lean answer: `fwd.hop` is its hop.
                let hop = fwd.hop;
                let route = Route::Forward(hop);
                let checked = fwd.checked;
                let verdict = crate::pipeline::lean_translate(tables, pkt.as_mut(), info, &l);
                if let (Verdict::Forward(_), true) = (verdict, checked) {
                    // `judged`'s first case, taken here.
                    let fwd = self.forward_checked(st, pkt, info, hop, now_ns, emit);
                    return (l.filter, fwd.into());
                }
                // (Never `no_route`, the only case that reads the translated destination.)
                let fate = self.judged(
                    st,
                    ingress,
                    pkt,
                    info,
                    key.family,
                    &key.dst,
                    (verdict, l.filter, route),
                    None,
                    checked,
                    now_ns,
                    emit,
                );
                return (l.filter, fate);
            }
            Err(r) => r,
        };
        let j = judge_resumed(
            filter,
            tables,
            pkt.as_mut(),
            info,
            *key,
            ingress,
            &mut fwd,
            now_ns,
            on_log,
            resume,
        );
        let checked = fwd.checked;
        let fate = self.translated_fate(
            st, ingress, pkt, info, key.family, &j, checked, now_ns, emit,
        );
        (j.counted(), fate)
    }

    /// A judged packet's translation (`j`'s, in place) and then its fate ([`Router::judged`],
    /// with the destination the routing decision saw); `family` is the packet's, `checked` as
    /// there.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn translated_fate<P: AsRef<[u8]> + AsMut<[u8]>, E: Emit>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        mut pkt: P,
        info: &PacketInfo,
        family: Family,
        j: &IpJudgement,
        checked: bool,
        now_ns: u64,
        emit: &mut E,
    ) -> Fate<P> {
        let verdict = crate::pipeline::translate(pkt.as_mut(), info, j);
        self.judged(
            st,
            ingress,
            pkt,
            info,
            family,
            &j.meta.key.dst,
            (verdict, j.filter, j.route),
            // A packet delivered to us translated: our answer goes back as its reply.
            match &j.nat {
                Some((b, crate::conntrack::Dir::Orig)) => Some(b),
                _ => None,
            },
            checked,
            now_ns,
            emit,
        )
    }

    /// The packet's fate once judged and translated: `verdict` (after the translation),
    /// the filter's verdict and the routing decision; `dst` is the destination the routing
    /// decision saw (after nat PREROUTING), read for a `no_route` drop only; `back`: the
    /// binding that translated a packet delivered to us (our answer goes back by it); `checked`: the
    /// forwarding checks passed for that decision, on the packet as it arrived.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn judged<P: AsRef<[u8]> + AsMut<[u8]>, E: Emit>(
        &self,
        st: &mut RouterState<P>,
        ingress: u16,
        mut pkt: P,
        info: &PacketInfo,
        family: Family,
        dst: &IpAddr128,
        (verdict, filter, route): (Verdict, FilterVerdict, Route),
        back: Option<&crate::nat::Binding>,
        checked: bool,
        now_ns: u64,
        emit: &mut E,
    ) -> Fate<P> {
        let fwd = match (verdict, route) {
            (Verdict::Forward(_), Route::Forward(hop)) if checked => {
                self.forward_checked(st, pkt, info, hop, now_ns, emit)
            }
            (Verdict::Forward(_), Route::Forward(hop)) => {
                self.forward(st, ingress, pkt, info, hop, now_ns, emit)
            }
            (Verdict::Local, _) => self.local_ip_as(st, ingress, pkt, info, back, now_ns, emit),
            (Verdict::Drop(DropReason::NoRoute), _) => {
                if matches!(self.decide(family, dst), super::Egress::Martian) {
                    self.note_martian(st);
                    return Fate::Dropped(pkt, DropReason::Router(RouterDrop::Martian));
                }
                self.unreachable(st, ingress, pkt.as_ref(), info, now_ns, emit);
                return Fate::Dropped(pkt, DropReason::NoRoute);
            }
            (Verdict::Drop(why), _) => {
                if let (DropReason::RuleReject, FilterVerdict::Reject { with, .. }) = (why, filter)
                {
                    let code = match family {
                        Family::V4 => crate::reject::icmp_code_v4(with),
                        Family::V6 => crate::reject::icmp_code_v6(with),
                    };
                    match (with, code) {
                        (RejectWith::TcpReset, _) | (_, None) => {
                            return Fate::Reject { pkt, with };
                        }
                        (_, Some(_)) if matches!(info.frag, Fragment::First { .. }) => {
                            // A datagram judged whole: its error quotes the reassembled
                            // datagram, which the caller has the other fragments of.
                            if matches!(route, Route::Forward(_)) {
                                let _ = crate::route::icmp::decrement_ttl(pkt.as_mut(), info);
                            }
                            return Fate::Reject { pkt, with };
                        }
                        (_, Some(code)) => {
                            // The router's own error, routed back to the sender from the
                            // address of the port it leaves by, rate-limited (Linux's
                            // icmp_send). A forwarded packet is quoted as FORWARD saw it:
                            // ip_forward decrements the TTL before the hook.
                            if matches!(route, Route::Forward(_)) {
                                let _ = crate::route::icmp::decrement_ttl(pkt.as_mut(), info);
                            }
                            self.send_error(
                                st,
                                ingress,
                                pkt.as_ref(),
                                info,
                                RouterError::Rejected { code },
                                now_ns,
                                emit,
                            );
                        }
                    }
                }
                return Fate::Dropped(pkt, why);
            }
            (Verdict::Forward(_), _) => return Fate::Dropped(pkt, DropReason::NoRoute),
        };
        fwd.into()
    }
}

impl<P> From<Forwarded<P>> for Fate<P> {
    #[inline(always)]
    fn from(fwd: Forwarded<P>) -> Fate<P> {
        match fwd {
            Forwarded::Send { port, pkt } => Fate::Send { port, pkt },
            Forwarded::Queued => Fate::Queued,
            Forwarded::Dropped(pkt, why) => Fate::Dropped(pkt, DropReason::Router(why)),
        }
    }
}

/// [`Routed::hop`] before any decision.
const NO_HOP: NextHop = NextHop {
    port: 0,
    gateway: None,
};
