//! Map-reduce over the text files in `examples/data`: load them, summarise each
//! one in parallel (a batch node on all cores), then reduce the summaries into
//! one report. The nodes are written out with the `Node` and `BatchNode`
//! traits (`#[node]` is shorter: see the other examples). Offline, each
//! summary is the sentence that carries most of the document's keywords; with
//! `MINLLM_LLM_URL` set, a real model writes it.
//!
//! `cargo run -p minllm-examples --example map_reduce`

use std::path::PathBuf;
use std::time::Instant;

use minllm::{BatchMode, BatchNode, ExecContext, Flow, Node, NodeResult, Params};
use minllm_examples::client::{Reply, Request};
use minllm_examples::llm;
use minllm_examples::model::Model;

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
struct Summarize {
    model: Model,
}

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
            sentence: self.model.chat(&Request::prompt(format!("Summarize in one sentence:\n\n{}", doc.text)))?.content,
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

/// The offline model: the sentence that carries most of the text's keywords.
fn script(request: &Request) -> Reply {
    let text = request.last_user().split_once("\n\n").map_or("", |(_, t)| t);
    Reply::text(llm::summarize(text))
}

fn map_reduce(model: Model) -> Result<(Flow<Corpus>, Corpus), minllm::Error> {
    let mut flow = Flow::new("map_reduce");
    let load = flow.add("load", Load);
    let map = flow.add("summarize", Summarize { model });
    let reduce = flow.add("report", Report);
    flow.edge(load >> map >> reduce);
    let mut corpus = Corpus { dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"), ..Corpus::default() };
    flow.run(&mut corpus)?;
    Ok((flow, corpus))
}

fn main() -> Result<(), minllm::BoxError> {
    let started = Instant::now();
    let (flow, corpus) = map_reduce(Model::from_env(script)?)?;
    println!("{}", corpus.report);
    println!("summarised {} files in {:.0?}, in parallel\n", corpus.docs.len(), started.elapsed());
    println!("{}", flow.to_mermaid());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_is_summarised_and_reported() {
        let (flow, corpus) = map_reduce(Model::scripted(script)).unwrap();
        assert!(flow.validate().is_empty(), "{:?}", flow.validate());
        let names: Vec<&str> = corpus.summaries.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["bees", "bread", "compilers", "lighthouses", "rivers"]);
        assert!(corpus.report.starts_with("5 documents, 438 words"), "{}", corpus.report);
        assert!(corpus.summaries[0].sentence.contains("dance"), "{}", corpus.summaries[0].sentence);
        assert!(corpus.summaries[1].keywords.contains(&"dough".to_owned()), "{:?}", corpus.summaries[1].keywords);
    }
}
