//! The `-m connlimit` counts a connection holds ([`crate::classify::connlimit`]), in a side
//! array beside the entries (the 128-byte entry is unchanged), and their release at the
//! connection's end.
//!
//! A judgement reserves counts in a [`Counting`]; [`Conntrack::keep_counts`] then tags them on
//! a confirmed connection at once, or keeps a NEW connection's until its confirmation
//! (`insert` tags them on the new entry) or until [`Conntrack::settle_counts`] after the
//! packet's last stage releases what was not confirmed (a dropped first packet, a full table).
//! Every end of an entry goes through `Conntrack::remove` (expiry, RST, eviction, flush,
//! reopening), which releases its tags; a TCP connection moving to TIME_WAIT or CLOSE
//! releases them there (`Conntrack::tcp_closing`), as nf_conncount prunes such connections.
//!
//! A tag names its tables by an index into the worker's registry, which holds each table
//! (an `Arc`) while a tag names it: a rule set replaced by a reload keeps its tables alive
//! until the last connection they counted ends, and its counts are released into them, not
//! into the new rule set's (which start empty, as Linux's do).
//!
//! The side array (`PER_CONN` table indices and slots an entry, 28 bytes) is made when the
//! worker first keeps a count, not before: workers whose rule sets never count pay nothing.

use super::{Conntrack, EntryId, Handle, Tracked, L4};
use crate::classify::connlimit::{Conn, CountTable, Counting, PER_CONN};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tag {
    n: u8,
    table: [u16; PER_CONN],
    slot: [u32; PER_CONN],
}

/// A worker's counts: the side array, the registry of tables, a NEW connection's reservations
/// until its packet is done.
#[derive(Debug, Default)]
pub(super) struct Side {
    tags: Vec<Tag>,
    /// Tables named by tags, and how many counts of each the worker holds.
    tables: Vec<Option<(Arc<CountTable>, u32)>>,
    /// A NEW connection's reservations: its handle number and the counts.
    pending: Option<(u32, Tag)>,
}

impl Side {
    /// The registry index of `t` (keeping a reference to it when it is new here).
    fn register(&mut self, t: Arc<CountTable>) -> u16 {
        if let Some(i) = self
            .tables
            .iter()
            .position(|e| e.as_ref().is_some_and(|(a, _)| Arc::ptr_eq(a, &t)))
        {
            return i as u16;
        }
        match self.tables.iter().position(Option::is_none) {
            Some(i) => {
                self.tables[i] = Some((t, 0));
                i as u16
            }
            None => {
                self.tables.push(Some((t, 0)));
                (self.tables.len() - 1) as u16
            }
        }
    }

    /// Takes counts of `from` into `tag` (up to `PER_CONN`; the rest released).
    fn take(&mut self, tag: &mut Tag, from: impl Iterator<Item = (Arc<CountTable>, u32)>) {
        for (t, slot) in from {
            let r = self.register(t);
            let e = self.tables[r as usize].as_mut().expect("registered");
            if (tag.n as usize) < PER_CONN {
                e.1 += 1;
                tag.table[tag.n as usize] = r;
                tag.slot[tag.n as usize] = slot;
                tag.n += 1;
            } else {
                e.0.release(slot);
            }
        }
    }

    /// Releases every count of `tag`; a table no rule set and no tag holds any more is let go.
    fn release(&mut self, tag: &mut Tag) {
        for k in 0..tag.n as usize {
            let r = tag.table[k] as usize;
            if let Some((t, live)) = self.tables[r].as_mut() {
                t.release(tag.slot[k]);
                *live -= 1;
                if *live == 0 && Arc::strong_count(t) == 1 {
                    self.tables[r] = None;
                }
            }
        }
        tag.n = 0;
    }

    /// Drops from `tag` the counts of tables no rule set holds any more (an old rule set's):
    /// they make room for the current ones.
    fn prune(&mut self, tag: &mut Tag) {
        let mut k = 0;
        while k < tag.n as usize {
            let r = tag.table[k] as usize;
            let dead = self.tables[r]
                .as_ref()
                .is_none_or(|(t, _)| Arc::strong_count(t) == 1);
            if dead {
                let mut one = Tag {
                    n: 1,
                    table: [tag.table[k]; PER_CONN],
                    slot: [tag.slot[k]; PER_CONN],
                };
                self.release(&mut one);
                let last = tag.n as usize - 1;
                tag.table[k] = tag.table[last];
                tag.slot[k] = tag.slot[last];
                tag.n -= 1;
            } else {
                k += 1;
            }
        }
    }
}

impl Conntrack {
    /// The counts the packet's connection (`t`) holds, for its judgement.
    pub fn counting(&mut self, t: &Tracked) -> Counting {
        match t.handle {
            Handle::None => Counting::new(Conn::None),
            Handle::New(_) => Counting::new(Conn::New),
            Handle::Entry(EntryId(i)) => {
                let c = Counting::new(Conn::Confirmed);
                if let Some(mut tag) = self.counted.tags.get(i as usize).copied() {
                    if tag.n > 0 {
                        self.counted.prune(&mut tag);
                        self.counted.tags[i as usize] = tag;
                        for k in 0..tag.n as usize {
                            if let Some((t, _)) = &self.counted.tables[tag.table[k] as usize] {
                                c.hold((Arc::as_ptr(t), tag.slot[k]));
                            }
                        }
                    }
                }
                c
            }
        }
    }

    /// What the judgement of `t`'s packet reserved (`c`): tagged on a confirmed connection now,
    /// kept for a NEW one until its confirmation or [`Conntrack::settle_counts`].
    pub fn keep_counts(&mut self, t: &Tracked, c: &Counting) {
        if !c.reserved() {
            return;
        }
        let mut tag = Tag::default();
        match t.handle {
            Handle::Entry(EntryId(i)) => {
                self.ensure_tags();
                let mut have = self.counted.tags[i as usize];
                let side = &mut *self.counted;
                side.take(&mut have, c.take_added());
                self.counted.tags[i as usize] = have;
            }
            Handle::New(p) => {
                let side = &mut *self.counted;
                side.take(&mut tag, c.take_added());
                if let Some((_, mut old)) = side.pending.take() {
                    side.release(&mut old);
                }
                side.pending = Some((p.0, tag));
                self.count_pending = true;
            }
            Handle::None => {
                let side = &mut *self.counted;
                side.take(&mut tag, c.take_added());
                side.release(&mut tag);
            }
        }
    }

    /// After a packet's last stage: releases the reservations of a NEW connection that was not
    /// confirmed (its first packet dropped, or no room in the table).
    #[inline(always)]
    pub fn settle_counts(&mut self) {
        if self.count_pending {
            self.release_pending();
        }
    }

    #[cold]
    #[inline(never)]
    fn release_pending(&mut self) {
        self.count_pending = false;
        if let Some((_, mut tag)) = self.counted.pending.take() {
            self.counted.release(&mut tag);
        }
    }

    /// Confirmation of handle `handle` into slot `i`: its reservations become the entry's tag.
    #[cold]
    #[inline(never)]
    pub(super) fn counts_confirmed(&mut self, handle: u32, i: u32) {
        self.count_pending = false;
        let Some((h, tag)) = self.counted.pending.take() else {
            return;
        };
        if h != handle {
            let mut tag = tag;
            self.counted.release(&mut tag);
            return;
        }
        self.ensure_tags();
        self.counted.tags[i as usize] = tag;
        self.counting = true;
    }

    fn ensure_tags(&mut self) {
        if self.counted.tags.is_empty() {
            self.counted.tags = vec![Tag::default(); self.cfg.capacity as usize];
        }
        self.counting = true;
    }

    /// Entry `i` ends: its counts are released.
    #[cold]
    #[inline(never)]
    pub(super) fn counts_end(&mut self, i: u32) {
        if let Some(mut tag) = self.counted.tags.get(i as usize).copied() {
            if tag.n > 0 {
                self.counted.release(&mut tag);
                self.counted.tags[i as usize] = tag;
            }
        }
    }

    /// TCP entry `i` was just updated: a connection in TIME_WAIT or CLOSE no longer counts
    /// (nf_conncount's `already_closed`).
    #[cold]
    #[inline(never)]
    pub(super) fn tcp_closing(&mut self, i: u32) {
        if let L4::Tcp(t) = &self.entries[i as usize].l4 {
            if matches!(t.state, super::TcpState::TimeWait | super::TcpState::Close) {
                self.counts_end(i);
            }
        }
    }

    /// How many counts this worker's connections hold (tests).
    pub fn counts_held(&self) -> u32 {
        self.counted
            .tags
            .iter()
            .map(|t| u32::from(t.n))
            .sum::<u32>()
            + self.counted.pending.map_or(0, |(_, t)| u32::from(t.n))
    }
}
