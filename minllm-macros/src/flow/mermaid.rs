//! The flow's graph as a Mermaid flowchart, computed while compiling.

use std::fmt::Write as _;

use syn::ext::IdentExt;

use super::analyze::tokens;
use super::ast::{FlowDef, Target};

fn escape(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// The doc comment of a statement, as Mermaid comments above its line.
fn comments(out: &mut String, docs: &[String]) {
    for line in docs {
        let _ = writeln!(out, "    %% {line}");
    }
}

/// The chart of a flow; nodes are `n_<name>`, each distinct end an `end_<i>`.
/// Doc comments of the statements become Mermaid comments (`%% ...`).
pub(crate) fn mermaid(def: &FlowDef) -> String {
    let mut out = String::from("flowchart TD\n");
    comments(&mut out, &def.max_steps_docs);
    for node in &def.nodes {
        comments(&mut out, &node.docs);
        let name = node.name.unraw();
        let _ = writeln!(out, "    n_{name}[\"{name}\"]");
    }
    if let Some(start) = def.starts.first() {
        comments(&mut out, &start.docs);
        let _ = writeln!(out, "    start(( )) --> n_{}", start.name.unraw());
    }

    let mut ends: Vec<String> = Vec::new();
    for edge in &def.edges {
        comments(&mut out, &edge.docs);
        let from = edge.from.unraw();
        let to = match &edge.to {
            Target::Node(n) => format!("n_{}", n.unraw()),
            Target::End { value, .. } => {
                let label = match value {
                    Some(v) => format!("end: {}", tokens(v)),
                    None => "end".to_owned(),
                };
                let i = match ends.iter().position(|e| *e == label) {
                    Some(i) => i,
                    None => {
                        ends.push(label.clone());
                        let _ = writeln!(out, "    end_{}([\"{}\"])", ends.len() - 1, escape(&label));
                        ends.len() - 1
                    }
                };
                format!("end_{i}")
            }
        };
        match &edge.action {
            Some(action) => {
                let variant = action.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
                let _ = writeln!(out, "    n_{from} -->|\"{}\"| {to}", escape(&variant));
            }
            None => {
                let _ = writeln!(out, "    n_{from} --> {to}");
            }
        }
    }
    out
}
