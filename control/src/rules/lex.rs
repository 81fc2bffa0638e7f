//! Splitting one line into words the way iptables-restore does: blanks separate words, `"`
//! opens and closes a quoted stretch (which may sit inside a word), and inside quotes a
//! backslash takes the next character literally.

use std::borrow::Cow;

/// One word of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    /// The word; borrowed from the line unless quotes made it differ from it.
    pub text: Cow<'a, str>,
    /// 1-based column (in characters) of the word's first character.
    pub col: u32,
    /// Whether any part of the word was quoted (a quoted `"!"` is not a negation).
    pub quoted: bool,
}

/// The words of `line`, or the column and text of a lexical error.
pub(crate) fn tokenize(line: &str) -> Result<Vec<Token<'_>>, (u32, String)> {
    if line.is_ascii() && !line.contains('"') {
        return Ok(plain_words(line));
    }
    let mut out = Vec::with_capacity(16);
    // The word's text once a quote made it differ from the line.
    let mut owned: Option<String> = None;
    // Column and byte offset of the word's first character.
    let mut start: Option<(u32, usize)> = None;
    let mut quoted = false;
    let mut quote_open: Option<u32> = None;
    let mut escaped = false;
    for (i, (at, ch)) in line.char_indices().enumerate() {
        let col = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        if quote_open.is_some() {
            let cur = owned.get_or_insert_with(String::new);
            if escaped {
                cur.push(ch);
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                quote_open = None;
            } else {
                cur.push(ch);
            }
            continue;
        }
        match ch {
            '"' => {
                quote_open = Some(col);
                quoted = true;
                let (_, from) = *start.get_or_insert((col, at));
                owned.get_or_insert_with(|| line[from..at].to_string());
            }
            ' ' | '\t' | '\r' | '\n' => {
                if let Some((s, from)) = start.take() {
                    let text = match owned.take() {
                        Some(o) => Cow::Owned(o),
                        None => Cow::Borrowed(&line[from..at]),
                    };
                    out.push(Token {
                        text,
                        col: s,
                        quoted,
                    });
                    quoted = false;
                }
            }
            c => {
                start.get_or_insert((col, at));
                if let Some(o) = owned.as_mut() {
                    o.push(c);
                }
            }
        }
    }
    if let Some(q) = quote_open {
        return Err((q, "unterminated quote".to_string()));
    }
    if let Some((s, from)) = start {
        let text = match owned.take() {
            Some(o) => Cow::Owned(o),
            None => Cow::Borrowed(&line[from..]),
        };
        out.push(Token {
            text,
            col: s,
            quoted,
        });
    }
    Ok(out)
}

/// The words of an ASCII line without quotes: byte offsets are columns.
fn plain_words(line: &str) -> Vec<Token<'_>> {
    let mut out = Vec::with_capacity(16);
    let bytes = line.as_bytes();
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut i = 0;
    while i < bytes.len() {
        if blank(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !blank(bytes[i]) {
            i += 1;
        }
        out.push(Token {
            text: Cow::Borrowed(&line[start..i]),
            col: u32::try_from(start + 1).unwrap_or(u32::MAX),
            quoted: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<(String, u32)> {
        tokenize(line)
            .unwrap()
            .into_iter()
            .map(|t| (t.text.into_owned(), t.col))
            .collect()
    }

    #[test]
    fn splits_and_quotes() {
        assert_eq!(
            words("-A  FORWARD\t-j ACCEPT"),
            [
                ("-A".into(), 1),
                ("FORWARD".into(), 5),
                ("-j".into(), 13),
                ("ACCEPT".into(), 16)
            ]
        );
        assert_eq!(
            words(r#"--comment "a \"b\" c""#),
            [("--comment".into(), 1), (r#"a "b" c"#.into(), 11)]
        );
        assert_eq!(words(r#"x"y z"w"#), [("xy zw".to_string(), 1)]);
        assert_eq!(words(r#""""#), [(String::new(), 1)]);
        assert_eq!(
            tokenize(r#"-j LOG --log-prefix "oops"#),
            Err((21, "unterminated quote".into()))
        );
        assert!(tokenize("").unwrap().is_empty());
        assert_eq!(
            words("é x\t\"y\""),
            [("é".into(), 1), ("x".into(), 3), ("y".into(), 5)]
        );
    }

    proptest::proptest! {
        /// The quick path for plain ASCII lines splits as the general one does.
        #[test]
        fn plain_lines_split_as_the_general_path(line in "[ a!\t\r-]{0,24}") {
            let mut general = line.clone();
            // A quote anywhere sends the line to the general path; an empty quoted stretch at
            // the end of a blank changes nothing but that.
            general.push_str(" \"\"");
            let mut want = tokenize(&general).unwrap();
            want.pop();
            proptest::prop_assert_eq!(plain_words(&line), want);
        }
    }
}
