//! The mangle table on built frames through the tracked pipeline, loaded as the daemon loads
//! a file: the bytes that leave, marks seen by the filter, drops.

use crate::bridge_rig::{load, Rig, INSIDE, OUTSIDE};
use dataplane::verdict::{DropReason, Verdict};
use dataplane::wire::builder::{tcp_options, FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::{Flags, TcpOption};
use std::net::Ipv4Addr;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

fn ip(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> IpSpec {
    match IpSpec::v4(src, dst) {
        IpSpec::V4 {
            src,
            dst,
            ident,
            dont_frag,
            options,
            ..
        } => IpSpec::V4 {
            src,
            dst,
            ttl,
            ident,
            dont_frag,
            options,
        },
        v => v,
    }
}

/// A TCP segment of the test connection (`out`: client to server), with an MSS option.
fn seg(out: bool, flags: Flags, mss: Option<u16>, ttl: u8) -> Vec<u8> {
    let (s, d, sp, dp) = if out {
        (CLIENT, SERVER, 40000, 80)
    } else {
        (SERVER, CLIENT, 80, 40000)
    };
    let (seq, ack) = match (out, flags.contains(Flags::SYN)) {
        (true, true) => (100, 0),
        (false, true) => (500, 101),
        (true, false) => (101, 501),
        (false, false) => (501, 101),
    };
    let mut l4 = L4Spec::tcp_segment(sp, dp, flags, seq, ack, &[]);
    if let (L4Spec::Tcp { options, .. }, Some(m)) = (&mut l4, mss) {
        *options = tcp_options(&[TcpOption::MaxSegmentSize(m)]);
    }
    FrameSpec::new(ip(s, d, ttl), l4).build()
}

const GATEWAY: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400
-A POSTROUTING -o outside -j TTL --ttl-set 200
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i inside -p tcp --dport 80 -j ACCEPT
COMMIT
";

/// The SYN and the SYN-ACK have their MSS lowered (the rule's flags match both), a smaller
/// one is kept, every packet leaving by `outside` has its TTL set, established ones too (a
/// cached verdict would skip the mangle table: the filter is not cacheable while it applies).
#[test]
fn tcpmss_and_ttl_on_a_connection() {
    let mut rig = Rig::new(GATEWAY);
    assert!(rig.filter.mangle_v4.is_some());
    assert!(!rig.filter.v4.as_ref().unwrap().cacheable);
    let (v, f) = rig.send(INSIDE, seg(true, Flags::SYN, Some(1460), 64));
    assert_eq!(v, Verdict::Forward(OUTSIDE));
    assert_eq!(f, seg(true, Flags::SYN, Some(1400), 200));
    let (v, f) = rig.send(OUTSIDE, seg(false, Flags::SYN | Flags::ACK, Some(1200), 64));
    assert_eq!(v, Verdict::Forward(INSIDE));
    // Not raised; the TTL only on the way out.
    assert_eq!(f, seg(false, Flags::SYN | Flags::ACK, Some(1200), 64));
    for _ in 0..3 {
        let (v, f) = rig.send(INSIDE, seg(true, Flags::ACK, Some(1460), 64));
        assert_eq!(v, Verdict::Forward(OUTSIDE));
        // Not a SYN: the MSS stays; the TTL is set on every packet.
        assert_eq!(f, seg(true, Flags::ACK, Some(1460), 200));
    }
}

/// A mark set in mangle PREROUTING is what the filter's `-m mark` reads, for every packet of
/// the connection (Linux's `skb->mark` before the filter); DROP in mangle drops.
#[test]
fn mangle_marks_are_read_by_the_filter_and_mangle_drops() {
    let text = "*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 81 -j DROP
-A PREROUTING -i inside -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x7/0xff
-A FORWARD -m mark --mark 0x7/0xff -j DSCP --set-dscp-class EF
COMMIT
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m mark --mark 0x7 -m conntrack --ctstate ESTABLISHED -j DROP
COMMIT
";
    let mut rig = Rig::new(text);
    let (v, f) = rig.send(INSIDE, seg(true, Flags::SYN, None, 64));
    assert_eq!(v, Verdict::Forward(OUTSIDE));
    // DSCP EF (46) in the TOS byte, the header checksum whole.
    assert_eq!(f[15], 46 << 2);
    let hdr: [u8; 20] = f[14..34].try_into().unwrap();
    assert!(dataplane::wire::checksum::verify_20(&hdr));
    let (v, _) = rig.send(OUTSIDE, seg(false, Flags::SYN | Flags::ACK, None, 64));
    assert_eq!(v, Verdict::Forward(INSIDE));
    // The client's next packet is marked again and meets the filter's DROP.
    let (v, _) = rig.send(INSIDE, seg(true, Flags::ACK, None, 64));
    assert_eq!(v, Verdict::Drop(DropReason::RuleDrop));
    // Destination port 81: dropped by mangle PREROUTING.
    let syn81 = FrameSpec::new(ip(CLIENT, SERVER, 64), L4Spec::tcp(40001, 81, Flags::SYN)).build();
    let (v, _) = rig.send(INSIDE, syn81);
    assert_eq!(v, Verdict::Drop(DropReason::RuleDrop));
}

/// A mangle table that changes nothing (firewalld's) is not compiled: the filter stays
/// cacheable and no chain is walked.
#[test]
fn a_mangle_table_without_effect_costs_nothing() {
    let text = "*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:u - [0:0]
-A PREROUTING -j u
-A u -p tcp -j ACCEPT
-A u -j RETURN
COMMIT
*filter
:FORWARD ACCEPT [0:0]
COMMIT
";
    let f = load(text);
    assert!(f.mangle_v4.is_none());
    assert!(f.v4.as_ref().unwrap().cacheable);
}

/// The daemon sends a file whose mangle table may apply to the full load (the incremental
/// reloader compiles filter and raw only); firewalld's jumps-only mangle stays incremental.
#[test]
fn mangle_with_effect_takes_the_full_load() {
    use crate::load::mangle_may_apply;
    assert!(mangle_may_apply(GATEWAY));
    assert!(mangle_may_apply("*mangle\n:FORWARD DROP [0:0]\nCOMMIT\n"));
    let jumps = "*mangle\n:PREROUTING ACCEPT [0:0]\n:u - [0:0]\n-A PREROUTING -j u\n\
                 -A u -j RETURN\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DROP\nCOMMIT\n";
    assert!(!mangle_may_apply(jumps));
    assert!(!mangle_may_apply(
        "*filter\n-A FORWARD -j MARK --set-mark 1\nCOMMIT\n"
    ));
}
