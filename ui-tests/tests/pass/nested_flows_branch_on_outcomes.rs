//! A flow nested in another: the parent branches on the child's typed outcome.
use minllm::{flow, node, Action};

#[derive(Default)]
struct Doc {
    text: String,
    log: Vec<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Check {
    Clean,
    Dirty,
}

#[derive(Clone, Copy, Debug, PartialEq, Action)]
enum Review {
    Approved,
    Rejected,
}

#[derive(Default)]
struct Lint;

#[node]
impl Lint {
    fn prep(&self, d: &Doc) -> String {
        d.text.clone()
    }
    fn exec(&self, text: &str) -> Check {
        if text.contains("TODO") { Check::Dirty } else { Check::Clean }
    }
    fn post(&self, d: &mut Doc, c: Check) -> Check {
        d.log.push("lint");
        c
    }
}

#[derive(Default)]
struct Note(&'static str);

#[node]
impl Note {
    fn exec(&self) {}
    fn post(&self, d: &mut Doc) {
        d.log.push(self.0);
    }
}

flow! {
    /// Reviews a document.
    pub struct ReviewFlow: Doc {
        node lint: Lint;
        start lint;
        lint - Check::Clean >> end(Review::Approved);
        lint - Check::Dirty >> end(Review::Rejected);
    }
}

flow! {
    pub struct Publish: Doc {
        node review: ReviewFlow;
        node publish: Note = Note("publish");
        node fix: Note = Note("fix");
        start review;
        review - Review::Approved >> publish;
        review - Review::Rejected >> fix;
    }
}

fn main() {
    let mut doc = Doc { text: "all done".into(), ..Doc::default() };
    Publish::new().run(&mut doc).unwrap();
    assert_eq!(doc.log, ["lint", "publish"]);

    let mut doc = Doc { text: "TODO: write".into(), ..Doc::default() };
    Publish::new().run(&mut doc).unwrap();
    assert_eq!(doc.log, ["lint", "fix"]);
    assert_eq!(ReviewFlow::new().run(&mut doc).unwrap(), Review::Rejected);
    assert!(Publish::MERMAID.contains("n0 -->|\"approved\"| n1"), "{}", Publish::MERMAID);
}
