//! Checkpointed runs against hostile or unusual input: a crafted database,
//! and batch flows resumed at the item they stopped in.

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
