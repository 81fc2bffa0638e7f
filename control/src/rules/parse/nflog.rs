//! The NFLOG target's options (libxt_NFLOG), read into a [`LogSpec`] with its group: Rampart
//! has no netlink, so an NFLOG rule's records go where LOG's go (the daemon's log, replay's
//! verdict log), carrying the group and the prefix.

use super::{RuleParser, Token};
use crate::rules::matches;
use crate::rules::RuleError;
use dataplane::classify::LogSpec;

/// `NF_LOG_PREFIXLEN` - 1: libxt_NFLOG cuts a longer `--nflog-prefix` to this many bytes.
pub const MAX_PREFIX: usize = 63;

/// An NFLOG target being read.
#[derive(Default)]
pub(super) struct Pending {
    group: u16,
    prefix: String,
    /// The options given (each once).
    used: Vec<&'static str>,
}

fn option(opt: &str) -> Option<&'static str> {
    Some(match opt {
        "--nflog-group" => "--nflog-group",
        "--nflog-prefix" => "--nflog-prefix",
        "--nflog-range" => "--nflog-range",
        "--nflog-size" => "--nflog-size",
        "--nflog-threshold" => "--nflog-threshold",
        _ => return None,
    })
}

impl Pending {
    /// The record's parameters: the group and prefix (`--nflog-size`, `--nflog-range` and
    /// `--nflog-threshold` shape what netlink carries to a listener, which Rampart has not).
    pub(super) fn spec(self) -> LogSpec {
        LogSpec {
            prefix: self.prefix,
            level: 4,
            group: Some(self.group),
        }
    }
}

/// `prefix` cut to at most [`MAX_PREFIX`] bytes (at a character boundary).
fn cut(prefix: &str) -> String {
    let mut end = prefix.len().min(MAX_PREFIX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    prefix[..end].to_string()
}

impl<'a> RuleParser<'a> {
    /// An option of a pending NFLOG target; `false` when it is not one.
    pub(super) fn nflog_target_option(
        &mut self,
        p: &mut Pending,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<bool, RuleError> {
        let Some(opt) = option(tok.text.as_ref()) else {
            return Ok(false);
        };
        self.no_negation(tok, negated)?;
        if p.used.contains(&opt) {
            return Err(self.err(tok.col, format!("only one {opt} is allowed")));
        }
        // libxt_NFLOG: the old --nflog-range and --nflog-size set the same field.
        let clash = match opt {
            "--nflog-range" => Some("--nflog-size"),
            "--nflog-size" => Some("--nflog-range"),
            _ => None,
        };
        if let Some(c) = clash.filter(|c| p.used.contains(c)) {
            return Err(self.err(tok.col, format!("NFLOG: {opt} cannot be combined with {c}")));
        }
        p.used.push(opt);
        let v = self.value(tok)?;
        let bad = |m: String| self.err(v.col, m);
        match opt {
            "--nflog-prefix" => {
                if v.text.is_empty() {
                    return Err(bad("--nflog-prefix must have at least 1 character".into()));
                }
                if v.text.contains('\n') {
                    return Err(bad("newlines are not allowed in --nflog-prefix".into()));
                }
                p.prefix = cut(&v.text);
            }
            "--nflog-group" => {
                p.group = matches::number(&v.text, u32::from(u16::MAX), "--nflog-group")
                    .map_err(bad)? as u16;
            }
            "--nflog-threshold" => {
                matches::number(&v.text, u32::from(u16::MAX), "--nflog-threshold").map_err(bad)?;
            }
            // --nflog-range has had no effect in any kernel (iptables warns and takes it);
            // --nflog-size bounds the bytes copied to the listener.
            _ => {
                matches::number(&v.text, u32::MAX, opt).map_err(bad)?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_prefixes_are_cut_as_libxt_nflog_cuts_them() {
        assert_eq!(super::cut(&"a".repeat(70)).len(), 63);
        assert_eq!(super::cut("short"), "short");
        // Not inside a character.
        let s = format!("{}é", "a".repeat(62));
        assert_eq!(super::cut(&s), "a".repeat(62));
    }
}
