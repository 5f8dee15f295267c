//! Human in the loop: a post is drafted from the offline library, then the run
//! pauses for a person's approval and exits; nothing waits in memory. Later,
//! another process resumes it with the answer: "yes" publishes, anything else
//! is sent back as feedback for a new draft, which asks again. Checkpoints live
//! in a SQLite file, so a crash at any point loses nothing either.
//!
//! ```sh
//! cargo run -p minllm-examples --example approval -- start runs.db post-1 "bees"
//! cargo run -p minllm-examples --example approval -- answer runs.db post-1 "shorter please"
//! cargo run -p minllm-examples --example approval -- answer runs.db post-1 yes
//! cargo run -p minllm-examples --example approval -- history runs.db post-1
//! ```
//!
//! The same flow on Restate (see the README's "Scale-out on Restate"): `serve
//! 9080` serves it as the workflow `publish`; after registering the worker,
//! `POST localhost:8080/publish/post-1/run` with `{"topic": "bees"}` starts a
//! run, `/publish/post-1/status` shows the question, `/publish/post-1/answer`
//! with `"yes"` answers it, from any process, with any worker alive.

use std::path::PathBuf;
use std::process::ExitCode;

use minllm::durable::{Outcome, SqliteCheckpointer, interrupt};
use minllm::{End, ExecContext, Flow, Node, NodeResult, Params};
use minllm_examples::client::{Reply, Request};
use minllm_examples::llm;
use minllm_examples::model::Model;
use serde::{Deserialize, Serialize};

/// The store, saved at every step: serde types only.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Post {
    topic: String,
    feedback: Vec<String>,
    draft: String,
    published: bool,
}

/// Drafts a post from the library's text on the topic, with the feedback so far.
struct Draft {
    model: Model,
}

impl Node<Post> for Draft {
    type Prep = (String, Vec<String>);
    type Exec = String;
    type Action = ();
    fn prep(&self, post: &Post, _: &Params) -> NodeResult<(String, Vec<String>)> {
        Ok((post.topic.clone(), post.feedback.clone()))
    }
    fn exec(&self, (topic, feedback): &(String, Vec<String>), _: &ExecContext) -> NodeResult<String> {
        let mut prompt = format!("Write a one-sentence post about {topic} from this text.");
        for note in feedback {
            prompt.push_str(&format!("\nThe editor said: {note}"));
        }
        prompt.push_str(&format!("\n\n{}", library_text(topic)?));
        Ok(self.model.chat(&Request::prompt(prompt))?.content)
    }
    fn post(&self, post: &mut Post, _: (String, Vec<String>), draft: String) -> NodeResult<()> {
        post.draft = draft;
        Ok(())
    }
}

/// The offline model: the text's key sentence, four words shorter for each
/// note of the editor.
fn script(request: &Request) -> Reply {
    let asked = request.last_user();
    let (head, text) = asked.split_once("\n\n").unwrap_or((asked, ""));
    let rounds = head.matches("The editor said:").count();
    let summary = llm::summarize(text);
    let words: Vec<&str> = summary.split_whitespace().collect();
    let keep = words.len().saturating_sub(rounds * 4).max(6).min(words.len());
    Reply::text(words[..keep].join(" "))
}

/// Asks a person to approve the draft: the run pauses here until answered.
struct Review;

impl Node<Post> for Review {
    type Prep = String;
    type Exec = String;
    type Action = &'static str;
    fn prep(&self, post: &Post, _: &Params) -> NodeResult<String> {
        Ok(post.draft.clone())
    }
    fn exec(&self, draft: &String, _: &ExecContext) -> NodeResult<String> {
        interrupt(format!("Publish this? (yes, or what to change)\n\n  {draft}\n"))
    }
    fn post(&self, post: &mut Post, _: String, answer: String) -> NodeResult<&'static str> {
        if answer.trim().eq_ignore_ascii_case("yes") {
            post.published = true;
            return Ok("approved");
        }
        post.feedback.push(answer);
        Ok("revise")
    }
}

fn library_text(topic: &str) -> NodeResult<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let topic = topic.to_lowercase();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        if path.file_stem().is_some_and(|s| s.to_string_lossy().contains(&topic))
            || text.to_lowercase().contains(&topic)
        {
            return Ok(text);
        }
    }
    Err(format!("the library in {} has nothing on `{topic}`", dir.display()).into())
}

fn flow(model: Model) -> Flow<Post> {
    let mut flow = Flow::new("publish");
    let draft = flow.add("draft", Draft { model });
    let review = flow.add("review", Review);
    flow.edge(draft >> review).edge(review.on("revise") >> draft).edge(review.on("approved") >> End).max_steps(50);
    flow
}

/// Prints how a run ended; exit code 3 while it waits for an answer.
fn report(outcome: Outcome, post: &Post) -> ExitCode {
    match outcome {
        Outcome::Paused(pause) => {
            println!("paused at `{}`:\n{}", pause.node(), pause.question::<String>().unwrap_or_default());
            ExitCode::from(3)
        }
        Outcome::Finished(_) => {
            println!("published after {} rounds of feedback:\n\n  {}", post.feedback.len(), post.draft);
            ExitCode::SUCCESS
        }
    }
}

/// Serves the flow as a Restate workflow `publish` on `127.0.0.1:<port>`.
fn serve(port: &str) -> ExitCode {
    minllm_examples::local_restate::serve_worker(port, || {
        let model = Model::from_env(script).map_err(|e| e.to_string())?;
        minllm::restate::RestateFlow::new(flow(model)).definitions()
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let (Some("serve"), Some(port)) = (args.first().map(String::as_str), args.get(1)) {
        return serve(port);
    }
    let usage =
        "usage: approval start <db> <run> <topic> | answer <db> <run> <answer> | history <db> <run> | serve <port>";
    let (Some(command), Some(db), Some(run_id)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let checkpoints = match SqliteCheckpointer::open(db) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let model = match Model::from_env(script) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let flow = flow(model);
    let run = flow.durable(&checkpoints, run_id.as_str());
    let mut post = Post::default();
    let outcome = match (command.as_str(), args.get(3)) {
        ("start", Some(topic)) => {
            post.topic = topic.clone();
            run.run(&mut post)
        }
        ("answer", Some(answer)) => run.resume_with(&mut post, answer),
        ("history", None) => {
            for line in run.history().unwrap_or_default() {
                println!("{line}");
            }
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(outcome) => report(outcome, &post),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minllm::durable::MemoryCheckpointer;

    #[test]
    fn the_run_pauses_for_each_review_and_publishes_on_yes() {
        let (flow, checkpoints) = (flow(Model::scripted(script)), MemoryCheckpointer::new());
        let run = flow.durable(&checkpoints, "post-1");
        let mut post = Post { topic: "bees".into(), ..Post::default() };
        let Outcome::Paused(first) = run.run(&mut post).unwrap() else { panic!("it asks first") };
        let first = first.question::<String>().unwrap();
        assert!(first.starts_with("Publish this?") && first.contains("dance"), "{first}");
        // Each answer in a store of its own: it comes back from the checkpoint.
        let Outcome::Paused(second) = run.resume_with(&mut Post::default(), "shorter please").unwrap() else {
            panic!("it asks again")
        };
        assert!(second.question::<String>().unwrap().len() < first.len(), "the feedback made it shorter");
        let mut post = Post::default();
        assert!(matches!(run.resume_with(&mut post, "yes").unwrap(), Outcome::Finished(_)));
        assert!(post.published);
        assert_eq!(post.feedback, ["shorter please"]);
    }
}
