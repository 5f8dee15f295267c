//! Checkpointed and streamed runs of flows made by `flow!`, sync and async.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::sync::atomic::{AtomicUsize, Ordering};

use minllm::durable::{MemoryCheckpointer, Outcome, interrupt};
use minllm::events::{EventKind, emit};
use minllm::{Action, AsyncNode, ExecContext, NodeResult, Params, flow, node};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Essay {
    outline: Vec<String>,
    draft: String,
    reviews: u32,
    approved: Option<String>,
}

static DRAFTS: AtomicUsize = AtomicUsize::new(0);
/// The tests that run `Draft` take turns, so that `DRAFTS` counts one test's calls.
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Action)]
enum Review {
    Rewrite,
    Good,
}

struct Outline;

#[node]
impl Outline {
    fn prep(&self, _: &Essay) {}
    fn exec(&self, _: &()) -> Vec<String> {
        vec!["intro".into(), "body".into()]
    }
    fn post(&self, essay: &mut Essay, _: (), outline: Vec<String>) {
        essay.outline = outline;
    }
}

struct Draft;

#[node]
impl Draft {
    fn prep(&self, essay: &Essay) -> usize {
        essay.outline.len()
    }
    fn exec(&self, parts: &usize) -> String {
        DRAFTS.fetch_add(1, Ordering::SeqCst);
        emit("drafting");
        format!("{parts} parts")
    }
    fn post(&self, essay: &mut Essay, _: usize, draft: String) {
        essay.draft = draft;
    }
}

struct Check;

#[node]
impl Check {
    fn prep(&self, essay: &Essay) -> u32 {
        essay.reviews
    }
    fn exec(&self, reviews: &u32) -> NodeResult<String> {
        // A person reviews: the second review approves.
        interrupt(format!("review #{}?", reviews + 1))
    }
    fn post(&self, essay: &mut Essay, _: u32, verdict: String) -> Review {
        essay.reviews += 1;
        if verdict == "ok" {
            essay.approved = Some(verdict);
            Review::Good
        } else {
            Review::Rewrite
        }
    }
}

flow! {
    /// Outline, draft, then a human review that may send it back.
    struct Writing: Essay {
        node outline: Outline = Outline;
        node draft: Draft = Draft;
        node check: Check = Check;
        start outline;
        max_steps 20;
        outline >> draft >> check;
        check - Review::Rewrite >> draft;
        check - Review::Good >> end;
    }
}

#[test]
fn a_flow_macro_flow_pauses_for_reviews_and_resumes_from_its_checkpoints() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    DRAFTS.store(0, Ordering::SeqCst);
    let flow = Writing::new();
    let checkpoints = MemoryCheckpointer::new();
    let run = flow.durable(&checkpoints, "essay");
    let Outcome::Paused(first) = run.run(&mut Essay::default()).unwrap() else { panic!("asks") };
    assert_eq!(first.question::<String>().unwrap(), "review #1?");
    assert_eq!(first.node(), "check");
    let Outcome::Paused(second) = run.resume_with(&mut Essay::default(), "again").unwrap() else {
        panic!("asks again after the rewrite")
    };
    assert_eq!(second.question::<String>().unwrap(), "review #2?");
    let mut essay = Essay::default();
    let outcome = run.resume_with(&mut essay, "ok").unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
    assert_eq!(essay.approved.as_deref(), Some("ok"));
    assert_eq!(essay.reviews, 2);
    assert_eq!(essay.outline, ["intro", "body"]);
    assert_eq!(DRAFTS.load(Ordering::SeqCst), 2, "one draft, one rewrite: nothing paid twice");
    let nodes: Vec<_> = run.history().unwrap().iter().map(|c| format!("{} {}", c.node, c.status)).collect();
    assert_eq!(
        nodes,
        [
            "outline running",
            "draft running",
            "check running",
            "check paused",
            "draft running",
            "check running",
            "check paused",
            "check finished"
        ]
    );
}

#[test]
fn a_flow_macro_flow_streams_its_events() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let flow = Writing::new();
    let mut kinds = Vec::new();
    // Without checkpoints the review's interrupt is an error, after the events so far.
    let error = flow
        .stream(&mut Essay::default(), |events| {
            kinds.extend(events.map(|e| format!("{} {}", e.kind.name(), e.node)));
        })
        .unwrap_err();
    assert!(error.to_string().contains("needs a checkpointed run"), "{error}");
    assert_eq!(
        kinds,
        [
            "node_started outline",
            "node_finished outline",
            "node_started draft",
            "custom draft",
            "node_finished draft",
            "node_started check"
        ]
    );
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Ticket {
    answer: Option<String>,
    tokens: Vec<String>,
}

struct Ask;

impl AsyncNode<Ticket> for Ask {
    type Prep = ();
    type Exec = String;
    type Action = ();
    async fn prep(&self, _: &Ticket, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: &ExecContext<'_>) -> NodeResult<String> {
        tokio::task::yield_now().await;
        emit("asking");
        interrupt("which plan?")
    }
    async fn post(&self, ticket: &mut Ticket, _: (), answer: String) -> NodeResult<()> {
        ticket.answer = Some(answer);
        Ok(())
    }
}

flow! {
    async struct Support: Ticket {
        node ask: Ask = Ask;
        start ask;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_flow_macro_flow_pauses_and_resumes() {
    let flow = Support::new();
    let checkpoints = MemoryCheckpointer::new();
    let run = flow.durable(&checkpoints, "t");
    let refused = run.run(&mut Ticket::default()).unwrap_err();
    assert!(refused.to_string().contains("use the `_async` methods"), "{refused}");
    let mut seen = Vec::new();
    let outcome = run
        .stream_async(&mut Ticket::default(), async |mut events| {
            while let Some(event) = events.next().await {
                seen.push(event.kind);
            }
        })
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Paused(_)));
    assert_eq!(seen, [EventKind::NodeStarted, EventKind::Custom("asking".into())]);
    let mut ticket = Ticket::default();
    assert!(matches!(run.resume_with_async(&mut ticket, "pro").await.unwrap(), Outcome::Finished(_)));
    assert_eq!(ticket.answer.as_deref(), Some("pro"));
}

flow! {
    /// `Writing` nested in another flow: its nodes are checkpointed one level down.
    struct Publishing: Essay {
        node writing: Writing = Writing::new();
        start writing;
    }
}

#[test]
fn a_flow_macro_flow_nested_in_another_resumes_inside_it() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    DRAFTS.store(0, Ordering::SeqCst);
    let flow = Publishing::new();
    let checkpoints = MemoryCheckpointer::new();
    let run = flow.durable(&checkpoints, "nested");
    let Outcome::Paused(first) = run.run(&mut Essay::default()).unwrap() else { panic!("asks") };
    assert_eq!(first.node(), "writing > check");
    let Outcome::Paused(_) = run.resume_with(&mut Essay::default(), "again").unwrap() else { panic!("asks again") };
    let mut essay = Essay::default();
    assert!(matches!(run.resume_with(&mut essay, "ok").unwrap(), Outcome::Finished(_)));
    assert_eq!(essay.reviews, 2);
    assert_eq!(essay.approved.as_deref(), Some("ok"));
    assert_eq!(DRAFTS.load(Ordering::SeqCst), 2, "the nested flow resumed at its own node, nothing paid twice");
    let nodes: Vec<_> = run.history().unwrap().iter().map(|c| c.node.clone()).collect();
    assert_eq!(nodes[..3], ["writing > outline", "writing > draft", "writing > check"]);
}

flow! {
    async struct SupportDesk: Ticket {
        node support: Support = Support::new();
        start support;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_flow_macro_flow_nested_in_another_pauses_inside_it() {
    let flow = SupportDesk::new();
    let checkpoints = MemoryCheckpointer::new();
    let run = flow.durable(&checkpoints, "desk");
    let Outcome::Paused(pause) = run.run_async(&mut Ticket::default()).await.unwrap() else { panic!("asks") };
    assert_eq!(pause.node(), "support > ask");
    let mut ticket = Ticket::default();
    assert!(matches!(run.resume_with_async(&mut ticket, "basic").await.unwrap(), Outcome::Finished(_)));
    assert_eq!(ticket.answer.as_deref(), Some("basic"));
}

#[test]
fn a_flow_macro_flow_inside_a_runtime_flow_replays_its_finished_nodes_and_pauses_inside() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for is_async in [false, true] {
        DRAFTS.store(0, Ordering::SeqCst);
        let mut outer = minllm::Flow::<Essay>::new("publish");
        outer.add("writing", Writing::new());
        let checkpoints = MemoryCheckpointer::new();
        let run = outer.durable(&checkpoints, "inside");
        let mut essay = Essay::default();
        let outcome = if is_async { runtime.block_on(run.run_async(&mut essay)) } else { run.run(&mut essay) };
        let Outcome::Paused(first) = outcome.unwrap() else { panic!("asks") };
        assert_eq!(first.question::<String>().unwrap(), "review #1?");
        assert_eq!(first.node(), "writing");
        let answer = |essay: &mut Essay, text: &str| {
            if is_async { runtime.block_on(run.resume_with_async(essay, text)) } else { run.resume_with(essay, text) }
        };
        let Outcome::Paused(second) = answer(&mut Essay::default(), "again").unwrap() else { panic!("asks again") };
        assert_eq!(second.question::<String>().unwrap(), "review #2?");
        let mut essay = Essay::default();
        assert!(matches!(answer(&mut essay, "ok").unwrap(), Outcome::Finished(_)));
        assert_eq!((essay.reviews, essay.approved.as_deref()), (2, Some("ok")));
        // One draft and one rewrite; the resumed runs read the finished ones back.
        assert_eq!(DRAFTS.load(Ordering::SeqCst), 2, "async {is_async}");
    }
}

#[test]
fn a_flow_macro_flow_inside_a_runtime_flow_streams_its_nodes() {
    let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    flow! {
        struct Quick: Essay {
            node outline: Outline = Outline;
            node draft: Draft = Draft;
            start outline;
            outline >> draft;
        }
    }
    let mut outer = minllm::Flow::<Essay>::new("publish");
    outer.add("quick", Quick::new());
    let mut seen = Vec::new();
    outer.stream(&mut Essay::default(), |events| seen.extend(events)).unwrap();
    let lines: Vec<String> = seen
        .iter()
        .map(|e| match &e.kind {
            EventKind::NodeStarted => format!("start {} {}", e.flow, e.node),
            EventKind::NodeFinished { action, .. } => format!("end {} {} {action}", e.flow, e.node),
            EventKind::Custom(v) => format!("emit {} {} {v}", e.flow, e.node),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        lines,
        [
            "start publish quick",
            "start publish > quick outline",
            "end publish > quick outline default",
            "start publish > quick draft",
            "emit publish > quick draft \"drafting\"",
            "end publish > quick draft default",
            "end publish quick default",
        ]
    );
}
