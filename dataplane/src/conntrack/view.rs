//! The view of a packet's connection that the connection matches read
//! ([`crate::classify::ctmatch`]): made on the judging path only for rule sets that have them.

use super::{status, Conntrack, Dir, Handle, Tracked};
use crate::classify::ctmatch::{self, CtView};
use crate::wire::FlowKey;

impl Conntrack {
    /// The connection of a tracked packet as the filter hook sees it, or `None` when it has
    /// none (INVALID, UNTRACKED). A NEW packet's connection is the pending one: not
    /// confirmed, its reply tuple `reply` when nat PREROUTING translated it (else the
    /// inverse of the original), its first packet counted, 0 seconds left (see
    /// [`CtView::expires_s`]).
    #[cold]
    #[inline(never)]
    pub fn view(&self, t: &Tracked, reply: Option<FlowKey>, now_ns: u64) -> Option<CtView> {
        let reply_dir = t.dir == Dir::Reply;
        match t.handle {
            Handle::None => None,
            Handle::New(p) => {
                let e = self.pending_entry(p)?;
                let orig = e.key.key();
                Some(CtView {
                    orig,
                    reply: reply.unwrap_or_else(|| orig.reply()),
                    reply_dir,
                    status: 0,
                    expires_s: 0,
                    packets: e.packets_lo.map(u64::from),
                    bytes: e.bytes_lo.map(u64::from),
                })
            }
            Handle::Entry(id) => {
                let i = self.get(id, now_ns)?;
                let e = &self.entries[id.0 as usize];
                let mut st = ctmatch::status::CONFIRMED;
                if e.has(status::SEEN_REPLY) {
                    st |= ctmatch::status::SEEN_REPLY;
                }
                if e.has(status::ASSURED) {
                    st |= ctmatch::status::ASSURED;
                }
                Some(CtView {
                    orig: i.orig,
                    reply: i.reply,
                    reply_dir,
                    status: st,
                    expires_s: i.timeout_left_ns / super::SEC,
                    packets: i.packets,
                    bytes: i.bytes,
                })
            }
        }
    }
}
