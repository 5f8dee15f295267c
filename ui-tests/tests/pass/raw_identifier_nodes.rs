//! Nodes named with raw identifiers (keywords), in a sync and an async flow.
use minllm::{flow, node};

#[derive(Default)]
struct State {
    seen: Vec<&'static str>,
}

#[derive(Default)]
struct Note;

#[node(blocking = false)]
impl Note {
    fn exec(&self) -> &'static str {
        "note"
    }
    fn post(&self, s: &mut State, note: &'static str) {
        s.seen.push(note);
    }
}

flow! {
    struct Keywords: State {
        node r#type: Note;
        node r#loop: Note;
        start r#type;
        r#type >> r#loop;
    }
}

flow! {
    async struct AsyncKeywords: State {
        node r#type: Note;
        node r#loop: Note;
        start r#type;
        r#type >> r#loop;
    }
}

fn main() {
    let mut state = State::default();
    Keywords::new().run(&mut state).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(AsyncKeywords::new().run(&mut state)).unwrap();
    assert_eq!(state.seen, ["note"; 4]);
}
