//! A `.env` parser that remembers the line of every value and never touches the process
//! environment.
//!
//! Syntax: `KEY=value`, optional `export ` prefix, `#` comments (whole lines, or after an unquoted
//! value when preceded by whitespace), `"double quoted"` values with `\n \t \" \\ \$` escapes that
//! may span lines, and `'single quoted'` values taken literally (no `${…}` expansion).

use secrecy::SecretString;

/// One assignment. The value is held as a secret: the parser does not know which keys are secret.
#[derive(Debug)]
pub struct Assignment {
    pub name: String,
    pub value: SecretString,
    pub line: usize,
    /// Single-quoted values are literal.
    pub expand: bool,
}

/// A syntax error; names the line, never its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: &'static str,
}

/// Parses a whole file. Returns every assignment it could read and every syntax error.
pub fn parse(content: &str) -> (Vec<Assignment>, Vec<SyntaxError>) {
    let mut assignments = Vec::new();
    let mut errors = Vec::new();
    // A UTF-8 byte-order mark (Windows editors) is not part of the first name; `lines` drops the
    // `\r` of CRLF endings, and unquoted values are trimmed, so no value keeps a `\r`.
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let lines: Vec<&str> = content.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((name, raw)) = line.split_once('=') else {
            errors.push(SyntaxError {
                line: line_no,
                message: "expected NAME=value",
            });
            continue;
        };
        let name = name.trim_end();
        if !crate::interpolate::is_var_name(name) {
            errors.push(SyntaxError {
                line: line_no,
                message: "invalid variable name before '='",
            });
            continue;
        }
        let raw = raw.trim_start();
        let parsed = match raw.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // A quoted value may continue on following lines until its closing quote.
                let mut text = raw[1..].to_owned();
                loop {
                    if let Some((value, tail)) = closing_quote(&text, q) {
                        let tail = tail.trim();
                        if !(tail.is_empty() || tail.starts_with('#')) {
                            break Err("unexpected text after the closing quote");
                        }
                        break Ok((if q == '"' { unescape(&value) } else { value }, q == '"'));
                    }
                    if i >= lines.len() {
                        break Err("unterminated quoted value");
                    }
                    text.push('\n');
                    text.push_str(lines[i]);
                    i += 1;
                }
            }
            _ => {
                let value = match raw.find(" #").or_else(|| raw.find("\t#")) {
                    Some(at) => &raw[..at],
                    None => raw,
                };
                Ok((value.trim_end().to_owned(), true))
            }
        };
        match parsed {
            Ok((value, expand)) => assignments.push(Assignment {
                name: name.to_owned(),
                value: SecretString::from(value),
                line: line_no,
                expand,
            }),
            Err(message) => errors.push(SyntaxError {
                line: line_no,
                message,
            }),
        }
    }
    (assignments, errors)
}

/// Splits at the closing quote, honouring backslash escapes inside double quotes.
fn closing_quote(text: &str, quote: char) -> Option<(String, &str)> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            '\\' if quote == '"' && !escaped => escaped = true,
            c if c == quote && !escaped => return Some((text[..at].to_owned(), &text[at + 1..])),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            // `\$` stays an escaped dollar for the interpolation step.
            Some('$') => out.push_str("$$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn values(content: &str) -> Vec<(String, String, usize, bool)> {
        let (assignments, errors) = parse(content);
        assert_eq!(errors, vec![]);
        assignments
            .into_iter()
            .map(|a| (a.name, a.value.expose_secret().to_owned(), a.line, a.expand))
            .collect()
    }

    #[test]
    fn reads_common_forms_with_lines() {
        let got = values(
            "# comment\n\nA=plain value # trailing\nexport B=2\nC=\"quoted # not a comment\"\nD='lit ${X}'\nE=\n",
        );
        let want = [
            ("A", "plain value", 3, true),
            ("B", "2", 4, true),
            ("C", "quoted # not a comment", 5, true),
            ("D", "lit ${X}", 6, false),
            ("E", "", 7, true),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|&(n, v, l, e)| (n.to_owned(), v.to_owned(), l, e))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn double_quotes_unescape_and_span_lines() {
        let got = values("KEY=\"line one\nline \\\"two\\\"\"\nNEXT=\\$x\n");
        assert_eq!(got[0].1, "line one\nline \"two\"");
        assert_eq!(got[1], ("NEXT".to_owned(), "\\$x".to_owned(), 3, true));
    }

    #[test]
    fn a_byte_order_mark_and_crlf_endings_leave_no_trace() {
        let got = values("\u{feff}A=1\r\nB=\"two\r\nlines\"\r\nC='x'\r\nD=last\r");
        assert_eq!(got[0], ("A".to_owned(), "1".to_owned(), 1, true));
        assert_eq!(got[1].1, "two\nlines");
        assert_eq!(got[2].1, "x");
        assert_eq!(got[3].1, "last");
    }

    #[test]
    fn reports_errors_by_line_without_content() {
        let (ok, errors) = parse("GOOD=1\nthis is not an assignment s3cr3t\nBAD=\"open\n");
        assert_eq!(ok.len(), 1);
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3]);
        assert!(errors.iter().all(|e| !e.message.contains("s3cr3t")));
    }
}
