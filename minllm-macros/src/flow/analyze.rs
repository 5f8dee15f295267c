//! `flow!`'s graph rules, one function each. Every rule reports on the user's own
//! tokens, and all of them run, so one build shows every mistake.

use std::collections::{HashMap, HashSet};

use quote::ToTokens;
use syn::{Expr, Ident, Path, Type};

use super::ast::{Edge, FlowDef, KEYWORDS, Target};
use crate::errors::Errors;

/// The flow, checked: what code generation needs.
pub(crate) struct Model<'a> {
    pub(crate) def: &'a FlowDef,
    /// The index of the start node.
    pub(crate) start: usize,
    /// What a run returns.
    pub(crate) outcome: Type,
    /// The step limit, if any.
    pub(crate) max_steps: Option<&'a Expr>,
    /// Per node (by index): its edges.
    pub(crate) routes: Vec<Routes<'a>>,
}

/// The edges leaving one node.
#[derive(Default)]
pub(crate) struct Routes<'a> {
    /// `a >> b`: taken on the `()` action.
    pub(crate) default: Option<&'a Edge>,
    /// `a - E::V >> b`, in the order written.
    pub(crate) labelled: Vec<&'a Edge>,
}

impl Routes<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.default.is_none() && self.labelled.is_empty()
    }

    /// The enum type of the labelled edges' actions: their path without the variant.
    pub(crate) fn enum_path(&self) -> Option<Path> {
        self.labelled.first().and_then(|e| e.action.as_ref()).map(enum_of)
    }
}

/// `Decision::Search` → `Decision`.
pub(crate) fn enum_of(variant: &Path) -> Path {
    let mut path = variant.clone();
    path.segments.pop();
    path.segments.pop_punct();
    path
}

pub(crate) fn tokens(t: &impl ToTokens) -> String {
    t.to_token_stream().to_string().replace(' ', "")
}

/// Whether `a` looks like a typo of `b`: one edit apart (two for words of five
/// letters or more); words under three letters are too short to guess.
pub(crate) fn similar(a: &str, b: &str) -> bool {
    if a == b || a.len().min(b.len()) < 3 {
        return false;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    let distance = row[b.len()];
    let limit = if a.len().min(b.len()) >= 5 { 2 } else { 1 };
    distance <= limit
}

pub(crate) fn analyze<'a>(def: &'a FlowDef, errors: &mut Errors) -> Option<Model<'a>> {
    let index = check_names(def, errors);
    check_edge_nodes(def, &index, errors);
    let start = check_start(def, &index, errors);
    let max_steps = check_max_steps(def, errors);
    let routes = check_routes(def, &index, errors);
    let outcome = check_ends(def, &routes, errors);
    if let Some(start) = start {
        check_reachable(def, &index, start, errors);
        if max_steps.is_none() {
            check_cycles(def, &routes, &index, start, errors);
        }
    }
    if !errors.is_empty() {
        return None;
    }
    Some(Model { def, start: start?, outcome: outcome?, max_steps, routes })
}

/// Node names: no keywords, no duplicates (reported on the second).
fn check_names(def: &FlowDef, errors: &mut Errors) -> HashMap<String, usize> {
    let mut index = HashMap::new();
    for (i, node) in def.nodes.iter().enumerate() {
        let name = node.name.to_string();
        if KEYWORDS.contains(&name.as_str()) {
            errors.at(&node.name, format!("`{name}` is a keyword of `flow!`; give the node another name"));
        } else if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(name.clone()) {
            slot.insert(i);
        } else {
            errors.at(&node.name, format!("node `{name}` is declared twice; node names must be unique in a flow"));
        }
    }
    index
}

fn unknown_node(def: &FlowDef, name: &Ident, errors: &mut Errors) {
    let text = name.to_string();
    let mut declared: Vec<String> = Vec::new();
    for node in &def.nodes {
        let n = node.name.to_string();
        if !declared.contains(&n) {
            declared.push(n);
        }
    }
    let message = match declared.iter().find(|d| similar(&text, d)) {
        Some(d) => format!("unknown node `{text}`; did you mean `{d}`?"),
        None if declared.is_empty() => {
            format!("unknown node `{text}`: the flow declares no nodes; declare it with `node {text}: Type;`")
        }
        None => {
            format!("unknown node `{text}` (declared: {}); declare it with `node {text}: Type;`", declared.join(", "))
        }
    };
    errors.at(name, message);
}

/// Every node an edge names is declared.
fn check_edge_nodes(def: &FlowDef, index: &HashMap<String, usize>, errors: &mut Errors) {
    let mut reported = HashSet::new();
    for edge in &def.edges {
        let mut ends = vec![&edge.from];
        if let Target::Node(to) = &edge.to {
            ends.push(to);
        }
        for name in ends {
            if !index.contains_key(&name.to_string()) && reported.insert(name.to_string()) {
                unknown_node(def, name, errors);
            }
        }
    }
}

/// Exactly one `start`, naming a declared node.
fn check_start(def: &FlowDef, index: &HashMap<String, usize>, errors: &mut Errors) -> Option<usize> {
    for extra in def.starts.iter().skip(1) {
        errors.at(&extra.name, "the start node is given twice; a flow has one `start`");
    }
    let Some(start) = def.starts.first().map(|s| &s.name) else {
        let first = def.nodes.first().map_or("<node>".to_owned(), |n| n.name.to_string());
        errors.at(&def.name, format!("flow `{}` has no start node; add `start {first};`", def.name));
        return None;
    };
    let found = index.get(&start.to_string()).copied();
    if found.is_none() {
        unknown_node(def, start, errors);
    }
    found
}

fn check_max_steps<'a>(def: &'a FlowDef, errors: &mut Errors) -> Option<&'a Expr> {
    for (keyword, _) in def.max_steps.iter().skip(1) {
        errors.at(keyword, "the step limit is given twice; keep one `max_steps`");
    }
    let (_, limit) = def.max_steps.first()?;
    if let Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(n), .. }) = limit
        && n.base10_parse::<u64>().is_ok_and(|n| n == 0)
    {
        errors.at(limit, "a step limit of 0 lets no node run; give a positive limit");
    }
    Some(limit)
}

/// Edges per node: no two for the same action; one kind of action per node.
fn check_routes<'a>(def: &'a FlowDef, index: &HashMap<String, usize>, errors: &mut Errors) -> Vec<Routes<'a>> {
    let mut routes: Vec<Routes<'a>> = def.nodes.iter().map(|_| Routes::default()).collect();
    for edge in &def.edges {
        let Some(&from) = index.get(&edge.from.to_string()) else { continue };
        let r = &mut routes[from];
        match &edge.action {
            None => match r.default {
                Some(first) => errors.push(syn::Error::new(
                    edge.action_span(),
                    format!(
                        "node `{}` already has a default edge (to {}); a node has one edge per action",
                        edge.from,
                        describe(&first.to)
                    ),
                )),
                None => r.default = Some(edge),
            },
            Some(action) => {
                let text = tokens(action);
                match r.labelled.iter().find(|e| e.action.as_ref().is_some_and(|a| tokens(a) == text)) {
                    Some(first) => errors.at(
                        action,
                        format!(
                            "node `{}` already has an edge for `{text}` (to {}); a node has one edge per action",
                            edge.from,
                            describe(&first.to)
                        ),
                    ),
                    None => r.labelled.push(edge),
                }
            }
        }
    }
    for (node, r) in def.nodes.iter().zip(&routes) {
        if let (Some(default), Some(labelled)) = (r.default, r.labelled.first()) {
            // Reported on whichever kind of edge came second.
            let second = if edge_index(def, default) < edge_index(def, labelled) { *labelled } else { default };
            errors.push(syn::Error::new(
                second.action_span(),
                format!(
                    "node `{}` has both a default edge (`{} >> ..`) and edges for named actions; \
                     a node returns either `()` (one default edge) or an enum (one edge per variant)",
                    node.name, node.name
                ),
            ));
        }
        for edge in &r.labelled {
            let Some(action) = &edge.action else { continue };
            if action.segments.len() < 2 {
                errors.at(
                    action,
                    format!(
                        "write the action with its enum, e.g. `MyAction::{}`: `flow!` needs the enum to check that each of its variants has an edge",
                        tokens(action)
                    ),
                );
            }
        }
    }
    routes
}

fn edge_index(def: &FlowDef, edge: &Edge) -> usize {
    def.edges.iter().position(|e| std::ptr::eq(e, edge)).unwrap_or(usize::MAX)
}

fn describe(target: &Target) -> String {
    match target {
        Target::Node(n) => format!("`{n}`"),
        Target::End { .. } => "`end`".to_owned(),
    }
}

/// Ends agree on the outcome; nodes without edges end the flow only when it
/// has no outcome value.
fn check_ends(def: &FlowDef, routes: &[Routes<'_>], errors: &mut Errors) -> Option<Type> {
    let ends: Vec<(&Edge, Option<&Expr>)> = def
        .edges
        .iter()
        .filter_map(|e| match &e.to {
            Target::End { value, .. } => Some((e, value.as_ref())),
            Target::Node(_) => None,
        })
        .collect();
    let with_value = ends.iter().find(|(_, v)| v.is_some());
    let mut ok = true;
    if let Some((first, Some(value))) = with_value {
        for (edge, v) in &ends {
            if v.is_none()
                && let Target::End { keyword, .. } = &edge.to
            {
                ok = false;
                errors.at(
                    keyword,
                    format!(
                        "this `end` gives no outcome, but the flow ends with `end({})` elsewhere (after `{}`); give one here too",
                        tokens(*value),
                        first.from
                    ),
                );
            }
        }
        for (node, r) in def.nodes.iter().zip(routes) {
            if r.is_empty() {
                ok = false;
                errors.at(
                    &node.name,
                    format!(
                        "node `{}` has no edges, so the flow would end there without an outcome; add `{} >> end(...);`",
                        node.name, node.name
                    ),
                );
            }
        }
    }
    if let Some(outcome) = &def.outcome {
        if with_value.is_none() && !ends.is_empty() {
            errors.at(outcome, "the flow declares an outcome type, but its ends give no value: write `>> end(value)`");
            return None;
        }
        return ok.then(|| outcome.clone());
    }
    let Some((_, Some(_))) = with_value else {
        return ok.then(|| syn::parse_quote!(()));
    };
    // Infer the outcome type from `end(Outcome::Variant)` paths.
    let mut inferred: Option<(String, Path)> = None;
    for (edge, value) in &ends {
        let Some(value) = value else { continue };
        let Expr::Path(p) = value else {
            errors.at(
                value,
                format!(
                    "cannot tell the outcome type from this value; declare it: `struct {}: {} -> Outcome {{ .. }}`",
                    def.name,
                    tokens(&def.store)
                ),
            );
            return None;
        };
        if p.path.segments.len() < 2 {
            errors.at(
                value,
                format!(
                    "write the outcome with its type, e.g. `Outcome::Done`, or declare it: `struct {}: {} -> Outcome`",
                    def.name,
                    tokens(&def.store)
                ),
            );
            return None;
        }
        let ty = enum_of(&p.path);
        let text = tokens(&ty);
        match &inferred {
            Some((first, _)) if *first != text => {
                errors.at(
                    value,
                    format!(
                        "the flow's ends disagree on the outcome type: `{first}` elsewhere, `{text}` here (after `{}`)",
                        edge.from
                    ),
                );
                return None;
            }
            Some(_) => {}
            None => inferred = Some((text, ty)),
        }
    }
    let (_, path) = inferred?;
    ok.then(|| syn::parse_quote!(#path))
}

/// A graph of the flow for the shared rules (`minllm-graph`): the first
/// declaration of each name is a node, with the edges `targets` gives it (a
/// node's index, or `None` for `end`). Only its shape matters to the rules
/// used here (reachability and cycles), so edges carry no action and the flow
/// no limit: each caller looks at the problems of its own rule.
fn graph(
    def: &FlowDef,
    index: &HashMap<String, usize>,
    start: usize,
    targets: impl Fn(usize) -> Vec<Option<usize>>,
) -> minllm_graph::Graph {
    let nodes = def
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            // A name declared again is reported as such; its repeat has no name
            // here, so that no rule reports it as well.
            if index.get(&node.name.to_string()) != Some(&i) {
                return minllm_graph::GraphNode::default();
            }
            let edges = targets(i)
                .into_iter()
                .map(|to| minllm_graph::GraphEdge {
                    to: to.map_or(minllm_graph::Target::End, minllm_graph::Target::Node),
                    ..Default::default()
                })
                .collect();
            minllm_graph::GraphNode { name: node.name.to_string(), edges, ..Default::default() }
        })
        .collect();
    let flow = minllm_graph::GraphFlow { nodes, start: Some(minllm_graph::Target::Node(start)), ..Default::default() };
    minllm_graph::Graph { flows: vec![flow] }
}

/// Every node can be reached from the start, following every edge written: a
/// duplicate edge, or an edge to a misspelt node, still shows what the user
/// meant to reach.
fn check_reachable(def: &FlowDef, index: &HashMap<String, usize>, start: usize, errors: &mut Errors) {
    let resolve = |name: &Ident| {
        let name = name.to_string();
        index.get(&name).copied().or_else(|| index.iter().find(|(n, _)| similar(&name, n)).map(|(_, &i)| i))
    };
    let targets = |i: usize| {
        let name = def.nodes[i].name.to_string();
        def.edges
            .iter()
            .filter(|e| e.from == name)
            .filter_map(|e| match &e.to {
                Target::Node(to) => resolve(to).map(Some),
                Target::End { .. } => Some(None),
            })
            .collect()
    };
    let start_name = &def.nodes[start].name;
    for problem in graph(def, index, start, targets).validate() {
        if let minllm_graph::Problem::Unreachable { node, .. } = problem
            && let Some(&i) = index.get(&node)
        {
            let name = &def.nodes[i].name;
            errors.at(
                name,
                format!(
                    "node `{name}` is unreachable from the start node `{start_name}`; add an edge to it or remove it"
                ),
            );
        }
    }
}

/// No cycle without a step limit; each reported on the edge that closes it.
fn check_cycles(
    def: &FlowDef,
    routes: &[Routes<'_>],
    index: &HashMap<String, usize>,
    start: usize,
    errors: &mut Errors,
) {
    // The edges out of each node, in the order written.
    let out: Vec<Vec<(usize, &Edge)>> = routes
        .iter()
        .map(|r| {
            r.default
                .iter()
                .chain(r.labelled.iter())
                .filter_map(|e| match &e.to {
                    Target::Node(n) => index.get(&n.to_string()).map(|&i| (i, *e)),
                    Target::End { .. } => None,
                })
                .collect()
        })
        .collect();
    let targets = |i: usize| out[i].iter().map(|(to, _)| Some(*to)).collect();
    for problem in graph(def, index, start, targets).validate() {
        let minllm_graph::Problem::UnboundedCycle { path, .. } = problem else { continue };
        // The cycle's last edge, as the shared rules walk them: the first one
        // written from its second-to-last node to its last.
        let [.., from, to] = &path[..] else { continue };
        let (Some(&from), Some(&to)) = (index.get(from), index.get(to)) else { continue };
        let Some((_, edge)) = out[from].iter().find(|(t, _)| *t == to) else { continue };
        errors.push(syn::Error::new(
            edge.action_span(),
            format!(
                "this edge closes the cycle `{}`, and flow `{}` has no step limit; add `max_steps <limit>;` to bound its loops",
                path.join(" -> "),
                def.name
            ),
        ));
    }
}

#[cfg(test)]
#[path = "analyze_tests.rs"]
mod tests;
