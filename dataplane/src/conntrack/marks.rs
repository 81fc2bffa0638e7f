//! Connection marks (Linux's `ct->mark`: CONNMARK sets it, `-m connmark` and `CONNMARK
//! --restore-mark` read it), one `u32` per slot in a side array beside the 128-byte entries.
//!
//! The array is made with the table, zeroed, and allocated zeroed (`calloc`: the pages are the
//! kernel's zero page until written), so a table whose rule sets never set a mark costs no
//! resident memory for it and no store at all: nothing writes the array until the first
//! non-zero mark ([`Marks::live`]). From then on the entry's creation writes the slot's mark
//! (0, or what the NEW packet's walk left: [`Marks::stage`]), which is the only reset a slot
//! needs: an entry's end (expiry, close, flush, eviction) leaves its old mark behind, and the
//! next entry of the slot overwrites it before anything reads it.

use super::EntryId;

#[derive(Debug)]
pub(super) struct Marks {
    /// By slot; all zero until `live`.
    marks: Vec<u32>,
    /// A non-zero mark has been written: entries' creations must write theirs.
    live: bool,
    /// The mark a NEW connection's walk left, for the creation its confirmation makes
    /// ([`Marks::created`]); 0 outside a confirmation.
    staged: u32,
    /// The mark of the entry the last packet killed (a RST): the packet still belongs to the
    /// connection in its walk, as in Linux.
    killed: Option<u32>,
}

impl Marks {
    pub(super) fn new(capacity: u32) -> Marks {
        Marks {
            marks: vec![0; capacity as usize],
            live: false,
            staged: 0,
            killed: None,
        }
    }

    /// The mark of the entry in slot `i`.
    #[inline]
    pub(super) fn get(&self, i: u32) -> u32 {
        if self.live {
            self.marks.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Sets the mark of the entry in slot `i`.
    #[inline]
    pub(super) fn set(&mut self, i: u32, mark: u32) {
        if mark != 0 {
            self.live = true;
        }
        if self.live {
            if let Some(m) = self.marks.get_mut(i as usize) {
                *m = mark;
            }
        }
    }

    /// The mark the next creation takes (then 0 again).
    #[inline]
    pub(super) fn stage(&mut self, mark: u32) {
        if mark != 0 {
            self.live = true;
        }
        self.staged = mark;
    }

    /// The hook of an entry's creation in slot `i`: its mark is the staged one (0 unless the
    /// NEW packet's walk set one). One test when no mark was ever set.
    #[inline(always)]
    pub(super) fn created(&mut self, i: u32) {
        if self.live {
            self.created_live(i);
        }
    }

    #[cold]
    #[inline(never)]
    fn created_live(&mut self, i: u32) {
        let m = std::mem::take(&mut self.staged);
        if let Some(slot) = self.marks.get_mut(i as usize) {
            *slot = m;
        }
    }

    /// The hook of a RST killing the entry in slot `i`: its mark is kept for the packet.
    #[inline]
    pub(super) fn killed(&mut self, i: u32) {
        self.killed = self.live.then(|| self.get(i));
    }

    /// The mark of the entry the last packet killed.
    pub(super) fn take_killed(&mut self) -> Option<u32> {
        self.killed.take()
    }
}

impl super::Conntrack {
    /// The connection mark of entry `id` (0 until CONNMARK sets one).
    #[inline]
    pub fn mark(&self, id: EntryId) -> u32 {
        self.marks.get(id.0)
    }

    /// The connection mark of the live connection whose tuple (either direction) is `k`; 0
    /// when there is none. For reports (replay's verdict log), not the packet path.
    pub fn mark_of(&self, k: &crate::wire::FlowKey, now_ns: u64) -> u32 {
        self.find(k)
            .filter(|&(i, _)| self.entries[i as usize].deadline_ns > now_ns)
            .map_or(0, |(i, _)| self.marks.get(i))
    }

    /// Sets the connection mark of entry `id`.
    #[inline]
    pub fn set_mark(&mut self, id: EntryId, mark: u32) {
        self.marks.set(id.0, mark);
    }

    /// The mark the connection a NEW packet's confirmation creates starts with (its walk's);
    /// [`Conntrack::unstage_mark`] after the confirmation, which may not create it.
    #[inline]
    pub fn stage_mark(&mut self, mark: u32) {
        self.marks.stage(mark);
    }

    /// Forgets a staged mark no creation took (a dropped packet, a clash, a full table).
    #[inline]
    pub fn unstage_mark(&mut self) {
        self.marks.staged = 0;
    }

    /// The mark of the entry the last tracked packet killed ([`super::Handle::None`] with a
    /// state: a RST), which that packet's walk still sees; `None` when no mark was ever set.
    #[inline]
    pub fn take_killed_mark(&mut self) -> Option<u32> {
        self.marks.take_killed()
    }
}
