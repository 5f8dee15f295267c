//! Map-reduce over the text files in `examples/data`: load them, summarise each
//! one in parallel (a batch node on all cores), then reduce the summaries into
//! one report. Runs offline: the "LLM" is the stand-in in `src/llm.rs`.
//!
//! `cargo run -p minllm-examples --example map_reduce`

use std::path::PathBuf;
use std::time::Instant;

use minllm::{BatchMode, BatchNode, ExecContext, Flow, Node, NodeResult, Params};
use minllm_examples::llm;

/// The flow's store: a struct of our own.
#[derive(Default)]
struct Corpus {
    dir: PathBuf,
    docs: Vec<Doc>,
    summaries: Vec<Summary>,
    report: String,
}

#[derive(Clone)]
struct Doc {
    name: String,
    text: String,
}

struct Summary {
    name: String,
    words: usize,
    keywords: Vec<String>,
    sentence: String,
}

/// Reads every `.txt` file of the directory, sorted by name.
struct Load;

impl Node<Corpus> for Load {
    type Prep = PathBuf;
    type Exec = Vec<Doc>;
    type Action = ();

    fn prep(&self, corpus: &Corpus, _: &Params) -> NodeResult<PathBuf> {
        Ok(corpus.dir.clone())
    }

    fn exec(&self, dir: &PathBuf, _: &ExecContext) -> NodeResult<Vec<Doc>> {
        let mut docs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "txt") {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                docs.push(Doc { name, text: std::fs::read_to_string(&path)? });
            }
        }
        docs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(docs)
    }

    fn post(&self, corpus: &mut Corpus, _: PathBuf, docs: Vec<Doc>) -> NodeResult<()> {
        corpus.docs = docs;
        Ok(())
    }
}

/// Map: one summary per document, all documents at once.
struct Summarize;

impl BatchNode<Corpus> for Summarize {
    type Item = Doc;
    type Output = Summary;
    type Action = ();

    fn prep(&self, corpus: &Corpus, _: &Params) -> NodeResult<Vec<Doc>> {
        Ok(corpus.docs.clone())
    }

    fn exec(&self, doc: &Doc, _: &ExecContext) -> NodeResult<Summary> {
        Ok(Summary {
            name: doc.name.clone(),
            words: llm::words(&doc.text).count(),
            keywords: llm::keywords(&doc.text, 3),
            sentence: llm::summarize(&doc.text),
        })
    }

    fn post(&self, corpus: &mut Corpus, _: Vec<Doc>, summaries: Vec<Summary>) -> NodeResult<()> {
        corpus.summaries = summaries;
        Ok(())
    }

    /// Every document at once, on all cores.
    fn mode(&self) -> BatchMode {
        BatchMode::Parallel { threads: None }
    }
}

/// Reduce: one report from every summary.
struct Report;

impl Node<Corpus> for Report {
    type Prep = Vec<(String, usize, String, String)>;
    type Exec = String;
    type Action = ();

    fn prep(&self, corpus: &Corpus, _: &Params) -> NodeResult<Self::Prep> {
        Ok(corpus
            .summaries
            .iter()
            .map(|s| (s.name.clone(), s.words, s.keywords.join(", "), s.sentence.clone()))
            .collect())
    }

    fn exec(&self, rows: &Self::Prep, _: &ExecContext) -> NodeResult<String> {
        let total: usize = rows.iter().map(|r| r.1).sum();
        let mut report = format!("{} documents, {total} words\n", rows.len());
        for (name, words, keywords, sentence) in rows {
            report.push_str(&format!("\n{name} ({words} words; {keywords})\n  {sentence}\n"));
        }
        Ok(report)
    }

    fn post(&self, corpus: &mut Corpus, _: Self::Prep, report: String) -> NodeResult<()> {
        corpus.report = report;
        Ok(())
    }
}

fn main() -> Result<(), minllm::Error> {
    let mut flow = Flow::new("map_reduce");
    let load = flow.add("load", Load);
    let map = flow.add("summarize", Summarize);
    let reduce = flow.add("report", Report);
    flow.edge(load >> map >> reduce);
    assert!(flow.validate().is_empty(), "{:?}", flow.validate());

    let mut corpus = Corpus { dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"), ..Corpus::default() };
    let started = Instant::now();
    flow.run(&mut corpus)?;
    println!("{}", corpus.report);
    println!(
        "summarised {} files in {:.0?} ({:?} per file, in parallel)\n",
        corpus.docs.len(),
        started.elapsed(),
        llm::LATENCY
    );
    println!("{}", flow.to_mermaid());
    Ok(())
}
