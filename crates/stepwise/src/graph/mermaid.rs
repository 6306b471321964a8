//! Mermaid `flowchart` output.

use std::fmt::Write;

use super::{look, EdgeStyle, NodeKind, WorkflowGraph};

/// A Mermaid-safe node id: letters, digits and `_` only.
pub(super) fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Label text inside `"…"`: quotes and angle brackets as entities.
fn label(text: &str) -> String {
    text.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

pub(super) fn render(graph: &WorkflowGraph) -> String {
    let mut out = String::from("flowchart TD\n");
    let mut classes: Vec<(&str, &str, &str)> = Vec::new();
    for node in &graph.nodes {
        let id = safe_id(&node.id);
        let text = label(&node.label);
        let shape = match node.kind {
            NodeKind::Step | NodeKind::StepRun => format!("{id}[\"{text}\"]"),
            NodeKind::Event | NodeKind::EventInstance => format!("{id}([\"{text}\"])"),
            NodeKind::External => format!("{id}{{{{\"{text}\"}}}}"),
        };
        let look = look(node);
        let class = match node.status.as_deref() {
            Some(status) if node.kind == NodeKind::StepRun => status_class(status),
            _ => look.class,
        };
        let _ = writeln!(out, "    {shape}:::{class}");
        if !classes.iter().any(|(c, _, _)| *c == class) {
            classes.push((class, look.fill, look.stroke));
        }
    }
    for edge in &graph.edges {
        let arrow = match edge.style {
            EdgeStyle::Solid => "-->",
            EdgeStyle::Dashed => "-.->",
        };
        let (from, to) = (safe_id(&edge.from), safe_id(&edge.to));
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

fn status_class(status: &str) -> &'static str {
    match status {
        "failed" => "failed",
        "retried" => "retried",
        "cancelled" => "cancelled",
        "running" => "running",
        _ => "step",
    }
}
