//! RAG: load the documents in `examples/data`, chunk them into passages,
//! embed the passages (a parallel batch, 8 passages a call), index them,
//! retrieve the passages closest to the question, and answer from them with
//! their sources. Offline, the embeddings are hashed word and word-pair
//! counts (`minllm_examples::embed`), which really rank; with
//! `MINLLM_LLM_URL` set, the API's embedding model (`MINLLM_EMBED_MODEL`).
//!
//! `cargo run -p minllm-examples --example rag -- "How do bees find flowers?"`

use std::path::PathBuf;

use minllm::{BoxError, flow, node};
use minllm_examples::client::{Message, Reply, Request};
use minllm_examples::embed::cosine;
use minllm_examples::llm;
use minllm_examples::model::Model;

/// How many passages an answer reads.
const TOP: usize = 3;
/// How many passages go into one embedding call.
const PER_CALL: usize = 8;

#[derive(Clone, Debug, PartialEq)]
struct Passage {
    /// `file#n`: the document and the passage's number in it.
    source: String,
    text: String,
}

#[derive(Debug, Default)]
struct Rag {
    documents: Vec<(String, String)>,
    passages: Vec<Passage>,
    index: Vec<Vec<f32>>,
    question: String,
    found: Vec<(f32, Passage)>,
    answer: String,
}

#[derive(Default)]
struct Load;

#[node]
impl Load {
    fn exec(&self) -> Result<Vec<(String, String)>, BoxError> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
        let mut documents = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            documents.push((name, std::fs::read_to_string(&path)?));
        }
        documents.sort();
        Ok(documents)
    }
    fn post(&self, rag: &mut Rag, documents: Vec<(String, String)>) {
        rag.documents = documents;
    }
}

/// Splits each document into passages (its paragraphs, long ones in halves).
#[derive(Default)]
struct Chunk;

#[node(blocking = false)]
impl Chunk {
    fn prep(&self, rag: &Rag) -> Vec<(String, String)> {
        rag.documents.clone()
    }
    fn exec(&self, documents: &[(String, String)]) -> Vec<Passage> {
        let mut passages = Vec::new();
        for (name, text) in documents {
            for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
                let sentences: Vec<&str> = paragraph.split_inclusive(". ").collect();
                let parts: Vec<String> = if sentences.len() > 4 {
                    let half = sentences.len() / 2;
                    vec![sentences[..half].concat(), sentences[half..].concat()]
                } else {
                    vec![paragraph.to_owned()]
                };
                for part in parts {
                    let n =
                        passages.iter().filter(|p: &&Passage| p.source.starts_with(&format!("{name}#"))).count() + 1;
                    passages.push(Passage { source: format!("{name}#{n}"), text: part.trim().to_owned() });
                }
            }
        }
        passages
    }
    fn post(&self, rag: &mut Rag, passages: Vec<Passage>) {
        rag.passages = passages;
    }
}

/// Embeds the passages, a group of them per call, the calls in parallel.
struct Embed {
    model: Model,
}

#[node(parallel, limit = 4, attempts = 3, wait_ms = 500)]
impl Embed {
    fn prep(&self, rag: &Rag) -> Vec<Vec<String>> {
        let texts: Vec<String> = rag.passages.iter().map(|p| p.text.clone()).collect();
        texts.chunks(PER_CALL).map(<[String]>::to_vec).collect()
    }
    fn exec(&self, group: &[String]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.model.embed(group)?)
    }
    fn post(&self, rag: &mut Rag, groups: Vec<Vec<Vec<f32>>>) {
        rag.index = groups.into_iter().flatten().collect();
    }
}

/// Embeds the question and keeps the closest passages.
struct Retrieve {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Retrieve {
    fn prep(&self, rag: &Rag) -> (String, Vec<Vec<f32>>, Vec<Passage>) {
        (rag.question.clone(), rag.index.clone(), rag.passages.clone())
    }
    fn exec(
        &self,
        (question, index, passages): &(String, Vec<Vec<f32>>, Vec<Passage>),
    ) -> Result<Vec<(f32, Passage)>, BoxError> {
        let asked = self.model.embed(std::slice::from_ref(question))?.pop().ok_or("no embedding for the question")?;
        let mut scored: Vec<(f32, Passage)> =
            index.iter().zip(passages).map(|(v, p)| (cosine(&asked, v), p.clone())).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(TOP);
        Ok(scored)
    }
    fn post(&self, rag: &mut Rag, found: Vec<(f32, Passage)>) {
        for (score, passage) in &found {
            println!("{score:.2} {}", passage.source);
        }
        rag.found = found;
    }
}

/// Answers from the passages found, citing them.
struct Answer {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Answer {
    fn prep(&self, rag: &Rag) -> (String, Vec<Passage>) {
        (rag.question.clone(), rag.found.iter().map(|(_, p)| p.clone()).collect())
    }
    fn exec(&self, (question, passages): &(String, Vec<Passage>)) -> Result<String, BoxError> {
        let context: Vec<String> = passages.iter().map(|p| format!("[{}] {}", p.source, p.text)).collect();
        let request = Request::new(vec![
            Message::system("Answer from the passages only, in two sentences, and cite them as [source]."),
            Message::user(format!("Passages:\n{}\n\nQuestion: {question}", context.join("\n"))),
        ]);
        Ok(self.model.chat(&request)?.content)
    }
    fn post(&self, rag: &mut Rag, answer: String) {
        rag.answer = answer;
    }
}

flow! {
    /// Index the documents, then answer from the closest passages.
    struct Ask: Rag {
        node load: Load;
        node chunk: Chunk;
        node embed: Embed = _;
        node retrieve: Retrieve = _;
        node answer: Answer = _;
        start load;
        load >> chunk >> embed >> retrieve >> answer;
    }
}

/// The offline model's answer: the sentence of the best passage that shares
/// most words with the question, cited.
fn script(request: &Request) -> Reply {
    let asked = request.last_user();
    let question = asked.rsplit("Question: ").next().unwrap_or_default();
    let keys: Vec<String> = llm::words(question).filter(|w| w.len() > 3 && !llm::is_stop_word(w)).collect();
    let first = asked.lines().find(|l| l.starts_with('[')).unwrap_or_default();
    let (source, text) = first.trim_start_matches('[').split_once("] ").unwrap_or(("", first));
    let best = text
        .split_inclusive(". ")
        .max_by_key(|s| {
            (
                llm::words(s).filter(|w| keys.iter().any(|k| w.starts_with(&k[..k.len().min(5)]))).count(),
                usize::MAX - s.len(),
            )
        })
        .unwrap_or(text);
    Reply::text(format!("{} [{source}]", best.trim()))
}

fn ask(question: &str, model: Model) -> Result<Rag, minllm::Error> {
    let flow = Ask::new(Embed { model: model.clone() }, Retrieve { model: model.clone() }, Answer { model });
    let mut rag = Rag { question: question.to_owned(), ..Rag::default() };
    flow.run(&mut rag)?;
    Ok(rag)
}

fn main() -> Result<(), BoxError> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "How do bees find flowers?".into());
    let rag = ask(&question, Model::from_env(script)?)?;
    println!("Q: {question}\nA: {}", rag.answer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_passages_answer_and_are_cited() {
        let rag = ask("How do bees find flowers?", Model::scripted(script)).unwrap();
        assert_eq!(rag.index.len(), rag.passages.len(), "every passage is indexed");
        assert_eq!(rag.passages.len(), 10, "two passages in each of five documents");
        assert_eq!(rag.found[0].1.source, "bees#2", "{:?}", rag.found);
        assert!(rag.answer.contains("flowers") && rag.answer.ends_with("[bees#2]"), "{}", rag.answer);
    }

    #[test]
    fn another_question_finds_another_document() {
        let rag = ask("Why does bread dough rise?", Model::scripted(script)).unwrap();
        assert!(rag.found[0].1.source.starts_with("bread#"), "{:?}", rag.found);
        assert!(rag.answer.contains("[bread#"), "{}", rag.answer);
    }
}
