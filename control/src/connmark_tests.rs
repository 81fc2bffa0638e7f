//! CONNMARK and `-m connmark` on built frames through the tracked pipeline, loaded as the
//! daemon loads a file: marks set at a connection's first packet and matched on its replies
//! and later packets, save and restore with masks, the operations, packets without a
//! connection, the cached verdict's two cases.

use crate::bridge_rig::{Rig, INSIDE, OUTSIDE};
use dataplane::verdict::Verdict;
use dataplane::wire::builder::{FrameSpec, IpSpec, L4Spec};
use dataplane::wire::tcp::Flags;
use std::net::Ipv4Addr;

const MARKED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

impl Rig {
    /// Whether the frame is forwarded.
    fn passes(&mut self, ingress: u16, frame: Vec<u8>) -> bool {
        matches!(self.send(ingress, frame).0, Verdict::Forward(_))
    }

    /// The marks of the connections from `client`.
    fn marks(&self, client: Ipv4Addr) -> Vec<u32> {
        let c = dataplane::wire::IpAddr128::from_std(client.into());
        self.tables
            .ct
            .list(self.now)
            .filter(|i| i.orig.src == c)
            .map(|i| i.mark)
            .collect()
    }

    fn cacheable(&self) -> bool {
        self.filter.v4.as_ref().unwrap().cacheable
    }

    /// A handshake and `data` more segments each way from `client`; whether each packet
    /// passed, in order (SYN, SYN-ACK, ACK, then client and server segments alternately).
    fn connection(&mut self, client: Ipv4Addr, sport: u16, data: usize) -> Vec<bool> {
        let mut got = vec![
            self.passes(INSIDE, seg(client, sport, true, Flags::SYN, 100, 0)),
            self.passes(
                OUTSIDE,
                seg(client, sport, false, Flags::SYN | Flags::ACK, 500, 101),
            ),
            self.passes(INSIDE, seg(client, sport, true, Flags::ACK, 101, 501)),
        ];
        for i in 0..data as u32 {
            got.push(self.passes(INSIDE, seg(client, sport, true, Flags::ACK, 101 + i, 501)));
            got.push(self.passes(OUTSIDE, seg(client, sport, false, Flags::ACK, 501, 102 + i)));
        }
        got
    }
}

/// A TCP segment between `client`:`sport` and the server's port 80 (`out`: from the client),
/// with a byte of data when it is neither a SYN nor a RST.
fn seg(client: Ipv4Addr, sport: u16, out: bool, flags: Flags, seq: u32, ack: u32) -> Vec<u8> {
    let data: &[u8] = if flags.intersects(Flags::SYN | Flags::RST) {
        &[]
    } else {
        b"x"
    };
    let (s, d, sp, dp) = if out {
        (client, SERVER, sport, 80)
    } else {
        (SERVER, client, 80, sport)
    };
    FrameSpec::new(
        IpSpec::v4(s, d),
        L4Spec::tcp_segment(sp, dp, flags, seq, ack, data),
    )
    .build()
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    FrameSpec::new(IpSpec::v4(src, dst), L4Spec::udp(sport, dport, b"q")).build()
}

const FILTER_HEAD: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";

/// The mark set by the first packet of one source's connections decides their replies and
/// later packets both ways; a mark set only at NEW keeps the filter cacheable, and the
/// cached verdicts give the same answers.
#[test]
fn a_mark_set_at_new_is_matched_on_replies_and_later_packets() {
    let text = format!(
        "{FILTER_HEAD}-A FORWARD -s 10.0.0.2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x1\n\
         -A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n\
         -A FORWARD -m connmark --mark 0x1 -j ACCEPT\nCOMMIT\n"
    );
    let mut rig = Rig::new(&text);
    assert!(rig.cacheable());
    assert!(rig.filter.conn_marks);
    assert!(rig.connection(MARKED, 40000, 3).iter().all(|&b| b));
    assert_eq!(rig.marks(MARKED), [1]);
    // The other source's connection opens, and nothing after its first packet passes.
    let got = rig.connection(OTHER, 40001, 2);
    assert_eq!(got, [true, false, false, false, false, false, false]);
    assert_eq!(rig.marks(OTHER), [0]);
}

/// A CONNMARK rule that ESTABLISHED packets reach changes the mark between them: every
/// packet is judged (not cacheable), and the verdict follows the mark as it flips.
#[test]
fn a_mark_changed_on_established_packets_is_judged_per_packet() {
    let text = format!(
        "{FILTER_HEAD}-A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate ESTABLISHED -j CONNMARK --xor-mark 0x1\n\
         -A FORWARD -m connmark --mark 0x1/0x1 -j ACCEPT\nCOMMIT\n"
    );
    let mut rig = Rig::new(&text);
    assert!(!rig.cacheable());
    let got = rig.connection(MARKED, 40000, 2);
    // SYN (NEW), then the mark flips 1, 0, 1, 0 ... with every established packet (a dropped
    // packet's flip stays: the connection's mark is written in place, as in Linux).
    assert_eq!(got, [true, true, false, true, false, true, false]);
    assert_eq!(rig.marks(MARKED), [0]);
}

/// mangle restores the connection's mark into the packet's (with masks), marks the first
/// packet when nothing was restored, saves it back; the filter reads the packet's mark with
/// `-m mark`, so the replies of the marked source's connection pass.
#[test]
fn save_and_restore_with_masks() {
    let text = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        -A PREROUTING -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff\n\
        -A PREROUTING -s 10.0.0.2 -m mark --mark 0x0/0xff -j MARK --set-mark 0x12\n\
        -A PREROUTING -j CONNMARK --save-mark --mask 0xff\nCOMMIT\n"
        .to_string()
        + FILTER_HEAD
        + "-A FORWARD -m mark --mark 0x12/0xff -j ACCEPT\n\
           -A FORWARD -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";
    let mut rig = Rig::new(&text);
    assert!(rig.connection(MARKED, 40000, 2).iter().all(|&b| b));
    assert_eq!(rig.marks(MARKED), [0x12]);
    let got = rig.connection(OTHER, 40001, 1);
    assert_eq!(got, [true, false, false, false, false]);
    assert_eq!(rig.marks(OTHER), [0]);
}

/// The operations on the connection's mark in one walk: set, and, or, xor, and a save with
/// a shift (`(ct & ~ctmask) ^ ((packet & nfmask) << 8)`).
#[test]
fn operations_in_order() {
    let text = format!(
        "{FILTER_HEAD}-A FORWARD -j CONNMARK --set-mark 0xf0f\n\
         -A FORWARD -j CONNMARK --and-mark 0xff\n\
         -A FORWARD -j CONNMARK --or-mark 0x100\n\
         -A FORWARD -j CONNMARK --xor-mark 0x3\n\
         -A FORWARD -j MARK --set-mark 0x5\n\
         -A FORWARD -j CONNMARK --save-mark --nfmask 0xf --ctmask 0xf00 --left-shift-mark 8\n\
         -A FORWARD -j CONNMARK --set-xmark 0x30/0xf0\n\
         -A FORWARD -j ACCEPT\nCOMMIT\n"
    );
    let mut rig = Rig::new(&text);
    assert!(rig.passes(INSIDE, udp(MARKED, SERVER, 5000, 53)));
    // 0xf0f & 0xff = 0x0f; | 0x100 = 0x10f; ^ 3 = 0x10c; save: (0x10c & ~0xf00) ^ 0x500 =
    // 0x50c; set-xmark 0x30/0xf0: (0x50c & ~0xf0) ^ 0x30 = 0x53c.
    assert_eq!(rig.marks(MARKED), [0x53c]);
}

/// A packet without a connection (NOTRACK) matches no `-m connmark`, negated or not, and
/// CONNMARK changes nothing for it; a tracked one has mark 0 until set.
#[test]
fn untracked_packets_have_no_connection_mark() {
    let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A PREROUTING -p udp --dport 53 -j CT --notrack\nCOMMIT\n\
        *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A FORWARD -j CONNMARK --set-mark 0x1\n\
        -A FORWARD -m connmark --mark 0x1 -p udp --dport 54 -j DROP\n\
        -A FORWARD -m connmark ! --mark 0x7 -p udp --dport 53 -j DROP\n\
        -A FORWARD -m connmark --mark 0x0 -p udp --dport 53 -j DROP\nCOMMIT\n";
    let mut rig = Rig::new(text);
    // Untracked: neither `! --mark 0x7` nor `--mark 0x0` holds.
    assert!(rig.passes(INSIDE, udp(MARKED, SERVER, 5000, 53)));
    assert!(rig.marks(MARKED).is_empty());
    // Tracked: marked 1 at once, so the rule for port 54 drops it (and the drop leaves no
    // connection behind).
    assert!(!rig.passes(INSIDE, udp(MARKED, SERVER, 5001, 54)));
    assert!(rig.marks(MARKED).is_empty());
}

/// The RST that answers a connection's first packet kills its entry (Linux's
/// `nf_ct_kill_acct`), but the packet still belongs to the connection in its walk (it keeps
/// its reference), so a rule on the connection's mark passes it.
#[test]
fn the_killing_rst_sees_its_connection_mark() {
    let text = format!(
        "{FILTER_HEAD}-A FORWARD -s 10.0.0.2 -m conntrack --ctstate NEW -j CONNMARK --set-mark 0x1\n\
         -A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n\
         -A FORWARD -m connmark --mark 0x1 -j ACCEPT\nCOMMIT\n"
    );
    let mut rig = Rig::new(&text);
    assert!(rig.passes(INSIDE, seg(MARKED, 40000, true, Flags::SYN, 100, 0)));
    assert_eq!(rig.marks(MARKED), [1]);
    let rst = seg(MARKED, 40000, false, Flags::RST | Flags::ACK, 0, 101);
    assert!(rig.passes(OUTSIDE, rst));
    assert!(rig.marks(MARKED).is_empty(), "the RST killed the entry");
    // The other source's connection has mark 0: its RST is dropped.
    assert!(rig.passes(INSIDE, seg(OTHER, 40001, true, Flags::SYN, 100, 0)));
    let rst = seg(OTHER, 40001, false, Flags::RST | Flags::ACK, 0, 101);
    assert!(!rig.passes(OUTSIDE, rst));
}
