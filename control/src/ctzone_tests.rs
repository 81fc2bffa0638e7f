//! Conntrack zones (`-j CT --zone`, `--zone-orig`, `--zone-reply`, `mark`) on built frames
//! through the tracked pipeline, loaded as the daemon loads a file: the same tuple arriving in
//! two zones is two connections, a reply in another zone finds none, the first CT or NOTRACK
//! rule a packet passes is the one that counts, (NAT's
//! port choice in two zones is tested at the table's level,
//! `conntrack::tests::nat_in_two_zones_may_share_a_reply_tuple`).

use crate::bridge_rig::{Rig, INSIDE, OUTSIDE};
use dataplane::conntrack::zones::{Zone, DIR_BOTH, DIR_ORIG};
use dataplane::verdict::Verdict;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use std::net::Ipv4Addr;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(src, dst), L4Spec::udp(sport, dport, b"q")).build()
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16, f: Flags, seq: u32, ack: u32) -> Vec<u8> {
    FrameSpec::new(
        IpSpec::v4(src, dst),
        L4Spec::tcp_segment(sp, dp, f, seq, ack, b""),
    )
    .build()
}

/// Stateful FORWARD: replies (ESTABLISHED, RELATED) both ways, INVALID dropped, UNTRACKED
/// accepted, NEW from either port (so that both ports can open the same tuple).
const FILTER: &str = "*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT
-A FORWARD -p udp --dport 53 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i inside -p tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";

fn rules(raw: &str) -> String {
    format!("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{raw}COMMIT\n{FILTER}")
}

impl Rig {
    fn zones(&self) -> Vec<Zone> {
        let mut z: Vec<Zone> = self.tables.ct.list(self.now).map(|c| c.zone).collect();
        z.sort_by_key(|z| z.word());
        z
    }

    fn verdict(&mut self, ingress: u16, frame: Vec<u8>) -> Verdict {
        self.send(ingress, frame).0
    }
}

const FWD_IN: Verdict = Verdict::Forward(OUTSIDE);
const FWD_OUT: Verdict = Verdict::Forward(INSIDE);

/// One zone per port: the same tuple from both ports is two connections, and each answer is
/// ESTABLISHED in its own port's zone only.
#[test]
fn the_same_tuple_in_two_zones_is_two_connections() {
    let mut r = Rig::new(&rules(
        "-A PREROUTING -i inside -j CT --zone 1\n-A PREROUTING -i outside -j CT --zone 2\n",
    ));
    let q = udp(CLIENT, SERVER, 5353, 53);
    assert_eq!(r.verdict(INSIDE, q.clone()), FWD_IN);
    assert_eq!(r.verdict(OUTSIDE, q), FWD_OUT);
    assert_eq!(r.tables.ct.len(), 2, "one connection a zone");
    assert_eq!(
        r.zones(),
        vec![Zone::new(1, DIR_BOTH), Zone::new(2, DIR_BOTH)]
    );
    // An answer from outside is in zone 2: zone 2's connection, which it answers.
    let a = udp(SERVER, CLIENT, 53, 5353);
    assert_eq!(r.verdict(OUTSIDE, a), FWD_OUT);
    let seen: Vec<(Zone, bool)> = {
        let mut v: Vec<_> = r
            .tables
            .ct
            .list(r.now)
            .map(|c| (c.zone, c.seen_reply))
            .collect();
        v.sort_by_key(|(z, _)| z.word());
        v
    };
    assert_eq!(
        seen,
        vec![
            (Zone::new(1, DIR_BOTH), false),
            (Zone::new(2, DIR_BOTH), true)
        ]
    );
}

/// A connection opened in zone 1 (from inside) whose answers arrive in zone 2 (outside):
/// the SYN/ACK finds no connection there and is INVALID, dropped; with both ports in zone 1
/// the handshake completes.
#[test]
fn a_reply_in_another_zone_is_not_established() {
    let syn = tcp(CLIENT, SERVER, 41000, 80, Flags::SYN, 100, 0);
    let synack = tcp(SERVER, CLIENT, 80, 41000, Flags::SYN | Flags::ACK, 500, 101);
    let ack = tcp(CLIENT, SERVER, 41000, 80, Flags::ACK, 101, 501);

    let mut r = Rig::new(&rules(
        "-A PREROUTING -i inside -j CT --zone 1\n-A PREROUTING -i outside -j CT --zone 2\n",
    ));
    assert_eq!(r.verdict(INSIDE, syn.clone()), FWD_IN);
    assert!(matches!(
        r.verdict(OUTSIDE, synack.clone()),
        Verdict::Drop(_)
    ));

    let mut r = Rig::new(&rules(
        "-A PREROUTING -i inside -j CT --zone 1\n-A PREROUTING -i outside -j CT --zone 1\n",
    ));
    assert_eq!(r.verdict(INSIDE, syn), FWD_IN);
    assert_eq!(r.verdict(OUTSIDE, synack), FWD_OUT);
    assert_eq!(r.verdict(INSIDE, ack), FWD_IN);
    assert_eq!(r.zones(), vec![Zone::new(1, DIR_BOTH)]);
}

/// `--zone-orig 3` from inside, nothing from outside: the answers, in the default zone, find
/// the connection (its reply tuple is in the default zone).
#[test]
fn zone_orig_lets_default_zone_replies_in() {
    let mut r = Rig::new(&rules("-A PREROUTING -i inside -j CT --zone-orig 3\n"));
    assert_eq!(r.verdict(INSIDE, udp(CLIENT, SERVER, 5353, 53)), FWD_IN);
    assert_eq!(r.verdict(OUTSIDE, udp(SERVER, CLIENT, 53, 5353)), FWD_OUT);
    assert_eq!(r.zones(), vec![Zone::new(3, DIR_ORIG)]);
    // `--zone-reply 3` instead: the answers are looked up in zone 0 for the reply tuple,
    // which is in zone 3: no connection, NEW (and dropped: port 5353 is not opened).
    let mut r = Rig::new(&rules("-A PREROUTING -i inside -j CT --zone-reply 3\n"));
    assert_eq!(r.verdict(INSIDE, udp(CLIENT, SERVER, 5353, 53)), FWD_IN);
    assert!(matches!(
        r.verdict(OUTSIDE, udp(SERVER, CLIENT, 53, 5353)),
        Verdict::Drop(_)
    ));
}

/// The first CT or NOTRACK rule a packet passes decides (xt_CT ignores a packet that has a
/// template already): a zone then NOTRACK tracks in the zone; NOTRACK then a zone leaves it
/// untracked; `--notrack` with `--zone` is untracked; a plain `-j CT` is the default zone
/// and still keeps a later NOTRACK from applying; `--zone mark` takes the packet's mark,
/// 0 in the raw table.
#[test]
fn the_first_ct_rule_decides() {
    let q = || udp(CLIENT, SERVER, 5353, 53);
    let mut r = Rig::new(&rules(
        "-A PREROUTING -j CT --zone 4\n-A PREROUTING -j NOTRACK\n-A PREROUTING -j CT --zone 5\n",
    ));
    assert_eq!(r.verdict(INSIDE, q()), FWD_IN);
    assert_eq!(r.zones(), vec![Zone::new(4, DIR_BOTH)]);

    let mut r = Rig::new(&rules(
        "-A PREROUTING -j CT --notrack\n-A PREROUTING -j CT --zone 5\n",
    ));
    assert_eq!(r.verdict(INSIDE, q()), FWD_IN);
    assert!(r.tables.ct.is_empty());

    let mut r = Rig::new(&rules("-A PREROUTING -j CT --notrack --zone 5\n"));
    assert_eq!(r.verdict(INSIDE, q()), FWD_IN);
    assert!(r.tables.ct.is_empty());

    let mut r = Rig::new(&rules("-A PREROUTING -j CT\n-A PREROUTING -j NOTRACK\n"));
    assert_eq!(r.verdict(INSIDE, q()), FWD_IN);
    assert_eq!(r.zones(), vec![Zone::DEFAULT]);

    let mut r = Rig::new(&rules("-A PREROUTING -i inside -j CT --zone mark\n"));
    assert_eq!(r.verdict(INSIDE, q()), FWD_IN);
    assert_eq!(r.zones(), vec![Zone::DEFAULT]);
    assert_eq!(r.verdict(OUTSIDE, udp(SERVER, CLIENT, 53, 5353)), FWD_OUT);
}

/// `conntrack list --json` gives each connection's zone and its directions.
#[test]
fn the_listing_shows_the_zone() {
    let mut r = Rig::new(&rules(
        "-A PREROUTING -i inside -j CT --zone-orig 9\n-A PREROUTING -i outside -j CT --zone 2\n",
    ));
    assert_eq!(r.verdict(INSIDE, udp(CLIENT, SERVER, 5353, 53)), FWD_IN);
    assert_eq!(r.verdict(OUTSIDE, udp(CLIENT, SERVER, 5353, 53)), FWD_OUT);
    let mut got: Vec<(u64, String)> = r
        .tables
        .ct
        .list(r.now)
        .map(|c| {
            let v = crate::daemon::conn_json(0, &c);
            (
                v["zone"].as_u64().unwrap(),
                v["zone_dir"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(2, "both".to_string()), (9, "orig".to_string())]);
}
