//! Conntrack zones (Linux's `struct nf_conntrack_zone`, set by the raw table's `-j CT --zone`,
//! `--zone-orig`, `--zone-reply`): a connection's zone is part of its identity, so that the
//! same tuple in two zones is two connections.
//!
//! A zone is an id (0..65535) and the directions it applies to; `nf_ct_zone_id` gives the id
//! of a direction (the id where the zone applies to it, else 0, the default zone), and a
//! packet of tuple `t` with zone `z` belongs to the connection holding `t` as its tuple of
//! direction `d` only when the connection's id for `d` is `z`'s id for `d`
//! (`nf_ct_key_equal`). The index tag does not take the zone: the same tuple in several zones
//! shares an index chain, and every lookup that finds a tuple compares the zones.
//!
//! A [`Zone`] is packed in a `u32` ([`Zone::word`]): the id in bits 0-15, the directions in
//! bits 16 (original) and 17 (reply); the default zone is 0 whatever its directions (every
//! direction's id is 0). An entry outside the default zone has [`super::status::ZONED`] and
//! its zone in a side array by slot, made with the table and allocated zeroed: address space
//! only until a rule set puts a connection in a zone, and read only for an entry with the
//! bit. The lean path's guess takes no entry with the bit (its mask wants it clear), so
//! rule sets without zones pay nothing there.

use super::Dir;

/// The zone's id applies to the original direction.
pub const DIR_ORIG: u32 = 1 << 16;
/// The zone's id applies to the reply direction.
pub const DIR_REPLY: u32 = 1 << 17;
/// Both directions: `--zone`.
pub const DIR_BOTH: u32 = DIR_ORIG | DIR_REPLY;

/// A conntrack zone: an id and the directions it applies to, packed ([`Zone::word`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Zone(u32);

impl Zone {
    /// The default zone (id 0).
    pub const DEFAULT: Zone = Zone(0);

    /// Zone `id` in the directions `dirs` ([`DIR_ORIG`], [`DIR_REPLY`], or both); id 0 is the
    /// default zone, whatever the directions.
    #[inline]
    pub const fn new(id: u16, dirs: u32) -> Zone {
        if id == 0 || dirs & DIR_BOTH == 0 {
            Zone(0)
        } else {
            Zone(id as u32 | (dirs & DIR_BOTH))
        }
    }

    /// The packed form (0 for the default zone).
    #[inline(always)]
    pub const fn word(self) -> u32 {
        self.0
    }

    /// The zone's id (0 for the default zone).
    #[inline]
    pub const fn id(self) -> u16 {
        self.0 as u16
    }

    /// The directions its id applies to (0 for the default zone).
    #[inline]
    pub const fn dirs(self) -> u32 {
        self.0 & DIR_BOTH
    }

    /// `nf_ct_zone_id`: the id for direction `dir` (0 where the zone does not apply).
    #[inline]
    pub const fn id_for(self, dir: Dir) -> u16 {
        let bit = match dir {
            Dir::Orig => DIR_ORIG,
            Dir::Reply => DIR_REPLY,
        };
        if self.0 & bit != 0 {
            self.0 as u16
        } else {
            0
        }
    }

    /// Not the default zone.
    #[inline]
    pub const fn is_set(self) -> bool {
        self.0 != 0
    }

    /// How conntrack-tools shows it (`zone=N`, `zone-orig=N`, `zone-reply=N`); `None` for
    /// the default zone, which it does not show.
    pub fn label(self) -> Option<(&'static str, u16)> {
        match self.dirs() {
            DIR_BOTH => Some(("zone", self.id())),
            DIR_ORIG => Some(("zone-orig", self.id())),
            DIR_REPLY => Some(("zone-reply", self.id())),
            _ => None,
        }
    }
}

/// The raw table's conntrack template for a packet, as the first `CT`/`NOTRACK` rule its walk
/// passed leaves it (Linux's `xt_ct_target` ignores any later one: the packet already has
/// its template): packed in a `u32`, 0 when no such rule was passed.
///
/// Bits 0-17 are a [`Zone`]'s (the id, the directions), [`TEMPLATE_MARK`] takes the id from
/// the packet's mark when conntrack looks it up (`--zone mark`, `NF_CT_FLAG_MARK`), and
/// [`TEMPLATE_NOTRACK`] leaves the packet untracked.
pub const TEMPLATE_SET: u32 = 1 << 31;
/// See [`TEMPLATE_SET`]: `NOTRACK`, `CT --notrack`.
pub const TEMPLATE_NOTRACK: u32 = TEMPLATE_SET | 1 << 30;
/// See [`TEMPLATE_SET`]: the zone's id is the packet's mark's low 16 bits.
pub const TEMPLATE_MARK: u32 = 1 << 18;

/// The template of `CT --zone`/`--zone-orig`/`--zone-reply` (`dirs`: [`DIR_ORIG`],
/// [`DIR_REPLY`] or both), of id `id` or (`mark`) of the packet's mark.
#[inline]
pub const fn template(id: u16, dirs: u32, mark: bool) -> u32 {
    TEMPLATE_SET | (dirs & DIR_BOTH) | id as u32 | if mark { TEMPLATE_MARK } else { 0 }
}

/// Whether template `t` leaves the packet untracked.
#[inline(always)]
pub const fn template_notrack(t: u32) -> bool {
    t & TEMPLATE_NOTRACK == TEMPLATE_NOTRACK
}

/// The zone a packet with template `t` and mark `mark` is tracked in (`nf_ct_zone_tmpl`).
#[inline]
pub const fn template_zone(t: u32, mark: u32) -> Zone {
    if t & TEMPLATE_SET == 0 || template_notrack(t) {
        return Zone::DEFAULT;
    }
    let id = if t & TEMPLATE_MARK != 0 {
        mark as u16
    } else {
        t as u16
    };
    Zone::new(id, t & DIR_BOTH)
}

/// The zones of the entries outside the default zone, by slot.
#[derive(Debug)]
pub(super) struct Zones {
    /// By slot; written only for an entry with [`super::status::ZONED`].
    zones: Vec<u32>,
}

impl Zones {
    pub(super) fn new(capacity: u32) -> Zones {
        Zones {
            zones: vec![0; capacity as usize],
        }
    }

    #[inline]
    pub(super) fn get(&self, i: u32) -> Zone {
        Zone(self.zones.get(i as usize).copied().unwrap_or(0))
    }

    #[inline]
    pub(super) fn set(&mut self, i: u32, z: Zone) {
        if let Some(s) = self.zones.get_mut(i as usize) {
            *s = z.0;
        }
    }
}
