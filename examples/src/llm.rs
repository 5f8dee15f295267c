//! The examples' "LLM": an offline, deterministic stand-in, so that every
//! example runs on a fresh machine with no keys and no network.
//!
//! It answers the few kinds of prompt the examples send by reading the text in
//! the prompt (extractive summaries, keyword lists), and it sleeps a little to
//! behave like a remote call. Swap `complete` for a real client to use a model.

use std::collections::HashMap;
use std::time::Duration;

/// How long a call pretends to take.
pub const LATENCY: Duration = Duration::from_millis(20);

/// Words too common to be keywords.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "because", "but", "by", "can", "each", "every", "for", "from", "gives",
    "had", "has", "have", "in", "into", "is", "it", "its", "long", "make", "makes", "more", "most", "of", "on", "one",
    "or", "so", "than", "that", "the", "their", "them", "there", "they", "this", "through", "to", "turn", "until",
    "when", "where", "which", "while", "who", "with", "within", "would", "also", "many", "much", "own", "same",
];

/// Whether `word` (lowercase) is too common to carry meaning.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// Lowercase words of `text`, without punctuation.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('\'').to_lowercase())
}

/// The `n` most frequent non-trivial words, most frequent first (ties by word).
pub fn keywords(text: &str, n: usize) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for w in words(text).filter(|w| w.len() > 3 && !STOP_WORDS.contains(&w.as_str())) {
        *counts.entry(w).or_default() += 1;
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.into_iter().take(n).map(|(w, _)| w).collect()
}

/// A one-sentence summary: the sentence that carries most of the text's keywords.
pub fn summarize(text: &str) -> String {
    std::thread::sleep(LATENCY);
    let keys = keywords(text, 8);
    let best = text
        .split_inclusive(['.', '!', '?'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        // Most keywords wins; of equals, the shorter sentence.
        .max_by_key(|s| (words(s).filter(|w| keys.contains(w)).count(), usize::MAX - s.len()));
    best.unwrap_or_default().to_string()
}
