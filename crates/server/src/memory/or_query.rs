//! One operand per lexeme for an `or` query's ranking.
//!
//! `search_query` writes each word with its forms, each form restricted to the weights of its
//! language: `'lomor':A | 'lomor':AB | 'lomor':AC`. For a query whose operators are all `|`,
//! the operands of one lexeme can be merged into one with the union of their weights
//! (`'lomor':ABC`): a row matches the merged query exactly when it matches the original, and
//! `ts_rank_cd` scores it the same — an `or` query's covers are single positions, each counted
//! once however many operands it matches, weighted by its own weight. PostgreSQL 15's
//! `ts_rank_cd` zeroes a 32 KiB position buffer per query item (operands and operators) for
//! every row it ranks (`calc_rank_cd`), so the five items of that example cost five times the
//! one of the merged form; the search ranks with the merged form wherever it knows the query
//! is an `or` query (docs/benchmarks.md, search).

/// `tsquery` (PostgreSQL's text form of a tsquery) with the operands of each lexeme merged, or
/// `None` if it is not a pure `or` query (any `&`, `!`, `<->`, prefix `:*`) or is not in the
/// form PostgreSQL prints.
pub(super) fn merged(tsquery: &str) -> Option<String> {
    // (the lexeme as quoted in the text, its weights; `None`: any weight)
    let mut operands: Vec<(&str, Option<String>)> = Vec::new();
    let bytes = tsquery.as_bytes();
    let mut at = 0;
    let mut expect_operand = true;
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'(' | b')' => at += 1,
            b'|' if !expect_operand => {
                expect_operand = true;
                at += 1;
            }
            b'\'' if expect_operand => {
                let start = at;
                at += 1;
                loop {
                    match *bytes.get(at)? {
                        b'\'' if bytes.get(at + 1) == Some(&b'\'') => at += 2,
                        b'\'' => break,
                        b'\\' => at += 2,
                        _ => at += 1,
                    }
                }
                at += 1;
                let quoted = tsquery.get(start..at)?;
                let mut weights = None;
                if bytes.get(at) == Some(&b':') {
                    at += 1;
                    let mut letters = String::new();
                    while let Some(&c) = bytes.get(at) {
                        match c {
                            b'A'..=b'D' => letters.push(char::from(c)),
                            b' ' | b')' => break,
                            _ => return None,
                        }
                        at += 1;
                    }
                    if letters.is_empty() {
                        return None;
                    }
                    weights = Some(letters);
                }
                match operands.iter_mut().find(|(q, _)| *q == quoted) {
                    Some((_, merged)) => {
                        *merged = match (merged.take(), weights) {
                            (Some(mut a), Some(b)) => {
                                a.push_str(&b);
                                Some(a)
                            }
                            _ => None,
                        }
                    }
                    None => operands.push((quoted, weights)),
                }
                expect_operand = false;
            }
            _ => return None,
        }
    }
    if operands.is_empty() || expect_operand {
        return None;
    }
    let parts: Vec<String> = operands
        .into_iter()
        .map(|(quoted, weights)| match weights {
            None => quoted.to_owned(),
            Some(letters) => {
                let union: String = ['A', 'B', 'C', 'D']
                    .into_iter()
                    .filter(|w| letters.contains(*w))
                    .collect();
                format!("{quoted}:{union}")
            }
        })
        .collect();
    Some(parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::merged;

    #[test]
    fn the_operands_of_one_lexeme_become_one_with_their_weights_united() {
        assert_eq!(
            merged("'lomor':A | 'lomor':AB | 'lomor':AC").as_deref(),
            Some("'lomor':ABC")
        );
        assert_eq!(
            merged("'coffee':A | 'coffe':AB | 'coffe':AC").as_deref(),
            Some("'coffee':A | 'coffe':ABC")
        );
        // Any weight wins over a restriction; parentheses of nested `or`s do not matter.
        assert_eq!(
            merged("( 'tea':A | 'tea' ) | 'it''s':B | 'x\\\\y':C | 'it''s':D").as_deref(),
            Some("'tea' | 'it''s':BD | 'x\\\\y':C")
        );
        for not_or in [
            "'a' & 'b'",
            "'a' <-> 'b'",
            "!'a' | 'b'",
            "'a':* | 'b'",
            "'a' |",
            "'a' 'b'",
            "",
            "'unclosed",
        ] {
            assert_eq!(merged(not_or), None, "{not_or}");
        }
    }
}
