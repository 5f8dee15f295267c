//! Checkpointed and streamed async runs: async nodes, sync nodes whose `exec`
//! goes to tokio's blocking pool, async batches, on current-thread and
//! multi-thread runtimes.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minllm::durable::{MemoryCheckpointer, Outcome, interrupt};
use minllm::events::{EventKind, emit};
use minllm::{AsyncBatchMode, AsyncBatchNode, AsyncNode, ExecContext, Flow, Node, NodeResult, Params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    draft: String,
    verdict: Option<String>,
    lengths: Vec<usize>,
}

/// Writes a draft with an async "model call", counting the calls.
struct Draft(Arc<AtomicUsize>);

impl AsyncNode<Doc> for Draft {
    type Prep = ();
    type Exec = String;
    type Action = ();
    async fn prep(&self, _: &Doc, _: &Params) -> NodeResult<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: &ExecContext<'_>) -> NodeResult<String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        for token in ["a ", "fine ", "draft"] {
            emit(token);
            tokio::task::yield_now().await;
        }
        Ok("a fine draft".into())
    }
    async fn post(&self, doc: &mut Doc, _: (), draft: String) -> NodeResult<()> {
        doc.draft = draft;
        Ok(())
    }
}

/// Asks a human, from an async `exec`.
struct Review;

impl AsyncNode<Doc> for Review {
    type Prep = String;
    type Exec = String;
    type Action = ();
    async fn prep(&self, doc: &Doc, _: &Params) -> NodeResult<String> {
        Ok(doc.draft.clone())
    }
    async fn exec(&self, draft: &String, _: &ExecContext<'_>) -> NodeResult<String> {
        tokio::task::yield_now().await;
        interrupt(format!("publish `{draft}`?"))
    }
    async fn post(&self, doc: &mut Doc, _: String, verdict: String) -> NodeResult<()> {
        doc.verdict = Some(verdict);
        Ok(())
    }
}

/// A sync node whose `exec` may block: it runs on tokio's blocking pool.
struct Measure(Arc<AtomicUsize>);

impl Node<Doc> for Measure {
    type Prep = String;
    type Exec = usize;
    type Action = ();
    fn prep(&self, doc: &Doc, _: &Params) -> NodeResult<String> {
        Ok(doc.draft.clone())
    }
    fn exec(&self, draft: &String, _: &ExecContext) -> NodeResult<usize> {
        self.0.fetch_add(1, Ordering::SeqCst);
        emit("measuring");
        Ok(draft.len())
    }
    fn post(&self, doc: &mut Doc, _: String, len: usize) -> NodeResult<()> {
        doc.lengths.push(len);
        Ok(())
    }
}

/// An async batch over the draft's words; fails on "fine" until healed.
struct Words {
    calls: Arc<AtomicUsize>,
    healed: Arc<AtomicUsize>,
}

impl AsyncBatchNode<Doc> for Words {
    type Item = String;
    type Output = usize;
    type Action = ();
    async fn prep(&self, doc: &Doc, _: &Params) -> NodeResult<Vec<String>> {
        Ok(doc.draft.split(' ').map(str::to_owned).collect())
    }
    async fn exec(&self, word: &String, _: &ExecContext<'_>) -> NodeResult<usize> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if word == "fine" && self.healed.load(Ordering::SeqCst) == 0 {
            return Err("the model is down".into());
        }
        Ok(word.len())
    }
    async fn post(&self, doc: &mut Doc, _: Vec<String>, lengths: Vec<usize>) -> NodeResult<()> {
        doc.lengths.extend(lengths);
        Ok(())
    }
    fn mode(&self) -> AsyncBatchMode {
        AsyncBatchMode::Sequential
    }
}

struct Counts {
    drafts: Arc<AtomicUsize>,
    measures: Arc<AtomicUsize>,
    words: Arc<AtomicUsize>,
    healed: Arc<AtomicUsize>,
}

fn pipeline() -> (Flow<Doc>, Counts) {
    let counts =
        Counts { drafts: Arc::default(), measures: Arc::default(), words: Arc::default(), healed: Arc::default() };
    let mut flow = Flow::new("publish");
    let draft = flow.add("draft", Draft(Arc::clone(&counts.drafts)));
    let measure = flow.add("measure", Measure(Arc::clone(&counts.measures)));
    let words = flow.add("words", Words { calls: Arc::clone(&counts.words), healed: Arc::clone(&counts.healed) });
    let review = flow.add("review", Review);
    flow.edge(draft >> measure >> words >> review);
    (flow, counts)
}

async fn pause_fail_and_resume() {
    let (flow, counts) = pipeline();
    let checkpoints = MemoryCheckpointer::new();
    let run = flow.durable(&checkpoints, "doc-1");
    // The batch fails at its second item: the first is recorded.
    let error = run.run_async(&mut Doc::default()).await.unwrap_err();
    assert!(error.to_string().contains("the model is down"), "{error}");
    counts.healed.store(1, Ordering::SeqCst);
    let Outcome::Paused(pause) = run.resume_async(&mut Doc::default()).await.unwrap() else { panic!("asks") };
    assert_eq!(pause.question::<String>().unwrap(), "publish `a fine draft`?");
    let mut doc = Doc::default();
    let outcome = run.resume_with_async(&mut doc, "yes").await.unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
    assert_eq!(doc.verdict.as_deref(), Some("yes"));
    assert_eq!(doc.lengths, [12, 1, 4, 5]);
    assert_eq!(counts.drafts.load(Ordering::SeqCst), 1, "the draft was written once");
    assert_eq!(counts.measures.load(Ordering::SeqCst), 1, "the blocking exec ran once");
    // Items: "a" once, "fine" failing then healed, "draft" once.
    assert_eq!(counts.words.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_run_fails_pauses_and_resumes_on_a_current_thread_runtime() {
    pause_fail_and_resume().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_run_fails_pauses_and_resumes_on_a_multi_thread_runtime() {
    pause_fail_and_resume().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_stream_carries_tokens_from_async_and_offloaded_hooks() {
    let (mut flow, counts) = pipeline();
    counts.healed.store(1, Ordering::SeqCst);
    let mut plain = Flow::new("plain");
    let draft = plain.add("draft", Draft(Arc::clone(&counts.drafts)));
    let measure = plain.add("measure", Measure(Arc::clone(&counts.measures)));
    plain.edge(draft >> measure);
    let mut seen = Vec::new();
    let mut doc = Doc::default();
    plain
        .stream_async(&mut doc, async |mut events| {
            while let Some(event) = events.next().await {
                seen.push(event);
            }
        })
        .await
        .unwrap();
    let custom: Vec<_> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Custom(v) => Some(format!("{}:{}", e.node, v.as_str().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(custom, ["draft:a ", "draft:fine ", "draft:draft", "measure:measuring"]);
    assert_eq!(seen.first().unwrap().kind, EventKind::NodeStarted);
    assert_eq!(doc.lengths, [12]);
    // A checkpointed async stream pauses like a run.
    flow.max_steps(10);
    let checkpoints = MemoryCheckpointer::new();
    let mut kinds = Vec::new();
    let outcome = flow
        .durable(&checkpoints, "s")
        .stream_async(&mut Doc::default(), async |mut events| {
            while let Some(event) = events.next().await {
                kinds.push(event.kind.name());
            }
        })
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Paused(_)));
    assert_eq!(kinds.last(), Some(&"node_started"), "the review started, then paused");
}
