//! A cheaper tsquery with the same matches and the same `ts_rank_cd` for every row.
//!
//! PostgreSQL 15's `ts_rank_cd` zeroes a 32 KiB position buffer per query item (operands and
//! operators) for every row it ranks (`calc_rank_cd`), so what a ranked row costs grows with the
//! size of the query. `search_query` writes each word with its forms, each restricted to the
//! weights of its language, one branch per language: `'kadri':A & 'lomor':A | 'kadri':AB &
//! 'lomor':AB | 'kadri':AC & 'lomor':AC` has 11 items, `'lomor':A | 'lomor':AB | 'lomor':AC` 5.
//!
//! `ts_rank_cd(v, q)` depends on `q` only through (1) the positions of `v` that match some
//! operand of `q` (its lexeme, within its weights; operands under `!` included) and (2) which
//! intervals of those positions satisfy `q` (its covers). Two rewritings of an `or` keep both:
//! - operands of one lexeme become one with the union of their weights (`'lomor':A |
//!   'lomor':AB | 'lomor':AC` is `'lomor':ABC`);
//! - a branch without `!` that implies another branch (the same shape, each operand's weights
//!   within the other's) is left out when each of its operands is also among the remaining
//!   branches' with at least its weights (`'kadri':A & 'lomor':A` implies `'kadri':AB &
//!   'lomor':AB`, so the example above keeps 7 items).
//!
//! The search ranks with the result where it has the query's text (docs/benchmarks.md,
//! search); with the postings off it does not, and the tests compare both. The parser of
//! PostgreSQL's tsquery text here ([`parse`]) is also what `postings.rs` reads a query's
//! positive part with.

/// One node of a tsquery in PostgreSQL's text form (also what the postings path reads a
/// query's positive part from, `postings.rs`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// The lexeme as quoted in the text (escapes kept), its weights as bits A=1 … D=8 (0: any)
    /// and the prefix flag.
    Operand {
        quoted: String,
        weights: u8,
        prefix: bool,
    },
    Not(Box<Node>),
    /// `<N>` (`<->` is 1).
    Phrase(Box<Node>, Box<Node>, u16),
    And(Vec<Node>),
    Or(Vec<Node>),
}

/// `tsquery` (PostgreSQL's text form) rewritten as the module documentation says, or `None`
/// if it is not in the form PostgreSQL prints.
pub(super) fn simplified(tsquery: &str) -> Option<String> {
    let mut out = String::new();
    print(&simplify(parse(tsquery)?), &mut out);
    Some(out)
}

/// For a positive part `q` (no `!`) whose every operand admits weight A: `(residue,
/// exact)`, where `residue` matches a vector exactly when it has a position of some operand's
/// lexeme at a weight other than A that the operand admits, and `exact` is `q` with every
/// operand restricted to weight A (then simplified). On a vector that `residue` does not
/// match, each operand of `q` matches the same positions as its `exact` counterpart, so the
/// matched positions and the covers are the same and `ts_rank_cd(v, exact) = ts_rank_cd(v,
/// q)` — with fewer items, so cheaper per row: most memories hold a query's words only as
/// written (weight A), their English and German forms being the same word. `None` when that
/// does not apply (some operand without A, a `!`) or saves nothing (every operand A only, or
/// no fewer items).
pub(super) fn exact_form(positive: &str) -> Option<(String, String)> {
    let tree = parse(positive)?;
    if has_not(&tree) {
        return None;
    }
    let mut all = Vec::new();
    operands(&tree, &mut all);
    const A: u8 = 1;
    const ANY_BUT_A: u8 = 0b1110;
    let mut residue: Vec<Node> = Vec::new();
    for (quoted, weights, prefix) in all {
        if weights != 0 && weights & A == 0 {
            return None;
        }
        let others = if weights == 0 {
            ANY_BUT_A
        } else {
            weights & !A
        };
        let node = Node::Operand {
            quoted: quoted.to_owned(),
            weights: others,
            prefix,
        };
        if others != 0 && !residue.contains(&node) {
            residue.push(node);
        }
    }
    if residue.is_empty() {
        return None;
    }
    let residue = if residue.len() == 1 {
        residue.pop()?
    } else {
        Node::Or(residue)
    };
    let exact = simplify(reweighted(tree.clone(), A));
    if items(&exact) >= items(&tree) {
        // No fewer items (stems that differ from their words keep their branches): the check
        // per row would cost without saving anything.
        return None;
    }
    let mut out_residue = String::new();
    print(&residue, &mut out_residue);
    let mut out_exact = String::new();
    print(&exact, &mut out_exact);
    Some((out_residue, out_exact))
}

/// A tree as tsquery text (the form PostgreSQL prints).
pub(super) fn text(node: &Node) -> String {
    let mut out = String::new();
    print(node, &mut out);
    out
}

/// The items (operands and operators) of a tree, as `ts_rank_cd` allocates for them.
fn items(node: &Node) -> usize {
    match node {
        Node::Operand { .. } => 1,
        Node::Not(inner) => 1 + items(inner),
        Node::Phrase(l, r, _) => 1 + items(l) + items(r),
        Node::And(parts) | Node::Or(parts) => {
            parts.iter().map(items).sum::<usize>() + parts.len().saturating_sub(1)
        }
    }
}

/// `node` with every operand's weights set to `weights` (0: any).
pub(super) fn reweighted(node: Node, weights: u8) -> Node {
    match node {
        Node::Operand { quoted, prefix, .. } => Node::Operand {
            quoted,
            weights,
            prefix,
        },
        Node::Not(inner) => Node::Not(Box::new(reweighted(*inner, weights))),
        Node::Phrase(l, r, d) => Node::Phrase(
            Box::new(reweighted(*l, weights)),
            Box::new(reweighted(*r, weights)),
            d,
        ),
        Node::And(parts) => Node::And(parts.into_iter().map(|p| reweighted(p, weights)).collect()),
        Node::Or(parts) => Node::Or(parts.into_iter().map(|p| reweighted(p, weights)).collect()),
    }
}

/// `tsquery` (PostgreSQL's text form) as a tree; `None` if it is not in that form.
pub(super) fn parse(tsquery: &str) -> Option<Node> {
    let tokens = tokens(tsquery)?;
    let mut at = 0;
    let tree = parse_or(&tokens, &mut at)?;
    (at == tokens.len()).then_some(tree)
}

/// The distinct lexemes of a tree's operands, sorted; `None` if an operand does not unquote.
pub(super) fn lexemes(node: &Node) -> Option<Vec<String>> {
    let mut quoted = Vec::new();
    operands(node, &mut quoted);
    let mut lexemes = quoted
        .into_iter()
        .map(|(q, _, _)| unquoted(q))
        .collect::<Option<Vec<String>>>()?;
    lexemes.sort_unstable();
    lexemes.dedup();
    Some(lexemes)
}

/// Whether a tree's operators are all `|` and none of its operands is a prefix: one word with
/// its forms, or words joined by `or` (what `ts_rank_cd` scores as the sum of the matched
/// positions' weights).
pub(super) fn or_only(node: &Node) -> bool {
    match node {
        Node::Operand { prefix, .. } => !prefix,
        Node::Or(parts) => parts.iter().all(or_only),
        Node::Not(_) | Node::Phrase(..) | Node::And(_) => false,
    }
}

/// Whether a tree holds a phrase operator.
pub(super) fn has_phrase(node: &Node) -> bool {
    match node {
        Node::Operand { .. } => false,
        Node::Phrase(..) => true,
        Node::Not(inner) => has_phrase(inner),
        Node::And(parts) | Node::Or(parts) => parts.iter().any(has_phrase),
    }
}

/// The lexeme an operand's quoted text names (`'it''s'` is `it's`, `'x\\y'` is `x\y`).
pub(super) fn unquoted(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut lexeme = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '\\' => lexeme.push(chars.next()?),
            c => lexeme.push(c),
        }
    }
    Some(lexeme)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Operand(String, u8, bool),
    And,
    Or,
    Not,
    Phrase(u16),
    Open,
    Close,
}

fn tokens(text: &str) -> Option<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b' ' => at += 1,
            b'&' => {
                out.push(Token::And);
                at += 1;
            }
            b'|' => {
                out.push(Token::Or);
                at += 1;
            }
            b'!' => {
                out.push(Token::Not);
                at += 1;
            }
            b'(' => {
                out.push(Token::Open);
                at += 1;
            }
            b')' => {
                out.push(Token::Close);
                at += 1;
            }
            b'<' => {
                let end = at + text.get(at..)?.find('>')?;
                let inner = text.get(at + 1..end)?;
                let distance = if inner == "-" { 1 } else { inner.parse().ok()? };
                out.push(Token::Phrase(distance));
                at = end + 1;
            }
            b'\'' => {
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
                let quoted = text.get(start..at)?.to_owned();
                let (mut weights, mut prefix) = (0u8, false);
                if bytes.get(at) == Some(&b':') {
                    at += 1;
                    while let Some(&c) = bytes.get(at) {
                        match c {
                            b'A'..=b'D' => weights |= 1 << (c - b'A'),
                            b'*' => prefix = true,
                            _ => break,
                        }
                        at += 1;
                    }
                }
                out.push(Token::Operand(quoted, weights, prefix));
            }
            _ => return None,
        }
    }
    Some(out)
}

fn parse_or(tokens: &[Token], at: &mut usize) -> Option<Node> {
    parse_list(tokens, at, &Token::Or, parse_and, Node::Or)
}

fn parse_and(tokens: &[Token], at: &mut usize) -> Option<Node> {
    parse_list(tokens, at, &Token::And, parse_phrase, Node::And)
}

/// `item (separator item)*`: the item alone, or `list` of them.
fn parse_list(
    tokens: &[Token],
    at: &mut usize,
    separator: &Token,
    item: fn(&[Token], &mut usize) -> Option<Node>,
    list: fn(Vec<Node>) -> Node,
) -> Option<Node> {
    let mut parts = vec![item(tokens, at)?];
    while tokens.get(*at) == Some(separator) {
        *at += 1;
        parts.push(item(tokens, at)?);
    }
    Some(if parts.len() == 1 {
        parts.pop()?
    } else {
        list(parts)
    })
}

fn parse_phrase(tokens: &[Token], at: &mut usize) -> Option<Node> {
    let mut left = parse_unary(tokens, at)?;
    while let Some(&Token::Phrase(distance)) = tokens.get(*at) {
        *at += 1;
        let right = parse_unary(tokens, at)?;
        left = Node::Phrase(Box::new(left), Box::new(right), distance);
    }
    Some(left)
}

fn parse_unary(tokens: &[Token], at: &mut usize) -> Option<Node> {
    let token = tokens.get(*at)?.clone();
    *at += 1;
    match token {
        Token::Not => Some(Node::Not(Box::new(parse_unary(tokens, at)?))),
        Token::Open => {
            let inner = parse_or(tokens, at)?;
            (tokens.get(*at) == Some(&Token::Close)).then(|| {
                *at += 1;
                inner
            })
        }
        Token::Operand(quoted, weights, prefix) => Some(Node::Operand {
            quoted,
            weights,
            prefix,
        }),
        _ => None,
    }
}

fn simplify(node: Node) -> Node {
    match node {
        Node::Operand { .. } => node,
        Node::Not(inner) => Node::Not(Box::new(simplify(*inner))),
        Node::Phrase(l, r, d) => Node::Phrase(Box::new(simplify(*l)), Box::new(simplify(*r)), d),
        Node::And(parts) => Node::And(parts.into_iter().map(simplify).collect()),
        Node::Or(parts) => simplify_or(parts),
    }
}

fn simplify_or(parts: Vec<Node>) -> Node {
    // Flattened, operands of one lexeme merged.
    let mut children: Vec<Node> = Vec::new();
    for part in parts.into_iter().map(simplify) {
        let flat = match part {
            Node::Or(inner) => inner,
            other => vec![other],
        };
        for child in flat {
            if let Node::Operand {
                quoted,
                weights,
                prefix,
            } = &child
                && let Some(Node::Operand { weights: merged, .. }) =
                    children.iter_mut().find(|c| {
                        matches!(c, Node::Operand { quoted: q, prefix: p, .. } if q == quoted && p == prefix)
                    })
            {
                *merged = if *merged == 0 || *weights == 0 {
                    0
                } else {
                    *merged | *weights
                };
                continue;
            }
            children.push(child);
        }
    }
    // Branches implied by another one, whose operands the others cover.
    let mut i = 0;
    while i < children.len() {
        let droppable = !has_not(&children[i])
            && children
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && implies(&children[i], other))
            && {
                let mut others = Vec::new();
                for (j, other) in children.iter().enumerate() {
                    if j != i {
                        operands(other, &mut others);
                    }
                }
                let mut mine = Vec::new();
                operands(&children[i], &mut mine);
                mine.iter().all(|&(q, w, p)| {
                    others
                        .iter()
                        .any(|&(oq, ow, op)| covers(q, w, p, oq, ow, op))
                })
            };
        if droppable {
            children.remove(i);
        } else {
            i += 1;
        }
    }
    if children.len() == 1 {
        children.pop().expect("one child")
    } else {
        Node::Or(children)
    }
}

/// Whether the positions an operand `(q, w, p)` matches are all matched by `(oq, ow, op)`.
fn covers(q: &str, w: u8, p: bool, oq: &str, ow: u8, op: bool) -> bool {
    q == oq && p == op && (ow == 0 || (w != 0 && w & ow == w))
}

fn has_not(node: &Node) -> bool {
    match node {
        Node::Operand { .. } => false,
        Node::Not(_) => true,
        Node::Phrase(l, r, _) => has_not(l) || has_not(r),
        Node::And(parts) | Node::Or(parts) => parts.iter().any(has_not),
    }
}

/// Every operand of a tree as (quoted lexeme, weights, prefix), in order.
pub(super) fn operands<'a>(node: &'a Node, out: &mut Vec<(&'a str, u8, bool)>) {
    match node {
        Node::Operand {
            quoted,
            weights,
            prefix,
        } => out.push((quoted, *weights, *prefix)),
        Node::Not(inner) => operands(inner, out),
        Node::Phrase(l, r, _) => {
            operands(l, out);
            operands(r, out);
        }
        Node::And(parts) | Node::Or(parts) => parts.iter().for_each(|p| operands(p, out)),
    }
}

/// Whether every row (and every interval of positions) that satisfies `a` satisfies `b`, by
/// shape: both without `!`.
fn implies(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (
            Node::Operand {
                quoted: q,
                weights: w,
                prefix: p,
            },
            Node::Operand {
                quoted: oq,
                weights: ow,
                prefix: op,
            },
        ) => covers(q, *w, *p, oq, *ow, *op),
        (Node::Phrase(..), Node::Phrase(..)) => implies_at_each_position(a, b),
        (Node::And(aparts), Node::And(bparts)) => {
            bparts.iter().all(|b| aparts.iter().any(|a| implies(a, b)))
        }
        (Node::And(aparts), b) => aparts.iter().any(|a| implies(a, b)),
        (a, Node::Or(bparts)) => bparts.iter().any(|b| implies(a, b)),
        _ => false,
    }
}

/// Within phrases: whether `a` matching ending at a position implies `b` matching there; only
/// operands and phrases of them (what `websearch_to_tsquery` writes for `"…"`) are compared.
fn implies_at_each_position(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Operand { .. }, Node::Operand { .. }) => implies(a, b),
        (Node::Phrase(al, ar, ad), Node::Phrase(bl, br, bd)) => {
            ad == bd && implies_at_each_position(al, bl) && implies_at_each_position(ar, br)
        }
        _ => false,
    }
}

fn print(node: &Node, out: &mut String) {
    match node {
        Node::Operand {
            quoted,
            weights,
            prefix,
        } => {
            out.push_str(quoted);
            if *weights != 0 || *prefix {
                out.push(':');
                if *prefix {
                    out.push('*');
                }
                for (bit, letter) in [(1, 'A'), (2, 'B'), (4, 'C'), (8, 'D')] {
                    if weights & bit != 0 {
                        out.push(letter);
                    }
                }
            }
        }
        Node::Not(inner) => {
            out.push('!');
            print_operand(inner, out);
        }
        Node::Phrase(l, r, d) => {
            print_operand(l, out);
            if *d == 1 {
                out.push_str(" <-> ");
            } else {
                out.push_str(&format!(" <{d}> "));
            }
            print_operand(r, out);
        }
        Node::And(parts) | Node::Or(parts) => {
            let op = if matches!(node, Node::And(_)) {
                " & "
            } else {
                " | "
            };
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    out.push_str(op);
                }
                print_operand(part, out);
            }
        }
    }
}

/// `node`, parenthesized unless it is an operand or a `!` (which binds tightest).
fn print_operand(node: &Node, out: &mut String) {
    if matches!(node, Node::Operand { .. } | Node::Not(_)) {
        print(node, out);
    } else {
        out.push_str("( ");
        print(node, out);
        out.push_str(" )");
    }
}

#[cfg(test)]
mod tests {
    use super::{exact_form, simplified};

    fn s(q: &str) -> String {
        simplified(q).unwrap_or_else(|| panic!("{q} parses"))
    }

    #[test]
    fn operands_of_one_lexeme_merge_and_implied_branches_go() {
        assert_eq!(s("'lomor':A | 'lomor':AB | 'lomor':AC"), "'lomor':ABC");
        assert_eq!(
            s("'coffee':A | 'coffe':AB | 'coffe':AC"),
            "'coffee':A | 'coffe':ABC"
        );
        // Any weight wins; nested `or`s flatten; escapes are kept.
        assert_eq!(
            s("( 'tea':A | 'tea' ) | 'it''s':B | 'x\\\\y':C | 'it''s':D"),
            "'tea' | 'it''s':BD | 'x\\\\y':C"
        );
        // The exact-word branch is implied by a language's branch with the same lexemes.
        assert_eq!(
            s("'kadri':A & 'lomor':A | 'kadri':AB & 'lomor':AB | 'kadri':AC & 'lomor':AC"),
            "( 'kadri':AB & 'lomor':AB ) | ( 'kadri':AC & 'lomor':AC )"
        );
        assert_eq!(
            s("'k':A <-> 'l':A | 'k':AB <-> 'l':AB | 'k':AC <2> 'l':AC"),
            "( 'k':AB <-> 'l':AB ) | ( 'k':AC <2> 'l':AC )"
        );
        // A stop word left one branch with one word: the branch with both implies it, and its
        // `your`:A is still covered by the German branch's `your`:AC.
        assert_eq!(
            s("'your':A & 'loast':A | 'loast':AB | 'your':AC & 'loast':AC"),
            "'loast':AB | ( 'your':AC & 'loast':AC )"
        );
        // Not implied: other stems; and a branch whose operands nothing else covers stays.
        let words = "'time':A & 'people':A | 'time':AB & 'peopl':AB | 'tim':AC & 'peopl':AC";
        assert_eq!(
            s(words),
            "( 'time':A & 'people':A ) | ( 'time':AB & 'peopl':AB ) | ( 'tim':AC & 'peopl':AC )"
        );
        assert_eq!(s("'a':A & 'b':A | 'b':AB"), "( 'a':A & 'b':A ) | 'b':AB");
        // Branches with `!` stay as they are.
        let excluded = "'garden':A & !'money':A | 'garden':AB & !'money':AB";
        assert_eq!(
            s(excluded),
            "( 'garden':A & !'money':A ) | ( 'garden':AB & !'money':AB )"
        );
        // Inside a phrase only operands and phrases are compared.
        assert_eq!(
            s("( 'a':A & 'b':A ) <-> 'c':A | ( 'a' & 'b' ) <-> 'c'"),
            "( ( 'a':A & 'b':A ) <-> 'c':A ) | ( ( 'a' & 'b' ) <-> 'c' )"
        );
        assert_eq!(
            s("'a':A <-> 'b':A <-> 'c':A | 'a' <-> 'b' <-> 'c'"),
            "( 'a' <-> 'b' ) <-> 'c'"
        );
        assert_eq!(s("'a' & 'b'"), "'a' & 'b'");
        assert_eq!(s("'a':*B"), "'a':*B");
    }

    #[test]
    fn lexemes_and_shapes_of_a_tree() {
        let tree = |q: &str| super::parse(q).unwrap_or_else(|| panic!("{q} parses"));
        let t = tree("'the':A <-> 'and' | 'it''s':B & 'the'");
        assert_eq!(
            super::lexemes(&t),
            Some(vec!["and".to_owned(), "it's".to_owned(), "the".to_owned()])
        );
        assert!(!super::or_only(&t) && super::has_phrase(&t));
        let t = tree("'lomor':ABC | ( 'tea' | 'coffe':B )");
        assert!(super::or_only(&t) && !super::has_phrase(&t));
        for q in ["'a':* | 'b'", "'a' & 'b'", "!'a'", "'a' <2> 'b'"] {
            assert!(!super::or_only(&tree(q)), "{q}");
        }
        assert!(super::has_phrase(&tree("'a' & ( 'b' <2> 'c' )")));
    }

    #[test]
    fn quoted_lexemes_unquote() {
        assert_eq!(super::unquoted("'it''s'").as_deref(), Some("it's"));
        assert_eq!(super::unquoted("'x\\\\y'").as_deref(), Some("x\\y"));
        assert_eq!(super::unquoted("'a'").as_deref(), Some("a"));
        assert_eq!(super::unquoted("a"), None);
    }

    #[test]
    fn the_exact_form_of_a_positive_part() {
        assert_eq!(
            exact_form("'kadri':AB & 'lomor':AB | 'kadri':AC & 'lomor':AC"),
            Some((
                "'kadri':B | 'lomor':B | 'kadri':C | 'lomor':C".to_owned(),
                "'kadri':A & 'lomor':A".to_owned()
            ))
        );
        // A German stem that is another word keeps its branch: as many items, none.
        assert_eq!(
            exact_form("'one':AB & 'note':AB | 'one':AC & 'not':AC"),
            None
        );
        assert_eq!(
            exact_form("'abc':*AB & 'x' | 'abc':*AC & 'x'"),
            Some((
                "'abc':*B | 'x':BCD | 'abc':*C".to_owned(),
                "'abc':*A & 'x':A".to_owned()
            ))
        );
        // Stems that differ from their words: as many items, no exact form.
        assert_eq!(
            exact_form("'meet':AB & 'want':AB | 'meeting':AC & 'want':AC"),
            None
        );
        assert_eq!(exact_form("'kadri':A & 'lomor':A"), None);
        assert_eq!(exact_form("'kadri':B & 'lomor':AB"), None);
        assert_eq!(exact_form("'kadri':AB & !'lomor':AB"), None);
    }

    #[test]
    fn text_that_is_not_a_printed_tsquery_is_left_alone() {
        for q in [
            "",
            "'a' |",
            "'a' 'b'",
            "'unclosed",
            "( 'a'",
            "'a' <x> 'b'",
            "a",
        ] {
            assert_eq!(simplified(q), None, "{q}");
        }
    }
}
