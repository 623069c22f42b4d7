//! Deterministic, realistic-looking text for the benchmarks: a vocabulary of common English words
//! followed by tens of thousands of pronounceable made-up words, drawn with a Zipf-like
//! distribution (a few words very frequent, most rare) so that full-text search has common and
//! rare words to look for, as in real dialogue.

use std::collections::HashSet;

/// The most frequent words, in rank order (roughly as in English conversation).
const COMMON: &[&str] = &[
    "the",
    "and",
    "to",
    "of",
    "a",
    "i",
    "you",
    "it",
    "in",
    "is",
    "that",
    "for",
    "we",
    "this",
    "on",
    "with",
    "be",
    "have",
    "not",
    "are",
    "but",
    "can",
    "do",
    "what",
    "so",
    "if",
    "was",
    "they",
    "at",
    "my",
    "your",
    "will",
    "just",
    "about",
    "there",
    "all",
    "as",
    "or",
    "one",
    "would",
    "like",
    "from",
    "me",
    "an",
    "out",
    "know",
    "get",
    "up",
    "think",
    "time",
    "how",
    "when",
    "should",
    "more",
    "make",
    "some",
    "use",
    "need",
    "could",
    "which",
    "want",
    "work",
    "then",
    "also",
    "because",
    "data",
    "project",
    "code",
    "new",
    "file",
    "good",
    "see",
    "first",
    "here",
    "now",
    "way",
    "only",
    "other",
    "people",
    "into",
    "test",
    "than",
    "well",
    "change",
    "look",
    "any",
    "right",
    "team",
    "meeting",
    "server",
    "user",
    "question",
    "idea",
    "next",
    "week",
    "help",
    "call",
    "problem",
    "version",
    "python",
    "rust",
    "database",
    "query",
    "release",
    "review",
    "design",
    "plan",
    "error",
    "config",
    "memory",
    "search",
    "model",
    "answer",
    "customer",
    "budget",
    "report",
    "today",
    "tomorrow",
    "morning",
    "evening",
    "coffee",
    "travel",
    "flight",
    "hotel",
    "berlin",
    "paris",
    "london",
    "tokyo",
    "garden",
    "recipe",
    "dinner",
    "birthday",
    "doctor",
    "music",
    "guitar",
    "piano",
    "running",
    "bicycle",
    "weather",
    "rain",
    "summer",
    "winter",
    "holiday",
    "family",
    "friend",
    "sister",
    "brother",
    "daughter",
    "son",
    "school",
    "university",
    "contract",
    "invoice",
    "password",
    "account",
    "deadline",
    "schedule",
    "feature",
    "bug",
    "deploy",
    "backup",
    "network",
    "latency",
    "cache",
    "index",
    "schema",
    "migration",
    "kernel",
    "compiler",
    "library",
    "function",
    "variable",
    "document",
    "note",
    "summary",
    "decision",
    "preference",
    "favorite",
    "language",
    "book",
    "movie",
    "series",
    "podcast",
    "article",
    "email",
    "message",
    "phone",
    "address",
    "street",
    "apartment",
    "kitchen",
    "window",
    "chair",
    "table",
    "car",
    "train",
    "station",
    "airport",
    "ticket",
    "price",
    "money",
    "bank",
    "salary",
    "interview",
    "manager",
    "colleague",
    "office",
    "remote",
    "vacation",
    "allergy",
    "vegetarian",
    "chocolate",
    "tea",
    "wine",
    "cheese",
];

/// Syllables of the made-up words.
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "re", "su", "na", "to", "vi", "de", "ra", "po", "le", "ni", "sa", "tu", "me",
    "bo", "ri", "ga", "fe", "ho", "ju", "ze", "wa", "qui", "stra", "an", "el", "or", "us", "ith",
    "en", "ar", "ol", "ex", "ump", "ing", "ast", "ell", "ond", "per", "mor", "tal", "ven", "dri",
    "cla", "spo", "gru",
];

/// SplitMix64: small, fast and good enough to make benchmark data reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high)`; `low` when the range is empty.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        low + (self.next_u64() % (high - low) as u64) as usize
    }
}

/// A ranked vocabulary: index 0 is the most frequent word.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    words: Vec<String>,
    log_size: f64,
}

impl Vocabulary {
    /// The common words followed by made-up ones, `size` words in all, each distinct.
    pub fn new(size: usize) -> Self {
        let mut seen = HashSet::new();
        let mut words = Vec::with_capacity(size);
        for word in COMMON {
            if seen.insert((*word).to_owned()) {
                words.push((*word).to_owned());
            }
        }
        let n = SYLLABLES.len();
        let mut k = 0usize;
        while words.len() < size {
            // Two syllables for the first n², then three.
            let word = if k < n * n {
                format!("{}{}", SYLLABLES[k / n], SYLLABLES[k % n])
            } else {
                let j = k - n * n;
                format!(
                    "{}{}{}",
                    SYLLABLES[(j / (n * n)) % n],
                    SYLLABLES[(j / n) % n],
                    SYLLABLES[j % n]
                )
            };
            k += 1;
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let log_size = ((words.len() + 1) as f64).ln();
        Vocabulary { words, log_size }
    }

    /// The word at `rank` (1 = most frequent).
    pub fn word(&self, rank: usize) -> &str {
        &self.words[rank.clamp(1, self.words.len()) - 1]
    }

    /// A rank drawn so that P(rank = r) ≈ 1 / (r · ln(len + 1)).
    pub fn zipf_rank(&self, rng: &mut Rng) -> usize {
        let rank = (rng.unit() * self.log_size).exp().floor() as usize;
        rank.clamp(1, self.words.len())
    }

    /// A word of a rank drawn uniformly in `[low, high]` (ranks start at 1).
    pub fn word_in(&self, rng: &mut Rng, low: usize, high: usize) -> &str {
        let high = high.min(self.words.len());
        self.word(rng.range(low, high + 1))
    }

    /// The chance that one word of the text has `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        ((rank as f64 + 1.0) / rank as f64).ln() / self.log_size
    }

    /// A sentence-like text of `words` words: capitalised, with a comma now and then and a
    /// full stop; punctuation does not matter to the `simple` text search configuration.
    pub fn text(&self, rng: &mut Rng, words: usize, out: &mut String) {
        for index in 0..words {
            let word = self.word(self.zipf_rank(rng));
            if index == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                if rng.next_u64().is_multiple_of(9) {
                    out.push(',');
                }
                out.push(' ');
                out.push_str(word);
            }
        }
        out.push('.');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_is_distinct_and_reproducible() {
        let vocabulary = Vocabulary::new(50_000);
        assert_eq!(vocabulary.words.len(), 50_000);
        let distinct: HashSet<&String> = vocabulary.words.iter().collect();
        assert_eq!(distinct.len(), 50_000);
        assert_eq!(vocabulary.word(1), "the");
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let (mut x, mut y) = (String::new(), String::new());
        vocabulary.text(&mut a, 30, &mut x);
        vocabulary.text(&mut b, 30, &mut y);
        assert_eq!(x, y);
        assert!(x.ends_with('.'));
    }

    #[test]
    fn ranks_follow_a_zipf_like_law() {
        let vocabulary = Vocabulary::new(50_000);
        let mut rng = Rng::new(1);
        let draws = 200_000;
        let top = (0..draws)
            .filter(|_| vocabulary.zipf_rank(&mut rng) == 1)
            .count();
        let expected = vocabulary.probability(1) * draws as f64;
        assert!(
            (top as f64 - expected).abs() < expected * 0.1,
            "{top} vs {expected}"
        );
    }
}
