//! An offline embedding that really ranks: each text becomes counts of its
//! words and word pairs hashed into a fixed number of dimensions, damped
//! (`1 + ln n`) and normalised, so that the cosine of two texts grows with the
//! words and phrases they share. No model, no network, deterministic.

use crate::llm;

/// Dimensions of a hashed embedding.
pub const DIMENSIONS: usize = 512;

/// The hashed embedding of `text` (unit length, or all zeros for no words).
pub fn hashed(text: &str) -> Vec<f32> {
    let mut counts = vec![0f32; DIMENSIONS];
    let words: Vec<String> =
        llm::words(text).filter(|w| w.len() > 2 && !llm::is_stop_word(w)).map(|w| stem(&w)).collect();
    for word in &words {
        counts[bucket(word)] += 1.0;
    }
    for pair in words.windows(2) {
        counts[bucket(&format!("{} {}", pair[0], pair[1]))] += 0.5;
    }
    for c in &mut counts {
        if *c > 0.0 {
            *c = 1.0 + c.ln();
        }
    }
    let norm = counts.iter().map(|c| c * c).sum::<f32>().sqrt();
    if norm > 0.0 {
        counts.iter_mut().for_each(|c| *c /= norm);
    }
    counts
}

/// The cosine of two embeddings of the same length (their dot product, for unit ones).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n > 0.0 { dot / n } else { 0.0 }
}

/// A crude English stem, so that `flowers` meets `flower`.
fn stem(word: &str) -> String {
    for suffix in ["ing", "es", "s"] {
        if let Some(base) = word.strip_suffix(suffix)
            && base.len() > 3
        {
            return base.to_owned();
        }
    }
    word.to_owned()
}

/// FNV-1a of `token`, folded into the dimensions.
fn bucket(token: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in token.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % DIMENSIONS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_that_share_words_are_closer_than_texts_that_do_not() {
        let question = hashed("How do bees find flowers?");
        let bees = hashed("Bees dance to tell the hive where the flowers are.");
        let bread = hashed("Bread rises because yeast makes gas in the dough.");
        assert!(cosine(&question, &bees) > 0.3, "{}", cosine(&question, &bees));
        assert!(cosine(&question, &bread) < 0.05, "{}", cosine(&question, &bread));
        assert!((cosine(&bees, &bees) - 1.0).abs() < 1e-5);
        assert!(hashed("a an the").iter().all(|c| *c == 0.0));
    }
}
