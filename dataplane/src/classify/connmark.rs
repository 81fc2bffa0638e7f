//! `-j CONNMARK` and `-m connmark`: xt_connmark (target revision 2, match revision 1) on the
//! connection mark the walk carries ([`Marks::conn`]).
//!
//! The walk loads the connection's mark when it starts (`track::judge_after_track`, for a
//! filter whose tables have CONNMARK or `-m connmark`: [`super::RuleSet::conn_marks`]) and the
//! tracked path stores it back in the table's side array when it changed (an existing
//! connection: at once, even when the packet is dropped later, as Linux's `ct->mark` is
//! written in place; a NEW one: at its confirmation, so a dropped first packet leaves
//! nothing). A packet without a connection (INVALID, UNTRACKED) matches no `-m connmark`,
//! negated or not, and CONNMARK changes nothing for it (`nf_ct_get` is NULL).

use super::walk::Marks;

/// What a CONNMARK rule does (`XT_CONNMARK_SET`, `_SAVE`, `_RESTORE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Set,
    Save,
    Restore,
}

/// A CONNMARK rule's operation as libxt_CONNMARK (revision 2) stores it: `ctmark`, `ctmask`,
/// `nfmask` and the shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub mode: Mode,
    pub ctmark: u32,
    pub ctmask: u32,
    pub nfmask: u32,
    /// `--right-shift-mark` (else left).
    pub shift_right: bool,
    /// 0 to 32; a shift by 32 is none at all, as the kernel's 32-bit shift on x86 (the count
    /// is taken modulo 32).
    pub shift_bits: u8,
}

impl Op {
    #[inline]
    fn shift(&self, v: u32) -> u32 {
        let n = u32::from(self.shift_bits);
        if self.shift_right {
            v.wrapping_shr(n)
        } else {
            v.wrapping_shl(n)
        }
    }

    /// xt_connmark's `connmark_tg_shift` on the walk's marks: nothing without a connection.
    #[inline]
    pub fn apply(&self, m: &mut Marks) {
        if !m.has_conn {
            return;
        }
        match self.mode {
            // The kernel shifts the whole new mark here, not the value alone.
            Mode::Set => m.conn = self.shift((m.conn & !self.ctmask) ^ self.ctmark),
            Mode::Save => m.conn = (m.conn & !self.ctmask) ^ self.shift(m.packet & self.nfmask),
            Mode::Restore => {
                m.packet = (m.packet & !self.nfmask) ^ self.shift(m.conn & self.ctmask)
            }
        }
    }
}

/// `-m connmark [!] --mark value/mask`: false without a connection, whatever the `!`.
#[inline]
pub fn matches(m: &Marks, value: u32, mask: u32, invert: bool) -> bool {
    m.has_conn && (((m.conn & mask) == value) != invert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(packet: u32, conn: u32) -> Marks {
        Marks {
            packet,
            conn,
            has_conn: true,
        }
    }

    fn op(mode: Mode, ctmark: u32, ctmask: u32, nfmask: u32) -> Op {
        Op {
            mode,
            ctmark,
            ctmask,
            nfmask,
            shift_right: false,
            shift_bits: 0,
        }
    }

    #[test]
    fn operations_as_xt_connmark() {
        let mut m = conn(0x0f, 0xf0f0);
        // --set-xmark 0x1/0xff: (0xf0f0 & ~0xff) ^ 1.
        op(Mode::Set, 1, 0xff, 0).apply(&mut m);
        assert_eq!(m, conn(0x0f, 0xf001));
        // --save-mark --nfmask 0x3 --ctmask 0xf: (ct & ~0xf) ^ (0x0f & 0x3).
        op(Mode::Save, 0, 0xf, 0x3).apply(&mut m);
        assert_eq!(m, conn(0x0f, 0xf003));
        // --restore-mark --ctmask 0xff00 --nfmask 0xff: (pkt & ~0xff) ^ (ct & 0xff00).
        let mut m = conn(0x1234, 0xab01);
        op(Mode::Restore, 0, 0xff00, 0xff).apply(&mut m);
        assert_eq!(m, conn(0x1200 ^ 0xab00, 0xab01));
        // Shifts: save with a left shift of 8, restore with a right shift of 8; set shifts
        // the whole new mark.
        let mut m = conn(0x12, 0);
        Op {
            shift_bits: 8,
            ..op(Mode::Save, 0, u32::MAX, 0xff)
        }
        .apply(&mut m);
        assert_eq!(m.conn, 0x1200);
        m.packet = 0;
        Op {
            shift_bits: 8,
            shift_right: true,
            ..op(Mode::Restore, 0, 0xff00, 0xff)
        }
        .apply(&mut m);
        assert_eq!(m.packet, 0x12);
        let mut m = conn(0, 0x10);
        Op {
            shift_bits: 4,
            ..op(Mode::Set, 0x1, 0xf, 0)
        }
        .apply(&mut m);
        assert_eq!(m.conn, 0x110);
        // A shift by 32 is none (x86's count modulo 32, as the kernel's shift compiles).
        let mut m = conn(0x5, 0);
        Op {
            shift_bits: 32,
            ..op(Mode::Save, 0, u32::MAX, u32::MAX)
        }
        .apply(&mut m);
        assert_eq!(m.conn, 0x5);
        // No connection: nothing changes, and no match holds, negated or not.
        let mut m = Marks::packet(7);
        op(Mode::Set, 1, u32::MAX, 0).apply(&mut m);
        op(Mode::Restore, 0, u32::MAX, u32::MAX).apply(&mut m);
        assert_eq!(m, Marks::packet(7));
        assert!(!matches(&m, 0, u32::MAX, false) && !matches(&m, 0, u32::MAX, true));
        assert!(matches(&conn(0, 0x11), 0x1, 0xf, false));
        assert!(!matches(&conn(0, 0x11), 0x1, 0xf, true));
        assert!(matches(&conn(0, 0), 0, u32::MAX, false));
    }
}
