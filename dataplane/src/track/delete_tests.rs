//! Filtered deletion (`rampart ctl conntrack delete`) through the tracked pipeline: only the
//! selected connections go, translated ones with their bindings, whose ports another
//! connection may take at once; a deleted connection's next packet is judged again, against
//! the rules in force, as in Linux after `conntrack -D`.

use super::*;
use crate::classify::{FlatRule, Origin, RuleSet};
use crate::conntrack::filter::{CtFilter, NatFilter, NatTo, Net};
use crate::conntrack::tcp::TcpState;
use crate::nat::{NatChain, NatKind, NatRange, NatRules, NatTables, NatTarget};
use crate::wire::tcp::Flags;
use crate::wire::{Family, IpAddr128};
use std::net::Ipv4Addr;

const S: u64 = 1_000_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
/// The one source port SNAT may give.
const NAT_PORT: u16 = 40_000;

fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn origins(n: u32) -> Vec<Origin> {
    (0..n)
        .map(|i| Origin {
            file: "t".into(),
            line: i,
            label: String::new(),
        })
        .collect()
}

/// Rules: ESTABLISHED accepted, NEW accepted when `open`, the rest dropped; with `snat`,
/// sources in 10.0.0.0/24 leave as [`PUBLIC`]:[`NAT_PORT`] (a range of one port).
fn filter(open: bool, snat: bool) -> Filter {
    let fam = Family::V4;
    let mut est = FlatRule::any(fam, Action::Accept, 0);
    est.ct_states = ct::ESTABLISHED;
    let mut rules = vec![est];
    if open {
        let mut new = FlatRule::any(fam, Action::Accept, 1);
        new.ct_states = ct::NEW;
        rules.push(new);
    }
    let n = rules.len() as u32;
    rules.push(FlatRule::any(fam, Action::Drop, n));
    let nat = snat.then(|| {
        let mut inside = FlatRule::any(fam, Action::Accept, 0);
        inside.src = (
            IpAddr128::from_v4(Ipv4Addr::new(10, 0, 0, 0)),
            IpAddr128::from_v4(Ipv4Addr::new(10, 0, 0, 255)),
        );
        let chain = RuleSet::new(
            fam,
            vec![inside, FlatRule::any(fam, Action::Accept, 1)],
            origins(2),
            Vec::new(),
        );
        let mut range = NatRange::to_addr(IpAddr128::from_v4(PUBLIC));
        range.ports = Some((NAT_PORT, NAT_PORT));
        let target = NatTarget {
            kind: NatKind::Snat,
            range,
            origin: 0,
        };
        let v4 = NatRules {
            family: fam,
            prerouting: NatChain::accept_all(fam, "t", "policy PREROUTING ACCEPT"),
            postrouting: NatChain::new(chain, vec![0, crate::nat::rules::NO_NAT], vec![target])
                .expect("a valid chain"),
        };
        let steering = v4.steering(1, &[]);
        Box::new(NatTables {
            v4: Some(v4),
            v6: None,
            steering,
        })
    });
    Filter {
        v4: Some(RuleSet::new(fam, rules, origins(n + 1), Vec::new())),
        nat,
        ..Filter::default()
    }
}

struct Run {
    filter: Filter,
    tables: Tables,
    now: u64,
}

impl Run {
    fn new(snat: bool) -> Run {
        let mut cfg = TrackConfig::new(1024);
        cfg.conntrack.nat = snat;
        Run {
            filter: filter(true, snat),
            tables: Tables::new(&cfg),
            now: S,
        }
    }

    /// A TCP segment between client `n`'s `sport` and the server's port 22 (from the server
    /// when `reply`, to the address the connection's binding gives); its judgement.
    fn send(
        &mut self,
        n: u8,
        sport: u16,
        flags: Flags,
        seq: u32,
        ack: u32,
        reply: bool,
    ) -> IpJudgement {
        let ends = if reply {
            let to = self.reply_to(n, sport);
            (SERVER, to.0, 22, to.1)
        } else {
            (client(n), SERVER, sport, 22)
        };
        self.now += 1_000_000;
        let (filter, tables) = (&self.filter, &mut self.tables);
        super::connlimit_tests::tcp4_judged(filter, tables, self.now, ends, flags, seq, ack, reply)
    }

    /// Where the server answers client `n`'s `sport`: the reply tuple's destination.
    fn reply_to(&self, n: u8, sport: u16) -> (Ipv4Addr, u16) {
        self.tables
            .ct
            .list(self.now)
            .find(|c| c.orig.src == IpAddr128::from_v4(client(n)) && c.orig.src_port == sport)
            .map(|c| (c.reply.dst.to_v4().expect("v4"), c.reply.dst_port))
            .unwrap_or((client(n), sport))
    }

    /// SYN, SYN/ACK, ACK: whether each was forwarded.
    fn open(&mut self, n: u8, sport: u16) -> bool {
        let a = self.send(n, sport, Flags::SYN, 1000, 0, false).verdict;
        let b = self
            .send(n, sport, Flags::SYN | Flags::ACK, 5000, 1001, true)
            .verdict;
        let c = self.send(n, sport, Flags::ACK, 1001, 5001, false).verdict;
        [a, b, c].iter().all(|v| !matches!(v, Verdict::Drop(_)))
    }

    fn delete(&mut self, f: &CtFilter) -> u32 {
        let mut removed = 0;
        let mut from = Some(0);
        while let Some(at) = from {
            // Small chunks: the walk's resumption is exercised too.
            let (n, next) = self.tables.ct.select_from(at, 100, f, true, 1, self.now);
            removed += n;
            from = next;
        }
        removed
    }

    fn count(&mut self, f: &CtFilter) -> u32 {
        let (n, next) = self
            .tables
            .ct
            .select_from(0, u32::MAX, f, false, 1, self.now);
        assert_eq!(next, None);
        n
    }

    fn sources(&self) -> Vec<(u8, u16)> {
        let mut v: Vec<(u8, u16)> = self
            .tables
            .ct
            .list(self.now)
            .map(|c| (c.orig.src.to_v4().unwrap().octets()[3], c.orig.src_port))
            .collect();
        v.sort();
        v
    }
}

fn src(n: u8) -> CtFilter {
    CtFilter {
        orig_src: Some(Net::new(client(n).into(), 32)),
        ..CtFilter::default()
    }
}

#[test]
fn only_the_selected_connections_go_and_come_back_as_new() {
    let mut r = Run::new(false);
    for (n, p) in [(1, 1000), (1, 1001), (2, 1000), (3, 1000)] {
        assert!(r.open(n, p));
    }
    assert_eq!(r.count(&CtFilter::default()), 4);
    assert_eq!(r.count(&src(1)), 2);
    let est = CtFilter {
        proto: Some(ip_proto::TCP),
        tcp_state: Some(TcpState::Established),
        ..CtFilter::default()
    };
    assert_eq!(r.count(&est), 4);
    // Nothing selected, nothing removed.
    assert_eq!(r.delete(&src(9)), 0);
    assert_eq!(r.tables.ct.len(), 4);
    // Client 1's port 1001 only: source, protocol and source port all hold.
    let one = CtFilter {
        proto: Some(ip_proto::TCP),
        orig_sport: Some(1001),
        ..src(1)
    };
    assert_eq!(r.delete(&one), 1);
    assert_eq!(r.sources(), vec![(1, 1000), (2, 1000), (3, 1000)]);
    // The deleted connection's next segment is NEW again (picked up mid-stream, as
    // nf_conntrack_tcp_loose does), judged by the rules in force: with NEW refused, dropped.
    r.filter = filter(false, false);
    let j = r.send(1, 1001, Flags::ACK, 1001, 5001, false);
    assert_eq!(j.state, Some(CtState::New));
    assert!(matches!(j.verdict, Verdict::Drop(_)), "{:?}", j.verdict);
    // The others are still ESTABLISHED and pass.
    let j = r.send(1, 1000, Flags::ACK, 1001, 5001, false);
    assert_eq!(j.state, Some(CtState::Established));
    assert!(!matches!(j.verdict, Verdict::Drop(_)));
    // A prefix: 10.0.0.2/31 holds clients 2 and 3.
    let pair = CtFilter {
        orig_src: Some(Net::new(client(2).into(), 31)),
        ..CtFilter::default()
    };
    assert_eq!(r.delete(&pair), 2);
    assert_eq!(r.sources(), vec![(1, 1000)]);
    // The table is consistent: what is left expires, and nothing else does.
    r.now += 10 * 86_400 * S;
    assert_eq!(r.tables.ct.expire(r.now, 1024), 1);
    assert!(r.tables.ct.is_empty());
}

#[test]
fn a_deleted_translation_frees_its_port_at_once() {
    let mut r = Run::new(true);
    assert!(r.open(1, 1000));
    assert_eq!(r.reply_to(1, 1000), (PUBLIC, NAT_PORT));
    // The one port is taken: another client's connection cannot be translated.
    let j = r.send(2, 1000, Flags::SYN, 1000, 0, false);
    assert!(matches!(j.verdict, Verdict::Drop(_)), "{:?}", j.verdict);
    let snat = CtFilter {
        nat: NatFilter {
            src: Some(NatTo::default()),
            ..NatFilter::default()
        },
        ..CtFilter::default()
    };
    assert_eq!(r.count(&snat), 1);
    let dnat = CtFilter {
        nat: NatFilter {
            dst: Some(NatTo::default()),
            ..NatFilter::default()
        },
        ..CtFilter::default()
    };
    assert_eq!(r.count(&dnat), 0);
    // The translated address and port select it; another port does not.
    let any = CtFilter {
        nat: NatFilter {
            any: Some(NatTo::default()),
            ..NatFilter::default()
        },
        ..CtFilter::default()
    };
    assert_eq!(r.count(&any), 1);
    let mut to = snat;
    to.nat.src = Some(NatTo {
        addr: Some(IpAddr128::from_v4(PUBLIC)),
        port: Some(NAT_PORT + 1),
    });
    assert_eq!(r.count(&to), 0);
    to.nat.src = Some(NatTo {
        addr: Some(IpAddr128::from_v4(PUBLIC)),
        port: Some(NAT_PORT),
    });
    assert_eq!(r.count(&to), 1);
    // The reply tuple selects it too.
    let reply = CtFilter {
        reply_dst: Some(Net::new(PUBLIC.into(), 32)),
        reply_dport: Some(NAT_PORT),
        proto: Some(ip_proto::TCP),
        ..CtFilter::default()
    };
    assert_eq!(r.count(&reply), 1);
    assert_eq!(r.tables.ct.stats().nat_live, 1);
    assert_eq!(r.delete(&to), 1);
    assert_eq!(r.tables.ct.stats().nat_live, 0);
    assert!(r.tables.ct.is_empty());
    // The port is free at once: client 2 gets it.
    assert!(r.open(2, 1000));
    assert_eq!(r.reply_to(2, 1000), (PUBLIC, NAT_PORT));
    // The old connection's server answer to the public port is now client 2's, not client
    // 1's: the old binding is gone.
    assert_eq!(r.sources(), vec![(2, 1000)]);
}
