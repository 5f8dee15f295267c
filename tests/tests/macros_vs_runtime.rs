//! The same flows written with the macros (`flow!`, `#[node]`) and built at
//! runtime (`Flow`), run end to end: they must give the same results.

// Tests unwrap what they expect to succeed.
#![allow(clippy::unwrap_used)]

use minllm::{Action, Flow, Params, flow, node};

// ---- the agent loop: decide -> search -> decide, decide -> answer ----

#[derive(Default, Debug, PartialEq, Clone)]
struct Research {
    question: String,
    notes: Vec<String>,
    answer: Option<String>,
    trace: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Decision {
    Search,
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Outcome {
    Answered,
}

#[derive(Default)]
struct Decide;

#[node]
impl Decide {
    fn prep(&self, r: &Research) -> usize {
        r.notes.len()
    }
    fn exec(&self, notes: &usize) -> Decision {
        if *notes < 3 { Decision::Search } else { Decision::Answer }
    }
    fn post(&self, r: &mut Research, d: Decision) -> Decision {
        r.trace.push(format!("decide:{}", d.label()));
        d
    }
}

#[derive(Default)]
struct Search;

#[node(attempts = 2)]
impl Search {
    fn prep(&self, r: &Research, params: &Params) -> String {
        format!("{} ({}) #{}", r.question, params.get_str("lang").unwrap_or("?"), r.notes.len())
    }
    fn exec(&self, query: &str) -> String {
        format!("found: {query}")
    }
    fn post(&self, r: &mut Research, note: String) {
        r.trace.push("search".into());
        r.notes.push(note);
    }
}

#[derive(Default)]
struct Answer;

#[node]
impl Answer {
    fn prep(&self, r: &Research) -> Vec<String> {
        r.notes.clone()
    }
    fn exec(&self, notes: &[String]) -> String {
        format!("{} notes, last: {}", notes.len(), notes.last().map_or("-", String::as_str))
    }
    fn post(&self, r: &mut Research, answer: String) {
        r.trace.push("answer".into());
        r.answer = Some(answer);
    }
}

flow! {
    /// The agent loop, checked at compile time.
    struct Agent: Research {
        node decide: Decide;
        node search: Search;
        node answer: Answer;
        start decide;
        max_steps 50;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer >> end(Outcome::Answered);
    }
}

fn runtime_agent() -> Flow<Research> {
    let mut flow = Flow::new("Agent");
    let decide = flow.add("decide", Decide);
    let search = flow.add("search", Search);
    let answer = flow.add("answer", Answer);
    flow.edge(decide.on(Decision::Search) >> search >> decide)
        .edge(decide.on(Decision::Answer) >> answer)
        .max_steps(50);
    flow
}

flow! {
    /// The agent loop, with a plain end: the graph `runtime_agent` builds.
    struct SameAgent: Research {
        node decide: Decide;
        node search: Search;
        node answer: Answer;
        start decide;
        max_steps 50;
        decide - Decision::Search >> search >> decide;
        decide - Decision::Answer >> answer;
    }
}

#[test]
fn one_graph_gets_one_chart_and_one_verdict_both_ways() {
    let runtime = runtime_agent();
    assert_eq!(SameAgent::MERMAID, runtime.to_mermaid());
    assert!(runtime.validate().is_empty(), "{:?}", runtime.validate());
    assert_eq!(
        SameAgent::MERMAID,
        "flowchart TD\n    n0[\"decide\"]\n    n1[\"search\"]\n    n2[\"answer\"]\n    start(( )) --> n0\n    \
         n0 -->|\"search\"| n1\n    n0 -->|\"answer\"| n2\n    n1 --> n0\n"
    );
}

#[test]
fn the_agent_loop_gives_the_same_results_both_ways() {
    let params = Params::new().with("lang", "en");
    let start = Research { question: "why is the sky blue".into(), ..Research::default() };

    let mut typed = start.clone();
    assert_eq!(Agent::new().run_with(&mut typed, &params).unwrap(), Outcome::Answered);

    let mut runtime = start.clone();
    let mut flow = runtime_agent();
    assert!(flow.validate().is_empty(), "{:?}", flow.validate());
    flow.params(params);
    assert_eq!(flow.run(&mut runtime).unwrap(), "default", "the answer node returns the default action");

    assert_eq!(typed, runtime);
    assert_eq!(typed.notes.len(), 3);
    assert_eq!(typed.trace.first().map(String::as_str), Some("decide:search"));
    assert_eq!(typed.trace.last().map(String::as_str), Some("answer"));
    assert_eq!(typed.answer.as_deref(), Some("3 notes, last: found: why is the sky blue (en) #2"));
}

// ---- a three-step workflow: outline -> write sections (batch) -> assemble ----

#[derive(Default, Debug, PartialEq, Clone)]
struct Article {
    topic: String,
    outline: Vec<String>,
    sections: Vec<String>,
    text: String,
}

#[derive(Default)]
struct Outline;

#[node]
impl Outline {
    fn prep(&self, a: &Article) -> String {
        a.topic.clone()
    }
    fn exec(&self, topic: &str) -> Vec<String> {
        ["what", "why", "how"].iter().map(|w| format!("{w} {topic}")).collect()
    }
    fn post(&self, a: &mut Article, outline: Vec<String>) {
        a.outline = outline;
    }
}

#[derive(Default)]
struct Write;

#[node(parallel)]
impl Write {
    fn prep(&self, a: &Article) -> Vec<String> {
        a.outline.clone()
    }
    fn exec(&self, heading: &str) -> String {
        format!("## {heading}\n{} words about {heading}.", heading.len())
    }
    fn post(&self, a: &mut Article, sections: Vec<String>) {
        a.sections = sections;
    }
}

#[derive(Default)]
struct Assemble;

#[node]
impl Assemble {
    fn prep(&self, a: &Article) -> Vec<String> {
        a.sections.clone()
    }
    fn exec(&self, sections: &[String]) -> String {
        sections.join("\n\n")
    }
    fn post(&self, a: &mut Article, text: String) {
        a.text = text;
    }
}

flow! {
    struct Writer: Article {
        node outline: Outline;
        node write: Write;
        node assemble: Assemble;
        start outline;
        outline >> write >> assemble;
    }
}

#[test]
fn the_workflow_gives_the_same_results_both_ways() {
    let start = Article { topic: "rust".into(), ..Article::default() };
    let mut typed = start.clone();
    Writer::new().run(&mut typed).unwrap();

    let mut flow = Flow::new("Writer");
    let outline = flow.add("outline", Outline);
    let write = flow.add("write", Write);
    let assemble = flow.add("assemble", Assemble);
    flow.edge(outline >> write >> assemble);
    let mut runtime = start;
    flow.run(&mut runtime).unwrap();

    assert_eq!(typed, runtime);
    assert_eq!(typed.sections.len(), 3);
    assert!(typed.text.starts_with("## what rust\n"), "{}", typed.text);
    assert!(flow.to_mermaid().contains("write (parallel batch)"), "{}", flow.to_mermaid());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_flow_nests_in_an_async_runtime_flow() {
    let mut outer = Flow::new("outer");
    outer.add("writer", Writer::new());
    let mut article = Article { topic: "tokio".into(), ..Article::default() };
    outer.run_async(&mut article).await.unwrap();
    assert_eq!(article.outline.len(), 3);
}
