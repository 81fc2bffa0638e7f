//! `-m recent` and `-m hashlimit` in the flattener: rules whose matches change a list or take
//! from a table's bucket are kept even without a target, and never dropped as no-op continues;
//! the TTL a list keeps depends on the hook.

use super::ast::*;
use dataplane::classify::Check;

/// Whether `rule` has a `-m recent` or `-m hashlimit` match (its flat rules are not patched in
/// place: the flattener sets the hook's TTL rule, and gates a jump's draw).
pub(crate) fn names_a_list(rule: &Rule) -> bool {
    rule.matches.iter().any(|m| {
        matches!(
            &m.cond,
            Cond::Check(Check::Recent(_) | Check::HashLimit(_) | Check::ConnLimit(_))
        )
    })
}

/// Whether a match of `rule` changes a list or a bucket: without a target it is still walked.
pub(crate) fn changes_lists(rule: &Rule) -> bool {
    rule.matches.iter().any(|m| match &m.cond {
        Cond::Check(Check::Recent(r)) => r.changes_list(),
        Cond::Check(Check::HashLimit(_) | Check::ConnLimit(_)) => true,
        _ => false,
    })
}

/// Whether any of `checks` changes a list: a continue carrying one is walked even when it
/// lands on the next rule.
pub(crate) fn changes_any(checks: Option<&Vec<Check>>) -> bool {
    checks.is_some_and(|c| {
        c.iter().any(|c| match c {
            Check::Recent(r) => r.changes_list(),
            Check::HashLimit(_) | Check::ConnLimit(_) => true,
            _ => false,
        })
    })
}

/// `c` as checked at `hook`: at FORWARD, Linux's xt_recent takes the TTL as it was before
/// forwarding (one more than the header's).
pub(crate) fn at_hook(c: Check, hook: HookPoint) -> Check {
    match c {
        Check::Recent(r) if hook == HookPoint::Forward && !r.forward => {
            let mut m = (*r).clone();
            m.forward = true;
            Check::Recent(std::sync::Arc::new(m))
        }
        c => c,
    }
}
