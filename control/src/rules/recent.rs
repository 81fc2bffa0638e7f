//! `-m recent` in the flattener: rules whose matches change a list are kept even without a
//! target, and never dropped as no-op continues; the TTL a list keeps depends on the hook.

use super::ast::*;
use dataplane::classify::Check;

/// Whether `rule` has a `-m recent` match (its flat rules are not patched in place: the
/// flattener sets the hook's TTL rule).
pub(crate) fn names_a_list(rule: &Rule) -> bool {
    rule.matches
        .iter()
        .any(|m| matches!(&m.cond, Cond::Check(Check::Recent(_))))
}

/// Whether a match of `rule` changes a list: without a target it is still walked.
pub(crate) fn changes_lists(rule: &Rule) -> bool {
    rule.matches
        .iter()
        .any(|m| matches!(&m.cond, Cond::Check(Check::Recent(r)) if r.changes_list()))
}

/// Whether any of `checks` changes a list: a continue carrying one is walked even when it
/// lands on the next rule.
pub(crate) fn changes_any(checks: Option<&Vec<Check>>) -> bool {
    checks.is_some_and(|c| {
        c.iter()
            .any(|c| matches!(c, Check::Recent(r) if r.changes_list()))
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
