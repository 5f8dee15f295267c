//! A research agent written with the flow compiler: `decide` either searches the
//! offline library in `examples/data` or answers; `search` adds the best passage
//! it has not read yet. The wiring is checked while this file compiles: delete
//! the `decide - Decision::Answer` edge and the build fails, naming the variant.
//!
//! `cargo run -p minllm-examples --example agent -- "how do bees find flowers?"`
//!
//! The answer is written by the offline stand-in in `minllm_examples::llm`,
//! or by a real model when `MINLLM_LLM_URL` names an OpenAI-compatible server
//! (see `minllm_examples::client`), e.g.
//! `MINLLM_LLM_URL=http://localhost:11434/v1 MINLLM_LLM_MODEL=llama3.2`.

use std::path::PathBuf;

use minllm::{Action, BoxError, flow, node};
use minllm_examples::client::{Client, Request};
use minllm_examples::llm;

/// The agent's store.
#[derive(Default)]
struct Research {
    question: String,
    library: Vec<(String, String)>,
    notes: Vec<(String, String)>,
    answer: String,
}

#[derive(Clone, Copy, Debug, Action)]
enum Decision {
    Search,
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Outcome {
    Answered,
    NothingFound,
}

/// How many question keywords a passage contains.
fn relevance(question: &str, passage: &str) -> usize {
    let words: Vec<String> = llm::words(passage).collect();
    llm::words(question).filter(|w| w.len() > 3 && words.contains(w)).count()
}

#[derive(Default)]
struct Load;

#[node]
impl Load {
    fn exec(&self) -> Result<Vec<(String, String)>, BoxError> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
        let mut library = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            for passage in std::fs::read_to_string(&path)?.split("\n\n") {
                library.push((name.clone(), passage.trim().to_string()));
            }
        }
        Ok(library)
    }
    fn post(&self, r: &mut Research, library: Vec<(String, String)>) {
        r.library = library;
    }
}

/// Answers once the notes cover the question well enough, or nothing is left to read.
#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn prep(&self, r: &Research) -> (usize, bool) {
        let covered: usize = r.notes.iter().map(|(_, p)| relevance(&r.question, p)).sum();
        let unread = r.library.iter().any(|p| !r.notes.contains(p) && relevance(&r.question, &p.1) > 0);
        (covered, unread)
    }
    fn exec(&self, state: &(usize, bool)) -> Decision {
        let (covered, unread) = *state;
        if covered < 4 && unread { Decision::Search } else { Decision::Answer }
    }
    fn post(&self, _: &mut Research, d: Decision) -> Decision {
        println!("decide: {d:?}");
        d
    }
}

/// Reads the most relevant passage not read yet.
#[derive(Default)]
struct Search;

#[node]
impl Search {
    fn prep(&self, r: &Research) -> (String, Vec<(String, String)>) {
        let unread = r.library.iter().filter(|p| !r.notes.contains(p)).cloned().collect();
        (r.question.clone(), unread)
    }
    fn exec(&self, input: &(String, Vec<(String, String)>)) -> Option<(String, String)> {
        let (question, unread) = input;
        unread.iter().filter(|(_, p)| relevance(question, p) > 0).max_by_key(|(_, p)| relevance(question, p)).cloned()
    }
    fn post(&self, r: &mut Research, found: Option<(String, String)>) {
        if let Some(passage) = found {
            println!("search: read a passage of `{}`", passage.0);
            r.notes.push(passage);
        }
    }
}

/// Writes the answer from the notes: with the model when one is configured,
/// else with the offline stand-in.
#[derive(Default)]
struct Answer {
    llm: Option<Client>,
}

#[node(attempts = 3, wait_ms = 500)]
impl Answer {
    fn prep(&self, r: &Research) -> (String, Vec<(String, String)>) {
        (r.question.clone(), r.notes.clone())
    }
    fn exec(&self, (question, notes): &(String, Vec<(String, String)>)) -> Result<Option<String>, BoxError> {
        if notes.is_empty() {
            return Ok(None);
        }
        let text: Vec<&str> = notes.iter().map(|(_, p)| p.as_str()).collect();
        let text = text.join(" ");
        match &self.llm {
            Some(llm) => {
                let prompt = format!(
                    "Answer in two sentences, using only these notes.\n\nNotes: {text}\n\nQuestion: {question}"
                );
                Ok(Some(llm.chat_blocking(&Request::prompt(prompt))?.content))
            }
            None => Ok(Some(llm::summarize(&text))),
        }
    }
    fn post(&self, r: &mut Research, answer: Option<String>) -> Outcome {
        match answer {
            Some(a) => {
                r.answer = a;
                Outcome::Answered
            }
            None => Outcome::NothingFound,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Done {
    Answered,
    NothingFound,
}

flow! {
    /// Loads the library, then searches until it can answer.
    struct Agent: Research {
        node load: Load;
        node decide: Decide;
        node search: Search;
        node answer: Answer;
        start load;
        max_steps 20;
        load >> decide;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer;
        answer - Outcome::Answered >> end(Done::Answered);
        answer - Outcome::NothingFound >> end(Done::NothingFound);
    }
}

fn main() -> Result<(), BoxError> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "How do bees find the richest flowers?".into());
    let mut research = Research { question, ..Research::default() };
    let done = Agent::new().with_answer(Answer { llm: Client::from_env()? }).run(&mut research)?;
    println!("\nQ: {}", research.question);
    match done {
        Done::Answered => println!("A: {}", research.answer),
        Done::NothingFound => println!("A: the library has nothing on that."),
    }
    println!("\n{}", Agent::MERMAID);
    Ok(())
}
