//! Parallel batch: one text translated into many languages at once, at most
//! three calls in flight (an async batch node, `concurrent, limit = 3`); the
//! translations come back in the order of the languages.
//!
//! `cargo run -p minllm-examples --example translate -- "Good morning, friend"`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use minllm::{BoxError, flow, node};
use minllm_examples::client::{Message, Reply, Request};
use minllm_examples::model::Model;

/// At most this many calls at once (the `limit` of the batch node).
const LIMIT: usize = 3;

#[derive(Debug, Default)]
struct Job {
    text: String,
    languages: Vec<String>,
    translations: Vec<(String, String)>,
}

/// How many calls run now, and the most that ran at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

struct Translate {
    model: Model,
    in_flight: Arc<InFlight>,
}

#[node(concurrent, limit = 3, attempts = 3, wait_ms = 500)]
impl Translate {
    async fn prep(&self, job: &Job) -> Vec<(String, String)> {
        job.languages.iter().map(|l| (l.clone(), job.text.clone())).collect()
    }
    async fn exec(&self, (language, text): &(String, String)) -> Result<String, BoxError> {
        let now = self.in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.peak.fetch_max(now, Ordering::SeqCst);
        let request = Request::new(vec![
            Message::system(format!("Translate the user's text into {language}. Answer with the translation only.")),
            Message::user(text.clone()),
        ]);
        let reply = self.model.chat_async(&request).await;
        self.in_flight.now.fetch_sub(1, Ordering::SeqCst);
        Ok(reply?.content)
    }
    async fn post(&self, job: &mut Job, items: Vec<(String, String)>, texts: Vec<String>) {
        job.translations = items.into_iter().map(|(language, _)| language).zip(texts).collect();
    }
}

flow! {
    async struct Translation: Job {
        node translate: Translate = _;
        start translate;
    }
}

/// The offline model: a phrase book for a few words, the rest kept as it is.
fn script(request: &Request) -> Reply {
    let language = request.messages[0].text().split(" into ").nth(1).and_then(|r| r.split('.').next()).unwrap_or("");
    let book: &[(&str, &str)] = match language {
        "French" => &[("good", "bon"), ("morning", "matin"), ("friend", "ami"), ("hello", "bonjour")],
        "Spanish" => &[("good", "buenos"), ("morning", "días"), ("friend", "amigo"), ("hello", "hola")],
        "German" => &[("good", "guten"), ("morning", "Morgen"), ("friend", "Freund"), ("hello", "hallo")],
        "Italian" => &[("good", "buon"), ("morning", "giorno"), ("friend", "amico"), ("hello", "ciao")],
        "Portuguese" => &[("good", "bom"), ("morning", "dia"), ("friend", "amigo"), ("hello", "olá")],
        _ => &[],
    };
    let words = request.last_user().split(' ').map(|w| {
        let bare = w.trim_matches(|c: char| !c.is_alphanumeric());
        match book.iter().find(|(en, _)| en.eq_ignore_ascii_case(bare)) {
            Some((_, said)) => w.replace(bare, said),
            None => w.to_owned(),
        }
    });
    Reply::text(words.collect::<Vec<_>>().join(" "))
}

async fn translate(text: &str, languages: &[&str], model: Model) -> Result<(Job, usize), minllm::Error> {
    let in_flight = Arc::new(InFlight::default());
    let flow = Translation::new(Translate { model, in_flight: Arc::clone(&in_flight) });
    let mut job =
        Job { text: text.to_owned(), languages: languages.iter().map(|l| (*l).to_owned()).collect(), ..Job::default() };
    flow.run(&mut job).await?;
    Ok((job, in_flight.peak.load(Ordering::SeqCst)))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let text = std::env::args().nth(1).unwrap_or_else(|| "Good morning, friend".into());
    let languages = ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch"];
    let started = Instant::now();
    let (job, peak) = translate(&text, &languages, Model::from_env(script)?).await?;
    for (language, translation) in &job.translations {
        println!("{language:>10}: {translation}");
    }
    let (count, elapsed) = (job.translations.len(), started.elapsed());
    println!("{count} translations in {elapsed:.0?}, {peak} calls at once at most (limit {LIMIT})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_language_is_translated_in_order_with_at_most_three_calls_at_once() {
        let languages = ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch"];
        let (job, peak) = translate("Hello, friend", &languages, Model::scripted(script)).await.unwrap();
        let got: Vec<(&str, &str)> = job.translations.iter().map(|(l, t)| (l.as_str(), t.as_str())).collect();
        assert_eq!(
            got,
            [
                ("French", "bonjour, ami"),
                ("Spanish", "hola, amigo"),
                ("German", "hallo, Freund"),
                ("Italian", "ciao, amico"),
                ("Portuguese", "olá, amigo"),
                ("Dutch", "Hello, friend"),
            ]
        );
        // Each call waits for its answer: the first three are in flight together.
        assert_eq!(peak, LIMIT);
    }
}
