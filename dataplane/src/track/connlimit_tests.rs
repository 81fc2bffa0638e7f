//! `-m connlimit` through the tracked pipeline ([`judge_tracked`]): what a connection's first
//! packet reserves is kept when it is confirmed and released when it is not, and every end of
//! the connection (RST, FIN to TIME_WAIT, expiry, flush, eviction) releases it.

use super::*;
use crate::classify::connlimit::{prefix_mask, ConnLimitMatch, CountTable};
use crate::classify::{Check, FlatRule, RuleSet};
use crate::wire::builder::{FrameSpec, IpSpec, L4Spec};
use crate::wire::tcp::Flags;
use crate::wire::{parse_frame, Family};
use std::net::Ipv4Addr;
use std::sync::Arc;

const S: u64 = 1_000_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// Rules: NEW TCP to port 99 dropped; NEW connections over `limit` a source dropped; the rest
/// accepted. The count table is returned.
fn filter(limit: u32) -> (Filter, Arc<CountTable>) {
    let table = Arc::new(CountTable::with_slots(64));
    let m = ConnLimitMatch {
        table: table.clone(),
        family: Family::V4,
        above: true,
        limit,
        mask: prefix_mask(Family::V4, 32),
        daddr: false,
    };
    let mut port99 = FlatRule::any(Family::V4, Action::Drop, 0);
    port99.proto = (ip_proto::TCP, ip_proto::TCP);
    port99.dport = (99, 99);
    port99.ct_states = ct::NEW;
    let mut over = FlatRule::any(Family::V4, Action::Drop, 1);
    over.ct_states = ct::NEW;
    over.checks = Some(Arc::new(vec![Check::ConnLimit(Arc::new(m))]));
    let rules = vec![port99, over, FlatRule::any(Family::V4, Action::Accept, 2)];
    let origins = (0..3)
        .map(|i| crate::classify::Origin {
            file: "t".into(),
            line: i,
            label: String::new(),
        })
        .collect();
    let filter = Filter {
        v4: Some(RuleSet::new(Family::V4, rules, origins, Vec::new())),
        ..Filter::default()
    };
    (filter, table)
}

struct Run {
    filter: Filter,
    table: Arc<CountTable>,
    tables: Tables,
    now: u64,
}

impl Run {
    fn new(limit: u32, capacity: u32) -> Run {
        let (filter, table) = filter(limit);
        Run {
            filter,
            table,
            tables: Tables::new(&TrackConfig::new(capacity)),
            now: S,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        src: Ipv4Addr,
        sport: u16,
        dport: u16,
        flags: Flags,
        seq: u32,
        ack: u32,
        reply: bool,
    ) -> Verdict {
        let ends = if reply {
            (SERVER, src, dport, sport)
        } else {
            (src, SERVER, sport, dport)
        };
        self.now += 1_000_000;
        let (filter, tables) = (&self.filter, &mut self.tables);
        tcp4_judged(filter, tables, self.now, ends, flags, seq, ack, reply).verdict
    }

    /// A SYN from client `n`'s port `sport` to `dport`: forwarded or not.
    fn syn(&mut self, n: u8, sport: u16, dport: u16) -> bool {
        !matches!(
            self.send(client(n), sport, dport, Flags::SYN, 1000, 0, false),
            Verdict::Drop(_)
        )
    }

    /// The handshake of a connection opened by [`Run::syn`].
    fn establish(&mut self, n: u8, sport: u16) {
        self.send(
            client(n),
            sport,
            22,
            Flags::SYN | Flags::ACK,
            5000,
            1001,
            true,
        );
        self.send(client(n), sport, 22, Flags::ACK, 1001, 5001, false);
    }

    fn held(&self) -> (u64, u32) {
        (self.table.total(), self.tables.ct.counts_held())
    }
}

#[test]
fn the_limit_holds_and_each_end_releases() {
    let mut r = Run::new(2, 1024);
    assert!(r.syn(1, 1, 22));
    assert!(r.syn(1, 2, 22));
    assert!(
        !r.syn(1, 3, 22),
        "the third connection of a source is over the limit"
    );
    assert_eq!(r.held(), (2, 2), "the refused one holds nothing");
    assert!(r.syn(2, 1, 22), "another source counts apart");
    // A first packet a later rule drops leaves no count... (an earlier rule here: port 99)
    assert!(!r.syn(3, 1, 99));
    assert_eq!(r.held(), (3, 3));
    // ...nor one retransmitted: the same connection is counted once.
    assert!(r.syn(2, 1, 22));
    assert_eq!(r.held(), (3, 3));

    // RST ends connection 1.
    r.establish(1, 1);
    r.send(client(1), 1, 22, Flags::RST | Flags::ACK, 1001, 5001, false);
    assert_eq!(r.held(), (2, 2));
    assert!(r.syn(1, 4, 22));
    assert!(!r.syn(1, 5, 22));

    // FIN both ways: TIME_WAIT releases the count (the entry lives on).
    r.establish(1, 2);
    r.send(client(1), 2, 22, Flags::FIN | Flags::ACK, 1001, 5001, false);
    r.send(client(1), 2, 22, Flags::FIN | Flags::ACK, 5001, 1002, true);
    assert_eq!(r.held(), (3, 3), "closing, not yet closed");
    r.send(client(1), 2, 22, Flags::ACK, 1002, 5002, false);
    assert_eq!(r.held(), (2, 2));
    assert!(r.syn(1, 6, 22));
    assert!(!r.syn(1, 7, 22));

    // Expiry: an unanswered SYN's entry times out (2 minutes) and its count goes.
    r.now += 200 * S;
    r.tables.expire(r.now, 1024);
    assert_eq!(r.held(), (0, 0));
    assert_eq!(
        r.tables.ct.len(),
        0,
        "TIME_WAIT and SYN_SENT are both two minutes"
    );
    assert!(r.syn(1, 8, 22));
    assert!(r.syn(1, 9, 22));
    assert!(!r.syn(1, 10, 22));

    // Flush.
    r.tables.ct.flush();
    assert_eq!(r.held(), (0, 0));
    assert!(r.syn(1, 11, 22));

    // A filtered delete (`conntrack delete -s 10.0.0.1`) releases what it removes, and only
    // that.
    assert!(r.syn(1, 12, 22));
    assert!(r.syn(2, 2, 22));
    assert_eq!(r.held(), (3, 3));
    let one = crate::conntrack::filter::CtFilter {
        orig_src: Some(crate::conntrack::filter::Net::new(client(1).into(), 32)),
        ..Default::default()
    };
    assert_eq!(
        r.tables
            .ct
            .select_from(0, 1024, &one, true, u32::MAX, r.now),
        (2, None)
    );
    assert_eq!(r.held(), (1, 1));
    assert!(r.syn(1, 13, 22));
    assert!(r.syn(1, 14, 22));
    assert!(!r.syn(1, 15, 22));
}

#[test]
fn eviction_releases_and_a_full_table_keeps_nothing() {
    // A table of two connections: a third SYN evicts an unassured one (Linux's early drop)
    // or finds no room; either way every live entry holds one count and nothing else does.
    let mut r = Run::new(10, 2);
    let same = |r: &Run| {
        let n = r.tables.ct.len();
        assert_eq!(r.held(), (u64::from(n), n));
    };
    for p in 1..=4 {
        let _ = r.syn(1, p, 22);
        same(&r);
    }
    assert!(
        r.tables.ct.stats().early_drop > 0,
        "{:?}",
        r.tables.ct.stats()
    );
    // Assured connections are never evicted: a new one finds no room and is dropped, its
    // reservation released.
    let mut r = Run::new(10, 2);
    for p in 1..=2 {
        assert!(r.syn(1, p, 22));
        r.establish(1, p);
        r.send(client(1), p, 22, Flags::ACK, 5001, 1001, true);
        same(&r);
    }
    for p in 5..=8 {
        assert!(!r.syn(1, p, 22));
        same(&r);
    }
    assert!(r.tables.ct.stats().ct_full > 0, "{:?}", r.tables.ct.stats());
    assert_eq!(r.held(), (2, 2));
}

/// A bridged IPv4 TCP segment `(src, dst, sport, dport)`, judged by `judge_tracked` at `now`
/// (from port 1 to port 0 when `reply`, else from 0 to 1).
#[allow(clippy::too_many_arguments)]
pub(super) fn tcp4_judged(
    filter: &Filter,
    tables: &mut Tables,
    now: u64,
    (s, d, sp, dp): (Ipv4Addr, Ipv4Addr, u16, u16),
    flags: Flags,
    seq: u32,
    ack: u32,
    reply: bool,
) -> IpJudgement {
    let ip = IpSpec::V4 {
        src: s,
        dst: d,
        ttl: 64,
        ident: 1,
        dont_frag: false,
        options: Vec::new(),
    };
    let l4 = L4Spec::Tcp {
        sport: sp,
        dport: dp,
        seq,
        ack,
        flags,
        window: 8192,
        options: Vec::new(),
        payload: Vec::new(),
    };
    let mut fr = FrameSpec::new(ip, l4).build();
    let info = parse_frame(&fr).expect("parses");
    let key = info.flow.expect("a flow");
    judge_tracked(
        filter,
        tables,
        &mut fr,
        &info,
        key,
        u16::from(reply),
        &mut Bridged(u16::from(!reply)),
        now,
        |_, _, _| {},
    )
}
