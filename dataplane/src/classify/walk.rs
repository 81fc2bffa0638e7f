//! What one packet's walk through the tables carries and draws: the packet's mark (Linux's
//! `skb->mark`: 0 on arrival, changed by MARK for the rest of the walk, read by `-m mark`) and
//! `-m statistic`'s random and nth draws.
//!
//! The mark lives in the walk, not in [`PacketMeta`](super::PacketMeta): [`RuleSet::judge`]
//! starts it at 0 (every packet the established path judges, as in Linux, where only the nat
//! table's first packet and mangle, which Rampart does not apply, could have set it), and a new
//! connection's walk threads it from nat PREROUTING through the filter to nat POSTROUTING
//! ([`RuleSet::judge_marked`]). A MARK rule's operation rides in its checks
//! ([`Check::SetMark`], which always holds), so [`Action`](super::Action) stays eight bytes
//! and the rule set needs no table of its own for them.
//!
//! [`RuleSet::judge`]: super::RuleSet::judge
//! [`RuleSet::judge_marked`]: super::RuleSet::judge_marked

use super::Check;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a packet's walk carries from table to table: its mark (`skb->mark`) and its
/// connection's mark (`ct->mark`, [`super::connmark`]), when it has a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// The packet's mark: 0 on arrival.
    pub packet: u32,
    /// The connection's mark (0 without a connection).
    pub conn: u32,
    /// The packet has a connection (not INVALID, UNTRACKED or before conntrack): without
    /// one `-m connmark` never matches and CONNMARK changes nothing, as in Linux.
    pub has_conn: bool,
}

impl Marks {
    /// A packet with mark `packet` and no connection mark known.
    #[inline]
    pub const fn packet(packet: u32) -> Marks {
        Marks {
            packet,
            conn: 0,
            has_conn: false,
        }
    }
}

/// `-m mark --mark value/mask`: xt_mark's `(mark & mask) == value`, negated by `!`.
#[inline]
pub fn mark_matches(mark: u32, value: u32, mask: u32, invert: bool) -> bool {
    ((mark & mask) == value) != invert
}

/// Applies a MARK rule whose checks are `checks` (xt_MARK v2: `(mark & ~mask) ^ xor`), or a
/// CONNMARK rule's operation ([`super::connmark::Op::apply`]).
#[inline]
pub fn set_mark(checks: &[Check], marks: &mut Marks) {
    for c in checks {
        match *c {
            Check::SetMark { mask, xor } => marks.packet = (marks.packet & !mask) ^ xor,
            Check::SetConnMark(ref op) => op.apply(marks),
            _ => {}
        }
    }
}

/// Seeds the threads' draw sources apart (one step per thread, once).
static SEEDS: AtomicU64 = AtomicU64::new(0x243f_6a88_85a3_08d3);

thread_local! {
    /// This thread's draw source: a counter stepped by the golden ratio and mixed
    /// (splitmix64), as good as the kernel's per-CPU `get_random_u32` for choosing among
    /// endpoints. Per thread, so workers share no written line for their draws.
    static DRAWS: std::cell::Cell<u64> = std::cell::Cell::new(
        SEEDS.fetch_add(0x6a09_e667_f3bc_c909, Ordering::Relaxed),
    );
}

/// A uniform number in `0..2^31` (xt_statistic's `get_random_u32() & 0x7FFFFFFF`).
pub fn random_u31() -> u32 {
    let mut z = DRAWS.with(|d| {
        let z = d.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        d.set(z);
        z
    });
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 33) as u32
}

/// `--probability p` as iptables stores it: `lround(0x80000000 * p)`, `p` in `0..=1`.
pub fn probability(p: f64) -> u32 {
    (p * f64::from(0x8000_0000u32)).round() as u32
}

/// The nth counter step (xt_statistic's `XT_STATISTIC_MODE_NTH`) on the low 32 bits of
/// `cell`: the next value is 0 after `every`, else one more; the packet matches when it is 0.
pub fn nth_step(cell: &AtomicU64, every: u32) -> bool {
    let mut cur = cell.load(Ordering::Relaxed);
    loop {
        let old = cur as u32;
        let new = if old == every { 0 } else { old.wrapping_add(1) };
        match cell.compare_exchange_weak(cur, u64::from(new), Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return new == 0,
            Err(x) => cur = x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_operations_as_iptables_stores_them() {
        let set = |mask, xor, mark| {
            let mut m = Marks::packet(mark);
            set_mark(&[Check::SetMark { mask, xor }], &mut m);
            m.packet
        };
        // --set-xmark 0x4000/0x4000 (kube-proxy's KUBE-MARK-MASQ, --or-mark 0x4000).
        assert_eq!(set(0x4000, 0x4000, 0x1), 0x4001);
        // --xor-mark 0x4000: mask 0.
        assert_eq!(set(0, 0x4000, 0x4001), 0x1);
        // --and-mark 0xff: mask !0xff, xor 0.
        assert_eq!(set(!0xff, 0, 0x1234), 0x34);
        // --set-mark 5 (mask all ones).
        assert_eq!(set(u32::MAX, 5, 0x1234), 5);
        assert!(mark_matches(0x4001, 0x4000, 0x4000, false));
        assert!(!mark_matches(0x4001, 0x4000, 0x4000, true));
        assert!(mark_matches(0, 0, u32::MAX, false));
    }

    #[test]
    fn nth_counts_as_the_kernel() {
        // --every 3 --packet 1: every = 2, count starts at every - packet = 1.
        let cell = AtomicU64::new(1);
        let got: Vec<bool> = (0..7).map(|_| nth_step(&cell, 2)).collect();
        assert_eq!(got, [false, true, false, false, true, false, false]);
        // --every 2 --packet 0: the first packet matches.
        let cell = AtomicU64::new(1);
        assert!(nth_step(&cell, 1));
        assert!(!nth_step(&cell, 1));
        assert!(nth_step(&cell, 1));
    }

    #[test]
    fn random_draws_have_the_probability() {
        let p = probability(0.33333333349);
        assert_eq!(p, 715_827_883);
        let n = 200_000;
        let hits = (0..n).filter(|_| random_u31() < p).count();
        // Binomial: sd = sqrt(n p (1-p)) ~ 211; 6 sd.
        assert!((hits as i64 - n as i64 / 3).abs() < 1300, "{hits}");
    }
}
