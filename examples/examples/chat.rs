//! Chat: a conversation loop with memory. `read` takes the user's next line
//! (from stdin), `reply` sends the whole conversation to the model and adds
//! its answer to it; the flow loops until the user says `bye` or the input
//! ends. The nodes that hold resources (the input, the model) are given to
//! `Chat::new(..)` (`= _` in the flow).
//!
//! `cargo run -p minllm-examples --example chat` (type lines; `bye` or Ctrl-D ends).
//! Offline by default; with `MINLLM_LLM_URL` (and `MINLLM_LLM_MODEL`,
//! `MINLLM_LLM_KEY`) a real model answers.

use std::io::BufRead as _;
use std::sync::Mutex;

use minllm::{Action, BoxError, flow, node};
use minllm_examples::client::{Message, Reply, Request, Role};
use minllm_examples::model::Model;

/// The conversation so far.
#[derive(Default)]
struct Conversation {
    messages: Vec<Message>,
}

#[derive(Clone, Copy, Debug, Action)]
enum Turn {
    Say,
    Bye,
}

/// Takes the user's next line.
struct Read {
    lines: Mutex<Box<dyn Iterator<Item = String> + Send>>,
}

#[node(blocking = false)]
impl Read {
    fn exec(&self) -> Option<String> {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.find(|l| !l.trim().is_empty())
    }
    fn post(&self, chat: &mut Conversation, line: Option<String>) -> Turn {
        match line {
            Some(line) if !line.trim().eq_ignore_ascii_case("bye") => {
                chat.messages.push(Message::user(line.trim()));
                Turn::Say
            }
            _ => Turn::Bye,
        }
    }
}

/// Answers with the whole conversation in view.
struct Respond {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Respond {
    fn prep(&self, chat: &Conversation) -> Vec<Message> {
        chat.messages.clone()
    }
    fn exec(&self, messages: &[Message]) -> Result<String, BoxError> {
        let mut conversation = vec![Message::system("You are a friendly assistant. Answer in one or two sentences.")];
        conversation.extend_from_slice(messages);
        Ok(self.model.chat(&Request::new(conversation))?.content)
    }
    fn post(&self, chat: &mut Conversation, answer: String) {
        println!("bot> {answer}");
        chat.messages.push(Message::assistant(answer));
    }
}

flow! {
    /// Read a line, answer it, again, until `bye`.
    struct Chat: Conversation {
        node read: Read = _;
        node respond: Respond = _;
        start read;
        max_steps 100_000;
        read - Turn::Say >> respond >> read;
        read - Turn::Bye >> end;
    }
}

/// The offline model: it remembers a name it was told, and answers the rest
/// with what it heard and how long the conversation is.
fn script(request: &Request) -> Reply {
    let said = request.last_user().trim_end_matches(['?', '!', '.']);
    let heard: Vec<&Message> = request.messages.iter().filter(|m| m.role == Role::User).collect();
    let name = heard.iter().rev().find_map(|m| {
        let text = m.text();
        let at = text.to_lowercase().find("my name is ")?;
        text[at + 11..].split_whitespace().next().map(|n| n.trim_matches(['.', '!', ',']).to_owned())
    });
    let lower = said.to_lowercase();
    Reply::text(if lower.contains("my name is") {
        format!("Nice to meet you, {}!", name.unwrap_or_default())
    } else if lower.contains("my name") {
        match name {
            Some(name) => format!("Your name is {name}."),
            None => "You have not told me your name yet.".to_owned(),
        }
    } else if ["hello", "hi", "hey"].iter().any(|g| lower.split_whitespace().any(|w| w == *g)) {
        "Hello! What would you like to talk about?".to_owned()
    } else {
        format!("You said \"{said}\". That is message {} of our conversation.", heard.len())
    })
}

fn chat(lines: impl Iterator<Item = String> + Send + 'static, model: Model) -> Result<Conversation, minllm::Error> {
    let flow = Chat::new(Read { lines: Mutex::new(Box::new(lines)) }, Respond { model });
    let mut conversation = Conversation::default();
    flow.run(&mut conversation)?;
    Ok(conversation)
}

fn main() -> Result<(), BoxError> {
    let model = Model::from_env(script)?;
    eprintln!("chatting with {} (type `bye` to end)", model.name());
    let lines = std::io::stdin().lock().lines().map_while(Result::ok).collect::<Vec<_>>();
    let conversation = chat(lines.into_iter(), model)?;
    eprintln!("{} messages", conversation.messages.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conversation_is_remembered_until_bye() {
        let lines = ["hello", "my name is Ada", "", "what is my name?", "bye", "never read"];
        let conversation = chat(lines.map(String::from).into_iter(), Model::scripted(script)).unwrap();
        let said: Vec<(Role, &str)> = conversation.messages.iter().map(|m| (m.role, m.text())).collect();
        assert_eq!(
            said,
            [
                (Role::User, "hello"),
                (Role::Assistant, "Hello! What would you like to talk about?"),
                (Role::User, "my name is Ada"),
                (Role::Assistant, "Nice to meet you, Ada!"),
                (Role::User, "what is my name?"),
                (Role::Assistant, "Your name is Ada."),
            ]
        );
    }

    #[test]
    fn the_end_of_the_input_ends_the_chat() {
        let conversation = chat(["tell me a story".to_owned()].into_iter(), Model::scripted(script)).unwrap();
        assert_eq!(conversation.messages.len(), 2);
        assert!(conversation.messages[1].text().contains("message 1 of our conversation"));
    }
}
