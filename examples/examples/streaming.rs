//! Streaming: a flow answers a question from the offline library and each
//! word of the answer is printed as the node produces it, with each node's
//! start and end, from the flow's event stream.
//!
//! `cargo run -p minllm-examples --example streaming -- "how do bees find flowers?"`

use std::io::Write as _;
use std::time::Duration;

use minllm::events::{EventKind, emit};
use minllm::{ExecContext, Flow, Node, NodeResult, Params, SharedStore};
use minllm_examples::llm;

/// Finds the passage that shares most words with the question.
struct Retrieve;

impl Node for Retrieve {
    type Prep = String;
    type Exec = String;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("question")?)
    }
    fn exec(&self, question: &String, _: &ExecContext) -> NodeResult<String> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
        let asked: Vec<String> = llm::words(question).filter(|w| w.len() > 3).collect();
        let mut best = (0, String::new());
        for entry in std::fs::read_dir(dir)? {
            for passage in std::fs::read_to_string(entry?.path())?.split("\n\n") {
                let score = llm::words(passage).filter(|w| asked.contains(w)).count();
                if score > best.0 {
                    best = (score, passage.to_owned());
                }
            }
        }
        Ok(best.1)
    }
    fn post(&self, store: &mut SharedStore, _: String, passage: String) -> NodeResult<()> {
        store.set("passage", passage);
        Ok(())
    }
}

/// Answers word by word, as a model streams tokens.
struct Answer;

impl Node for Answer {
    type Prep = String;
    type Exec = String;
    type Action = ();
    fn prep(&self, store: &SharedStore, _: &Params) -> NodeResult<String> {
        Ok(store.try_get("passage")?)
    }
    fn exec(&self, passage: &String, _: &ExecContext) -> NodeResult<String> {
        let answer = llm::summarize(passage);
        for word in answer.split_inclusive(' ') {
            emit(word);
            std::thread::sleep(Duration::from_millis(15));
        }
        Ok(answer)
    }
    fn post(&self, store: &mut SharedStore, _: String, answer: String) -> NodeResult<()> {
        store.set("answer", answer);
        Ok(())
    }
}

fn main() -> Result<(), minllm::Error> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "How do bees find the richest flowers?".into());
    let mut flow = Flow::new("ask");
    let retrieve = flow.add("retrieve", Retrieve);
    let answer = flow.add("answer", Answer);
    flow.edge(retrieve >> answer);
    let mut store = SharedStore::new();
    store.set("question", question.clone());
    println!("Q: {question}");
    flow.stream(&mut store, |events| {
        let mut mid_line = false;
        for event in events {
            match event.kind {
                EventKind::NodeStarted => println!("[{} started]", event.node),
                EventKind::Custom(token) => {
                    print!("{}", token.as_str().unwrap_or_default());
                    let _ = std::io::stdout().flush();
                    mid_line = true;
                }
                EventKind::NodeFinished { elapsed, .. } => {
                    if std::mem::take(&mut mid_line) {
                        println!();
                    }
                    println!("[{} finished in {elapsed:.0?}]", event.node);
                }
                _ => {}
            }
        }
    })?;
    let answer: String = store.try_get("answer").unwrap_or_default();
    println!("A: {answer}");
    Ok(())
}
