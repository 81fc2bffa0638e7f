//! `-m nfacct --nfacct-name NAME` (xt_nfacct, nfnetlink_acct): named accounting objects a
//! rule adds every packet it sees to (one packet, the datagram's length in bytes); the match
//! always holds. The objects are the process's, kept by name across rule swaps with their
//! counts, as Linux keeps them apart from the rule sets: made by `rampart ctl nfacct add` or
//! by a rule set that names one (Linux refuses such a rule set until `nfacct add`), listed,
//! reset and deleted through the management socket.
//!
//! Counting: each thread that counts takes one of [`CELLS`] cache-line cells of the object
//! for itself the first time (a worker thread's slot, kept for the thread's life), and
//! adds to it by a load and a store, without a locked instruction or a line shared with
//! another core; threads past [`CELLS`] share one overflow cell with atomic adds. The control
//! thread sums the cells; a reset (`list --reset`) keeps the sum it read as the object's
//! base, so the workers never see a write to their cells.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// `NFACCT_NAME_MAX` less its NUL.
pub const MAX_NAME: usize = 31;
/// Cells of exclusive use (one per counting thread); the last one is shared.
pub const CELLS: usize = 64;

#[repr(align(64))]
#[derive(Default, Debug)]
struct Counts {
    packets: AtomicU64,
    bytes: AtomicU64,
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's cell in every object (`usize::MAX`: not taken yet).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's cell index.
#[inline]
fn slot() -> usize {
    SLOT.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(CELLS - 1);
        s.set(v);
        v
    })
}

/// One accounting object.
#[derive(Debug)]
pub struct NfAcct {
    name: String,
    cells: Box<[Counts]>,
    /// The sums a reset took away (control thread only).
    base: Mutex<(u64, u64)>,
}

impl PartialEq for NfAcct {
    fn eq(&self, o: &NfAcct) -> bool {
        std::ptr::eq(self, o)
    }
}

impl Eq for NfAcct {}

impl std::hash::Hash for NfAcct {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h);
    }
}

impl NfAcct {
    fn new(name: &str) -> NfAcct {
        NfAcct {
            name: name.to_string(),
            cells: (0..CELLS).map(|_| Counts::default()).collect(),
            base: Mutex::new((0, 0)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds one packet of `bytes` (nfnl_acct_update).
    #[inline]
    pub fn count(&self, bytes: u64) {
        let s = slot();
        let c = &self.cells[s];
        if s < CELLS - 1 {
            c.packets
                .store(c.packets.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            c.bytes
                .store(c.bytes.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
        } else {
            c.packets.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn sums(&self) -> (u64, u64) {
        self.cells.iter().fold((0, 0), |(p, b), c| {
            (
                p.wrapping_add(c.packets.load(Ordering::Relaxed)),
                b.wrapping_add(c.bytes.load(Ordering::Relaxed)),
            )
        })
    }

    /// The packets and bytes counted since the object was made or last reset; with `reset`,
    /// they start from 0 after this read.
    pub fn read(&self, reset: bool) -> (u64, u64) {
        let (p, b) = self.sums();
        let mut base = self.base.lock().unwrap_or_else(|e| e.into_inner());
        let out = (p.wrapping_sub(base.0), b.wrapping_sub(base.1));
        if reset {
            *base = (p, b);
        }
        out
    }
}

/// An object of the registry and whether it stays without a rule set naming it.
struct Entry {
    acct: Arc<NfAcct>,
    /// Made by `add`, or named by a rule set that was put in force ([`settle`]).
    kept: bool,
}

static REGISTRY: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

fn registry() -> std::sync::MutexGuard<'static, BTreeMap<String, Entry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a management request on the objects failed (nfacct's errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NfAcctError {
    #[error("invalid name {0:?} (1 to 31 characters)")]
    Name(String),
    #[error("{0}: object already exists")]
    Exists(String),
    #[error("{0}: no such object")]
    Missing(String),
    #[error("{0}: object in use by the rules in force (Device or resource busy)")]
    Busy(String),
}

/// Whether `name` is a valid object name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.contains('\0')
}

/// The object `name` for a rule set being read: the existing one, or a new one, held by the
/// registry until [`settle`] finds no rule set naming it.
pub fn for_rule(name: &str) -> Arc<NfAcct> {
    let mut r = registry();
    let e = r.entry(name.to_string()).or_insert_with(|| Entry {
        acct: Arc::new(NfAcct::new(name)),
        kept: false,
    });
    e.acct.clone()
}

/// After a rule set was put in force (or refused): objects its rules name are kept from now
/// on; ones only a refused rule set made are forgotten.
pub fn settle() {
    let mut r = registry();
    r.retain(|_, e| {
        if Arc::strong_count(&e.acct) > 1 {
            e.kept = true;
        }
        e.kept
    });
}

/// `nfacct add NAME`.
pub fn add(name: &str) -> Result<(), NfAcctError> {
    if !valid_name(name) {
        return Err(NfAcctError::Name(name.to_string()));
    }
    let mut r = registry();
    match r.get_mut(name) {
        Some(e) if e.kept => Err(NfAcctError::Exists(name.to_string())),
        Some(e) => {
            e.kept = true;
            Ok(())
        }
        None => {
            r.insert(
                name.to_string(),
                Entry {
                    acct: Arc::new(NfAcct::new(name)),
                    kept: true,
                },
            );
            Ok(())
        }
    }
}

/// One object's name, packets and bytes.
pub type Reading = (String, u64, u64);

/// `nfacct list [reset]`: every kept object (or one named by a rule set), by name.
pub fn list(reset: bool) -> Vec<Reading> {
    let r = registry();
    r.values()
        .filter(|e| e.kept || Arc::strong_count(&e.acct) > 1)
        .map(|e| {
            let (p, b) = e.acct.read(reset);
            (e.acct.name.clone(), p, b)
        })
        .collect()
}

/// `nfacct get NAME [reset]`.
pub fn get(name: &str, reset: bool) -> Result<Reading, NfAcctError> {
    let r = registry();
    match r.get(name) {
        Some(e) if e.kept || Arc::strong_count(&e.acct) > 1 => {
            let (p, b) = e.acct.read(reset);
            Ok((name.to_string(), p, b))
        }
        _ => Err(NfAcctError::Missing(name.to_string())),
    }
}

/// `nfacct delete NAME`: refused while the rules in force name it (`in_use`: the names
/// they use; rule sets kept for a later reload or not yet freed do not hold an object).
pub fn delete(name: &str, in_use: &[String]) -> Result<(), NfAcctError> {
    let mut r = registry();
    match r.get(name) {
        Some(_) if in_use.iter().any(|n| n == name) => Err(NfAcctError::Busy(name.to_string())),
        Some(e) if e.kept || Arc::strong_count(&e.acct) > 1 => {
            r.remove(name);
            Ok(())
        }
        _ => Err(NfAcctError::Missing(name.to_string())),
    }
}

/// `nfacct flush`: deletes every object the rules in force do not name (`in_use`; the others
/// stay, as Linux's flush leaves objects in use); how many went.
pub fn flush(in_use: &[String]) -> usize {
    let mut r = registry();
    let before = r.len();
    r.retain(|n, _| in_use.contains(n));
    before - r.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_count_reset_and_refuse_what_nfacct_refuses() {
        assert_eq!(add(""), Err(NfAcctError::Name(String::new())));
        assert!(add(&"x".repeat(32)).is_err());
        add("t-dp-a").unwrap();
        assert_eq!(add("t-dp-a"), Err(NfAcctError::Exists("t-dp-a".into())));
        let a = for_rule("t-dp-a");
        let b = for_rule("t-dp-b");
        a.count(100);
        a.count(40);
        std::thread::scope(|s| {
            s.spawn(|| a.count(60));
        });
        b.count(1);
        settle();
        assert_eq!(get("t-dp-a", false), Ok(("t-dp-a".into(), 3, 200)));
        assert_eq!(get("t-dp-a", true), Ok(("t-dp-a".into(), 3, 200)));
        assert_eq!(get("t-dp-a", false), Ok(("t-dp-a".into(), 0, 0)));
        a.count(5);
        assert_eq!(get("t-dp-a", false), Ok(("t-dp-a".into(), 1, 5)));
        // In use: not deleted, not flushed.
        let busy = ["t-dp-b".to_string()];
        assert_eq!(
            delete("t-dp-b", &busy),
            Err(NfAcctError::Busy("t-dp-b".into()))
        );
        drop(b);
        // Kept once a rule set in force named it (settle), counts and all.
        assert_eq!(get("t-dp-b", false), Ok(("t-dp-b".into(), 1, 1)));
        delete("t-dp-b", &[]).unwrap();
        assert_eq!(
            delete("t-dp-b", &[]),
            Err(NfAcctError::Missing("t-dp-b".into()))
        );
        // Made by a rule set that never came into force: forgotten.
        let c = for_rule("t-dp-c");
        drop(c);
        settle();
        assert_eq!(
            get("t-dp-c", false),
            Err(NfAcctError::Missing("t-dp-c".into()))
        );
        drop(a);
        assert!(list(false).iter().any(|r| r.0 == "t-dp-a"));
    }
}
