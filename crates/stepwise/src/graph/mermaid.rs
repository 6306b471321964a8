//! Mermaid `flowchart` output.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::{look, EdgeStyle, NodeKind, WorkflowGraph};

/// A Mermaid-safe node id: letters, digits and `_` only.
fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Safe ids for every node, unique even when two ids differ only in
/// characters Mermaid does not allow (`a.b` and `a_b`).
fn safe_ids(graph: &WorkflowGraph) -> HashMap<&str, String> {
    let mut used: HashSet<String> = HashSet::new();
    let mut ids = HashMap::new();
    for node in &graph.nodes {
        let base = safe_id(&node.id);
        let mut id = base.clone();
        let mut n = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}_{n}");
            n += 1;
        }
        ids.insert(node.id.as_str(), id);
    }
    ids
}

/// Label text inside `"…"`: quotes, angle brackets, ampersands and a `#`
/// that would start an entity code (`#word;`) as Mermaid entity codes, line
/// breaks as `<br>`.
fn label(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut hashes = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let entity_like = c == '#' && {
            let word = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            word > 0 && chars.get(i + 1 + word) == Some(&';')
        };
        if entity_like {
            hashes.push_str("#35;");
        } else {
            hashes.push(c);
        }
    }
    hashes
        .replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
        .replace("\r\n", "\n")
        .replace('\n', "<br>")
}

/// A `%%` comment line (nothing in it can end the comment but a newline).
fn comment(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn render(graph: &WorkflowGraph) -> String {
    let ids = safe_ids(graph);
    let id_of = |id: &str| ids.get(id).cloned().unwrap_or_else(|| safe_id(id));
    // Comments go inside the diagram, where every Mermaid version takes them.
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(out, "    %% {}", comment(&graph.name));
    if let Some(description) = &graph.description {
        let _ = writeln!(out, "    %% {}", comment(description));
    }
    let mut classes: Vec<(&str, &str, &str)> = Vec::new();
    for node in &graph.nodes {
        let id = id_of(&node.id);
        let text = label(&node.label);
        let shape = match node.kind {
            NodeKind::Step | NodeKind::StepRun => format!("{id}[\"{text}\"]"),
            NodeKind::Event | NodeKind::EventInstance => format!("{id}([\"{text}\"])"),
            NodeKind::External => format!("{id}{{{{\"{text}\"}}}}"),
        };
        let look = look(node);
        let _ = writeln!(out, "    {shape}:::{}", look.class);
        if !classes.iter().any(|(c, _, _)| *c == look.class) {
            classes.push((look.class, look.fill, look.stroke));
        }
    }
    for edge in &graph.edges {
        let arrow = match edge.style {
            EdgeStyle::Solid => "-->",
            EdgeStyle::Dashed => "-.->",
        };
        let (from, to) = (id_of(&edge.from), id_of(&edge.to));
        match &edge.label {
            Some(text) => {
                let _ = writeln!(out, "    {from} {arrow}|\"{}\"| {to}", label(text));
            }
            None => {
                let _ = writeln!(out, "    {from} {arrow} {to}");
            }
        }
    }
    for (class, fill, stroke) in classes {
        let _ = writeln!(out, "    classDef {class} fill:{fill},stroke:{stroke},color:#1a202c");
    }
    out
}
