//! Splitting one line into words the way iptables-restore does: blanks separate words, `"`
//! opens and closes a quoted stretch (which may sit inside a word), and inside quotes a
//! backslash takes the next character literally.

/// One word of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub text: String,
    /// 1-based column (in characters) of the word's first character.
    pub col: u32,
    /// Whether any part of the word was quoted (a quoted `"!"` is not a negation).
    pub quoted: bool,
}

/// The words of `line`, or the column and text of a lexical error.
pub(crate) fn tokenize(line: &str) -> Result<Vec<Token>, (u32, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<u32> = None;
    let mut quoted = false;
    let mut quote_open: Option<u32> = None;
    let mut escaped = false;
    for (i, ch) in line.chars().enumerate() {
        let col = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
        if quote_open.is_some() {
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
                start.get_or_insert(col);
            }
            ' ' | '\t' | '\r' | '\n' => {
                if let Some(s) = start.take() {
                    out.push(Token {
                        text: std::mem::take(&mut cur),
                        col: s,
                        quoted,
                    });
                    quoted = false;
                }
            }
            c => {
                start.get_or_insert(col);
                cur.push(c);
            }
        }
    }
    if let Some(q) = quote_open {
        return Err((q, "unterminated quote".to_string()));
    }
    if let Some(s) = start {
        out.push(Token {
            text: cur,
            col: s,
            quoted,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<(String, u32)> {
        tokenize(line)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.col))
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
    }
}
