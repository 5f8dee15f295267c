//! Checkpointed runs against hostile or unusual input: a crafted database,
//! batch flows resumed at the item they stopped in, parallel batch flows
//! resumed without paying again for their items' finished calls.

#![allow(clippy::unwrap_used)] // tests unwrap what they expect to succeed

mod durable_common;

use std::sync::atomic::{AtomicUsize, Ordering};

use durable_common::{backends, finished, tempdir};
use minllm::durable::SqliteCheckpointer;
use minllm::{Error, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

#[test]
fn a_crafted_database_cannot_make_the_engine_build_anything_but_plain_values() {
    struct Note;
    impl Node for Note {
        type Prep = ();
        type Exec = ();
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
            Ok(())
        }
        fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<()> {
            Ok(())
        }
        fn post(&self, store: &mut SharedStore, _: (), _: ()) -> NodeResult<()> {
            store.set("note", "written".to_string());
            Ok(())
        }
    }
    let dir = tempdir::Dir::new();
    let path = dir.path().join("runs.db");
    let mut flow = Flow::new("notes");
    flow.add("note", Note);
    let sqlite = SqliteCheckpointer::open(&path).unwrap();
    finished(flow.durable(&sqlite, "n").run(&mut SharedStore::new()).unwrap());
    // Someone rewrites the stored values: a type the program never registered,
    // and a registered type with a value that does not fit it.
    let hex = |v: serde_json::Value| v.to_string().bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let db = rusqlite::Connection::open(&path).unwrap();
    for (crafted, expected) in [
        (serde_json::json!({"type": "std::process::Command", "value": "rm -rf /"}), "not a plain type"),
        (serde_json::json!({"type": "u32", "value": "not a number"}), "invalid type"),
    ] {
        let fields = serde_json::json!({ "note": hex(crafted) }).to_string();
        db.execute("UPDATE checkpoints SET fields = ?1", [&fields]).unwrap();
        let mut store = SharedStore::new();
        let error = flow.durable(&sqlite, "n").load(None, &mut store).unwrap_err();
        assert!(matches!(error, Error::NotCheckpointable { .. }), "{error}");
        assert!(error.to_string().contains("store key `note`") && error.to_string().contains(expected), "{error}");
        assert!(store.is_empty(), "nothing was loaded");
    }
}

#[test]
fn a_batch_flow_resumes_at_the_item_that_failed() {
    use minllm::BatchFlow;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static HEALED: AtomicUsize = AtomicUsize::new(0);
    struct Translate;
    impl Node for Translate {
        type Prep = String;
        type Exec = String;
        type Action = ();
        fn prep(&self, _: &SharedStore, params: &Params) -> NodeResult<String> {
            Ok(params.get("lang")?)
        }
        fn exec(&self, lang: &String, _: &ExecContext) -> NodeResult<String> {
            SEEN.lock().unwrap().push(lang.clone());
            if lang == "fr" && HEALED.load(Ordering::SeqCst) == 0 {
                return Err("the model is down".into());
            }
            Ok(format!("hello in {lang}"))
        }
        fn post(&self, store: &mut SharedStore, _: String, text: String) -> NodeResult<()> {
            store.update_or_insert("texts", Vec::new, |v: &mut Vec<String>| v.push(text))?;
            Ok(())
        }
    }
    for (checkpointer, _dir) in backends() {
        SEEN.lock().unwrap().clear();
        HEALED.store(0, Ordering::SeqCst);
        let mut inner = Flow::new("translate");
        inner.add("translate", Translate);
        let languages = BatchFlow::new(inner, |_: &SharedStore, _: &Params| {
            Ok(["de", "es", "fr", "it"].iter().map(|l| Params::new().with("lang", *l)).collect())
        })
        .post(|store: &mut SharedStore, list: Vec<Params>| {
            store.set("done", list.len() as u64);
            Ok(())
        });
        let mut outer = Flow::new("outer");
        outer.add("languages", languages);
        let run = outer.durable(&*checkpointer, "b");
        let error = run.run(&mut SharedStore::new()).unwrap_err();
        assert!(
            error.to_string().contains("outer > languages[2] > translate")
                || error.to_string().contains("languages[2]"),
            "{error}"
        );
        let nodes: Vec<_> = run.history().unwrap().into_iter().map(|c| c.node).collect();
        assert_eq!(
            nodes,
            ["languages > [0] > translate", "languages > [1] > translate", "languages > [2] > translate"]
        );
        HEALED.store(1, Ordering::SeqCst);
        let mut store = SharedStore::new();
        finished(run.resume(&mut store).unwrap());
        assert_eq!(
            store.get::<Vec<String>>("texts").unwrap(),
            ["hello in de", "hello in es", "hello in fr", "hello in it"]
        );
        assert_eq!(store.get::<u64>("done"), Some(4));
        assert_eq!(
            *SEEN.lock().unwrap(),
            ["de", "es", "fr", "fr", "it"],
            "the items before the failure did not run again"
        );
    }
}

/// A parallel batch flow's items: `fetch` (the paid call, failing once for
/// `fr` until healed) then `keep` (a loop of two visits, to tell the two apart).
mod parallel_items {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use minllm::{BatchFlow, ExecContext, Flow, Node, NodeResult, Params, SharedStore};

    pub static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    pub static HEALED: AtomicUsize = AtomicUsize::new(0);

    struct Fetch;
    impl Node for Fetch {
        type Prep = String;
        type Exec = String;
        type Action = ();
        fn prep(&self, _: &SharedStore, params: &Params) -> NodeResult<String> {
            Ok(params.get("lang")?)
        }
        fn exec(&self, lang: &String, _: &ExecContext) -> NodeResult<String> {
            CALLS.lock().unwrap().push(format!("fetch {lang}"));
            if lang == "fr" && HEALED.load(Ordering::SeqCst) == 0 {
                return Err("the model is down".into());
            }
            Ok(format!("hello in {lang}"))
        }
        fn post(&self, store: &mut SharedStore, lang: String, text: String) -> NodeResult<()> {
            store.set(format!("text {lang}"), text);
            Ok(())
        }
    }

    /// Visited twice per item: its `exec` counts, its `post` appends.
    struct Keep;
    impl Node for Keep {
        type Prep = (String, usize);
        type Exec = String;
        type Action = &'static str;
        fn prep(&self, store: &SharedStore, params: &Params) -> NodeResult<(String, usize)> {
            let lang: String = params.get("lang")?;
            let kept = store.get::<Vec<String>>(&format!("kept {lang}")).map_or(0, |v| v.len());
            Ok((lang, kept))
        }
        fn exec(&self, (lang, kept): &(String, usize), _: &ExecContext) -> NodeResult<String> {
            CALLS.lock().unwrap().push(format!("keep {lang} {kept}"));
            Ok(format!("{lang} #{kept}"))
        }
        fn post(&self, store: &mut SharedStore, (lang, _): (String, usize), line: String) -> NodeResult<&'static str> {
            let key = format!("kept {lang}");
            store.update_or_insert(&key, Vec::new, |v: &mut Vec<String>| v.push(line))?;
            Ok(if store.get::<Vec<String>>(&key).map_or(0, |v| v.len()) < 2 { "again" } else { "done" })
        }
    }

    pub const LANGS: [&str; 6] = ["de", "es", "fr", "it", "nl", "pt"];

    pub fn flow() -> Flow {
        let mut inner = Flow::new("translate");
        let fetch = inner.add("fetch", Fetch);
        let keep = inner.add("keep", Keep);
        inner.edge(fetch >> keep).edge(keep.on("again") >> keep).edge(keep.on("done") >> minllm::End).max_steps(10);
        let languages = BatchFlow::new(inner, |_: &SharedStore, _: &Params| {
            Ok(LANGS.iter().map(|l| Params::new().with("lang", *l)).collect())
        })
        .limit(3)
        .post(|store: &mut SharedStore, list: Vec<Params>| {
            store.set("done", list.len() as u64);
            Ok(())
        });
        let mut outer = Flow::new("outer");
        outer.add("languages", languages);
        outer
    }

    /// How many times each call was made.
    pub fn counts() -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for call in CALLS.lock().unwrap().iter() {
            *counts.entry(call.clone()).or_default() += 1;
        }
        counts
    }
}

#[test]
fn a_parallel_batch_flow_resumed_after_a_failure_pays_no_finished_call_again() {
    use parallel_items::{CALLS, HEALED, LANGS, counts, flow};
    for is_async in [false, true] {
        for (checkpointer, _dir) in backends() {
            CALLS.lock().unwrap().clear();
            HEALED.store(0, Ordering::SeqCst);
            let outer = flow();
            let run = outer.durable(&*checkpointer, "p");
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
            let mut store = SharedStore::new();
            let error = if is_async {
                runtime.block_on(run.run_async(&mut store)).unwrap_err()
            } else {
                run.run(&mut store).unwrap_err()
            };
            assert!(error.to_string().contains("node `fetch` in flow `outer > languages[2]`"), "{error}");
            let before = counts();
            HEALED.store(1, Ordering::SeqCst);
            let mut store = SharedStore::new();
            let outcome =
                if is_async { runtime.block_on(run.resume_async(&mut store)) } else { run.resume(&mut store) };
            finished(outcome.unwrap());
            for lang in LANGS {
                assert_eq!(store.get::<String>(&format!("text {lang}")).unwrap(), format!("hello in {lang}"));
                assert_eq!(
                    store.get::<Vec<String>>(&format!("kept {lang}")).unwrap(),
                    [format!("{lang} #0"), format!("{lang} #1")]
                );
            }
            assert_eq!(store.get::<u64>("done"), Some(6));
            // Every call ran once in all, but the failed one, which ran twice.
            // A sync run's items stop between nodes, after their `exec` is
            // recorded; an async run drops the futures of the other items at
            // the failure, so the calls then in flight (2 at most, with a
            // limit of 3) may run again.
            let after = counts();
            let mut again = 0;
            for lang in LANGS {
                let fetches = after.get(&format!("fetch {lang}")).copied().unwrap_or(0);
                again += fetches - usize::from(lang == "fr") - 1;
                for kept in 0..2 {
                    again += after.get(&format!("keep {lang} {kept}")).copied().unwrap_or(0) - 1;
                }
            }
            assert_eq!(after["fetch fr"], 2, "{after:?}");
            let in_flight = if is_async { 2 } else { 0 };
            assert!(again <= in_flight, "async {is_async}: {again} calls ran again: {after:?} (before {before:?})");
        }
    }
}

#[test]
fn interrupt_inside_a_parallel_batch_flow_item_says_why_it_cannot_pause() {
    use minllm::BatchFlow;
    use minllm::durable::{MemoryCheckpointer, interrupt};
    struct Ask;
    impl Node for Ask {
        type Prep = ();
        type Exec = String;
        type Action = ();
        fn prep(&self, _: &SharedStore, _: &Params) -> NodeResult<()> {
            Ok(())
        }
        fn exec(&self, _: &(), _: &ExecContext) -> NodeResult<String> {
            interrupt("publish?")
        }
        fn post(&self, _: &mut SharedStore, _: (), _: String) -> NodeResult<()> {
            Ok(())
        }
    }
    let mut inner = Flow::new("item");
    inner.add("ask", Ask);
    let batch = BatchFlow::new(inner, |_: &SharedStore, _: &Params| Ok(vec![Params::new(), Params::new()])).parallel();
    let mut outer = Flow::new("outer");
    outer.add("all", batch);
    let checkpoints = MemoryCheckpointer::new();
    let error = outer.durable(&checkpoints, "i").run(&mut SharedStore::new()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("node `ask` in flow `outer > all["), "{text}");
    assert!(text.contains("cannot pause inside the items of batch flow `all`"), "{text}");
    assert!(text.contains("make the batch flow sequential"), "{text}");
}
