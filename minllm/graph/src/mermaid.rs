//! The Mermaid writer: a flow and its nested flows as one `flowchart`, written
//! with a loop and linear in the size of the graph.

use std::fmt::Write as _;

use super::{Graph, GraphFlow, Target};

impl Graph {
    /// The flow as a Mermaid `flowchart`, nested flows as subgraphs.
    ///
    /// Nodes are `n0`, `n1`, ... numbered across all flows; each flow's start
    /// marker is `start` (outermost) or `start<k>`, its end marker `end<k>`;
    /// an edge to something that is not a node of the flow is drawn dashed to
    /// a box that says what it is.
    pub fn to_mermaid(&self) -> String {
        let out = String::from("flowchart TD\n");
        if self.flows.is_empty() {
            return out;
        }
        let mut first_id = Vec::with_capacity(self.flows.len());
        let mut total = 0;
        for flow in &self.flows {
            first_id.push(total);
            total += flow.nodes.len();
        }
        let mut w = Mermaid { out, first_id, strays: 0 };
        let mut drawn = vec![false; self.flows.len()];
        drawn[0] = true;
        w.comments(1, &self.flows[0].doc);
        // Each entry: a flow being written and the next of its nodes to write.
        let mut stack = vec![(0_usize, 0_usize)];
        loop {
            let depth = stack.len();
            let Some(top) = stack.last_mut() else { break };
            let (f, i) = *top;
            top.1 += 1;
            let flow = &self.flows[f];
            let Some(node) = flow.nodes.get(i) else {
                w.flow_edges(self, f, depth);
                stack.pop();
                if !stack.is_empty() {
                    w.line(depth - 1, format_args!("end"));
                }
                continue;
            };
            let id = w.first_id[f] + i;
            let label = match &node.note {
                Some(note) => format!("{} ({})", escape(&node.name), escape(note)),
                None => escape(&node.name),
            };
            w.comments(depth, &node.doc);
            match node.inner.filter(|&k| k < self.flows.len()) {
                // Drawn in place where the flow was first met.
                Some(k) if self.flows[k].parent == Some((f, i)) && !drawn[k] => {
                    drawn[k] = true;
                    w.line(depth, format_args!("subgraph n{id} [\"{label}\"]"));
                    w.comments(depth + 1, &self.flows[k].doc);
                    stack.push((k, 0));
                }
                Some(k) => {
                    let path = escape(&self.path(k));
                    w.line(depth, format_args!("n{id}[\"{label}: the flow {path}, drawn once\"]"));
                }
                None => w.line(depth, format_args!("n{id}[\"{label}\"]")),
            }
        }
        w.out
    }
}

/// How deep nested flows are indented at most, so that the chart stays linear
/// in the size of the graph.
const MAX_INDENT: usize = 8;

struct Mermaid {
    out: String,
    /// The id of each flow's first node.
    first_id: Vec<usize>,
    /// How many boxes for edges that lead out of their flow were drawn.
    strays: usize,
}

impl Mermaid {
    fn line(&mut self, depth: usize, text: std::fmt::Arguments<'_>) {
        for _ in 0..depth.min(MAX_INDENT) {
            self.out.push_str("    ");
        }
        let _ = self.out.write_fmt(text);
        self.out.push('\n');
    }

    /// Doc lines as Mermaid comments.
    fn comments(&mut self, depth: usize, doc: &[String]) {
        for line in doc {
            self.line(depth, format_args!("%% {line}"));
        }
    }

    /// The start marker and the edges of flow `f`.
    fn flow_edges(&mut self, graph: &Graph, f: usize, depth: usize) {
        let flow = &graph.flows[f];
        let marker = |name: &str| if f == 0 { name.to_owned() } else { format!("{name}{f}") };
        let mut ends = Ends { plain: false, outcomes: Vec::new() };
        if let Some(start) = &flow.start {
            let from = format!("{}(( ))", marker("start"));
            self.edge(flow, f, depth, &from, None, start, &mut ends);
        }
        for (i, node) in flow.nodes.iter().enumerate() {
            let from = format!("n{}", self.first_id[f] + i);
            for edge in &node.edges {
                self.comments(depth, &edge.doc);
                let action = (edge.action != crate::DEFAULT_ACTION).then_some(edge.action.as_str());
                self.edge(flow, f, depth, &from, action, &edge.to, &mut ends);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn edge(
        &mut self,
        flow: &GraphFlow,
        f: usize,
        depth: usize,
        from: &str,
        action: Option<&str>,
        to: &Target,
        ends: &mut Ends,
    ) {
        let label = action.map(|a| format!("|\"{}\"| ", escape(a))).unwrap_or_else(|| " ".to_owned());
        let stray = |what: String, this: &mut Self| {
            this.strays += 1;
            format!("x{}[\"{what}\"]", this.strays - 1)
        };
        match to {
            Target::Node(t) if *t < flow.nodes.len() => {
                let to = self.first_id[f] + t;
                self.line(depth, format_args!("{from} -->{label}n{to}"));
            }
            Target::End => {
                let end = format!("end{f}");
                let to = if ends.plain { end } else { format!("{end}([\"end\"])") };
                ends.plain = true;
                self.line(depth, format_args!("{from} -->{label}{to}"));
            }
            Target::Outcome(outcome) => {
                let to = match ends.outcomes.iter().position(|o| o == outcome) {
                    Some(k) => format!("end{f}_{k}"),
                    None => {
                        ends.outcomes.push(outcome.clone());
                        format!("end{f}_{}([\"end: {}\"])", ends.outcomes.len() - 1, escape(outcome))
                    }
                };
                self.line(depth, format_args!("{from} -->{label}{to}"));
            }
            Target::Node(_) | Target::Foreign => {
                let to = stray("a node of another flow".to_owned(), self);
                self.line(depth, format_args!("{from} -.->{label}{to}"));
            }
            Target::NotANode(what) => {
                let to = stray(format!("{}: not a node", escape(what)), self);
                self.line(depth, format_args!("{from} -.->{label}{to}"));
            }
        }
    }
}

/// The ends of one flow drawn so far: the plain one, and one per outcome.
struct Ends {
    plain: bool,
    outcomes: Vec<String>,
}

/// Escapes text for a quoted Mermaid label.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '|' => out.push_str("#124;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
