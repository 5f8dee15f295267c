//! Structured output: the model turns a free-text note into a typed `Contact`
//! (serde), asked for JSON that fits a schema; an answer that does not parse
//! is sent back with the parse error, and the model tries again (three tries).
//!
//! `cargo run -p minllm-examples --example structured -- "Met Grace Hopper (grace@navy.mil) at Navy; knows COBOL, compilers."`

use minllm::{BoxError, flow, node};
use minllm_examples::client::{Format, Message, Reply, Request, Role};
use minllm_examples::model::Model;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What the model must fill in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contact {
    name: String,
    email: String,
    company: String,
    skills: Vec<String>,
}

#[derive(Debug, Default)]
struct Card {
    note: String,
    contact: Option<Contact>,
    tries: usize,
}

/// The schema the model is asked to follow.
fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "email": {"type": "string"},
            "company": {"type": "string"},
            "skills": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["name", "email", "company", "skills"],
        "additionalProperties": false
    })
}

/// Asks for the contact; a malformed answer goes back with its error.
struct Extract {
    model: Model,
}

#[node(attempts = 2, wait_ms = 500)]
impl Extract {
    fn prep(&self, card: &Card) -> String {
        card.note.clone()
    }
    fn exec(&self, note: &str) -> Result<(Contact, usize), BoxError> {
        let mut messages =
            vec![Message::system("Extract the contact from the note. Answer with JSON only."), Message::user(note)];
        let format = Format::Schema { name: "contact".into(), schema: schema() };
        let mut last_error = String::new();
        for tries in 1..=3 {
            let reply = self.model.chat(&Request::new(messages.clone()).format(format.clone()))?;
            match serde_json::from_str::<Contact>(reply.content.trim()) {
                Ok(contact) => return Ok((contact, tries)),
                Err(error) => {
                    last_error = error.to_string();
                    messages.push(Message::assistant(reply.content));
                    messages.push(Message::user(format!(
                        "That is not valid: {error}. Answer again with only the JSON object, with all four fields."
                    )));
                }
            }
        }
        Err(format!("no valid contact after 3 tries: {last_error}").into())
    }
    fn post(&self, card: &mut Card, (contact, tries): (Contact, usize)) {
        card.contact = Some(contact);
        card.tries = tries;
    }
}

#[derive(Default)]
struct Show;

#[node(blocking = false)]
impl Show {
    fn prep(&self, card: &Card) -> (Option<Contact>, usize) {
        (card.contact.clone(), card.tries)
    }
    fn exec(&self, (contact, tries): &(Option<Contact>, usize)) -> Result<String, BoxError> {
        Ok(format!("{} (after {tries} tries)", serde_json::to_string_pretty(contact)?))
    }
    fn post(&self, _: &mut Card, text: String) {
        println!("{text}");
    }
}

flow! {
    struct ToContact: Card {
        node extract: Extract = _;
        node show: Show;
        start extract;
        extract >> show;
    }
}

/// The offline model: reads the note with simple rules. Its first answer
/// forgets a field, as models do; it fixes it once told the error.
fn script(request: &Request) -> Reply {
    let note = request.messages.iter().find(|m| m.role == Role::User).map_or("", Message::text);
    let words: Vec<&str> =
        note.split(|c: char| c.is_whitespace() || "(),;".contains(c)).filter(|w| !w.is_empty()).collect();
    let email = words.iter().find(|w| w.contains('@')).map_or("", |w| w.trim_end_matches('.'));
    let capitalized: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| w.chars().next().is_some_and(char::is_uppercase) && !w.contains('@'))
        .collect();
    let name = capitalized.iter().skip(1).take(2).copied().collect::<Vec<_>>().join(" ");
    let company = note.split(" at ").nth(1).and_then(|r| r.split([';', ',', '.']).next()).unwrap_or("").trim();
    let skills: Vec<String> = note
        .split("knows ")
        .nth(1)
        .map(|r| {
            r.split([',', ' '])
                .map(|s| s.trim_matches(['.', ' ']))
                .filter(|s| !s.is_empty() && *s != "and")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let told = request.messages.iter().any(|m| m.role == Role::User && m.text().starts_with("That is not valid"));
    let mut answer = json!({"name": name, "email": email, "company": company, "skills": skills});
    if !told && let Some(fields) = answer.as_object_mut() {
        fields.remove("skills");
    }
    Reply::text(answer.to_string())
}

fn extract(note: &str, model: Model) -> Result<Card, minllm::Error> {
    let mut card = Card { note: note.to_owned(), ..Card::default() };
    ToContact::new(Extract { model }).run(&mut card)?;
    Ok(card)
}

fn main() -> Result<(), BoxError> {
    let note = std::env::args().nth(1).unwrap_or_else(|| {
        "Met Ada Lovelace (ada@analytical.org) at Analytical Engines; knows mathematics, poetry, programming.".into()
    });
    extract(&note, Model::from_env(script)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_answer_is_sent_back_with_its_error_and_fixed() {
        let card =
            extract("Met Grace Hopper (grace@navy.mil) at US Navy; knows COBOL, compilers.", Model::scripted(script))
                .unwrap();
        assert_eq!(card.tries, 2, "the first answer lacked `skills`");
        assert_eq!(
            card.contact.unwrap(),
            Contact {
                name: "Grace Hopper".into(),
                email: "grace@navy.mil".into(),
                company: "US Navy".into(),
                skills: vec!["COBOL".into(), "compilers".into()],
            }
        );
    }

    #[test]
    fn a_model_that_never_fits_the_schema_fails_with_the_last_error() {
        let stubborn = Model::scripted(|_: &Request| Reply::text("Sure! Here is the contact: {}"));
        let error = extract("Met someone.", stubborn).unwrap_err().to_string();
        assert!(error.contains("no valid contact after 3 tries: expected value"), "{error}");
        assert!(error.contains("after 2 attempts"), "the node's own retry ran too: {error}");
    }
}
