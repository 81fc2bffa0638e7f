//! ip6tables' extension header matches (`frag`, `hbh`, `dst`, `ipv6header`, `ah`) and the
//! AH / ESP SPI matches of both families: what the parser takes and refuses, and their
//! meaning on hand-built frames judged as a worker judges them.

use super::tests::{assert_refused, compile};
use super::*;
use dataplane::classify::{Action, Wire};
use dataplane::filter::packet_meta;

const DROP: Action = Action::Drop;
const ACCEPT: Action = Action::Accept;

/// Ethernet and an IPv6 header, then `chain`'s headers (type and bytes, the next-header byte
/// filled in), then `l4` of protocol `last`.
fn v6(chain: &[(u8, Vec<u8>)], last: u8, l4: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (_, h)) in chain.iter().enumerate() {
        let mut h = h.clone();
        h[0] = chain.get(i + 1).map_or(last, |n| n.0);
        body.extend(h);
    }
    body.extend_from_slice(l4);
    let mut fr = vec![
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60, 0, 0, 0,
    ];
    fr.extend((body.len() as u16).to_be_bytes());
    fr.push(chain.first().map_or(last, |c| c.0));
    fr.push(64);
    let s: std::net::Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let d: std::net::Ipv6Addr = "2001:db8:2::1".parse().unwrap();
    fr.extend(s.octets());
    fr.extend(d.octets());
    fr.extend(body);
    fr
}

/// An IPv4 packet of protocol `proto` carrying `l4`.
fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut fr = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0];
    fr.extend(((20 + l4.len()) as u16).to_be_bytes());
    fr.extend([0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    let sum = dataplane::wire::checksum::checksum(&fr[14..34]);
    fr[24..26].copy_from_slice(&sum.to_be_bytes());
    fr.extend_from_slice(l4);
    fr
}

const UDP: [u8; 8] = [0x9c, 0x40, 0, 53, 0, 8, 0, 0];

fn udp_v6(chain: &[(u8, Vec<u8>)]) -> Vec<u8> {
    v6(chain, 17, &UDP)
}

/// A Fragment header: offset (8-byte units), M flag, reserved byte, identification.
fn frag(off: u16, more: bool, res: u8, id: u32) -> (u8, Vec<u8>) {
    let mut h = vec![0, res];
    h.extend((off << 3 | u16::from(more)).to_be_bytes());
    h.extend(id.to_be_bytes());
    (44, h)
}

/// Hop-by-hop (0) or destination (60) options: router alert (5, length 2), PadN (1, 0).
fn opts(ty: u8) -> (u8, Vec<u8>) {
    (ty, vec![0, 0, 5, 2, 0, 0, 1, 0])
}

/// An Authentication header of 12 bytes (length field 1) with `spi`, reserved `res`.
fn ah(spi: u32, res: u8) -> (u8, Vec<u8>) {
    let mut h = vec![0, 1, 0, res];
    h.extend(spi.to_be_bytes());
    h.extend([0, 0, 0, 1]);
    (51, h)
}

fn esp(spi: u32) -> Vec<u8> {
    let mut b = spi.to_be_bytes().to_vec();
    b.extend([0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    b
}

fn judged(text: &str, family: Family, frame: &[u8]) -> Action {
    let rs = compile(text, family).unwrap_or_else(|e| panic!("{e:?}"));
    let c = crate::load::tree_classifier(&rs.rules).unwrap();
    let rs = rs.with_classifier(c);
    let info = dataplane::wire::parse_frame(frame).expect("the test frame parses");
    let meta = packet_meta(frame, &info, 0, 2).expect("an IP frame");
    rs.judge(&meta, &Wire::of(frame, &info, 0), |_, _, _| {})
        .action
}

fn set6(rules: &str) -> String {
    format!("*filter\n:FORWARD ACCEPT [0:0]\n{rules}\nCOMMIT\n")
}

#[test]
fn accepts_the_matches_as_ip6tables_save_writes_them() {
    for rule in [
        "-m frag --fragid 5:10 --fraglen 8 --fragres --fragfirst --fragmore -j DROP",
        "-m frag ! --fragid 5 ! --fraglen 8 --fraglast -j DROP",
        "-m hbh --hbh-len 8 --hbh-opts 5:2,1 -j DROP",
        "-m hbh ! --hbh-len 16 -j DROP",
        "-m dst --dst-len 8 --dst-opts 1:4 -j ACCEPT",
        "-m ipv6header --header hop-by-hop,dst,route,frag,auth,esp,none,protocol -j DROP",
        "-m ipv6header ! --header frag --soft -j DROP",
        "-m ipv6header --header 0,60,43,44,51,50,59,255 -j DROP",
        "-m ah --ahspi 100:200 --ahlen 12 --ahres -j DROP",
        "-m ah ! --ahspi 100 ! --ahlen 12 -j DROP",
        "-p esp -m esp --espspi 100:200 -j DROP",
        "-p esp -m esp ! --espspi 0x100 -j DROP",
    ] {
        if let Err(e) = compile(&set6(&format!("-A FORWARD {rule}")), Family::V6) {
            panic!("{rule:?}: {e:?}");
        }
    }
    for rule in [
        "-p esp -m esp --espspi 5 -j DROP",
        "-p ah -m ah ! --ahspi 7:9 -j DROP",
    ] {
        let text = format!("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD {rule}\nCOMMIT\n");
        if let Err(e) = compile(&text, Family::V4) {
            panic!("{rule:?}: {e:?}");
        }
    }
}

/// (family, rule after `-A FORWARD `, message substring, index of the offending word).
const REFUSED: &[(Family, &str, &str, usize)] = &[
    (
        Family::V4,
        "-m esp --espspi 5 -j DROP",
        "-m esp needs -p esp",
        0,
    ),
    (
        Family::V6,
        "-p udp -m esp --espspi 5 -j DROP",
        "-m esp needs -p esp",
        2,
    ),
    (
        Family::V4,
        "-m ah --ahspi 5 -j DROP",
        "-m ah needs -p ah",
        0,
    ),
    (
        Family::V4,
        "-p ah -m ah --ahlen 12 -j DROP",
        "takes --ahspi only",
        2,
    ),
    (
        Family::V4,
        "-m frag --fragid 1 -j DROP",
        "unsupported option -m frag",
        0,
    ),
    (
        Family::V6,
        "-m frag --fragmore --fraglast -j DROP",
        "cannot be combined",
        3,
    ),
    (
        Family::V6,
        "-m frag ! --fragres -j DROP",
        "! is not allowed",
        3,
    ),
    (Family::V6, "-m frag --fragid 1:x -j DROP", "invalid id", 3),
    (
        Family::V6,
        "-m ipv6header --soft -j DROP",
        "needs --header",
        0,
    ),
    (
        Family::V6,
        "-m ipv6header --header bogus -j DROP",
        "unknown header",
        3,
    ),
    (
        Family::V6,
        "-m hbh --hbh-opts 5:256 -j DROP",
        "invalid option length",
        3,
    ),
    (
        Family::V6,
        "-m hbh ! --hbh-opts 5 -j DROP",
        "! is not allowed",
        3,
    ),
    (
        Family::V6,
        "-m dst --hbh-len 8 -j DROP",
        "unsupported option --hbh-len",
        2,
    ),
    (
        Family::V6,
        "-m ah --espspi 5 -j DROP",
        "unsupported option --espspi",
        2,
    ),
];

#[test]
fn refuses_bad_values_at_their_column() {
    for &(family, rule, msg, word) in REFUSED {
        let text = format!("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD {rule}\nCOMMIT\n");
        assert_refused(&text, family, 3, rule, msg, word);
    }
}

#[test]
fn fragment_header() {
    let rules = set6(
        "-A FORWARD -m frag --fragid 7 --fragfirst --fragmore -j DROP\n\
         -A FORWARD -m frag ! --fragid 0:6 --fraglast --fragres -j REJECT\n\
         -A FORWARD -m frag --fragid 9 --fraglen 1000 -j DROP",
    );
    let at = |f: &[u8]| judged(&rules, Family::V6, f);
    assert_eq!(at(&udp_v6(&[frag(0, true, 0, 7)])), DROP);
    // An atomic fragment (offset 0, no M flag) is the last: not --fragmore, but the second
    // rule's.
    assert!(matches!(
        at(&udp_v6(&[frag(0, false, 0, 7)])),
        Action::Reject(_)
    ));
    assert!(matches!(
        at(&v6(&[frag(5, false, 0, 7)], 17, &[0; 8])),
        Action::Reject(_)
    ));
    assert_eq!(
        at(&v6(&[frag(5, false, 1, 7)], 17, &[0; 8])),
        ACCEPT,
        "--fragres"
    );
    assert_eq!(
        at(&v6(&[frag(5, false, 0, 3)], 17, &[0; 8])),
        ACCEPT,
        "id 3"
    );
    // --fraglen is never compared (ip6t_frag keeps it and does not look at it).
    assert_eq!(at(&v6(&[frag(5, true, 0, 9)], 17, &[0; 8])), DROP);
    assert_eq!(at(&udp_v6(&[])), ACCEPT, "no Fragment header");
    // Behind a hop-by-hop header it is found too.
    assert_eq!(at(&udp_v6(&[opts(0), frag(0, true, 0, 7)])), DROP);
}

#[test]
fn hop_by_hop_and_destination_options() {
    let rules = set6(
        "-A FORWARD -m hbh --hbh-len 8 --hbh-opts 5:2,1 -j DROP\n\
         -A FORWARD -m dst ! --dst-len 8 -j DROP\n\
         -A FORWARD -m dst --dst-opts 5:3 -j DROP\n\
         -A FORWARD -m dst --dst-opts 5,1:0 -j REJECT",
    );
    let at = |f: &[u8]| judged(&rules, Family::V6, f);
    assert_eq!(at(&udp_v6(&[opts(0)])), DROP);
    assert_eq!(at(&udp_v6(&[])), ACCEPT);
    assert!(matches!(at(&udp_v6(&[opts(60)])), Action::Reject(_)));
    // A destination header of 16 bytes: ! --dst-len 8.
    let long = (60u8, vec![0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(at(&udp_v6(&[long])), DROP);
    // Options after a non-first fragment's Fragment header are payload, not found.
    assert_eq!(
        at(&v6(&[frag(5, false, 0, 1), opts(60)], 17, &[0; 8])),
        ACCEPT
    );
}

#[test]
fn ipv6header_strict_soft_and_negated() {
    let rules = set6(
        "-A FORWARD -m ipv6header --header hop-by-hop,protocol -j DROP\n\
         -A FORWARD -m ipv6header --header frag --soft -j REJECT\n\
         -A FORWARD -m ipv6header ! --header protocol -j DROP",
    );
    let at = |f: &[u8]| judged(&rules, Family::V6, f);
    assert_eq!(at(&udp_v6(&[opts(0)])), DROP);
    assert!(matches!(
        at(&udp_v6(&[opts(0), frag(0, true, 0, 1)])),
        Action::Reject(_)
    ));
    assert_eq!(at(&udp_v6(&[])), ACCEPT, "protocol alone");
    assert_eq!(
        at(&udp_v6(&[opts(60)])),
        DROP,
        "dst,protocol is not protocol alone"
    );
    let rules = set6("-A FORWARD -m ipv6header ! --header frag,auth --soft -j DROP");
    let at = |f: &[u8]| judged(&rules, Family::V6, f);
    assert_eq!(at(&udp_v6(&[opts(0)])), DROP, "neither");
    assert_eq!(at(&udp_v6(&[ah(1, 0)])), ACCEPT, "has auth");
    // ESP ends the walk: esp, no protocol bit.
    let rules = set6("-A FORWARD -m ipv6header --header esp -j DROP");
    assert_eq!(judged(&rules, Family::V6, &v6(&[], 50, &esp(1))), DROP);
}

#[test]
fn authentication_header_and_esp() {
    let rules = set6(
        "-A FORWARD -m ah --ahspi 100:200 --ahlen 12 --ahres -j DROP\n\
         -A FORWARD -m ah ! --ahspi 300 -j REJECT\n\
         -A FORWARD -p esp -m esp --espspi 0x100 -j DROP",
    );
    let at = |f: &[u8]| judged(&rules, Family::V6, f);
    assert_eq!(at(&udp_v6(&[ah(150, 0)])), DROP);
    assert!(
        matches!(at(&udp_v6(&[ah(150, 1)])), Action::Reject(_)),
        "--ahres"
    );
    assert_eq!(at(&udp_v6(&[ah(300, 0)])), ACCEPT);
    assert_eq!(at(&udp_v6(&[])), ACCEPT, "no AH: no match, inverted or not");
    assert_eq!(at(&v6(&[opts(0)], 50, &esp(0x100))), DROP);
    assert_eq!(at(&v6(&[], 50, &esp(0x101))), ACCEPT);
    let rules = "*filter\n:FORWARD ACCEPT [0:0]\n\
                 -A FORWARD -p esp -m esp --espspi 0x100 -j DROP\n\
                 -A FORWARD -p ah -m ah ! --ahspi 7 -j DROP\nCOMMIT\n";
    let at = |f: &[u8]| judged(rules, Family::V4, f);
    assert_eq!(at(&v4(50, &esp(0x100))), DROP);
    assert_eq!(at(&v4(50, &esp(0x1000))), ACCEPT);
    assert_eq!(at(&v4(51, &ah(8, 0).1)), DROP);
    assert_eq!(at(&v4(51, &ah(7, 0).1)), ACCEPT);
    // An AH header cut short (8 of its 12 bytes; the frame padded to Ethernet's minimum):
    // Linux drops it (hotdrop) whatever the rules after say, and so does the walk (rule
    // u32::MAX, counted as a rule drop); so for an ESP header of 4 bytes.
    let mut short = v4(51, &ah(8, 0).1[..8]);
    short.resize(60, 0);
    let hot = |text: &str, family, f: &[u8]| {
        let rs = compile(text, family).unwrap_or_else(|e| panic!("{e:?}"));
        let info = dataplane::wire::parse_frame(f).expect("the test frame parses");
        let meta = packet_meta(f, &info, 0, 2).expect("an IP frame");
        let j = rs.judge(&meta, &Wire::of(f, &info, 0), |_, _, _| {});
        (j.action, j.rule)
    };
    let accept_after = "*filter\n:FORWARD DROP [0:0]\n\
                 -A FORWARD -p esp -m esp --espspi 0x100 -j DROP\n\
                 -A FORWARD -p ah -m ah ! --ahspi 7 -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n";
    assert_eq!(hot(accept_after, Family::V4, &short), (DROP, u32::MAX));
    let mut short_esp = v4(50, &esp(0x100)[..4]);
    short_esp.resize(60, 0);
    assert_eq!(hot(accept_after, Family::V4, &short_esp), (DROP, u32::MAX));
    // Whole headers go on to the accept.
    assert_eq!(
        hot(accept_after, Family::V4, &v4(51, &ah(7, 0).1)).0,
        ACCEPT
    );
    let v6rules = set6("-A FORWARD -p esp -m esp --espspi 0x100 -j DROP\n-A FORWARD -j ACCEPT");
    let short6 = v6(&[], 50, &esp(0x100)[..4]);
    assert_eq!(hot(&v6rules, Family::V6, &short6), (DROP, u32::MAX));
    assert_eq!(
        hot(&v6rules, Family::V6, &v6(&[], 50, &esp(0x101))).0,
        ACCEPT
    );
}
