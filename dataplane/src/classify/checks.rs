//! Conditions a flat rule may carry besides the classifier's fields ([`FlatRule::checks`]):
//! header fields (TTL, length, TOS), the Ethernet header (packet type, source MAC), TCP
//! options, and `-m limit`'s token bucket.
//!
//! The classifiers never see them: [`RuleSet::judge`] asks the classifier for the first rule
//! whose fields match, then checks that rule's conditions on the packet's bytes ([`Wire`]);
//! when one fails the walk goes on from the next rule. A rule without checks costs one test of
//! its `checks` field per step. Every check but some connection matches ([`Check::per_packet`])
//! is a per-packet condition, so a rule set with one is not cacheable
//! ([`RuleSet::cacheable`]).
//!
//! [`FlatRule::checks`]: super::FlatRule::checks
//! [`RuleSet::judge`]: super::RuleSet::judge
//! [`RuleSet::cacheable`]: super::RuleSet::cacheable

use super::PacketMeta;
use crate::wire::{ip_proto, Family};
use std::sync::atomic::{AtomicU64, Ordering};

/// The packet's bytes, for the checks that read them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wire<'a> {
    /// The whole frame, from its Ethernet header.
    pub frame: &'a [u8],
    /// Offset of the IP header in the frame.
    pub l3: u16,
    /// Offset of the L4 header, 0 when there is none.
    pub l4: u16,
    /// The packet's time in nanoseconds (any epoch, the same for every worker): what a limit
    /// bucket refills by.
    pub now_ns: u64,
    /// What forwarding has taken off the TTL (hop limit) in the chain judging the packet, not
    /// yet written to the frame: 1 in a router's FORWARD chain (Linux's `ip_forward` and
    /// `ip6_forward` decrement before the FORWARD hook), else 0.
    pub hops_taken: u8,
    /// The length of the whole datagram whose first fragment this is, for `-m length`
    /// (reassembly comes before every table); 0: the packet's own.
    pub whole_len: u16,
    /// The packet's connection, for the connection matches ([`super::ctmatch`]): given only
    /// to rule sets that have them ([`RuleSet::reads_conn`](super::RuleSet::reads_conn)).
    pub conn: Option<&'a super::ctmatch::CtView>,
    /// The packet's connection's counts, for `-m connlimit` ([`super::connlimit`]): given
    /// with [`Wire::conn`], by the path that will confirm or release what it reserves.
    pub count: Option<&'a super::connlimit::Counting>,
}

impl<'a> Wire<'a> {
    /// No bytes: every check that reads the packet fails (the nat table, which is judged
    /// without them, refuses such checks).
    pub const NONE: Wire<'static> = Wire {
        frame: &[],
        l3: 0,
        l4: 0,
        now_ns: 0,
        hops_taken: 0,
        whole_len: 0,
        conn: None,
        count: None,
    };

    /// The view of a parsed frame.
    #[inline]
    pub fn of(frame: &'a [u8], info: &crate::wire::PacketInfo, now_ns: u64) -> Wire<'a> {
        Wire {
            frame,
            l3: info.l3_offset,
            l4: info.l4_offset,
            now_ns,
            hops_taken: 0,
            whole_len: 0,
            conn: None,
            count: None,
        }
    }

    #[inline]
    fn byte(&self, at: usize) -> Option<u8> {
        self.frame.get(at).copied()
    }

    #[inline]
    fn u16_at(&self, at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte(at)?, self.byte(at + 1)?]))
    }
}

/// How `-m ttl` / `-m hl` compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    Eq,
    Lt,
    Gt,
}

/// Linux's `skb->pkt_type` for a received frame, from its destination MAC (`-m pkttype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PktType {
    /// `PACKET_HOST` (`unicast`, `host`): neither broadcast nor multicast. A bridged frame
    /// for another host is `PACKET_OTHERHOST` on the wire, which the bridge's netfilter hook
    /// turns into `PACKET_HOST` before iptables sees it.
    Unicast,
    /// `ff:ff:ff:ff:ff:ff`.
    Broadcast,
    /// The group bit set, not broadcast.
    Multicast,
}

/// One condition; each holds `invert` negated (`!`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// `-m ttl` (IPv4 TTL) / `-m hl` (IPv6 hop limit).
    Hops { cmp: Cmp, value: u8, invert: bool },
    /// `-m length`: IPv4 total length, IPv6 payload length + 40 (in 16 bits, as Linux adds),
    /// in `lo..=hi`.
    Length { lo: u16, hi: u16, invert: bool },
    /// `(TOS or traffic class) & mask == value`: `-m tos`, `-m dscp` (mask `0xfc`), `-m ecn
    /// --ecn-ip-ect` (mask 3).
    Tos { value: u8, mask: u8, invert: bool },
    /// `-m pkttype`.
    PktType { ty: PktType, invert: bool },
    /// `-m mac --mac-source`.
    MacSource { mac: [u8; 6], invert: bool },
    /// `-m tcpmss --mss lo:hi`: the first MSS option of a TCP header; a header without one
    /// matches only inverted.
    TcpMss { lo: u16, hi: u16, invert: bool },
    /// `--tcp-option kind`: a TCP header with an option of that kind.
    TcpOption { kind: u8, invert: bool },
    /// ip6tables' `-m rt`: the packet has a Routing header (found as Linux's
    /// `ipv6_find_hdr` finds it: not past a non-first fragment's Fragment header) whose type,
    /// segments left and length (bytes, 8 + 8 * Hdr Ext Len) hold; `invert` per field.
    Ipv6Rt {
        rt_type: Option<(u8, bool)>,
        segs_left: (u32, u32, bool),
        len: Option<(u32, bool)>,
    },
    /// ip6tables' extension header matches and the AH / ESP SPI ([`super::ipv6ext`]).
    Ext(std::sync::Arc<super::ipv6ext::ExtMatch>),
    /// `-m recent`: its named list ([`super::recent`]), shared with every rule naming it.
    Recent(std::sync::Arc<super::recent::RecentMatch>),
    /// `-m hashlimit`: a bucket of its named table ([`super::hashlimit`]), shared with every
    /// rule naming it. Where Linux drops the packet (a new key in a full table) the rule set's
    /// judgement is a drop; alone, the check fails there.
    HashLimit(std::sync::Arc<super::hashlimit::HashLimitMatch>),
    /// `-m set --match-set`: a set of the rule set's ipset sets ([`super::ipset`]).
    Set(std::sync::Arc<super::ipset::SetMatch>),
    /// `-m connlimit`: its rule's counts ([`super::connlimit`]), shared by all workers. Where
    /// Linux drops the packet (no room for a new key) the rule set's judgement is a drop;
    /// alone, the check fails there.
    ConnLimit(std::sync::Arc<super::connlimit::ConnLimitMatch>),
    /// `-m limit`: one of the rule set's buckets ([`RuleSet`](super::RuleSet) keeps them),
    /// shared by the flat rules of one iptables rule; `cost` and `cap` in xt_limit's credits.
    /// `invert` holds when the bucket has no packet to give: the gate before an inlined chain
    /// whose jump has the limit skips the chain then (the bucket is asked once, at the jump).
    Limit {
        slot: u32,
        cost: u32,
        cap: u32,
        invert: bool,
    },
    /// `-m mark --mark value/mask`: the packet's mark in the walk ([`super::walk`]); the rule
    /// set checks it with the walk's mark, and [`Check::holds`] alone with mark 0.
    Mark { value: u32, mask: u32, invert: bool },
    /// A MARK target's operation, `mark = (mark & !mask) ^ xor`: always holds; the rule's
    /// [`Action::Mark`](super::Action::Mark) applies it.
    SetMark { mask: u32, xor: u32 },
    /// `-m connmark --mark value/mask`: the connection's mark in the walk
    /// ([`super::connmark`]); [`Check::holds`] alone (no connection known) fails.
    ConnMark { value: u32, mask: u32, invert: bool },
    /// A CONNMARK target's operation: always holds; the rule's
    /// [`Action::Mark`](super::Action::Mark) applies it.
    SetConnMark(super::connmark::Op),
    /// `-m statistic --mode random`: holds when a draw in `0..2^31` is below `probability`
    /// (iptables' `lround(p * 2^31)`), negated by `!`.
    Random { probability: u32, invert: bool },
    /// `-m statistic --mode nth`: the rule's counter (a bucket slot of the rule set, shared by
    /// the workers as the kernel's is by CPUs) steps and holds when it wraps to 0; `every` is
    /// n - 1, and the counter starts at `start` (`every - packet`).
    Nth {
        slot: u32,
        every: u32,
        start: u32,
        invert: bool,
    },
    /// `-m string` ([`super::string`]): a search of the packet from its network header.
    String(std::sync::Arc<super::string::StringMatch>),
    /// `-m u32` ([`super::u32_match`]): tests of words read from the packet's network header on.
    U32(std::sync::Arc<super::u32_match::U32Match>),
    /// `-m conntrack`'s options besides `--ctstate` ([`super::ctmatch`]).
    Ct(std::sync::Arc<super::ctmatch::CtMatch>),
    /// `-m connbytes` ([`super::ctmatch`]).
    ConnBytes(super::ctmatch::ConnBytes),
    /// `-m quota --quota bytes`: xt_quota's counter, one of the rule set's slots (shared by
    /// the flat rules of one iptables rule and by the workers, as the kernel's one counter
    /// per rule), starting at `bytes`: a packet that fits takes its IP length off and
    /// matches; one that does not empties it and does not (nor does any later one).
    Quota { slot: u32, bytes: u64, invert: bool },
    /// `-m time` ([`super::time`]): the packet's wall-clock time.
    Time(std::sync::Arc<super::time::TimeMatch>),
    /// `-m rpfilter` ([`super::rpfilter`]): the reverse-path lookup of the packet's source
    /// in the router's table.
    RpFilter(std::sync::Arc<super::rpfilter::RpFilterMatch>),
    /// `-m nfacct` ([`super::nfacct`]): adds the packet and its datagram length to the named
    /// object and holds (`invert`: a gate's negation, which counts and fails).
    NfAcct {
        acct: std::sync::Arc<super::nfacct::NfAcct>,
        invert: bool,
    },
}

/// xt_limit's time unit: the emulated kernel has `HZ` = 1000.
const NS_PER_JIFFY: u64 = 1_000_000;
const HZ: u64 = 1000;
/// xt_limit's `CREDITS_PER_JIFFY` for `HZ` = 1000: the largest power of two at most
/// `u32::MAX / (HZ * 60 * 60 * 24)`.
pub const CREDITS_PER_JIFFY: u32 = 32;
/// `XT_LIMIT_SCALE`: a rate's average interval is in 1/10000 s.
pub const LIMIT_SCALE: u32 = 10_000;
/// How far back (in jiffies) a worker's clock may lag the bucket's last update and be taken
/// for skew (no refill) rather than for a wrapped clock after a long idle time (a full
/// refill).
const SKEW_JIFFIES: u32 = 1000;

/// xt_limit's `user2credits`: an interval in 1/10000 s as credits, in the kernel's 32-bit
/// arithmetic, wrapping where it wraps (`HZ * CREDITS_PER_JIFFY` is 32000 for `HZ` 250 and
/// 1000 alike, so the common kernels agree on every value).
pub fn user2credits(user: u32) -> u32 {
    let per_sec = HZ as u32 * CREDITS_PER_JIFFY;
    if user > u32::MAX / per_sec {
        (user / LIMIT_SCALE).wrapping_mul(per_sec)
    } else {
        user * per_sec / LIMIT_SCALE
    }
}

/// `(cost, cap)` of a limit of one packet per `avg` (1/10000 s) with `burst`, or `None` where
/// the kernel refuses it (`ERANGE`: a zero burst, or `avg * burst` overflowing its credits).
pub fn limit_credits(avg: u32, burst: u32) -> Option<(u32, u32)> {
    let total = avg.wrapping_mul(burst);
    if burst == 0 || avg == 0 || user2credits(total) < user2credits(avg) {
        return None;
    }
    Some((user2credits(avg), user2credits(total)))
}

/// One `-m limit` rule's bucket: the last refill's jiffy (high half) and the credit (low
/// half), changed together by compare-and-swap, so all workers share the rule's rate as
/// Linux's one bucket per rule does.
#[derive(Debug)]
pub struct Bucket(pub(crate) AtomicU64);

/// Where an nth counter starts ([`Check::Nth`]'s `start`).
pub fn nth_start(c: &Check) -> u32 {
    match *c {
        Check::Nth { start, .. } => start,
        _ => 0,
    }
}

/// xt_quota's `quota_mt` on a counter: takes `len` off when that much is left (and answers
/// true), else empties it.
pub fn quota_take(q: &AtomicU64, len: u64) -> bool {
    let mut cur = q.load(Ordering::Relaxed);
    loop {
        let (new, ok) = if cur >= len {
            (cur - len, true)
        } else {
            (0, false)
        };
        match q.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return ok,
            Err(x) => cur = x,
        }
    }
}

impl Bucket {
    /// A full bucket.
    pub fn new(cap: u32) -> Bucket {
        Bucket(AtomicU64::new(u64::from(cap)))
    }

    /// xt_limit's `limit_mt`: refill by the jiffies since the last call (capped), then take
    /// `cost` if there is that much.
    pub fn take(&self, now_ns: u64, cost: u32, cap: u32) -> bool {
        let now = (now_ns / NS_PER_JIFFY) as u32;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (prev, credit) = ((cur >> 32) as u32, cur as u32);
            let d = now.wrapping_sub(prev);
            let (since, stamp) = if d > u32::MAX - SKEW_JIFFIES {
                (0, prev)
            } else {
                (d, now)
            };
            let mut c = (u64::from(credit) + u64::from(since) * u64::from(CREDITS_PER_JIFFY))
                .min(u64::from(cap)) as u32;
            let ok = c >= cost;
            if ok {
                c -= cost;
            }
            let new = u64::from(stamp) << 32 | u64::from(c);
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return ok,
                Err(x) => cur = x,
            }
        }
    }
}

impl Check {
    /// Whether the check's answer may change between the packets of one direction of an
    /// ESTABLISHED connection (a rule set with such a check caches no verdicts): all but
    /// the connection matches that read what an established connection keeps
    /// ([`super::ctmatch`]).
    pub fn per_packet(&self) -> bool {
        match self {
            Check::Ct(m) => m.per_packet(),
            // An established connection's mark changes only by a CONNMARK rule that such a
            // packet can reach, which [`Check::per_packet_in`] makes per-packet.
            Check::ConnMark { .. } => false,
            _ => true,
        }
    }

    /// [`Check::per_packet`] for a check of a rule whose states are `ct_states`: a CONNMARK
    /// rule that only NEW packets (or packets without a connection) reach changes nothing an
    /// ESTABLISHED packet's cached verdict could depend on; one that ESTABLISHED or RELATED
    /// packets reach changes the mark between them.
    pub fn per_packet_in(&self, ct_states: u8) -> bool {
        match self {
            Check::SetConnMark(_) => {
                use super::ct::*;
                ct_states & (ESTABLISHED | RELATED | ESTABLISHED_DNAT | RELATED_DNAT) != 0
            }
            c => c.per_packet(),
        }
    }

    /// Whether the check reads or changes the connection's mark ([`super::connmark`]).
    pub fn conn_marks(&self) -> bool {
        matches!(self, Check::ConnMark { .. } | Check::SetConnMark(_))
    }

    /// Whether the check reads the packet's payload, for which a datagram that came in
    /// fragments is gathered whole ([`super::payload`]).
    pub fn reads_payload(&self) -> bool {
        matches!(self, Check::String(_) | Check::U32(_))
    }

    /// Whether the check reads the packet's connection ([`Wire::conn`]).
    pub fn reads_conn(&self) -> bool {
        matches!(
            self,
            Check::Ct(_) | Check::ConnBytes(_) | Check::ConnLimit(_)
        )
    }

    /// Whether the check holds for `p` with bytes `w`; `buckets` are the rule set's.
    #[inline]
    pub fn holds(&self, p: &PacketMeta, w: &Wire<'_>, buckets: &[Bucket]) -> bool {
        let l3 = usize::from(w.l3);
        let v6 = p.key.family == Family::V6;
        match *self {
            Check::Hops { cmp, value, invert } => {
                let Some(h) = w.byte(l3 + if v6 { 7 } else { 8 }) else {
                    return false;
                };
                let h = h.saturating_sub(w.hops_taken);
                let r = match cmp {
                    Cmp::Eq => h == value,
                    Cmp::Lt => h < value,
                    Cmp::Gt => h > value,
                };
                r != invert
            }
            Check::Length { lo, hi, invert } => {
                let len = if w.whole_len != 0 {
                    Some(w.whole_len)
                } else if v6 {
                    w.u16_at(l3 + 4).map(|l| l.wrapping_add(40))
                } else {
                    w.u16_at(l3 + 2)
                };
                len.is_some_and(|l| (lo <= l && l <= hi) != invert)
            }
            Check::Tos {
                value,
                mask,
                invert,
            } => {
                let tos = if v6 {
                    match (w.byte(l3), w.byte(l3 + 1)) {
                        (Some(a), Some(b)) => Some(a << 4 | b >> 4),
                        _ => None,
                    }
                } else {
                    w.byte(l3 + 1)
                };
                tos.is_some_and(|t| (t & mask == value) != invert)
            }
            Check::PktType { ty, invert } => {
                let Some(dst) = w.frame.get(..6) else {
                    return false;
                };
                let t = if dst == [0xff; 6] {
                    PktType::Broadcast
                } else if dst[0] & 1 != 0 {
                    PktType::Multicast
                } else {
                    PktType::Unicast
                };
                (t == ty) != invert
            }
            Check::MacSource { mac, invert } => {
                w.frame.get(6..12).is_some_and(|src| (src == mac) != invert)
            }
            Check::TcpMss { lo, hi, invert } => match tcp_options(p, w) {
                Some(opts) => match find_mss(opts) {
                    Some(mss) => (lo <= mss && mss <= hi) != invert,
                    None => invert,
                },
                None => false,
            },
            Check::TcpOption { kind, invert } => match tcp_options(p, w) {
                Some(opts) => has_option(opts, kind) != invert,
                None => false,
            },
            Check::Ipv6Rt {
                rt_type,
                segs_left: (lo, hi, inv_segs),
                len,
            } => {
                let Some(rh) = routing_header(w) else {
                    return false;
                };
                let (ty, segs, bytes) = (rh[2], u32::from(rh[3]), rh.len() as u32);
                ((lo <= segs && segs <= hi) != inv_segs)
                    && len.is_none_or(|(l, inv)| (l == bytes) != inv)
                    && rt_type.is_none_or(|(t, inv)| (t == ty) != inv)
            }
            Check::Recent(ref m) => m.holds(p, w),
            Check::HashLimit(ref m) => m.held(p, w).unwrap_or(false),
            Check::Set(ref m) => m.holds(p, w),
            Check::ConnLimit(ref m) => m.held(p, w).unwrap_or(false),
            Check::Ct(ref m) => m.holds(w.conn),
            Check::Quota { slot, invert, .. } => {
                // skb->len at the IP hooks: the datagram's length (the whole datagram's for
                // a first fragment: reassembly comes first; later fragments take its verdict).
                let len = if w.whole_len != 0 {
                    Some(u64::from(w.whole_len))
                } else if v6 {
                    w.u16_at(l3 + 4).map(|l| u64::from(l) + 40)
                } else {
                    w.u16_at(l3 + 2).map(u64::from)
                };
                match (len, buckets.get(slot as usize)) {
                    (Some(len), Some(b)) => quota_take(&b.0, len) != invert,
                    _ => false,
                }
            }
            Check::ConnBytes(ref m) => m.holds(w.conn),
            Check::NfAcct { ref acct, invert } => {
                // skb->len at the IP hooks, as `-m quota` takes it.
                let len = if w.whole_len != 0 {
                    u64::from(w.whole_len)
                } else if v6 {
                    w.u16_at(l3 + 4).map_or(0, |l| u64::from(l) + 40)
                } else {
                    w.u16_at(l3 + 2).map_or(0, u64::from)
                };
                acct.count(len);
                !invert
            }
            Check::Time(ref m) => m.holds(w.now_ns),
            Check::RpFilter(ref m) => m.holds(p),
            Check::String(ref m) => m.holds(w),
            Check::U32(ref m) => m.holds(w),
            Check::Ext(ref m) => m.holds(p, w),
            Check::Limit {
                slot,
                cost,
                cap,
                invert,
            } => buckets
                .get(slot as usize)
                .is_some_and(|b| b.take(w.now_ns, cost, cap) != invert),
            Check::Mark {
                value,
                mask,
                invert,
            } => super::walk::mark_matches(0, value, mask, invert),
            Check::SetMark { .. } | Check::SetConnMark(_) => true,
            Check::ConnMark { .. } => false,
            Check::Random {
                probability,
                invert,
            } => (super::walk::random_u31() < probability) != invert,
            Check::Nth {
                slot,
                every,
                invert,
                ..
            } => buckets
                .get(slot as usize)
                .is_some_and(|b| super::walk::nth_step(&b.0, every) != invert),
        }
    }
}

/// The Routing header of an IPv6 packet (the whole header), found as `ip6t_rt` finds it
/// ([`super::ipv6ext::find_hdr`], Linux's `ipv6_find_hdr`: not past a non-first fragment's
/// Fragment header, and over a whole datagram's first fragment as reassembly leaves it);
/// `None` when there is none or the packet cuts it short.
fn routing_header<'a>(w: &Wire<'a>) -> Option<&'a [u8]> {
    let ip = super::ipv6ext::ipv6_packet(w)?;
    let at = super::ipv6ext::find_hdr(ip, ip_proto::IPV6_ROUTE, w.whole_len != 0).ok()??;
    let len = (usize::from(*ip.get(at + 1)?) + 1) << 3;
    ip.get(at..at + len)
}

/// The option bytes of a TCP header (`doff * 4 - 20` of them), or `None` where Linux's TCP
/// matches do not match: not TCP, a non-first fragment, a data offset below 5 or a header
/// the frame does not hold (which Linux drops: `hotdrop`).
#[inline]
fn tcp_options<'a>(p: &PacketMeta, w: &Wire<'a>) -> Option<&'a [u8]> {
    if p.key.proto != ip_proto::TCP || p.later_fragment || w.l4 == 0 {
        return None;
    }
    let l4 = usize::from(w.l4);
    let doff = usize::from(w.byte(l4 + 12)? >> 4);
    if doff < 5 {
        return None;
    }
    w.frame.get(l4 + 20..l4 + doff * 4)
}

/// The kernel's option walk: an end-of-list or no-op byte is one byte long, any other option
/// says its length (a length of 0 taken as 1).
#[inline]
fn next_option(op: &[u8], i: usize) -> usize {
    if op[i] < 2 {
        i + 1
    } else {
        i + usize::from(op.get(i + 1).copied().unwrap_or(1).max(1))
    }
}

fn has_option(op: &[u8], kind: u8) -> bool {
    let mut i = 0;
    while i < op.len() {
        if op[i] == kind {
            return true;
        }
        i = next_option(op, i);
    }
    false
}

fn find_mss(op: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i < op.len() {
        if op[i] == 2 && op.len() - i >= 4 && op[i + 1] == 4 {
            return Some(u16::from_be_bytes([op[i + 2], op[i + 3]]));
        }
        i = next_option(op, i);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_arithmetic_is_xt_limits() {
        // 3/minute, burst 10: avg 200000 (1/10000 s).
        let (cost, cap) = limit_credits(200_000, 10).unwrap();
        assert_eq!(cost, 640_000);
        assert_eq!(cap, 6_400_000);
        let b = Bucket::new(cap);
        let t0 = 5_000_000_000u64;
        // The burst passes at once, then nothing until 20 s have refilled one packet.
        assert!((0..10).all(|_| b.take(t0, cost, cap)));
        assert!(!b.take(t0, cost, cap));
        assert!(!b.take(t0 + 19_999_000_000, cost, cap));
        assert!(b.take(t0 + 20_000_000_000, cost, cap));
        assert!(!b.take(t0 + 20_000_000_000, cost, cap));
        // A lagging clock (another worker's) neither refills nor rewinds the bucket.
        assert!(!b.take(t0 + 19_000_000_000, cost, cap));
        assert!(b.take(t0 + 40_000_000_000, cost, cap));
        // Zero burst and overflow are refused as the kernel refuses them.
        assert!(limit_credits(200_000, 0).is_none());
        assert!(limit_credits(864_000_000, 5).is_none());
        assert!(limit_credits(864_000_000, 2).is_none());
        // 1/day with a burst of 3 is taken, but the cap wraps to less than two packets'
        // credits: Linux lets one packet through, and so does this.
        let (cost, cap) = limit_credits(864_000_000, 3).unwrap();
        assert_eq!((cost, cap), (2_764_800_000, 3_999_432_704));
        let b = Bucket::new(cap);
        assert!(b.take(t0, cost, cap) && !b.take(t0, cost, cap));
    }

    #[test]
    fn option_walk() {
        // NOP, NOP, timestamp (kind 8, len 10), MSS 1460 after it.
        let mut op = vec![1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 2, 4, 0x05, 0xb4];
        assert_eq!(find_mss(&op), Some(1460));
        assert!(has_option(&op, 8) && has_option(&op, 1) && !has_option(&op, 3));
        // A truncated MSS (fewer than four bytes left) is not one.
        op.truncate(14);
        assert_eq!(find_mss(&op), None);
        // A zero length is taken as one, so the walk ends.
        assert!(!has_option(&[5, 0, 0, 0], 9));
    }
}
