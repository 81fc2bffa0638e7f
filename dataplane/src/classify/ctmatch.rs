//! Matches on the packet's connection: `-m conntrack`'s options besides `--ctstate`
//! (xt_conntrack revision 3) and `-m connbytes` (xt_connbytes).
//!
//! They read a [`CtView`] of the packet's connection, which the judging path puts in
//! [`Wire::conn`](super::Wire::conn) only for rule sets that have such a check
//! ([`RuleSet::reads_conn`](super::RuleSet::reads_conn)); a packet without a connection
//! (INVALID, UNTRACKED, the raw table, a rule set judged without conntrack) has none.
//!
//! What may stay in a cached verdict: an ESTABLISHED packet's connection is confirmed and
//! has seen a reply (Linux sets `IPS_SEEN_REPLY` before the filter hook, on the reply that
//! makes the connection ESTABLISHED), its tuples, protocol and the packet's direction are
//! the entry's for its life, and a verdict is cached per entry and direction: `--ctdir`,
//! `--ctproto`, the addresses and ports, `--ctstatus` without `ASSURED` keep a set
//! cacheable. `ASSURED` (set during the connection's life), `--ctexpire` and `-m connbytes`
//! change from packet to packet: [`Check::per_packet`](super::Check::per_packet).

use crate::wire::{FlowKey, IpAddr128};

/// Linux's `ct->status` bits that `--ctstatus` names.
pub mod status {
    pub const EXPECTED: u8 = 1 << 0;
    pub const SEEN_REPLY: u8 = 1 << 1;
    pub const ASSURED: u8 = 1 << 2;
    pub const CONFIRMED: u8 = 1 << 3;
}

/// What the connection matches read of a packet's connection, as it is at the filter hook
/// (Linux counts and refreshes a packet in conntrack before the hook, so the counters include
/// it and the timeout is the one it set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtView {
    /// The original tuple, as the first packet arrived.
    pub orig: FlowKey,
    /// The reply tuple: the inverse of the original one as translated so far (a NEW
    /// packet's carries its DNAT, not yet the SNAT of POSTROUTING).
    pub reply: FlowKey,
    /// The packet travels in the reply direction.
    pub reply_dir: bool,
    /// [`status`] bits.
    pub status: u8,
    /// Seconds left (`nf_ct_expires / HZ`): 0 for a connection not yet confirmed, as
    /// Linux's unconfirmed entry holds a relative timeout that `nf_ct_expires` reads as 0.
    pub expires_s: u64,
    /// `[original, reply]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// An address test: `(tuple address ^ addr) & mask == 0`, negated by `invert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrTest {
    pub addr: IpAddr128,
    pub mask: IpAddr128,
    pub invert: bool,
}

impl AddrTest {
    #[inline]
    fn holds(&self, a: &IpAddr128) -> bool {
        let hit = (0..16).all(|i| (a.0[i] ^ self.addr.0[i]) & self.mask.0[i] == 0);
        hit != self.invert
    }
}

/// `-m conntrack` (revision 3): each option given, with its own `!`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtMatch {
    /// The match has `--ctstate` (a field of the rule, checked by the classifier): then a
    /// packet without a connection matches (xt_conntrack returns after the state test).
    pub has_state: bool,
    /// `--ctdir`: `Some(true)` REPLY, `Some(false)` ORIGINAL.
    pub dir: Option<bool>,
    /// `--ctproto`, negated.
    pub proto: Option<(u8, bool)>,
    /// `--ctorigsrc`, `--ctorigdst`, `--ctreplsrc`, `--ctrepldst`.
    pub addrs: [Option<AddrTest>; 4],
    /// `--ctorigsrcport`, `--ctorigdstport`, `--ctreplsrcport`, `--ctrepldstport`: a range,
    /// negated.
    pub ports: [Option<(u16, u16, bool)>; 4],
    /// `--ctstatus`: any of the [`status`] bits, negated.
    pub status: Option<(u8, bool)>,
    /// `--ctexpire lo:hi` seconds, negated.
    pub expire: Option<(u32, u32, bool)>,
}

impl CtMatch {
    /// xt_conntrack's `conntrack_mt` past the state test.
    pub fn holds(&self, conn: Option<&CtView>) -> bool {
        let Some(c) = conn else {
            return self.has_state;
        };
        if self.dir.is_some_and(|d| d != c.reply_dir) {
            return false;
        }
        let tuple_addrs = [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst];
        for (t, a) in self.addrs.iter().zip(tuple_addrs.iter()) {
            if t.is_some_and(|t| !t.holds(a)) {
                return false;
            }
        }
        if self
            .proto
            .is_some_and(|(p, inv)| (c.orig.proto == p) == inv)
        {
            return false;
        }
        let tuple_ports = [
            c.orig.src_port,
            c.orig.dst_port,
            c.reply.src_port,
            c.reply.dst_port,
        ];
        for (r, &p) in self.ports.iter().zip(tuple_ports.iter()) {
            if r.is_some_and(|(lo, hi, inv)| (lo <= p && p <= hi) == inv) {
                return false;
            }
        }
        if self
            .status
            .is_some_and(|(mask, inv)| (mask & c.status != 0) == inv)
        {
            return false;
        }
        if self.expire.is_some_and(|(lo, hi, inv)| {
            (u64::from(lo) <= c.expires_s && c.expires_s <= u64::from(hi)) == inv
        }) {
            return false;
        }
        true
    }

    /// Whether the answer may change between packets of one direction of an ESTABLISHED
    /// connection (see the module's notes).
    pub fn per_packet(&self) -> bool {
        self.expire.is_some() || self.status.is_some_and(|(m, _)| m & status::ASSURED != 0)
    }
}

/// `--connbytes-dir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BytesDir {
    Original,
    Reply,
    Both,
}

/// `--connbytes-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BytesMode {
    Packets,
    Bytes,
    AvgPkt,
}

/// `-m connbytes`, as xt_connbytes stores it: `from <= to` matches `from..=to`; `from > to`
/// (libxt_connbytes swaps the ends for `!`) matches outside `to..=from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnBytes {
    pub from: u64,
    pub to: u64,
    pub dir: BytesDir,
    pub mode: BytesMode,
}

impl ConnBytes {
    /// xt_connbytes' `connbytes_mt`; no connection never matches.
    pub fn holds(&self, conn: Option<&CtView>) -> bool {
        let Some(c) = conn else {
            return false;
        };
        let pick = |v: [u64; 2]| match self.dir {
            BytesDir::Original => v[0],
            BytesDir::Reply => v[1],
            BytesDir::Both => v[0].wrapping_add(v[1]),
        };
        let what = match self.mode {
            BytesMode::Packets => pick(c.packets),
            BytesMode::Bytes => pick(c.bytes),
            // No packet: 0, as xt_connbytes leaves it.
            BytesMode::AvgPkt => pick(c.bytes).checked_div(pick(c.packets)).unwrap_or(0),
        };
        if self.to >= self.from {
            self.from <= what && what <= self.to
        } else {
            what < self.to || what > self.from
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Family;

    fn key(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> FlowKey {
        FlowKey {
            src: IpAddr128::from_v4_octets(src),
            dst: IpAddr128::from_v4_octets(dst),
            src_port: sp,
            dst_port: dp,
            proto: 6,
            family: Family::V4,
        }
    }

    fn view() -> CtView {
        // 10.0.0.1:1000 -> 192.0.2.1:80, DNAT'd to 10.1.0.5:8080.
        CtView {
            orig: key([10, 0, 0, 1], [192, 0, 2, 1], 1000, 80),
            reply: key([10, 1, 0, 5], [10, 0, 0, 1], 8080, 1000),
            reply_dir: false,
            status: status::CONFIRMED | status::SEEN_REPLY,
            expires_s: 300,
            packets: [3, 2],
            bytes: [300, 2000],
        }
    }

    fn net(a: [u8; 4], len: u32) -> AddrTest {
        let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let mut mask = IpAddr128::from_v4_octets(m.to_be_bytes());
        // The mapped prefix is compared whole.
        for b in &mut mask.0[..12] {
            *b = 0xff;
        }
        AddrTest {
            addr: IpAddr128::from_v4_octets(a),
            mask,
            invert: false,
        }
    }

    #[test]
    fn conntrack_options() {
        let v = view();
        let any = CtMatch::default();
        assert!(any.holds(Some(&v)));
        // No connection: only a match with --ctstate holds (the state was its field).
        assert!(!any.holds(None));
        assert!(CtMatch {
            has_state: true,
            ..CtMatch::default()
        }
        .holds(None));
        let m = |f: &dyn Fn(&mut CtMatch)| {
            let mut c = CtMatch::default();
            f(&mut c);
            c.holds(Some(&v))
        };
        assert!(m(&|c| c.dir = Some(false)));
        assert!(!m(&|c| c.dir = Some(true)));
        assert!(m(&|c| c.proto = Some((6, false))));
        assert!(!m(&|c| c.proto = Some((6, true))));
        assert!(m(&|c| c.addrs[1] = Some(net([192, 0, 2, 0], 24))));
        assert!(m(&|c| c.addrs[2] = Some(net([10, 1, 0, 5], 32))));
        assert!(!m(&|c| c.addrs[2] = Some(net([192, 0, 2, 1], 32))));
        assert!(m(&|c| {
            c.addrs[3] = Some(AddrTest {
                invert: true,
                ..net([10, 9, 0, 0], 16)
            })
        }));
        assert!(m(&|c| c.ports[1] = Some((80, 80, false))));
        assert!(m(&|c| c.ports[2] = Some((8000, 9000, false))));
        assert!(!m(&|c| c.ports[2] = Some((8000, 9000, true))));
        assert!(m(&|c| c.status = Some((status::SEEN_REPLY, false))));
        assert!(!m(&|c| c.status = Some((status::ASSURED, false))));
        assert!(m(&|c| c.status = Some((status::ASSURED, true))));
        // NONE is no bit: it never matches, and `! --ctstatus NONE` always does.
        assert!(!m(&|c| c.status = Some((0, false))));
        assert!(m(&|c| c.status = Some((0, true))));
        assert!(m(&|c| c.expire = Some((300, 300, false))));
        assert!(!m(&|c| c.expire = Some((0, 299, false))));
        assert!(m(&|c| c.expire = Some((0, 299, true))));
    }

    #[test]
    fn connbytes() {
        let v = view();
        let cb = |from, to, dir, mode| ConnBytes {
            from,
            to,
            dir,
            mode,
        };
        use BytesDir::*;
        use BytesMode::*;
        assert!(cb(3, 3, Original, Packets).holds(Some(&v)));
        assert!(cb(5, u64::MAX, Both, Packets).holds(Some(&v)));
        assert!(!cb(6, u64::MAX, Both, Packets).holds(Some(&v)));
        assert!(cb(2000, 2000, Reply, Bytes).holds(Some(&v)));
        // avgpkt: 2300 / 5, truncated.
        assert!(cb(460, 460, Both, AvgPkt).holds(Some(&v)));
        assert!(cb(100, 100, Original, AvgPkt).holds(Some(&v)));
        // `!` swaps the ends: outside 0..=4 packets.
        assert!(cb(4, 0, Both, Packets).holds(Some(&v)));
        assert!(!cb(5, 0, Both, Packets).holds(Some(&v)));
        assert!(!cb(0, u64::MAX, Both, Packets).holds(None));
    }
}
