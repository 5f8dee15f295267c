//! What goes over the wire: messages, tools and replies of the chat API, and
//! how a streamed answer's chunks add up to a reply.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Who says a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's answer.
    Tool,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// The text (none in an assistant message that only calls tools).
    #[serde(default)]
    pub content: Option<String>,
    /// The tools an assistant message calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Message { role, content: Some(content.into()), tool_calls: Vec::new(), tool_call_id: None }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new(Role::Assistant, content)
    }
    /// The answer to tool call `call_id`.
    pub fn tool(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Message { tool_call_id: Some(call_id.into()), ..Message::new(Role::Tool, content) }
    }
    /// The text, or `""`.
    pub fn text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }
}

/// A call of a tool, as the model asks for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (a tool message answers it).
    pub id: String,
    #[serde(rename = "type", default = "function")]
    /// Always `function`.
    pub kind: String,
    /// What to call.
    pub function: FunctionCall,
}

fn function() -> String {
    "function".to_owned()
}

/// The function a tool call names, and its arguments (JSON text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// A call of `name` with `arguments`.
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: &Value) -> Self {
        let function = FunctionCall { name: name.into(), arguments: arguments.to_string() };
        ToolCall { id: id.into(), kind: "function".to_owned(), function }
    }

    /// The arguments as JSON (`Null` when they are not JSON).
    pub fn args(&self) -> Value {
        serde_json::from_str(&self.function.arguments).unwrap_or(Value::Null)
    }
}

/// A tool the model may call: a name, what it does, and its parameters as a
/// JSON schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its parameters, as a JSON schema.
    pub parameters: Value,
}

impl Tool {
    /// A tool.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Tool { name: name.into(), description: description.into(), parameters }
    }
}

/// What the model must answer with.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Free text.
    Text,
    /// A JSON object (JSON mode).
    Json,
    /// JSON that fits `schema` (structured output), under `name`.
    Schema {
        /// The schema's name.
        name: String,
        /// The JSON schema.
        schema: Value,
    },
}

/// One request for an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The tools the model may call.
    pub tools: Vec<Tool>,
    /// What the answer must be.
    pub format: Format,
    /// Sampling temperature, if set.
    pub temperature: Option<f32>,
    /// The most tokens to answer with, if set.
    pub max_tokens: Option<u32>,
}

impl Request {
    /// A request with these messages, free text, no tools.
    pub fn new(messages: Vec<Message>) -> Self {
        Request { messages, tools: Vec::new(), format: Format::Text, temperature: None, max_tokens: None }
    }

    /// A request of one user message.
    pub fn prompt(text: impl Into<String>) -> Self {
        Request::new(vec![Message::user(text)])
    }

    /// With these tools.
    pub fn tools(self, tools: Vec<Tool>) -> Self {
        Request { tools, ..self }
    }

    /// With this answer format.
    pub fn format(self, format: Format) -> Self {
        Request { format, ..self }
    }

    /// The last user message's text, or `""`.
    pub fn last_user(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == Role::User).map_or("", Message::text)
    }

    /// The body of a chat-completions call for `model`.
    pub(crate) fn body(&self, model: &str, stream: bool) -> Value {
        let mut body = json!({ "model": model, "messages": self.messages });
        if !self.tools.is_empty() {
            let tools: Vec<Value> = self
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
            body["tools"] = Value::Array(tools);
        }
        match &self.format {
            Format::Text => {}
            Format::Json => body["response_format"] = json!({"type": "json_object"}),
            Format::Schema { name, schema } => {
                body["response_format"] =
                    json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": true}});
            }
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

/// Tokens a call used, as the server counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    #[serde(default)]
    /// Tokens of the answer.
    pub completion_tokens: u64,
}

/// The model's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// The text (empty when the model only calls tools).
    pub content: String,
    /// The tools it calls.
    pub tool_calls: Vec<ToolCall>,
    /// The model that answered, as the server names it.
    pub model: String,
    /// Tokens the call used.
    pub usage: Usage,
    /// Why it stopped (`stop`, `length`, `tool_calls`), when the server says.
    pub finish_reason: Option<String>,
}

impl Reply {
    /// A text reply (what an offline script returns).
    pub fn text(content: impl Into<String>) -> Self {
        Reply { content: content.into(), finish_reason: Some("stop".to_owned()), ..Reply::default() }
    }

    /// A reply that calls one tool.
    pub fn call(name: &str, arguments: Value) -> Self {
        let call = ToolCall::new(format!("call_{name}"), name, &arguments);
        Reply { tool_calls: vec![call], finish_reason: Some("tool_calls".to_owned()), ..Reply::default() }
    }

    /// The message to put back into the conversation.
    pub fn message(&self) -> Message {
        Message {
            role: Role::Assistant,
            content: (!self.content.is_empty()).then(|| self.content.clone()),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: None,
        }
    }

    /// A non-streamed chat-completions response, or why it is not one.
    pub(crate) fn from_response(body: &Value) -> Result<Reply, &'static str> {
        let choice = body.get("choices").and_then(|c| c.get(0)).ok_or("no choices[0]")?;
        let message = choice.get("message").ok_or("no choices[0].message")?;
        let content = message.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
        let tool_calls = match message.get("tool_calls") {
            None | Some(Value::Null) => Vec::new(),
            Some(calls) => {
                serde_json::from_value(calls.clone()).map_err(|_| "malformed choices[0].message.tool_calls")?
            }
        };
        if content.is_empty() && tool_calls.is_empty() && message.get("content").is_none_or(|c| !c.is_string()) {
            return Err("no choices[0].message.content");
        }
        Ok(Reply {
            content,
            tool_calls,
            model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            usage: body.get("usage").and_then(|u| serde_json::from_value(u.clone()).ok()).unwrap_or_default(),
            finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// A streamed reply as its chunks arrive.
#[derive(Default)]
pub(crate) struct Assembly {
    reply: Reply,
}

impl Assembly {
    /// Adds one chunk (the JSON of an SSE `data:` line); returns the text it adds.
    pub(crate) fn add(&mut self, chunk: &Value) -> Result<String, &'static str> {
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            model.clone_into(&mut self.reply.model);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.reply.usage = serde_json::from_value(usage.clone()).map_err(|_| "malformed usage")?;
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else { return Ok(String::new()) };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.reply.finish_reason = Some(reason.to_owned());
        }
        let Some(delta) = choice.get("delta") else { return Ok(String::new()) };
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).ok_or("a tool call delta without an index")? as usize;
            if index > self.reply.tool_calls.len() || index > 128 {
                return Err("a tool call delta out of order");
            }
            if index == self.reply.tool_calls.len() {
                self.reply.tool_calls.push(ToolCall::new("", "", &Value::Null));
                self.reply.tool_calls[index].function.arguments.clear();
            }
            let slot = &mut self.reply.tool_calls[index];
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                id.clone_into(&mut slot.id);
            }
            if let Some(f) = call.get("function") {
                if let Some(name) = f.get("name").and_then(Value::as_str) {
                    slot.function.name.push_str(name);
                }
                if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                    slot.function.arguments.push_str(args);
                }
            }
        }
        let text = delta.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
        self.reply.content.push_str(&text);
        Ok(text)
    }

    pub(crate) fn finish(self) -> Reply {
        self.reply
    }
}
