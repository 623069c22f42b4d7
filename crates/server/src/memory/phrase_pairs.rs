//! Phrases of common words, read through the postings of their word pairs (migration V12).
//!
//! A phrase made only of stop words (`"the and"`, `"to be"`) matches about every other memory,
//! and neither its words' postings nor the full-text index narrow it: each of those memories
//! would be checked for the phrase. V12 also keeps, per memory, the postings of each pair of
//! adjacent common-word lexemes (`search_pair_word`; the pair's lexeme is the two words with a
//! space between, the number of positions where it occurs its impact).
//!
//! Why a pair's count bounds a phrase's relevance: `ts_rank_cd` sums over its covers — the
//! shortest extents satisfying the query, found left to right, each starting at a later
//! position than the one before — each cover's harmonic mean of its positions' weights (at
//! most 1.0) divided by `1 + noise` (`noise` ≥ 0). A cover of a phrase of adjacent words starts
//! where the phrase occurs, so at a position where each of its adjacent pairs occurs (the
//! `i`-th pair `i − 1` positions later): covers are at most the occurrences of any one pair.
//! For an `or` of phrases and words, a cover starting at a position is one branch's occurrence
//! there, so the relevance is at most the sum of the pair counts and the words' impacts — the
//! bound the postings path uses for an `or` query (`postings.rs`).

use super::ranking_query::{self, Node};

/// The lists to read for a positive part that is an `or` of words and of phrases of adjacent
/// common words, with at least one phrase: each phrase as its first pair (`"a b"`), each word
/// as itself, each once. `None` for any other positive part (`&`, `!`, prefixes, distances
/// other than `<->`, a phrase with a word `common` rejects) — the postings path then reads it
/// as before.
pub(super) fn or_lists(positive: &Node, common: &dyn Fn(&str) -> bool) -> Option<Vec<String>> {
    let mut lists = Vec::new();
    let mut pairs = 0;
    collect(positive, common, &mut lists, &mut pairs)?;
    (pairs > 0).then_some(lists)
}

fn collect(
    node: &Node,
    common: &dyn Fn(&str) -> bool,
    lists: &mut Vec<String>,
    pairs: &mut usize,
) -> Option<()> {
    let list = match node {
        Node::Or(parts) => {
            for part in parts {
                collect(part, common, lists, pairs)?;
            }
            return Some(());
        }
        Node::Operand { quoted, prefix, .. } => {
            if *prefix {
                return None;
            }
            ranking_query::unquoted(quoted)?
        }
        Node::Phrase(..) => {
            let words = chain(node)?;
            if words.len() < 2 || !words.iter().all(|w| common(w)) {
                return None;
            }
            *pairs += 1;
            format!("{} {}", words[0], words[1])
        }
        Node::And(_) | Node::Not(_) => return None,
    };
    if !lists.contains(&list) {
        lists.push(list);
    }
    Some(())
}

/// The words of a phrase of adjacent words, `( 'a' <-> 'b' ) <-> 'c'` as PostgreSQL nests it,
/// in order; `None` for any other shape.
fn chain(node: &Node) -> Option<Vec<String>> {
    match node {
        Node::Operand {
            quoted,
            prefix: false,
            ..
        } => Some(vec![ranking_query::unquoted(quoted)?]),
        Node::Phrase(left, right, 1) => {
            let mut words = chain(left)?;
            let Node::Operand {
                quoted,
                prefix: false,
                ..
            } = right.as_ref()
            else {
                return None;
            };
            words.push(ranking_query::unquoted(quoted)?);
            Some(words)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::or_lists;
    use crate::memory::ranking_query::parse;

    fn lists(positive: &str) -> Option<Vec<String>> {
        let common = |w: &str| ["the", "and", "to", "be", "or", "not", "it's"].contains(&w);
        or_lists(&parse(positive).expect("parses"), &common)
    }

    fn owned(words: &[&str]) -> Vec<String> {
        words.iter().map(|&w| w.to_owned()).collect()
    }

    #[test]
    fn phrases_of_common_words_become_their_first_pair() {
        assert_eq!(lists("'the':A <-> 'and':A"), Some(owned(&["the and"])));
        // The branches of one phrase, one list; longer phrases by their first pair.
        assert_eq!(
            lists("'the':A <-> 'and':A | 'the':AC <-> 'and':AC"),
            Some(owned(&["the and"]))
        );
        assert_eq!(
            lists("( ( 'to' <-> 'be' ) <-> 'or' ) <-> 'not'"),
            Some(owned(&["to be"]))
        );
        // Beside words joined by `or`; quotes unescaped.
        assert_eq!(
            lists("'to' <-> 'be' | 'garden':AB | 'it''s' <-> 'the'"),
            Some(owned(&["to be", "garden", "it's the"]))
        );
    }

    #[test]
    fn anything_else_is_left_to_the_other_rules() {
        for positive in [
            // No phrase: an `or` query of words (the postings path reads it as such).
            "'the' | 'and'",
            // A word that is not common, a distance, a prefix, `&`, `!`, a nested `or`.
            "'the' <-> 'garden'",
            "'the' <2> 'and'",
            "'the':* <-> 'and'",
            "'the' <-> 'and' & 'be'",
            "'the' <-> 'and' | !'be'",
            "( 'the' | 'to' ) <-> 'and'",
            "'the' <-> ( 'and' <-> 'be' )",
        ] {
            assert_eq!(lists(positive), None, "{positive}");
        }
    }
}
