//! FAST PATH: no allocation, lock, syscall or log.
//!
//! TCP connection tracking with the meaning of Linux's `nf_conntrack_proto_tcp` (as of Linux
//! 6.x): the transition table `[direction][flag class][state]`, sequence and window tracking
//! (`tcp_in_window`), mid-stream pickup, the RST and FIN special cases, and the per-state
//! timeout choice.
//!
//! Invariants:
//! - [`TcpTrack`] is only mutated by [`TcpTrack::packet`]; a packet found INVALID leaves every
//!   field unchanged except the ones Linux also touches on that path (`last_*` bookkeeping in
//!   the IGNORE path, `td_end` for a sender that overshoots the receive window).
//! - Sequence numbers compare modulo 2^32 ([`before`]/[`after`]).
//! - The table is data; the special cases that the table cannot express live in
//!   [`TcpTrack::packet`] and name the table cell they override.

use super::Dir;
use crate::wire::tcp::{option_kind, Flags};

/// Linux's TCP conntrack states (`enum tcp_conntrack`), in Linux's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    /// SYN seen from the reply direction after a SYN: simultaneous open.
    SynSent2 = 9,
}

impl TcpState {
    pub const COUNT: usize = 10;
    pub const ALL: [TcpState; Self::COUNT] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name `conntrack -L` prints.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// States in which Linux lets an assured entry be evicted early (`tcp_can_early_drop`).
    #[inline]
    pub const fn is_closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        )
    }
}

/// The flag class a segment is looked up by (`get_conntrack_index`): RST wins, then SYN (with
/// or without ACK), then FIN, then ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlagClass {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl FlagClass {
    pub const ALL: [FlagClass; 6] = [
        FlagClass::Syn,
        FlagClass::SynAck,
        FlagClass::Fin,
        FlagClass::Ack,
        FlagClass::Rst,
        FlagClass::None,
    ];

    #[inline]
    pub const fn of(f: Flags) -> FlagClass {
        if f.contains(Flags::RST) {
            FlagClass::Rst
        } else if f.contains(Flags::SYN) {
            if f.contains(Flags::ACK) {
                FlagClass::SynAck
            } else {
                FlagClass::Syn
            }
        } else if f.contains(Flags::FIN) {
            FlagClass::Fin
        } else if f.contains(Flags::ACK) {
            FlagClass::Ack
        } else {
            FlagClass::None
        }
    }
}

/// Whether a flag combination is one Linux accepts (`tcp_valid_flags`); PSH, ECE and CWR never
/// matter. Anything else is INVALID before any state is looked at.
#[inline]
pub const fn valid_flags(f: Flags) -> bool {
    let f = f.0 & !(Flags::PSH.0 | Flags::ECE.0 | Flags::CWR.0);
    // SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG.
    matches!(
        f,
        0x02 | 0x22 | 0x12 | 0x04 | 0x14 | 0x11 | 0x31 | 0x10 | 0x30
    )
}

/// One cell of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    To(TcpState),
    /// `sIG`: maybe valid, maybe not; let it through without changing state, and remember it in
    /// case the peer's answer proves our view stale.
    Ignore,
    /// `sIV`: truly invalid.
    Invalid,
}

use Next::{Ignore as IG, Invalid as IV};
const NO: Next = Next::To(TcpState::None);
const SS: Next = Next::To(TcpState::SynSent);
const SR: Next = Next::To(TcpState::SynRecv);
const ES: Next = Next::To(TcpState::Established);
const FW: Next = Next::To(TcpState::FinWait);
const CW: Next = Next::To(TcpState::CloseWait);
const LA: Next = Next::To(TcpState::LastAck);
const TW: Next = Next::To(TcpState::TimeWait);
const CL: Next = Next::To(TcpState::Close);
const S2: Next = Next::To(TcpState::SynSent2);
const _: Next = NO;

/// `[direction][flag class][old state]`. Columns: NONE, SYN_SENT, SYN_RECV, ESTABLISHED,
/// FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2.
///
/// We sit in the middle: a segment we see may still be lost before it arrives, and we always
/// guess the state of the current sender.
pub const TABLE: [[[Next; TcpState::COUNT]; 6]; 2] = [
    // ORIGINAL direction (the side that opened the connection sends).
    [
        //        NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
        /* syn */
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        // NO->SS: a new connection. SS->SS: retransmitted SYN. SR..LA->IG: a SYN inside a live
        // connection is an error the receiver answers with RST, or we hold a dead entry: let it
        // through without believing it. TW->SS, CL->SS: reopening (RFC 1122 4.2.2.13).
        // S2->S2: late retransmission of the SYN in a simultaneous open.
        /* synack */
        [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        // NO->IV: too late to start anything. SS->IV: the client cannot send SYN then SYN/ACK.
        // SR->SR: retransmitted SYN/ACK of a simultaneous open. ES..CL->IV: the client has no
        // SYN/ACK to send. S2->SR: our SYN/ACK answering the peer's SYN (simultaneous open).
        /* fin */
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        // NO->IV, SS->IV, S2->IV: no FIN before the handshake answered. SR->FW, ES->FW: close
        // starts. FW->LA, CW->LA: FIN both ways, waiting for the last ACK (or a
        // retransmitted FIN). LA->LA: retransmitted FIN. TW->TW, CL->CL: stay.
        /* ack */
        [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        // NO->ES: mid-stream pickup (only with `tcp_loose`). SS->IV, S2->IV: nothing to ACK
        // yet. SR->ES: the handshake completes. ES->ES. FW->CW, CW->CW: the close is
        // acknowledged. LA->TW: last ACK. TW->TW: retransmitted last ACK. CL->CL.
        /* rst */
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        // NO->IV: nothing to reset. Everything else closes (after the RST checks).
        /* none */
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        // No SYN, FIN, ACK or RST: never valid.
    ],
    // REPLY direction (the side that accepted sends).
    [
        //        NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
        /* syn */
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        // NO->IV: never reached. SS->S2: simultaneous open. S2->S2: its retransmission.
        // SR..LA->IV, CL->IV: the server sends no SYN there. TW->SS: the connection reopened
        // with the roles swapped.
        /* synack */
        [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        // NO->IV. SS->SR: the standard open. S2->SR: simultaneous open. SR->IG: retransmitted
        // SYN/ACK. ES..CL->IG: a late SYN/ACK, or one answering a SYN we ignored: keep it in
        // mind (it may resynchronise us, see `packet`).
        /* fin */
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        // NO->IV, SS->IV, S2->IV: the server sends no FIN before its SYN/ACK. SR->FW, ES->FW:
        // close starts. FW->LA, CW->LA: FIN both ways. LA->LA: retransmitted FIN. TW->TW,
        // CL->CL.
        /* ack */
        [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        // NO->IV. SS->IG, S2->IG: might be a half-open connection on the server; remembered
        // (a challenge ACK). SR->SR: answers a late resent SYN. ES->ES. FW->CW, CW->CW: close
        // acknowledged. LA->TW: last ACK. TW->TW. CL->CL.
        /* rst */
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        // NO->IV. Everything else closes (after the RST checks).
        /* none */
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        // Never valid.
    ],
];

/// The table cell for one segment.
#[inline]
pub const fn next(dir: Dir, class: FlagClass, state: TcpState) -> Next {
    TABLE[dir as usize][class as usize][state as usize]
}

/// `a` is before `b` modulo 2^32.
#[inline]
pub const fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` is after `b` modulo 2^32.
#[inline]
pub const fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Per-direction flags (Linux's `IP_CT_TCP_FLAG_*`).
pub mod seen_flags {
    /// The sender offered window scaling.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// The sender offered SACK.
    pub const SACK_PERM: u8 = 0x02;
    /// The sender started the close (its FIN moved the entry to FIN_WAIT).
    pub const CLOSE_INIT: u8 = 0x04;
    /// Skip window checks for this sender (set on mid-stream pickup).
    pub const BE_LIBERAL: u8 = 0x08;
    /// The sender has data the receiver has not acknowledged.
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    /// `maxack` holds a value.
    pub const MAXACK_SET: u8 = 0x20;
    /// `last_flags` only: an ignored SYN arrived in LAST_ACK; the next ACK may be a challenge ACK.
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// `last_flags` only: a simultaneous open was seen.
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}
use seen_flags as sf;

/// Largest window scale shift (RFC 7323 §2.3).
const MAX_WSCALE: u8 = 14;
/// Linux's `MAXACKWINCONST`: the lower bound slack for acknowledgements.
const MAX_ACK_WIN_CONST: u32 = 66000;

/// What one direction has shown of its sequence space (`struct ip_ct_tcp_state`). Packed to
/// 2-byte alignment (18 bytes, not 20): the tracker then takes 56 bytes and a connection's
/// entry two cache lines (unaligned loads cost nothing on the CPUs Rampart runs on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed(2))]
pub struct Seen {
    /// Highest `seq + len` sent.
    pub end: u32,
    /// Highest right edge of the window the peer offered (`ack + win`).
    pub maxend: u32,
    /// Largest window offered.
    pub maxwin: u32,
    /// Highest acknowledgement sent.
    pub maxack: u32,
    /// Window scale shift.
    pub scale: u8,
    /// [`seen_flags`].
    pub flags: u8,
}

impl Seen {
    #[inline]
    fn max_ack_window(&self) -> u32 {
        self.maxwin.max(MAX_ACK_WIN_CONST)
    }

    /// `nf_ct_tcp_state_reset`: forget the window, keep only BE_LIBERAL.
    fn reset(&mut self) {
        *self = Seen {
            flags: self.flags & sf::BE_LIBERAL,
            ..Seen::default()
        };
    }
}

/// The TCP part of a connection (`struct ip_ct_tcp`), packed as [`Seen`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed(2))]
pub struct TcpTrack {
    /// `[original, reply]`.
    pub seen: [Seen; 2],
    pub last_seq: u32,
    pub last_ack: u32,
    pub last_end: u32,
    pub last_win: u16,
    pub state: TcpState,
    pub last_dir: Dir,
    pub last_index: FlagClass,
    /// Identical ACK segments in a row.
    pub retrans: u8,
    /// Options of the last ignored SYN, and [`seen_flags::EXP_CHALLENGE_ACK`],
    /// [`seen_flags::SIMULTANEOUS_OPEN`].
    pub last_flags: u8,
    pub last_wscale: u8,
}

const _: () = assert!(core::mem::size_of::<Seen>() == 18);
const _: () = assert!(core::mem::size_of::<TcpTrack>() == 56);

/// The fields of one TCP segment conntrack looks at.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub flags: Flags,
    /// `seq + payload + SYN + FIN`.
    pub end: u32,
    /// Option bytes.
    pub options: &'a [u8],
}

impl<'a> Segment<'a> {
    /// Reads a segment from a checked TCP view (its header length read once).
    #[inline(always)]
    pub fn from_packet(p: &crate::wire::tcp::Packet<&'a [u8]>) -> Segment<'a> {
        let seq = p.seq_number().0;
        let flags = p.flags();
        let buf: &'a [u8] = p.into_inner();
        let hl = p.header_len();
        // The whole buffer is one L4 segment: its length minus the header is the payload, as
        // Linux computes it from the IP length (the checked view has the header within it).
        let len = buf.len().saturating_sub(hl)
            + usize::from(flags.contains(Flags::SYN))
            + usize::from(flags.contains(Flags::FIN));
        Segment {
            seq,
            ack: p.ack_number().0,
            win: p.window_len(),
            flags,
            end: seq.wrapping_add(len as u32),
            options: buf.get(20..hl).unwrap_or(&[]),
        }
    }

    #[inline]
    fn has(&self, f: Flags) -> bool {
        self.flags.contains(f)
    }
}

/// Linux's per-state timeouts and the two special ones, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTimeouts {
    /// Indexed by [`TcpState`] (the NONE slot is unused).
    pub state_ns: [u64; TcpState::COUNT],
    /// After `max_retrans` identical retransmissions, or a zero window.
    pub retrans_ns: u64,
    /// While data is unacknowledged, and for a picked-up connection without a reply.
    pub unack_ns: u64,
}

const SEC: u64 = 1_000_000_000;

impl TcpTimeouts {
    /// `nf_conntrack_tcp_timeout_*` defaults.
    pub const LINUX: TcpTimeouts = TcpTimeouts {
        state_ns: [
            120 * SEC,           // NONE (Linux uses the SYN_SENT value)
            120 * SEC,           // SYN_SENT
            60 * SEC,            // SYN_RECV
            5 * 24 * 3600 * SEC, // ESTABLISHED
            120 * SEC,           // FIN_WAIT
            60 * SEC,            // CLOSE_WAIT
            30 * SEC,            // LAST_ACK
            120 * SEC,           // TIME_WAIT
            10 * SEC,            // CLOSE
            120 * SEC,           // SYN_SENT2
        ],
        retrans_ns: 300 * SEC,
        unack_ns: 300 * SEC,
    };

    #[inline]
    pub const fn of(&self, s: TcpState) -> u64 {
        self.state_ns[s as usize]
    }
}

/// The TCP switches (`nf_conntrack_tcp_*` sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Pick up connections already established (`nf_conntrack_tcp_loose`, default on).
    pub loose: bool,
    /// Only out-of-window RSTs are INVALID (`nf_conntrack_tcp_be_liberal`, default off).
    pub be_liberal: bool,
    /// Accept RSTs whose sequence is below the last ACK (`nf_conntrack_tcp_ignore_invalid_rst`).
    pub ignore_invalid_rst: bool,
    /// Identical retransmissions before the shorter timeout (`nf_conntrack_tcp_max_retrans`).
    pub max_retrans: u8,
    pub timeouts: TcpTimeouts,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            loose: true,
            be_liberal: false,
            ignore_invalid_rst: false,
            max_retrans: 3,
            timeouts: TcpTimeouts::LINUX,
        }
    }
}

/// What the connection's status says (Linux's `IPS_SEEN_REPLY`, `IPS_ASSURED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub seen_reply: bool,
    pub assured: bool,
}

/// What to do after one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In window: the state moved (or stayed). `timeout_ns: None` keeps the old deadline
    /// (a retransmitted SYN must not keep a dead entry alive).
    Accept {
        timeout_ns: Option<u64>,
        set_assured: bool,
    },
    /// Accepted, and the entry dies now (a RST answering the first packet).
    Kill,
    /// Let through with the packet's usual state, nothing updated (Linux's NF_ACCEPT after
    /// `sIG` or a tolerated out-of-window segment).
    Ignore,
    /// INVALID. `shrink_to_ns`: an assured entry whose FIN/RST answers a FIN/RST in the other
    /// direction but fell out of window: lower its timeout to this if it is longer and at
    /// least 120 s (`nf_tcp_handle_invalid`).
    Invalid {
        why: TcpInvalid,
        shrink_to_ns: Option<u64>,
    },
    /// A SYN reopening a closed connection: delete the entry and track the packet as new.
    Reopen,
}

/// Why a segment is INVALID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpInvalid {
    /// `sIV` in the table.
    State,
    /// Sequence above the receiver's window.
    SeqOverWindow,
    /// Acknowledges data never sent.
    AckOverUpperBound,
    /// RST below the last acknowledged sequence.
    Rst,
}

/// Parses the options of a SYN into `s` (Linux's `tcp_options`): window scale and SACK
/// permission. Stops at the first malformed option, as Linux does.
fn read_syn_options(options: &[u8], s: &mut Seen) {
    if options.is_empty() {
        return;
    }
    s.scale = 0;
    s.flags &= sf::BE_LIBERAL;
    let mut at = 0;
    while at < options.len() {
        let kind = options[at];
        match kind {
            option_kind::EOL => return,
            option_kind::NOP => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let Some(&size) = options.get(at + 1) else {
            return;
        };
        let size = usize::from(size);
        if size < 2 || at + size > options.len() {
            return;
        }
        if kind == option_kind::SACK_PERMITTED && size == 2 {
            s.flags |= sf::SACK_PERM;
        } else if kind == option_kind::WINDOW_SCALE && size == 3 {
            s.scale = options[at + 2].min(MAX_WSCALE);
            s.flags |= sf::WINDOW_SCALE;
        }
        at += size;
    }
}

/// The highest SACK right edge after `ack` (Linux's `tcp_sack`), or `ack`.
fn highest_sack(options: &[u8], ack: u32) -> u32 {
    let mut sack = ack;
    // Timestamps alone (NOP NOP TS): the common case, nothing to find.
    if options.len() == 12 && options[..4] == [1, 1, option_kind::TIMESTAMPS, 10] {
        return sack;
    }
    let mut at = 0;
    while at < options.len() {
        let kind = options[at];
        match kind {
            option_kind::EOL => return sack,
            option_kind::NOP => {
                at += 1;
                continue;
            }
            _ => {}
        }
        let Some(&size) = options.get(at + 1) else {
            return sack;
        };
        let size = usize::from(size);
        if size < 2 || at + size > options.len() {
            return sack;
        }
        if kind == option_kind::SACK && size >= 10 && (size - 2) % 8 == 0 {
            for block in options[at + 2..at + size].chunks_exact(8) {
                let right = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                if after(right, sack) {
                    sack = right;
                }
            }
            return sack;
        }
        at += size;
    }
    sack
}

/// The result of the window check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Accept,
    Ignore,
    Invalid(TcpInvalid),
}

impl TcpTrack {
    /// The state before any packet (all zero, state NONE).
    pub const EMPTY: TcpTrack = TcpTrack {
        state: TcpState::None,
        seen: [Seen {
            end: 0,
            maxend: 0,
            maxwin: 0,
            maxack: 0,
            scale: 0,
            flags: 0,
        }; 2],
        last_seq: 0,
        last_ack: 0,
        last_end: 0,
        last_win: 0,
        last_dir: Dir::Orig,
        last_index: FlagClass::None,
        retrans: 0,
        last_flags: 0,
        last_wscale: 0,
    };

    /// The tracker for a connection's first segment (`tcp_new`), or `None` when that segment
    /// cannot start one: anything but a SYN, or a pure ACK with `loose` on.
    #[inline]
    pub fn new(seg: &Segment<'_>, cfg: &TcpConfig) -> Option<TcpTrack> {
        let mut t = TcpTrack::EMPTY;
        let s = &mut t.seen[0];
        match next(Dir::Orig, FlagClass::of(seg.flags), TcpState::None) {
            Next::To(TcpState::SynSent) => {
                s.end = seg.end;
                s.maxwin = u32::from(seg.win).max(1);
                s.maxend = s.end;
                read_syn_options(seg.options, s);
            }
            Next::To(_) if cfg.loose => {
                // Mid-stream: the history is lost, guess from this segment and be liberal
                // (the window scale is unknown).
                s.end = seg.end;
                s.maxwin = u32::from(seg.win).max(1);
                s.maxend = s.end.wrapping_add(s.maxwin);
                t.seen[0].flags = sf::SACK_PERM | sf::BE_LIBERAL;
                t.seen[1].flags = sf::SACK_PERM | sf::BE_LIBERAL;
            }
            _ => return None,
        }
        Some(t)
    }

    /// [`TcpTrack::new`] and then [`TcpTrack::packet`] (in the original direction, no status)
    /// for the commonest first segment, a SYN without ACK, without the general dispatch: the
    /// tracker and the timeout `packet`'s accept gives it (cells NONE->SYN_SENT of the SYN
    /// row: `tcp_new` sets the sender's view, the window checks pass against an empty
    /// receiver, `tcp_in_window`'s update opens the receiver's right edge). `None` for any
    /// other segment, or one whose sequence the checks would refuse; the caller then takes the
    /// general pair (a property test compares the two).
    #[inline]
    pub fn first_syn(seg: &Segment<'_>, cfg: &TcpConfig) -> Option<(TcpTrack, u64)> {
        if FlagClass::of(seg.flags) != FlagClass::Syn {
            return None;
        }
        let mut t = TcpTrack::EMPTY;
        let s = &mut t.seen[0];
        s.end = seg.end;
        s.maxwin = u32::from(seg.win).max(1);
        s.maxend = s.end;
        read_syn_options(seg.options, s);
        // `in_window`: the sender has a window and the state is NONE (no restart); without
        // an ACK the segment acknowledges what the receiver sent (nothing: 0). Of the four
        // checks, the receiver's (an empty view) always pass: 0 is below its end + 1, it has
        // no window, and 0 is above 0 - max(maxwin, 66000) - 1 (maxwin < 2^16). The sender's
        // is the one left.
        if !before(seg.seq, s.maxend.wrapping_add(1)) {
            return None;
        }
        // `window_update`: a SYN's window is not scaled and is at most the sender's maxwin;
        // its end is the sender's; no ACK. The receiver has no window, and its right edge
        // becomes the window offered (after(win, -1) holds for any 16-bit window).
        let win = u32::from(seg.win);
        t.seen[1].maxend = if win == 0 { 1 } else { win };
        // `apply`, NONE to SYN_SENT by a SYN: the timeout as it chooses it, with nothing
        // retransmitted, unacknowledged or answered.
        t.last_index = FlagClass::Syn;
        t.last_dir = Dir::Orig;
        t.state = TcpState::SynSent;
        let timeout = t.timeout_in(TcpState::SynSent, false, cfg);
        Some((t, timeout))
    }

    /// The timeout a segment accepted into `state` gives the connection, chosen in
    /// `nf_conntrack_tcp_packet`'s order: the retransmission timeout after too many
    /// retransmissions, CLOSE's after a RST (`rst`), the unacknowledged-data timeout, the
    /// retransmission timeout for a zero window, each only when shorter than the state's own.
    #[inline(always)]
    fn timeout_in(&self, state: TcpState, rst: bool, cfg: &TcpConfig) -> u64 {
        let t = &cfg.timeouts;
        let own = t.of(state);
        let unacked = (self.seen[0].flags | self.seen[1].flags) & sf::DATA_UNACKNOWLEDGED != 0;
        if self.retrans >= cfg.max_retrans && own > t.retrans_ns {
            t.retrans_ns
        } else if rst {
            t.of(TcpState::Close)
        } else if unacked && own > t.unack_ns {
            t.unack_ns
        } else if self.last_win == 0 && own > t.retrans_ns {
            t.retrans_ns
        } else {
            own
        }
    }

    /// `tcp_init_sender`: a SYN or SYN/ACK (re)starts a direction's view.
    fn init_sender(&mut self, dir: Dir, seg: &Segment<'_>) {
        let (d, r) = (dir as usize, dir.other() as usize);
        let s = &mut self.seen[d];
        s.end = seg.end;
        s.maxend = seg.end;
        s.maxwin = u32::from(seg.win).max(1);
        read_syn_options(seg.options, s);
        // RFC 7323 §1.3: scaling applies only when both sides offered it.
        if dir == Dir::Reply
            && !(self.seen[d].flags & sf::WINDOW_SCALE != 0
                && self.seen[r].flags & sf::WINDOW_SCALE != 0)
        {
            self.seen[d].scale = 0;
            self.seen[r].scale = 0;
        }
    }

    /// `tcp_in_window`: the segment must intersect the receiver's window and acknowledge only
    /// data that was sent. Updates both directions' views when it does.
    fn in_window(
        &mut self,
        dir: Dir,
        index: FlagClass,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
    ) -> Window {
        let (d, r) = (dir as usize, dir.other() as usize);
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut sack = ack;
        let win_raw = seg.win;
        let win = u32::from(win_raw);
        let mut end = seg.end;
        let syn = seg.has(Flags::SYN);
        let has_ack = seg.has(Flags::ACK);

        if self.seen[r].flags & sf::SACK_PERM != 0 {
            sack = highest_sack(seg.options, ack);
        }

        if self.seen[d].maxwin == 0 {
            if syn {
                // SYN/ACK answering a SYN, or the reply-side SYN of a simultaneous open.
                self.init_sender(dir, seg);
                if !has_ack {
                    return Window::Accept;
                }
            } else {
                // Mid-stream in this direction: guess from the segment.
                let s = &mut self.seen[d];
                s.end = end;
                let swin = win << s.scale;
                s.maxwin = swin.max(1);
                s.maxend = end.wrapping_add(s.maxwin);
                let rv = &mut self.seen[r];
                if rv.maxwin == 0 {
                    // Nothing seen the other way yet: let the ACK checks pass until it is.
                    rv.end = sack;
                    rv.maxend = sack;
                } else if sack == rv.end.wrapping_add(1) {
                    // Likely the answer to a keepalive.
                    rv.end = rv.end.wrapping_add(1);
                }
            }
        } else if syn
            && after(end, self.seen[d].end)
            && matches!(self.state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 9293 §3.10.7.3: a restarted TCP may use a larger initial sequence.
            self.init_sender(dir, seg);
            if dir == Dir::Reply && !has_ack {
                return Window::Accept;
            }
        }

        if !has_ack {
            // No ACK: pretend it acknowledges exactly what was sent.
            ack = self.seen[r].end;
            sack = ack;
        } else if seg.has(Flags::RST) && ack == 0 {
            // Stacks that send RST|ACK with a zero acknowledgement.
            ack = self.seen[r].end;
            sack = ack;
        }

        if seg.has(Flags::RST) && seq == 0 && self.state == TcpState::SynSent {
            // RST answering a SYN.
            seq = self.seen[d].end;
            end = seq;
        }

        let liberal = self.seen[d].flags & sf::BE_LIBERAL != 0 || cfg.be_liberal;
        let verdict = |w: Window| if liberal { Window::Accept } else { w };

        let sender = self.seen[d];
        let receiver = self.seen[r];
        let max_ack_win = sender.max_ack_window();
        if !before(seq, sender.maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.maxend).wrapping_add(1);
            let ack_ok = after(sack, receiver.end.wrapping_sub(max_ack_win).wrapping_sub(1));
            let in_recv_win = receiver.maxwin != 0
                && after(
                    end,
                    sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= receiver.maxwin
                && before(sack, receiver.end.wrapping_add(1))
            {
                // A sender that overshoots the window a little: remember what it sent so the
                // peer's ACK of it is not over the upper bound later.
                self.seen[d].end = end;
                self.seen[d].flags |= sf::DATA_UNACKNOWLEDGED;
                return verdict(Window::Ignore);
            }
            return verdict(Window::Invalid(TcpInvalid::SeqOverWindow));
        }
        if !before(sack, receiver.end.wrapping_add(1)) {
            return verdict(Window::Invalid(TcpInvalid::AckOverUpperBound));
        }
        let in_recv_win = receiver.maxwin == 0
            || after(
                end,
                sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
            );
        if !in_recv_win {
            // Already acknowledged data retransmitted: harmless, let it through untracked.
            return verdict(Window::Ignore);
        }
        if !after(sack, receiver.end.wrapping_sub(max_ack_win).wrapping_sub(1)) {
            // An overly delayed ACK.
            return verdict(Window::Ignore);
        }

        self.window_update(dir, index, seq, ack, sack, end, win_raw, syn, has_ack);
        Window::Accept
    }

    /// The end of `tcp_in_window` for a segment that passed its checks: both directions'
    /// views move, and an ACK is compared with the last one (retransmissions).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn window_update(
        &mut self,
        dir: Dir,
        index: FlagClass,
        seq: u32,
        ack: u32,
        sack: u32,
        end: u32,
        win_raw: u16,
        syn: bool,
        has_ack: bool,
    ) {
        let (d, r) = (dir as usize, dir.other() as usize);
        let mut win = u32::from(win_raw);
        if !syn {
            win <<= self.seen[d].scale;
        }
        let s = &mut self.seen[d];
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if s.maxwin < swin {
            s.maxwin = swin;
        }
        if after(end, s.end) {
            s.end = end;
            s.flags |= sf::DATA_UNACKNOWLEDGED;
        }
        if has_ack {
            if s.flags & sf::MAXACK_SET == 0 {
                s.maxack = ack;
                s.flags |= sf::MAXACK_SET;
            } else if after(ack, s.maxack) {
                s.maxack = ack;
            }
        }
        let sender_maxend = s.maxend;
        let rv = &mut self.seen[r];
        if rv.maxwin != 0 && after(end, sender_maxend) {
            rv.maxwin = rv.maxwin.wrapping_add(end.wrapping_sub(sender_maxend));
        }
        if after(sack.wrapping_add(win), rv.maxend.wrapping_sub(1)) {
            rv.maxend = sack.wrapping_add(win);
            if win == 0 {
                rv.maxend = rv.maxend.wrapping_add(1);
            }
        }
        if ack == rv.end {
            rv.flags &= !sf::DATA_UNACKNOWLEDGED;
        }

        if index == FlagClass::Ack {
            if self.last_dir == dir
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win_raw
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.last_dir = dir;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win_raw;
                self.retrans = 0;
            }
        }
    }

    /// Whether a segment passes the four checks of `tcp_in_window` (sequence below the
    /// sender's right edge, acknowledgement not above what the receiver sent, data not wholly
    /// before the receiver's window, acknowledgement not below its lower bound).
    #[inline(always)]
    fn window_ok(sender: &Seen, receiver: &Seen, seq: u32, sack: u32, end: u32) -> bool {
        before(seq, sender.maxend.wrapping_add(1))
            && before(sack, receiver.end.wrapping_add(1))
            && (receiver.maxwin == 0
                || after(
                    end,
                    sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
                ))
            && after(
                sack,
                receiver
                    .end
                    .wrapping_sub(sender.max_ack_window())
                    .wrapping_sub(1),
            )
    }

    /// [`TcpTrack::packet`] for the commonest segment, without the general dispatch: an ACK
    /// (no SYN, FIN or RST) of an ESTABLISHED connection whose sender has a window, that
    /// passes the window checks. `None` for any other segment, with nothing changed: the
    /// caller then calls `packet`. When it answers, the tracker and the outcome are exactly
    /// what `packet` gives (cells ES->ES of the ACK row, no special case, the window checks
    /// passed; a property test compares the two).
    #[inline(always)]
    pub fn established_ack(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
        status: Status,
    ) -> Option<Outcome> {
        self.established_ack_effect(dir, seg, cfg, status)
            .map(|(timeout, set_assured)| Outcome::Accept {
                timeout_ns: Some(timeout),
                set_assured,
            })
    }

    /// [`TcpTrack::established_ack`]'s answer as what it always is when there is one (an
    /// [`Outcome::Accept`] with a timeout): the timeout and whether the entry becomes
    /// assured. For the connection table's lean path, which then has no outcome to dispatch
    /// on.
    #[inline(always)]
    pub fn established_ack_effect(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
        status: Status,
    ) -> Option<(u64, bool)> {
        if self.state != TcpState::Established || FlagClass::of(seg.flags) != FlagClass::Ack {
            return None;
        }
        let (d, r) = (dir as usize, dir.other() as usize);
        if self.seen[d].maxwin == 0 {
            return None;
        }
        let sack = if self.seen[r].flags & sf::SACK_PERM != 0 {
            highest_sack(seg.options, seg.ack)
        } else {
            seg.ack
        };
        if !Self::window_ok(&self.seen[d], &self.seen[r], seg.seq, sack, seg.end) {
            return None;
        }
        self.window_update(
            dir,
            FlagClass::Ack,
            seg.seq,
            seg.ack,
            sack,
            seg.end,
            seg.win,
            false,
            true,
        );
        // `apply` for ACK, ESTABLISHED to ESTABLISHED: no FIN_WAIT mark, no RST, no SYN
        // retransmission; only the timeout and the assured bit remain.
        self.last_index = FlagClass::Ack;
        self.last_dir = dir;
        let t = &cfg.timeouts;
        let mut timeout = self.timeout_in(TcpState::Established, false, cfg);
        let mut set_assured = false;
        if !status.seen_reply {
            if timeout > t.unack_ns {
                // Picked up mid-stream and never answered.
                timeout = t.unack_ns;
            }
        } else if !status.assured {
            set_assured = true;
        }
        Some((timeout, set_assured))
    }

    /// One segment of this connection (`nf_conntrack_tcp_packet` after `tcp_error`): `dir` is
    /// the direction it travels, `status` the entry's status before it, `remaining_ns` the
    /// entry's time left (for the invalid-FIN/RST timeout shrink).
    pub fn packet(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
        status: Status,
        remaining_ns: u64,
    ) -> Outcome {
        let mut old = self.state;
        let index = FlagClass::of(seg.flags);
        let (d, r) = (dir as usize, dir.other() as usize);
        let mut skip_window = false;
        let mut new = match next(dir, index, old) {
            Next::To(s) => s,
            Next::Ignore => match self.ignore(dir, index, seg, old) {
                Some(done) => return done,
                None => {
                    old = TcpState::SynSent;
                    TcpState::SynRecv
                }
            },
            Next::Invalid => {
                return Outcome::Invalid {
                    why: TcpInvalid::State,
                    shrink_to_ns: None,
                }
            }
        };

        match new {
            TcpState::SynSent if old >= TcpState::TimeWait => {
                // Cells TW->SS and CL->SS: reopen only when the old connection really closed
                // (a FIN was seen, or this side reset it); otherwise we may be out of sync and
                // treat the SYN as ignored.
                let close_init = (self.seen[d].flags | self.seen[r].flags) & sf::CLOSE_INIT != 0;
                if close_init || (self.last_dir == dir && self.last_index == FlagClass::Rst) {
                    return Outcome::Reopen;
                }
                match self.ignore(dir, index, seg, old) {
                    Some(done) => return done,
                    None => {
                        old = TcpState::SynSent;
                        new = TcpState::SynRecv;
                    }
                }
            }
            // Cell LA->TW: after an ignored SYN in LAST_ACK, an RFC 5961 challenge ACK does not
            // acknowledge our FIN.
            TcpState::TimeWait
                if old == TcpState::LastAck
                    && index == FlagClass::Ack
                    && self.last_dir != dir
                    && self.last_index == FlagClass::Syn
                    && self.last_flags & sf::EXP_CHALLENGE_ACK != 0 =>
            {
                self.last_flags &= !sf::EXP_CHALLENGE_ACK;
                return Outcome::Ignore;
            }
            TcpState::SynSent2 => {
                // The table alone cannot finish a simultaneous open: remember it.
                self.last_flags |= sf::SIMULTANEOUS_OPEN;
            }
            // Reply ACK in SYN_RECV: in a simultaneous open it completes the handshake.
            TcpState::SynRecv
                if dir == Dir::Reply
                    && index == FlagClass::Ack
                    && self.last_flags & sf::SIMULTANEOUS_OPEN != 0 =>
            {
                new = TcpState::Established;
            }
            TcpState::Close if index == FlagClass::Rst => {
                if old.is_closing() {
                    // The tuple may already be reused; the window data is stale.
                    skip_window = true;
                } else {
                    if self.seen[r].flags & sf::MAXACK_SET != 0 && self.last_index != FlagClass::Syn
                    {
                        let seq = seg.seq;
                        let established = old == TcpState::Established && status.assured;
                        let zero_before_established = seq == 0 && !established;
                        if !zero_before_established {
                            if before(seq, self.seen[r].maxack) && !cfg.ignore_invalid_rst {
                                return Outcome::Invalid {
                                    why: TcpInvalid::Rst,
                                    shrink_to_ns: None,
                                };
                            }
                            let exact = !established || seq == self.seen[r].maxack;
                            // A RST right after our own data (a "train").
                            let train = self.last_index == FlagClass::Ack
                                && self.last_dir == dir
                                && seq == self.last_end;
                            if !exact && !train {
                                // Not exactly at the expected sequence: keep the state so a
                                // challenge ACK can follow (RFC 5961 §3.2).
                                new = old;
                            }
                        }
                    }
                    if ((status.seen_reply && self.last_index == FlagClass::Syn)
                        || (!status.assured && self.last_index == FlagClass::Ack))
                        && seg.ack == self.last_end
                    {
                        // RST answering a SYN or ACK we let through ignored: the receiver
                        // refused it; skip the window (it may acknowledge what we ignored).
                        skip_window = true;
                    } else if old == TcpState::SynSent
                        && self.last_index == FlagClass::Ack
                        && self.last_dir == Dir::Reply
                        && seg.seq == self.last_ack
                    {
                        // RST answering a challenge ACK we let through.
                        skip_window = true;
                    }
                }
            }
            _ => {}
        }

        if !skip_window {
            match self.in_window(dir, index, seg, cfg) {
                Window::Accept => {}
                Window::Ignore => return Outcome::Ignore,
                Window::Invalid(why) => {
                    return Outcome::Invalid {
                        why,
                        shrink_to_ns: self.handle_invalid(dir, index, status, remaining_ns, cfg),
                    }
                }
            }
        }
        self.apply(dir, index, old, new, seg, cfg, status)
    }

    /// The IGNORE path: remember the segment in case the peer's answer shows we were out of
    /// sync. `None`: a SYN/ACK acknowledging a SYN we ignored; the entry was resynchronised
    /// from that SYN and the segment continues as SYN_SENT -> SYN_RECV.
    fn ignore(
        &mut self,
        dir: Dir,
        index: FlagClass,
        seg: &Segment<'_>,
        old: TcpState,
    ) -> Option<Outcome> {
        if index == FlagClass::SynAck
            && self.last_index == FlagClass::Syn
            && self.last_dir != dir
            && seg.ack == self.last_end
        {
            // Both ends are in sync and we are not: restart from the ignored SYN.
            let l = self.last_dir as usize;
            self.seen[l].end = self.last_end;
            self.seen[l].maxend = self.last_end;
            self.seen[l].maxwin = u32::from(self.last_win).max(1);
            self.seen[l].scale = self.last_wscale;
            self.last_flags &= !sf::EXP_CHALLENGE_ACK;
            self.seen[l].flags = self.last_flags;
            self.seen[dir as usize].reset();
            return None;
        }
        self.last_index = index;
        self.last_dir = dir;
        self.last_seq = seg.seq;
        self.last_end = seg.end;
        self.last_win = seg.win;
        if index == FlagClass::Syn && dir == Dir::Orig {
            let mut s = Seen::default();
            read_syn_options(seg.options, &mut s);
            self.last_flags = 0;
            self.last_wscale = 0;
            if s.flags & sf::WINDOW_SCALE != 0 {
                self.last_flags |= sf::WINDOW_SCALE;
                self.last_wscale = s.scale;
            }
            if s.flags & sf::SACK_PERM != 0 {
                self.last_flags |= sf::SACK_PERM;
            }
            if old == TcpState::LastAck {
                // The answer may be an RFC 5961 challenge ACK, not the last ACK.
                self.last_flags |= sf::EXP_CHALLENGE_ACK;
            }
        }
        if old == TcpState::SynSent && index == FlagClass::Ack && dir == Dir::Reply {
            // A possible challenge ACK answering the SYN.
            self.last_ack = seg.ack;
        }
        Some(Outcome::Ignore)
    }

    /// `nf_tcp_handle_invalid`: an out-of-window FIN or RST answering a FIN or RST of the
    /// other side on an assured entry shortens its timeout.
    fn handle_invalid(
        &mut self,
        dir: Dir,
        index: FlagClass,
        status: Status,
        remaining_ns: u64,
        cfg: &TcpConfig,
    ) -> Option<u64> {
        if !status.assured || !matches!(index, FlagClass::Rst | FlagClass::Fin) {
            return None;
        }
        if self.last_dir != dir && matches!(self.last_index, FlagClass::Fin | FlagClass::Rst) {
            let unack = cfg.timeouts.unack_ns;
            (remaining_ns >= 120 * SEC && remaining_ns > unack).then_some(unack)
        } else {
            self.last_index = index;
            self.last_dir = dir;
            None
        }
    }

    /// After the window check: move to `new` and choose the timeout.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        dir: Dir,
        index: FlagClass,
        old: TcpState,
        new: TcpState,
        seg: &Segment<'_>,
        cfg: &TcpConfig,
        status: Status,
    ) -> Outcome {
        self.last_index = index;
        self.last_dir = dir;
        self.state = new;
        if old != new && new == TcpState::FinWait {
            self.seen[dir as usize].flags |= sf::CLOSE_INIT;
        }
        let t = &cfg.timeouts;
        let mut timeout = self.timeout_in(new, index == FlagClass::Rst, cfg);
        let mut set_assured = false;
        if !status.seen_reply {
            if seg.has(Flags::RST) {
                // Only a RST came back: there never was a connection.
                return Outcome::Kill;
            }
            if index == FlagClass::Syn && old == TcpState::SynSent {
                // A retransmitted SYN must not keep the entry alive forever.
                return Outcome::Accept {
                    timeout_ns: None,
                    set_assured: false,
                };
            }
            if new == TcpState::Established && timeout > t.unack_ns {
                // Picked up mid-stream and never answered.
                timeout = t.unack_ns;
            }
        } else if !status.assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established
        {
            set_assured = true;
        }
        Outcome::Accept {
            timeout_ns: Some(timeout),
            set_assured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What one table cell must do to a segment that passes the window check.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Want {
        To(TcpState),
        Ignore,
        Invalid,
        Reopen,
    }

    /// Runs one segment of `class` travelling `dir` through an entry in `state` whose windows
    /// accept anything (both senders liberal), with a reply seen and not assured. For the
    /// reopen cells, the old connection was closed by a FIN (CLOSE_INIT).
    fn check_cell(dir: Dir, class: FlagClass, state: TcpState, want: Want) {
        let cfg = TcpConfig::default();
        let mut t = TcpTrack::EMPTY;
        t.state = state;
        for s in &mut t.seen {
            *s = Seen {
                end: 1000,
                maxend: 70_000,
                maxwin: 65_535,
                maxack: 0,
                scale: 0,
                flags: sf::BE_LIBERAL,
            };
        }
        if want == Want::Reopen {
            t.seen[0].flags |= sf::CLOSE_INIT;
        }
        let flags = match class {
            FlagClass::Syn => Flags::SYN,
            FlagClass::SynAck => Flags::SYN | Flags::ACK,
            FlagClass::Fin => Flags::FIN | Flags::ACK,
            FlagClass::Ack => Flags::ACK,
            FlagClass::Rst => Flags::RST,
            FlagClass::None => Flags::EMPTY,
        };
        assert_eq!(FlagClass::of(flags), class);
        let extra = u32::from(flags.contains(Flags::SYN)) + u32::from(flags.contains(Flags::FIN));
        let seg = Segment {
            seq: 1000,
            ack: 1000,
            win: 1000,
            flags,
            end: 1000 + extra,
            options: &[],
        };
        let status = Status {
            seen_reply: true,
            assured: false,
        };
        let before = t;
        let out = t.packet(dir, &seg, &cfg, status, 100 * SEC);
        match want {
            Want::To(s) => {
                assert!(matches!(out, Outcome::Accept { .. }), "{out:?}");
                assert_eq!(t.state, s);
            }
            Want::Ignore => {
                assert_eq!(out, Outcome::Ignore);
                assert_eq!(t.state, before.state);
            }
            Want::Invalid => {
                assert!(matches!(out, Outcome::Invalid { .. }), "{out:?}");
                assert_eq!(t, before);
            }
            Want::Reopen => assert_eq!(out, Outcome::Reopen),
        }
    }

    macro_rules! cells {
        ($($name:ident: $dir:ident $class:ident $state:ident => $want:ident $(($to:ident))?;)*) => {
            $(
                #[test]
                fn $name() {
                    check_cell(
                        Dir::$dir,
                        FlagClass::$class,
                        TcpState::$state,
                        Want::$want$((TcpState::$to))?,
                    );
                }
            )*
        };
    }

    // One test per cell of Linux's table, transcribed independently of `TABLE`.
    cells! {
        orig_syn_in_none: Orig Syn None => To(SynSent);
        orig_syn_in_syn_sent: Orig Syn SynSent => To(SynSent);
        orig_syn_in_syn_recv: Orig Syn SynRecv => Ignore;
        orig_syn_in_established: Orig Syn Established => Ignore;
        orig_syn_in_fin_wait: Orig Syn FinWait => Ignore;
        orig_syn_in_close_wait: Orig Syn CloseWait => Ignore;
        orig_syn_in_last_ack: Orig Syn LastAck => Ignore;
        orig_syn_in_time_wait: Orig Syn TimeWait => Reopen;
        orig_syn_in_close: Orig Syn Close => Reopen;
        orig_syn_in_syn_sent2: Orig Syn SynSent2 => To(SynSent2);
        orig_syn_ack_in_none: Orig SynAck None => Invalid;
        orig_syn_ack_in_syn_sent: Orig SynAck SynSent => Invalid;
        orig_syn_ack_in_syn_recv: Orig SynAck SynRecv => To(SynRecv);
        orig_syn_ack_in_established: Orig SynAck Established => Invalid;
        orig_syn_ack_in_fin_wait: Orig SynAck FinWait => Invalid;
        orig_syn_ack_in_close_wait: Orig SynAck CloseWait => Invalid;
        orig_syn_ack_in_last_ack: Orig SynAck LastAck => Invalid;
        orig_syn_ack_in_time_wait: Orig SynAck TimeWait => Invalid;
        orig_syn_ack_in_close: Orig SynAck Close => Invalid;
        orig_syn_ack_in_syn_sent2: Orig SynAck SynSent2 => To(SynRecv);
        orig_fin_in_none: Orig Fin None => Invalid;
        orig_fin_in_syn_sent: Orig Fin SynSent => Invalid;
        orig_fin_in_syn_recv: Orig Fin SynRecv => To(FinWait);
        orig_fin_in_established: Orig Fin Established => To(FinWait);
        orig_fin_in_fin_wait: Orig Fin FinWait => To(LastAck);
        orig_fin_in_close_wait: Orig Fin CloseWait => To(LastAck);
        orig_fin_in_last_ack: Orig Fin LastAck => To(LastAck);
        orig_fin_in_time_wait: Orig Fin TimeWait => To(TimeWait);
        orig_fin_in_close: Orig Fin Close => To(Close);
        orig_fin_in_syn_sent2: Orig Fin SynSent2 => Invalid;
        orig_ack_in_none: Orig Ack None => To(Established);
        orig_ack_in_syn_sent: Orig Ack SynSent => Invalid;
        orig_ack_in_syn_recv: Orig Ack SynRecv => To(Established);
        orig_ack_in_established: Orig Ack Established => To(Established);
        orig_ack_in_fin_wait: Orig Ack FinWait => To(CloseWait);
        orig_ack_in_close_wait: Orig Ack CloseWait => To(CloseWait);
        orig_ack_in_last_ack: Orig Ack LastAck => To(TimeWait);
        orig_ack_in_time_wait: Orig Ack TimeWait => To(TimeWait);
        orig_ack_in_close: Orig Ack Close => To(Close);
        orig_ack_in_syn_sent2: Orig Ack SynSent2 => Invalid;
        orig_rst_in_none: Orig Rst None => Invalid;
        orig_rst_in_syn_sent: Orig Rst SynSent => To(Close);
        orig_rst_in_syn_recv: Orig Rst SynRecv => To(Close);
        orig_rst_in_established: Orig Rst Established => To(Close);
        orig_rst_in_fin_wait: Orig Rst FinWait => To(Close);
        orig_rst_in_close_wait: Orig Rst CloseWait => To(Close);
        orig_rst_in_last_ack: Orig Rst LastAck => To(Close);
        orig_rst_in_time_wait: Orig Rst TimeWait => To(Close);
        orig_rst_in_close: Orig Rst Close => To(Close);
        orig_rst_in_syn_sent2: Orig Rst SynSent2 => To(Close);
        orig_none_in_none: Orig None None => Invalid;
        orig_none_in_syn_sent: Orig None SynSent => Invalid;
        orig_none_in_syn_recv: Orig None SynRecv => Invalid;
        orig_none_in_established: Orig None Established => Invalid;
        orig_none_in_fin_wait: Orig None FinWait => Invalid;
        orig_none_in_close_wait: Orig None CloseWait => Invalid;
        orig_none_in_last_ack: Orig None LastAck => Invalid;
        orig_none_in_time_wait: Orig None TimeWait => Invalid;
        orig_none_in_close: Orig None Close => Invalid;
        orig_none_in_syn_sent2: Orig None SynSent2 => Invalid;
        reply_syn_in_none: Reply Syn None => Invalid;
        reply_syn_in_syn_sent: Reply Syn SynSent => To(SynSent2);
        reply_syn_in_syn_recv: Reply Syn SynRecv => Invalid;
        reply_syn_in_established: Reply Syn Established => Invalid;
        reply_syn_in_fin_wait: Reply Syn FinWait => Invalid;
        reply_syn_in_close_wait: Reply Syn CloseWait => Invalid;
        reply_syn_in_last_ack: Reply Syn LastAck => Invalid;
        reply_syn_in_time_wait: Reply Syn TimeWait => Reopen;
        reply_syn_in_close: Reply Syn Close => Invalid;
        reply_syn_in_syn_sent2: Reply Syn SynSent2 => To(SynSent2);
        reply_syn_ack_in_none: Reply SynAck None => Invalid;
        reply_syn_ack_in_syn_sent: Reply SynAck SynSent => To(SynRecv);
        reply_syn_ack_in_syn_recv: Reply SynAck SynRecv => Ignore;
        reply_syn_ack_in_established: Reply SynAck Established => Ignore;
        reply_syn_ack_in_fin_wait: Reply SynAck FinWait => Ignore;
        reply_syn_ack_in_close_wait: Reply SynAck CloseWait => Ignore;
        reply_syn_ack_in_last_ack: Reply SynAck LastAck => Ignore;
        reply_syn_ack_in_time_wait: Reply SynAck TimeWait => Ignore;
        reply_syn_ack_in_close: Reply SynAck Close => Ignore;
        reply_syn_ack_in_syn_sent2: Reply SynAck SynSent2 => To(SynRecv);
        reply_fin_in_none: Reply Fin None => Invalid;
        reply_fin_in_syn_sent: Reply Fin SynSent => Invalid;
        reply_fin_in_syn_recv: Reply Fin SynRecv => To(FinWait);
        reply_fin_in_established: Reply Fin Established => To(FinWait);
        reply_fin_in_fin_wait: Reply Fin FinWait => To(LastAck);
        reply_fin_in_close_wait: Reply Fin CloseWait => To(LastAck);
        reply_fin_in_last_ack: Reply Fin LastAck => To(LastAck);
        reply_fin_in_time_wait: Reply Fin TimeWait => To(TimeWait);
        reply_fin_in_close: Reply Fin Close => To(Close);
        reply_fin_in_syn_sent2: Reply Fin SynSent2 => Invalid;
        reply_ack_in_none: Reply Ack None => Invalid;
        reply_ack_in_syn_sent: Reply Ack SynSent => Ignore;
        reply_ack_in_syn_recv: Reply Ack SynRecv => To(SynRecv);
        reply_ack_in_established: Reply Ack Established => To(Established);
        reply_ack_in_fin_wait: Reply Ack FinWait => To(CloseWait);
        reply_ack_in_close_wait: Reply Ack CloseWait => To(CloseWait);
        reply_ack_in_last_ack: Reply Ack LastAck => To(TimeWait);
        reply_ack_in_time_wait: Reply Ack TimeWait => To(TimeWait);
        reply_ack_in_close: Reply Ack Close => To(Close);
        reply_ack_in_syn_sent2: Reply Ack SynSent2 => Ignore;
        reply_rst_in_none: Reply Rst None => Invalid;
        reply_rst_in_syn_sent: Reply Rst SynSent => To(Close);
        reply_rst_in_syn_recv: Reply Rst SynRecv => To(Close);
        reply_rst_in_established: Reply Rst Established => To(Close);
        reply_rst_in_fin_wait: Reply Rst FinWait => To(Close);
        reply_rst_in_close_wait: Reply Rst CloseWait => To(Close);
        reply_rst_in_last_ack: Reply Rst LastAck => To(Close);
        reply_rst_in_time_wait: Reply Rst TimeWait => To(Close);
        reply_rst_in_close: Reply Rst Close => To(Close);
        reply_rst_in_syn_sent2: Reply Rst SynSent2 => To(Close);
        reply_none_in_none: Reply None None => Invalid;
        reply_none_in_syn_sent: Reply None SynSent => Invalid;
        reply_none_in_syn_recv: Reply None SynRecv => Invalid;
        reply_none_in_established: Reply None Established => Invalid;
        reply_none_in_fin_wait: Reply None FinWait => Invalid;
        reply_none_in_close_wait: Reply None CloseWait => Invalid;
        reply_none_in_last_ack: Reply None LastAck => Invalid;
        reply_none_in_time_wait: Reply None TimeWait => Invalid;
        reply_none_in_close: Reply None Close => Invalid;
        reply_none_in_syn_sent2: Reply None SynSent2 => Invalid;
    }

    #[test]
    fn valid_flag_combinations() {
        let ok = |f: u8| valid_flags(Flags(f));
        for f in [
            0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30, 0x18, 0xc2, 0x5a,
        ] {
            assert!(ok(f), "{:?}", Flags(f));
        }
        for f in [0x00, 0x01, 0x03, 0x06, 0x05, 0x08, 0x20, 0x29, 0x3f, 0x13] {
            assert!(!ok(f), "{:?}", Flags(f));
        }
    }

    #[test]
    fn options_scale_and_sack() {
        let mut s = Seen::default();
        // MSS, NOP, WS 9, SACK-permitted.
        read_syn_options(&[2, 4, 5, 0xb4, 1, 3, 3, 9, 4, 2], &mut s);
        assert_eq!((s.scale, s.flags), (9, sf::WINDOW_SCALE | sf::SACK_PERM));
        read_syn_options(&[3, 3, 20], &mut s);
        assert_eq!((s.scale, s.flags), (MAX_WSCALE, sf::WINDOW_SCALE));
        // Malformed length stops the walk.
        read_syn_options(&[3, 1, 9, 4, 2], &mut s);
        assert_eq!((s.scale, s.flags), (0, 0));
        // SACK block right edges beyond the ACK raise it.
        let sack = [1, 1, 5, 10, 0, 0, 0, 10, 0, 0, 0, 50];
        assert_eq!(highest_sack(&sack, 20), 50);
        assert_eq!(highest_sack(&sack, 60), 60);
        assert_eq!(highest_sack(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], 7), 7);
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(before(u32::MAX, 0));
        assert!(after(5, u32::MAX - 5));
        assert!(!before(7, 7));
    }

    /// A tracker state near sequence number `base` (so that the window checks pass often),
    /// with anything in the bookkeeping fields.
    fn arb_track() -> impl Strategy<Value = (TcpTrack, u32)> {
        let seen = (
            0u32..3000,
            0u32..70_000,
            prop_oneof![Just(0u32), Just(1), 1u32..70_000],
            0u32..5000,
            0u8..4,
            any::<u8>(),
        );
        (
            any::<u32>(),
            prop_oneof![4 => Just(TcpState::Established), 1 => proptest::sample::select(TcpState::ALL.to_vec())],
            seen.clone(),
            seen,
            (0u32..5000, 0u32..5000, 0u32..5000, any::<u16>(), any::<bool>()),
            (0usize..6, 0u8..5, any::<u8>(), 0u8..15),
        )
            .prop_map(|(base, state, a, b, last, (index, retrans, last_flags, wscale))| {
                let mk = |(end, span, maxwin, ack, scale, flags): (u32, u32, u32, u32, u8, u8)| Seen {
                    end: base.wrapping_add(end),
                    maxend: base.wrapping_add(end).wrapping_add(span),
                    maxwin,
                    maxack: base.wrapping_add(ack),
                    scale,
                    flags,
                };
                let t = TcpTrack {
                    state,
                    seen: [mk(a), mk(b)],
                    last_seq: base.wrapping_add(last.0),
                    last_ack: base.wrapping_add(last.1),
                    last_end: base.wrapping_add(last.2),
                    last_win: last.3,
                    last_dir: if last.4 { Dir::Reply } else { Dir::Orig },
                    last_index: FlagClass::ALL[index],
                    retrans,
                    last_flags,
                    last_wscale: wscale,
                };
                (t, base)
            })
    }

    fn arb_options() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            // Timestamps alone.
            Just(vec![1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
            // One SACK block with a right edge.
            (0u32..6000).prop_map(|r| {
                let mut o = vec![1u8, 1, 5, 10, 0, 0, 0, 0];
                o.extend_from_slice(&r.to_be_bytes());
                o
            }),
        ]
    }

    /// A sequence number: anywhere near the base, or next to one of the edges the window
    /// checks compare with (so that each comparison is met on both sides of equality).
    /// `ack` picks among the acknowledgement's edges, else the sequence number's.
    fn near_edge(
        t: &TcpTrack,
        base: u32,
        dir: Dir,
        ack: bool,
        (pick, off, any): (u8, i32, u32),
    ) -> u32 {
        let (s, r) = (&t.seen[dir as usize], &t.seen[dir.other() as usize]);
        let edge = match (ack, pick % 5) {
            (false, 0) => s.maxend,
            (false, 1) => s.end.wrapping_sub(r.maxwin),
            (false, 2) => t.last_seq,
            (true, 0) => r.end,
            (true, 1) => r.end.wrapping_sub(s.maxwin.max(MAX_ACK_WIN_CONST)),
            (true, 2) => s.maxack,
            (_, 3) => t.last_ack,
            _ => return base.wrapping_add(any),
        };
        edge.wrapping_add(off as u32)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The established fast path answers exactly as the general one whenever it answers,
        /// and changes nothing when it does not.
        #[test]
        fn established_ack_is_packet(
            (t, base) in arb_track(),
            reply in any::<bool>(),
            flags in prop_oneof![
                Just(0x10u8), Just(0x18), Just(0x30), Just(0x11), Just(0x02), Just(0x12),
                Just(0x04), Just(0x14), any::<u8>()
            ],
            seq in (any::<u8>(), -3i32..4, 0u32..6000),
            ack in (any::<u8>(), -3i32..4, 0u32..6000),
            win in prop_oneof![Just(0u16), any::<u16>()],
            len in prop_oneof![Just(0u32), 0u32..200],
            options in arb_options(),
            (seen_reply, assured, be_liberal, max_retrans) in (any::<bool>(), any::<bool>(), any::<bool>(), 0u8..5),
        ) {
            let dir = if reply { Dir::Reply } else { Dir::Orig };
            let f = Flags(flags);
            let seq = near_edge(&t, base, dir, false, seq);
            let extra = u32::from(f.contains(Flags::SYN)) + u32::from(f.contains(Flags::FIN));
            let seg = Segment {
                seq,
                ack: near_edge(&t, base, dir, true, ack),
                win,
                flags: f,
                end: seq.wrapping_add(len + extra),
                options: &options,
            };
            let cfg = TcpConfig { be_liberal, max_retrans, ..TcpConfig::default() };
            let status = Status { seen_reply, assured };
            let mut fast = t;
            match fast.established_ack(dir, &seg, &cfg, status) {
                Some(o) => {
                    let mut slow = t;
                    prop_assert_eq!(slow.packet(dir, &seg, &cfg, status, 100 * SEC), o);
                    prop_assert_eq!(slow, fast);
                }
                None => prop_assert_eq!(fast, t),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// A first SYN's tracker and timeout are `new` and `packet`'s whenever `first_syn`
        /// answers, and it answers for every SYN the general pair accepts.
        #[test]
        fn first_syn_is_new_and_packet(
            flags in prop_oneof![Just(0x02u8), Just(0x22), Just(0x42), Just(0x82), Just(0x03), Just(0x12), any::<u8>()],
            seq in any::<u32>(),
            ack in any::<u32>(),
            win in prop_oneof![Just(0u16), Just(1), any::<u16>()],
            len in prop_oneof![Just(0u32), 0u32..2000, Just(0x7fff_fffe), Just(0x7fff_ffff), any::<u32>()],
            options in prop_oneof![
                Just(Vec::new()),
                // MSS, SACK permitted, timestamps, NOP, window scale.
                (0u8..20).prop_map(|ws| vec![2u8, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, ws]),
                Just(vec![4u8, 2]),
                proptest::collection::vec(any::<u8>(), 0..40),
            ],
            (be_liberal, max_retrans, syn_sent, retrans, unack) in (
                any::<bool>(), 0u8..5, 1u64..400, 1u64..400, 1u64..400,
            ),
        ) {
            let f = Flags(flags);
            let extra = u32::from(f.contains(Flags::SYN)) + u32::from(f.contains(Flags::FIN));
            let seg = Segment {
                seq,
                ack,
                win,
                flags: f,
                end: seq.wrapping_add(len.wrapping_add(extra)),
                options: &options,
            };
            let mut cfg = TcpConfig { be_liberal, max_retrans, ..TcpConfig::default() };
            cfg.timeouts.state_ns[TcpState::SynSent as usize] = syn_sent * SEC;
            cfg.timeouts.retrans_ns = retrans * SEC;
            cfg.timeouts.unack_ns = unack * SEC;
            let general = TcpTrack::new(&seg, &cfg).map(|mut t| {
                let o = t.packet(Dir::Orig, &seg, &cfg, Status::default(), 0);
                (t, o)
            });
            match TcpTrack::first_syn(&seg, &cfg) {
                Some((fast, timeout)) => {
                    let (slow, o) = general.expect("the general path starts it too");
                    prop_assert_eq!(o, Outcome::Accept { timeout_ns: Some(timeout), set_assured: false });
                    prop_assert_eq!(slow, fast);
                }
                None => {
                    // Only a segment that is not a SYN, or whose sequence the sender's check
                    // refuses, is left to the general pair.
                    let syn = FlagClass::of(f) == FlagClass::Syn;
                    prop_assert!(!syn || len.wrapping_add(extra) >= 0x7fff_fffe);
                }
            }
        }
    }

    #[test]
    fn established_ack_takes_ordinary_data() {
        let cfg = TcpConfig::default();
        let mut t = TcpTrack::EMPTY;
        t.state = TcpState::Established;
        for s in &mut t.seen {
            *s = Seen {
                end: 1000,
                maxend: 66_000,
                maxwin: 65_000,
                maxack: 1000,
                scale: 0,
                flags: sf::MAXACK_SET,
            };
        }
        let seg = Segment {
            seq: 1000,
            ack: 1000,
            win: 65_000,
            flags: Flags::ACK | Flags::PSH,
            end: 1100,
            options: &[],
        };
        let status = Status {
            seen_reply: true,
            assured: true,
        };
        let mut slow = t;
        let o = t.established_ack(Dir::Orig, &seg, &cfg, status);
        assert!(o.is_some());
        assert_eq!(o, Some(slow.packet(Dir::Orig, &seg, &cfg, status, 0)));
        assert_eq!(t, slow);
    }
}
