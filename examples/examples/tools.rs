//! Agent with tools: `decide` sends the conversation and three tools to the
//! model (search the library, a calculator, reading a file of the library);
//! when the model calls tools, `act` runs them and adds their results to the
//! conversation, and `decide` asks again; when it answers, the flow ends. The
//! tool calls go through the client (`tools` in the request, `tool_calls` in
//! the reply). A tool that fails tells the model why instead of failing the run.
//!
//! `cargo run -p minllm-examples --example tools -- "How do bees find flowers, and what is 6 * (3 + 4)?"`

use std::path::PathBuf;

use minllm::{Action, BoxError, flow, node};
use minllm_examples::client::{Message, Reply, Request, Role, Tool, ToolCall};
use minllm_examples::embed::{cosine, hashed};
use minllm_examples::llm;
use minllm_examples::model::Model;
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Agent {
    messages: Vec<Message>,
    pending: Vec<ToolCall>,
    used: Vec<String>,
    answer: String,
}

#[derive(Clone, Copy, Debug, Action)]
enum Next {
    Act,
    Answer,
}

/// The tools the model may call.
fn tools() -> Vec<Tool> {
    let one = |name: &str, about: &str| json!({"type": "object", "properties": {name: {"type": "string", "description": about}}, "required": [name]});
    vec![
        Tool::new("search", "Finds the passage of the library closest to a query", one("query", "what to look for")),
        Tool::new("calculator", "Evaluates arithmetic: + - * / and parentheses", one("expression", "e.g. 6 * (3 + 4)")),
        Tool::new("read_file", "Reads a document of the library", one("name", "the document, e.g. bees.txt")),
    ]
}

struct Decide {
    model: Model,
}

#[node(attempts = 3, wait_ms = 500)]
impl Decide {
    fn prep(&self, agent: &Agent) -> Vec<Message> {
        agent.messages.clone()
    }
    fn exec(&self, messages: &[Message]) -> Result<Reply, BoxError> {
        Ok(self.model.chat(&Request::new(messages.to_vec()).tools(tools()))?)
    }
    fn post(&self, agent: &mut Agent, reply: Reply) -> Next {
        agent.messages.push(reply.message());
        if reply.tool_calls.is_empty() {
            agent.answer = reply.content;
            Next::Answer
        } else {
            agent.pending = reply.tool_calls;
            Next::Act
        }
    }
}

/// Runs the tools the model called.
#[derive(Default)]
struct Act;

#[node]
impl Act {
    fn prep(&self, agent: &Agent) -> Vec<ToolCall> {
        agent.pending.clone()
    }
    fn exec(&self, calls: &[ToolCall]) -> Vec<(ToolCall, String)> {
        calls.iter().map(|call| (call.clone(), run_tool(&call.function.name, &call.args()))).collect()
    }
    fn post(&self, agent: &mut Agent, results: Vec<(ToolCall, String)>) {
        agent.pending.clear();
        for (call, result) in results {
            println!("{}({}) -> {result}", call.function.name, call.function.arguments);
            agent.used.push(call.function.name.clone());
            agent.messages.push(Message::tool(call.id, result));
        }
    }
}

flow! {
    /// Decide, use tools, decide again, until the model answers.
    struct ToolAgent: Agent {
        node decide: Decide = _;
        node act: Act;
        start decide;
        max_steps 20;
        decide - Next::Act >> act >> decide;
        decide - Next::Answer >> end;
    }
}

fn library() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A tool's result, or why it failed (the model reads either).
fn run_tool(name: &str, args: &Value) -> String {
    let arg = |key: &str| args.get(key).and_then(Value::as_str).unwrap_or_default();
    let result = match name {
        "search" => search(arg("query")),
        "calculator" => calculate(arg("expression")).map(|v| v.to_string()),
        "read_file" => read_file(arg("name")),
        other => Err(format!("there is no tool `{other}`")),
    };
    result.unwrap_or_else(|why| format!("error: {why}"))
}

fn search(query: &str) -> Result<String, String> {
    let asked = hashed(query);
    let mut best = (0.0, String::new());
    for entry in std::fs::read_dir(library()).map_err(|e| e.to_string())? {
        let text = std::fs::read_to_string(entry.map_err(|e| e.to_string())?.path()).map_err(|e| e.to_string())?;
        for passage in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
            let score = cosine(&asked, &hashed(passage));
            if score > best.0 {
                best = (score, passage.to_owned());
            }
        }
    }
    if best.1.is_empty() { Err(format!("nothing matches {query:?}")) } else { Ok(best.1) }
}

/// Reads a document of the library: a bare file name, nothing outside it.
fn read_file(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!("{name:?} is not a document of the library (give a name like bees.txt)"));
    }
    std::fs::read_to_string(library().join(name)).map_err(|_| format!("the library has no {name:?}"))
}

/// Evaluates `+ - * /` and parentheses over numbers.
fn calculate(expression: &str) -> Result<f64, String> {
    let tokens: Vec<char> = expression.chars().filter(|c| !c.is_whitespace()).collect();
    let mut at = 0;
    let value = sum(&tokens, &mut at)?;
    if at != tokens.len() {
        return Err(format!("unexpected {:?} in {expression:?}", tokens[at]));
    }
    Ok(value)
}

fn sum(t: &[char], at: &mut usize) -> Result<f64, String> {
    let mut value = product(t, at)?;
    while let Some(op @ ('+' | '-')) = t.get(*at).copied() {
        *at += 1;
        let rhs = product(t, at)?;
        value = if op == '+' { value + rhs } else { value - rhs };
    }
    Ok(value)
}

fn product(t: &[char], at: &mut usize) -> Result<f64, String> {
    let mut value = atom(t, at)?;
    while let Some(op @ ('*' | '/')) = t.get(*at).copied() {
        *at += 1;
        let rhs = atom(t, at)?;
        if op == '/' && rhs == 0.0 {
            return Err("division by zero".into());
        }
        value = if op == '*' { value * rhs } else { value / rhs };
    }
    Ok(value)
}

fn atom(t: &[char], at: &mut usize) -> Result<f64, String> {
    match t.get(*at) {
        Some('(') => {
            *at += 1;
            let value = sum(t, at)?;
            if t.get(*at) != Some(&')') {
                return Err("a `(` without its `)`".into());
            }
            *at += 1;
            Ok(value)
        }
        Some('-') => {
            *at += 1;
            Ok(-atom(t, at)?)
        }
        _ => {
            let start = *at;
            while t.get(*at).is_some_and(|c| c.is_ascii_digit() || *c == '.') {
                *at += 1;
            }
            let number: String = t[start..*at].iter().collect();
            number
                .parse()
                .map_err(|_| format!("expected a number at {:?}", t.get(start).map_or(String::new(), char::to_string)))
        }
    }
}

/// The offline model: searches for the question's topic, calculates the
/// arithmetic in it, reads a document it names, one tool per turn, then
/// answers from what the tools said.
fn script(request: &Request) -> Reply {
    let question = request.messages.iter().find(|m| m.role == Role::User).map_or("", Message::text);
    let called: Vec<&str> =
        request.messages.iter().flat_map(|m| &m.tool_calls).map(|c| c.function.name.as_str()).collect();
    let results: Vec<&str> = request.messages.iter().filter(|m| m.role == Role::Tool).map(Message::text).collect();
    let expression: String = question.chars().filter(|c| c.is_ascii_digit() || "+-*/(). ".contains(*c)).collect();
    let expression = expression.trim().trim_matches('.').trim().to_owned();
    let file = question
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '.'))
        .find(|w| w.ends_with(".txt"));
    let topic = question.split([',', '?']).next().unwrap_or(question);
    if let Some(file) = file
        && !called.contains(&"read_file")
    {
        return Reply::call("read_file", json!({"name": file}));
    }
    if file.is_none() && llm::words(topic).any(|w| w.len() > 3) && !called.contains(&"search") {
        return Reply::call("search", json!({"query": topic}));
    }
    if expression.chars().any(|c| "+-*/".contains(c)) && !called.contains(&"calculator") {
        return Reply::call("calculator", json!({"expression": expression}));
    }
    let said: Vec<String> =
        results.iter().map(|r| if r.len() > 60 { llm::summarize(r) } else { (*r).to_owned() }).collect();
    Reply::text(format!("From my tools: {}", said.join(" And ")))
}

fn ask(question: &str, model: Model) -> Result<Agent, minllm::Error> {
    let mut agent = Agent {
        messages: vec![
            Message::system("Answer the question. Use the tools for facts and arithmetic; cite what they said."),
            Message::user(question),
        ],
        ..Agent::default()
    };
    ToolAgent::new(Decide { model }).run(&mut agent)?;
    Ok(agent)
}

fn main() -> Result<(), BoxError> {
    let question =
        std::env::args().nth(1).unwrap_or_else(|| "How do bees find flowers, and what is 6 * (3 + 4)?".into());
    let agent = ask(&question, Model::from_env(script)?)?;
    println!("Q: {question}\nA: {}", agent.answer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_calls_tools_until_it_can_answer() {
        let agent = ask("How do bees find flowers, and what is 6 * (3 + 4)?", Model::scripted(script)).unwrap();
        assert_eq!(agent.used, ["search", "calculator"]);
        assert!(agent.answer.contains("flowers") && agent.answer.ends_with("And 42"), "{}", agent.answer);
        // The conversation: question, call, result, call, result, answer.
        let roles: Vec<Role> = agent.messages.iter().skip(1).map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Assistant, Role::Tool, Role::Assistant]);
    }

    #[test]
    fn tools_that_fail_tell_the_model_why() {
        assert_eq!(
            run_tool("read_file", &json!({"name": "../Cargo.toml"})),
            "error: \"../Cargo.toml\" is not a document of the library (give a name like bees.txt)"
        );
        assert_eq!(run_tool("calculator", &json!({"expression": "1 / (2 - 2)"})), "error: division by zero");
        assert_eq!(run_tool("calculator", &json!({"expression": "2 * (3 + 4"})), "error: a `(` without its `)`");
        assert_eq!(run_tool("fly", &json!({})), "error: there is no tool `fly`");
        assert!(run_tool("read_file", &json!({"name": "rivers.txt"})).contains("river"));
    }
}
