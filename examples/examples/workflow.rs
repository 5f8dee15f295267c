//! Workflow: outline, then draft, then review; a failed review sends the
//! draft back with the reviewer's notes, at most three rounds, after which the
//! flow gives up instead of looping on. Each step is one model call.
//!
//! `cargo run -p minllm-examples --example workflow -- "why bees dance"`

use minllm::{Action, BoxError, flow, node};
use minllm_examples::client::{Format, Message, Reply, Request};
use minllm_examples::model::Model;
use serde::Deserialize;
use serde_json::json;

/// How many drafts the reviewer reads at most.
const ROUNDS: usize = 3;

#[derive(Debug, Default)]
struct Article {
    topic: String,
    outline: Vec<String>,
    draft: String,
    notes: Vec<String>,
}

#[derive(Clone, Copy, Debug, Action)]
enum Verdict {
    Revise,
    Accept,
    GiveUp,
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Outcome {
    Published,
    GaveUp,
}

struct Outline {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Outline {
    fn prep(&self, a: &Article) -> String {
        a.topic.clone()
    }
    fn exec(&self, topic: &str) -> Result<Vec<String>, BoxError> {
        let prompt = format!("Write an outline of three short points for a paragraph on: {topic}. One point per line.");
        let reply = self.model.chat(&Request::prompt(prompt))?;
        let points: Vec<String> = reply
            .content
            .lines()
            .map(|l| l.trim_start_matches(|c: char| c.is_ascii_digit() || ".-* ".contains(c)).trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        if points.is_empty() { Err("the outline came back empty".into()) } else { Ok(points) }
    }
    fn post(&self, a: &mut Article, outline: Vec<String>) {
        println!("outline: {}", outline.join(" | "));
        a.outline = outline;
    }
}

struct Draft {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Draft {
    fn prep(&self, a: &Article) -> (String, Vec<String>, Option<String>) {
        (a.topic.clone(), a.outline.clone(), a.notes.last().cloned())
    }
    fn exec(&self, (topic, outline, notes): &(String, Vec<String>, Option<String>)) -> Result<String, BoxError> {
        let mut prompt = format!("Write one paragraph on {topic} following this outline:\n- {}", outline.join("\n- "));
        if let Some(notes) = notes {
            prompt.push_str(&format!("\n\nThe reviewer's notes on the last draft: {notes}"));
        }
        Ok(self.model.chat(&Request::prompt(prompt))?.content)
    }
    fn post(&self, a: &mut Article, draft: String) {
        println!("draft {}: {} words", a.notes.len() + 1, draft.split_whitespace().count());
        a.draft = draft;
    }
}

/// What the reviewer answers.
#[derive(Deserialize)]
struct Review {
    accept: bool,
    notes: String,
}

struct Check {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Check {
    fn prep(&self, a: &Article) -> String {
        a.draft.clone()
    }
    fn exec(&self, draft: &str) -> Result<Review, BoxError> {
        let schema = json!({"type": "object", "properties": {"accept": {"type": "boolean"}, "notes": {"type": "string"}},
            "required": ["accept", "notes"], "additionalProperties": false});
        let request = Request::new(vec![
            Message::system("You review paragraphs: accept one that is clear and ends with a conclusion."),
            Message::user(draft),
        ])
        .format(Format::Schema { name: "review".into(), schema });
        Ok(serde_json::from_str(&self.model.chat(&request)?.content)?)
    }
    fn post(&self, a: &mut Article, review: Review) -> Verdict {
        println!("review: {} ({})", if review.accept { "accepted" } else { "revise" }, review.notes);
        a.notes.push(review.notes);
        match (review.accept, a.notes.len()) {
            (true, _) => Verdict::Accept,
            (false, n) if n >= ROUNDS => Verdict::GiveUp,
            (false, _) => Verdict::Revise,
        }
    }
}

flow! {
    /// Outline, draft, review; back to the draft while the review fails.
    struct Writing: Article {
        node outline: Outline = _;
        node draft: Draft = _;
        node check: Check = _;
        start outline;
        max_steps 20;
        outline >> draft >> check;
        check - Verdict::Revise >> draft;
        check - Verdict::Accept >> end(Outcome::Published);
        check - Verdict::GiveUp >> end(Outcome::GaveUp);
    }
}

/// The offline model: an outline from the topic's words, a draft that forgets
/// its conclusion until the reviewer asks for one, a reviewer who asks.
fn script(request: &Request) -> Reply {
    let asked = request.last_user();
    if asked.starts_with("Write an outline") {
        let topic = asked.split(": ").nth(1).unwrap_or("it").trim_end_matches(". One point per line.");
        return Reply::text(format!("1. What {topic} means\n2. How {topic} works\n3. Why {topic} matters"));
    }
    if asked.starts_with("Write one paragraph") {
        let points: Vec<&str> = asked.lines().filter_map(|l| l.strip_prefix("- ")).collect();
        let mut text = points.iter().map(|p| format!("{p} is worth a sentence.")).collect::<Vec<_>>().join(" ");
        if asked.contains("reviewer's notes") {
            text.push_str(" In short, it all fits together.");
        }
        return Reply::text(text);
    }
    let accept = asked.contains("In short");
    let notes = if accept { "clear, with a conclusion" } else { "add a one-sentence conclusion" };
    Reply::text(json!({"accept": accept, "notes": notes}).to_string())
}

fn write(topic: &str, model: Model) -> Result<(Outcome, Article), minllm::Error> {
    let flow = Writing::new(Outline { model: model.clone() }, Draft { model: model.clone() }, Check { model });
    let mut article = Article { topic: topic.to_owned(), ..Article::default() };
    let outcome = flow.run(&mut article)?;
    Ok((outcome, article))
}

fn main() -> Result<(), BoxError> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "the waggle dance of bees".into());
    let (outcome, article) = write(&topic, Model::from_env(script)?)?;
    println!("{outcome:?} after {} reviews:\n{}", article.notes.len(), article.draft);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_review_sends_the_draft_back_with_its_notes() {
        let (outcome, article) = write("tides", Model::scripted(script)).unwrap();
        assert_eq!(outcome, Outcome::Published);
        assert_eq!(article.outline, ["What tides means", "How tides works", "Why tides matters"]);
        assert_eq!(article.notes, ["add a one-sentence conclusion", "clear, with a conclusion"]);
        assert!(article.draft.ends_with("In short, it all fits together."), "{}", article.draft);
    }

    #[test]
    fn a_reviewer_who_never_accepts_ends_the_loop_after_three_rounds() {
        let harsh = Model::scripted(|request: &Request| {
            if request.format == Format::Text {
                script(request)
            } else {
                Reply::text(r#"{"accept": false, "notes": "no"}"#)
            }
        });
        let (outcome, article) = write("tides", harsh).unwrap();
        assert_eq!(outcome, Outcome::GaveUp);
        assert_eq!(article.notes.len(), ROUNDS);
    }
}
