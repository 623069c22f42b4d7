//! Why the hits matched, read from the query's positive part: the exact words and each
//! language's forms that `hit_details.sql` looks for in a hit's vector, and the queries its
//! snippets mark.
//!
//! `search_query` (migrations V2, V11, V13) writes one branch per configuration and marks every
//! lexeme of a branch with that branch's weights: the exact words `:A`, the English forms
//! `:AB`, the German forms `:AC`; `querytree` keeps the branches apart (an `or` of them, each
//! operand with its branch's weights). So the positive part, as PostgreSQL prints it, holds
//! everything `hit_details` needs: computing it here spares each search's last statement the
//! query's construction a second time (`search_configs` and a `websearch_to_tsquery` per
//! language and use, ≈ 0.4 ms of PostgreSQL's CPU per search).

use super::ranking_query::{self, Node};

/// Weights (bits A=1 … D=8) of the exact words' branch and of each language's.
const EXACT: u8 = 0b0001;
const ENGLISH: u8 = 0b0011;
const GERMAN: u8 = 0b0101;

/// What `hit_details.sql` reads a hit's matched words, forms and snippet with.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct HitTerms {
    /// The exact words (lexemes of the exact branch).
    pub(super) words: Vec<String>,
    /// Each language's forms, prefixed with its weight letter (`Bcollect`, `Chaus`).
    pub(super) forms: Vec<String>,
    /// The exact branch without weights, for marking a snippet's exact words.
    pub(super) exact_marks: Option<String>,
    /// The first configured language's branch without weights (the exact branch when that
    /// language has none), for a hit without any exact word.
    pub(super) language_marks: Option<String>,
}

/// The terms of `positive` (the `querytree` text of `search_query`) for `languages` (the
/// first one's branch marks snippets of hits without exact words); `None` if it does not parse
/// or has no positive word.
pub(super) fn of(positive: &str, languages: &[String]) -> Option<HitTerms> {
    let tree = ranking_query::parse(positive)?;
    let branches = match tree {
        Node::Or(children) => children,
        other => vec![other],
    };
    let mut terms = HitTerms::default();
    let mut exact = Vec::new();
    let mut first = Vec::new();
    let first_weights = match languages.first().map(String::as_str) {
        Some("english") => Some(ENGLISH),
        Some("german") => Some(GERMAN),
        _ => None,
    };
    for branch in branches {
        let mut operands = Vec::new();
        ranking_query::operands(&branch, &mut operands);
        for &(lexeme, weights, _) in &operands {
            let lexeme = ranking_query::unquoted(lexeme)?;
            match weights {
                EXACT => terms.words.push(lexeme),
                ENGLISH => terms.forms.push(format!("B{lexeme}")),
                GERMAN => terms.forms.push(format!("C{lexeme}")),
                _ => {}
            }
        }
        // A branch is the children whose operands all carry its weights.
        let uniform = operands
            .first()
            .map(|&(_, w, _)| w)
            .filter(|&w| operands.iter().all(|&(_, v, _)| v == w));
        if uniform == Some(EXACT) {
            exact.push(ranking_query::reweighted(branch, 0));
        } else if uniform.is_some() && uniform == first_weights {
            first.push(ranking_query::reweighted(branch, 0));
        }
    }
    terms.words.sort_unstable();
    terms.words.dedup();
    terms.forms.sort_unstable();
    terms.forms.dedup();
    if terms.words.is_empty() && terms.forms.is_empty() {
        return None;
    }
    terms.exact_marks = text_of(exact);
    terms.language_marks = text_of(first).or_else(|| terms.exact_marks.clone());
    Some(terms)
}

/// The `or` of `branches` as tsquery text; `None` for none.
fn text_of(mut branches: Vec<Node>) -> Option<String> {
    let node = match branches.len() {
        0 => return None,
        1 => branches.pop()?,
        _ => Node::Or(branches),
    };
    Some(ranking_query::text(&node))
}

#[cfg(test)]
mod tests {
    use super::{HitTerms, of};

    fn both() -> Vec<String> {
        vec!["english".to_owned(), "german".to_owned()]
    }

    #[test]
    fn words_forms_and_marks_of_each_branch() {
        let terms = of(
            "'meeting':A & 'note':A | 'meet':AB & 'note':AB | 'meeting':AC & 'note':AC",
            &both(),
        );
        assert_eq!(
            terms,
            Some(HitTerms {
                words: vec!["meeting".into(), "note".into()],
                forms: vec![
                    "Bmeet".into(),
                    "Bnote".into(),
                    "Cmeeting".into(),
                    "Cnote".into()
                ],
                exact_marks: Some("'meeting' & 'note'".into()),
                language_marks: Some("'meet' & 'note'".into()),
            })
        );
        // An `or` query: its branches are flattened into one `or`; each operand keeps its own.
        let terms = of(
            "'notes':A | 'want':A | 'note':AB | 'want':AB | 'notes':AC | 'want':AC",
            &["german".to_owned(), "english".to_owned()],
        )
        .unwrap();
        assert_eq!(terms.exact_marks.as_deref(), Some("'notes' | 'want'"));
        assert_eq!(terms.language_marks.as_deref(), Some("'notes' | 'want'"));
        // Phrases, escapes.
        let terms = of("'it''s':A <-> 'ok':A | 'it''s':AB <-> 'ok':AB", &both()).unwrap();
        assert_eq!(terms.words, ["it's", "ok"]);
        assert_eq!(terms.exact_marks.as_deref(), Some("'it''s' <-> 'ok'"));
    }

    #[test]
    fn a_language_without_a_branch_marks_with_the_exact_words() {
        // `dies` (a German stop word): the exact words and English only.
        let terms = of("'dies':A | 'dies':AB", &["german".to_owned()]).unwrap();
        assert_eq!(terms.language_marks, terms.exact_marks);
        let terms = of("'haus':A", &[]).unwrap();
        assert_eq!(terms.words, ["haus"]);
        assert!(terms.forms.is_empty());
        assert_eq!(terms.language_marks.as_deref(), Some("'haus'"));
        assert_eq!(of("T", &both()), None);
        assert_eq!(of("", &both()), None);
    }
}
