//! `-m u32 [!] --u32 TESTS` (libxt_u32), read into a [`U32Match`]
//! ([`dataplane::classify::u32_match`]).
//!
//! ```text
//! tests    := location "=" value | tests "&&" location "=" value
//! value    := range | value "," range
//! range    := number | number ":" number
//! location := number | location operator number
//! operator := "&" | "<<" | ">>" | "@"
//! ```
//!
//! Numbers as `strtoul` with base 0 reads them, at most `0xffffffff`; blanks between the
//! parts; at most [`MAX_SIZE`] tests, numbers in a location and ranges in a value. Errors
//! name the character of the argument as libxt_u32 does.

use super::super::ast::*;
use super::{RuleParser, Token};
use crate::rules::RuleError;
use dataplane::classify::u32_match::{Op, Test, U32Match, MAX_SIZE};
use dataplane::classify::Check;
use std::sync::Arc;

/// What the parser holds for this module until the rule is read.
#[derive(Default)]
pub(super) struct State {
    pending: Vec<Pending>,
}

struct Pending {
    at: usize,
    col: u32,
    m: Option<U32Match>,
}

/// The canonical name of `opt` if `module` is `-m u32` and defines it.
pub(super) fn module_option(module: Module, opt: &str) -> Option<&'static str> {
    (module == Module::U32 && opt == "--u32").then_some("--u32")
}

/// Whether `canonical` is an option of `-m u32`.
pub(super) fn takes(canonical: &str) -> bool {
    canonical == "--u32"
}

/// A reader over the argument, for libxt_u32's grammar.
struct Reader<'s> {
    s: &'s [u8],
    i: usize,
}

impl Reader<'_> {
    fn skip_blanks(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn err(&self, what: &str) -> String {
        format!("u32: at char {}: {what}", self.i)
    }

    /// `strtoul(s, &end, 0)` within `0..=u32::MAX`: blanks, a sign, `0x` hex, `0` octal or
    /// decimal; something must be read.
    fn number(&mut self) -> Result<u32, String> {
        let at = self.i;
        let bad = || format!("u32: at char {at}: not a number or out of range");
        self.skip_blanks();
        let mut neg = false;
        match self.peek() {
            Some(b'+') => self.i += 1,
            Some(b'-') => {
                neg = true;
                self.i += 1;
            }
            _ => {}
        }
        let s = self.s;
        let (radix, start) = if s.get(self.i) == Some(&b'0')
            && matches!(s.get(self.i + 1), Some(b'x' | b'X'))
            && s.get(self.i + 2).is_some_and(|c| c.is_ascii_hexdigit())
        {
            (16, self.i + 2)
        } else if s.get(self.i) == Some(&b'0') {
            (8, self.i)
        } else {
            (10, self.i)
        };
        let mut end = start;
        while s.get(end).is_some_and(|&c| char::from(c).is_digit(radix)) {
            end += 1;
        }
        if end == start {
            return Err(bad());
        }
        let text = std::str::from_utf8(&s[start..end]).map_err(|_| bad())?;
        let n = u64::from_str_radix(text, radix).map_err(|_| bad())?;
        self.i = end;
        match (neg, u32::try_from(n)) {
            (false, Ok(n)) => Ok(n),
            // strtoul negates: only -0 stays in range.
            (true, _) if n == 0 => Ok(0),
            _ => Err(bad()),
        }
    }
}

/// The tests of `--u32 TEXT`, as libxt_u32's `u32_parse` reads them.
pub fn parse(text: &str, invert: bool) -> Result<U32Match, String> {
    let mut r = Reader {
        s: text.as_bytes(),
        i: 0,
    };
    let mut tests: Vec<Test> = Vec::new();
    let mut cur = Test {
        start: 0,
        ops: Vec::new(),
        ranges: Vec::new(),
    };
    let mut nums = 0usize;
    let mut reading_values = false;
    loop {
        r.skip_blanks();
        let Some(c) = r.peek() else {
            if !reading_values {
                return Err("u32: abrupt end of input after location specifier".into());
            }
            if cur.ranges.is_empty() {
                return Err("u32: test ended with no value specified".into());
            }
            tests.push(cur);
            if tests.len() > MAX_SIZE {
                return Err(r.err("too many \"&&\"s"));
            }
            return Ok(U32Match { tests, invert });
        };
        if !reading_values {
            if c == b'=' {
                if nums == 0 {
                    return Err(r.err("location spec missing"));
                }
                r.i += 1;
                reading_values = true;
                continue;
            }
            let mut op = None;
            if nums != 0 {
                op = Some(match c {
                    b'&' => Op::And,
                    b'<' | b'>' => {
                        r.i += 1;
                        if r.peek() != Some(c) {
                            let which = char::from(c);
                            return Err(r.err(&format!("a second '{which}' was expected")));
                        }
                        if c == b'<' {
                            Op::Shl
                        } else {
                            Op::Shr
                        }
                    }
                    b'@' => Op::At,
                    _ => return Err(r.err("operator expected")),
                });
                r.i += 1;
            }
            let n = r.number()?;
            match op {
                None => cur.start = n,
                Some(op) => cur.ops.push((op, n)),
            }
            nums += 1;
            if nums > MAX_SIZE {
                return Err(r.err("too many operators"));
            }
        } else if c == b'&' {
            r.i += 1;
            if r.peek() != Some(b'&') {
                return Err(r.err("a second '&' was expected"));
            }
            if cur.ranges.is_empty() {
                return Err(r.err("value spec missing"));
            }
            tests.push(std::mem::replace(
                &mut cur,
                Test {
                    start: 0,
                    ops: Vec::new(),
                    ranges: Vec::new(),
                },
            ));
            if tests.len() > MAX_SIZE {
                return Err(r.err("too many \"&&\"s"));
            }
            r.i += 1;
            reading_values = false;
            nums = 0;
        } else {
            if !cur.ranges.is_empty() {
                if c != b',' {
                    return Err(r.err("expected \",\" or \"&&\""));
                }
                r.i += 1;
            }
            let lo = r.number()?;
            r.skip_blanks();
            let hi = if r.peek() == Some(b':') {
                r.i += 1;
                r.number()?
            } else {
                lo
            };
            cur.ranges.push((lo, hi));
            if cur.ranges.len() > MAX_SIZE {
                return Err(r.err("too many \",\"s"));
            }
        }
    }
}

impl<'a> RuleParser<'a> {
    /// `-m u32` was read (at `col`).
    pub(super) fn u32_load(&mut self, module: Module, col: u32) {
        if module == Module::U32 {
            self.u32.pending.push(Pending {
                at: self.matches.len(),
                col,
                m: None,
            });
        }
    }

    /// `--u32` (already checked to be given once).
    pub(super) fn u32_option(
        &mut self,
        tok: &'a Token<'a>,
        negated: bool,
    ) -> Result<(), RuleError> {
        let v = self.value(tok)?;
        let m = parse(&v.text, negated).map_err(|e| self.err(v.col, e))?;
        self.u32.pending.last_mut().expect("-m u32 loaded").m = Some(m);
        Ok(())
    }

    /// After the rule is read: each `-m u32` needs `--u32`.
    pub(super) fn u32_finish(&mut self) -> Result<(), RuleError> {
        let pending = std::mem::take(&mut self.u32.pending);
        for p in pending.into_iter().rev() {
            let Some(m) = p.m else {
                return Err(self.err(p.col, "-m u32 needs --u32"));
            };
            self.place_check(p.at, p.col, Check::U32(Arc::new(m)));
        }
        Ok(())
    }
}
