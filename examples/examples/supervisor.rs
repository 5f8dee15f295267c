//! Supervisor: an inner agent flow (look up notes, then answer) runs as one
//! node of an outer flow, whose supervisor checks each answer against the
//! notes and sends the agent back with its feedback until it approves, three
//! rounds at most.
//!
//! `cargo run -p minllm-examples --example supervisor -- "How do bees find flowers?"`

use minllm::{Action, BoxError, flow, node};
use minllm_examples::client::{Format, Message, Reply, Request, Role};
use minllm_examples::embed::{cosine, hashed};
use minllm_examples::model::Model;
use serde::Deserialize;
use serde_json::json;

/// Answers the supervisor reads at most.
const ROUNDS: usize = 3;

#[derive(Debug, Default)]
struct Task {
    question: String,
    notes: String,
    answer: String,
    feedback: Vec<String>,
    approved: bool,
}

// ---- the inner agent ----

/// Finds the passage of the library closest to the question.
#[derive(Default)]
struct LookUp;

#[node]
impl LookUp {
    fn prep(&self, t: &Task) -> String {
        t.question.clone()
    }
    fn exec(&self, question: &str) -> Result<String, BoxError> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
        let asked = hashed(question);
        let mut best = (f32::MIN, String::new());
        for entry in std::fs::read_dir(dir)? {
            for passage in
                std::fs::read_to_string(entry?.path())?.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
            {
                let score = cosine(&asked, &hashed(passage));
                if score > best.0 {
                    best = (score, passage.to_owned());
                }
            }
        }
        Ok(best.1)
    }
    fn post(&self, t: &mut Task, notes: String) {
        t.notes = notes;
    }
}

struct Respond {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Respond {
    fn prep(&self, t: &Task) -> (String, String, Option<String>) {
        (t.question.clone(), t.notes.clone(), t.feedback.last().cloned())
    }
    fn exec(&self, (question, notes, feedback): &(String, String, Option<String>)) -> Result<String, BoxError> {
        let mut messages = vec![
            Message::system("Answer the question in one sentence."),
            Message::user(format!("Notes: {notes}\n\nQuestion: {question}")),
        ];
        if let Some(feedback) = feedback {
            messages.push(Message::user(format!("Your last answer was rejected: {feedback}")));
        }
        Ok(self.model.chat(&Request::new(messages))?.content)
    }
    fn post(&self, t: &mut Task, answer: String) {
        println!("agent: {answer}");
        t.answer = answer;
    }
}

flow! {
    /// Look up the notes, answer.
    struct Agent: Task {
        node look_up: LookUp;
        node respond: Respond = _;
        start look_up;
        look_up >> respond;
    }
}

// ---- the supervisor ----

#[derive(Clone, Copy, Debug, Action)]
enum Review {
    Approve,
    Reject,
    GiveUp,
}

#[derive(Deserialize)]
struct Verdict {
    grounded: bool,
    feedback: String,
}

struct Supervise {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Supervise {
    fn prep(&self, t: &Task) -> (String, String) {
        (t.notes.clone(), t.answer.clone())
    }
    fn exec(&self, (notes, answer): &(String, String)) -> Result<Verdict, BoxError> {
        let schema = json!({"type": "object", "properties": {"grounded": {"type": "boolean"}, "feedback": {"type": "string"}},
            "required": ["grounded", "feedback"], "additionalProperties": false});
        let request = Request::new(vec![
            Message::system("You check that an answer says only what the notes say."),
            Message::user(format!("Notes: {notes}\n\nAnswer: {answer}")),
        ])
        .format(Format::Schema { name: "verdict".into(), schema });
        Ok(serde_json::from_str(&self.model.chat(&request)?.content)?)
    }
    fn post(&self, t: &mut Task, verdict: Verdict) -> Review {
        println!("supervisor: {}", if verdict.grounded { "approved" } else { &verdict.feedback });
        t.approved = verdict.grounded;
        if verdict.grounded {
            return Review::Approve;
        }
        t.feedback.push(verdict.feedback);
        if t.feedback.len() >= ROUNDS { Review::GiveUp } else { Review::Reject }
    }
}

flow! {
    /// The agent answers; the supervisor sends it back until the answer holds.
    struct Supervised: Task {
        node agent: Agent = _;
        node supervise: Supervise = _;
        start agent;
        max_steps 20;
        agent >> supervise;
        supervise - Review::Reject >> agent;
        supervise - Review::Approve >> end;
        supervise - Review::GiveUp >> end;
    }
}

/// The offline models. The agent's first answer guesses past its notes; told
/// so, it answers from them. The supervisor approves an answer whose every
/// longer word is in the notes.
fn script(request: &Request) -> Reply {
    let asked = request.messages.iter().filter(|m| m.role == Role::User).map(Message::text).collect::<Vec<_>>();
    if let Some(check) = asked.first().filter(|t| t.contains("\n\nAnswer: ")) {
        let (notes, answer) = check.split_once("\n\nAnswer: ").unwrap_or_default();
        let notes = notes.to_lowercase();
        let unsupported: Vec<&str> = answer
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 4 && !notes.contains(&w.to_lowercase()))
            .collect();
        let feedback = if unsupported.is_empty() {
            "fine".to_owned()
        } else {
            format!("the notes do not mention: {}", unsupported.join(", "))
        };
        return Reply::text(json!({"grounded": unsupported.is_empty(), "feedback": feedback}).to_string());
    }
    let notes =
        asked.first().and_then(|t| t.strip_prefix("Notes: ")).and_then(|t| t.split("\n\n").next()).unwrap_or("");
    if asked.len() == 1 {
        return Reply::text("Bees probably navigate with magnetic sensors and memory of landmarks.");
    }
    let sentence =
        notes.split_inclusive(". ").find(|s| s.contains("find")).or_else(|| notes.split_inclusive(". ").next());
    Reply::text(sentence.unwrap_or(notes).trim())
}

fn supervise(question: &str, model: Model) -> Result<Task, minllm::Error> {
    let flow = Supervised::new(Agent::new(Respond { model: model.clone() }), Supervise { model });
    let mut task = Task { question: question.to_owned(), ..Task::default() };
    flow.run(&mut task)?;
    Ok(task)
}

fn main() -> Result<(), BoxError> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "How do bees find flowers?".into());
    let task = supervise(&question, Model::from_env(script)?)?;
    let verdict = if task.approved { "approved" } else { "not approved" };
    println!("Q: {question}\nA: {} ({verdict} after {} rejections)", task.answer, task.feedback.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ungrounded_answer_is_sent_back_until_it_holds() {
        let task = supervise("How do bees find flowers?", Model::scripted(script)).unwrap();
        assert!(task.approved);
        assert_eq!(task.feedback.len(), 1);
        assert!(
            task.feedback[0].starts_with("the notes do not mention: probably, navigate, magnetic"),
            "{:?}",
            task.feedback
        );
        assert!(task.answer.contains("find the same flowers"), "{}", task.answer);
    }

    #[test]
    fn an_agent_that_never_gets_it_right_is_given_up_on() {
        let stubborn = Model::scripted(|request: &Request| {
            if request.format == Format::Text { Reply::text("Bees navigate by satellites.") } else { script(request) }
        });
        let task = supervise("How do bees find flowers?", stubborn).unwrap();
        assert!(!task.approved);
        assert_eq!(task.feedback.len(), ROUNDS);
    }
}
