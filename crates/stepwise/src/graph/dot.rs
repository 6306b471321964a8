//! Graphviz DOT output.

use std::fmt::Write;

use super::{look, EdgeStyle, NodeKind, WorkflowGraph};

fn quote(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
    )
}

pub(super) fn render(graph: &WorkflowGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&graph.name));
    let _ = writeln!(out, "    rankdir=TB;");
    let title = match &graph.description {
        Some(description) => format!("{}\n{description}", graph.name),
        None => graph.name.clone(),
    };
    let _ = writeln!(out, "    label={}; labelloc=t; fontname=\"Helvetica\";", quote(&title));
    let _ = writeln!(out, "    node [fontname=\"Helvetica\", fontsize=11];");
    let _ = writeln!(out, "    edge [fontname=\"Helvetica\", fontsize=9];");
    for node in &graph.nodes {
        let look = look(node);
        let shape = match node.kind {
            NodeKind::Step | NodeKind::StepRun => "box, style=\"rounded,filled\"",
            NodeKind::Event | NodeKind::EventInstance => "ellipse, style=filled",
            NodeKind::External => "hexagon, style=filled",
        };
        let tooltip = node
            .doc
            .as_ref()
            .map(|doc| format!(", tooltip={}", quote(doc)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {} [label={}, shape={shape}, fillcolor=\"{}\", color=\"{}\", class=\"{}\"{tooltip}];",
            quote(&node.id),
            quote(&node.label),
            look.fill,
            look.stroke,
            look.class
        );
    }
    for edge in &graph.edges {
        let mut attrs = Vec::new();
        if edge.style == EdgeStyle::Dashed {
            attrs.push("style=dashed".to_owned());
        }
        if let Some(label) = &edge.label {
            attrs.push(format!("label={}", quote(label)));
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(out, "    {} -> {}{attrs};", quote(&edge.from), quote(&edge.to));
    }
    out.push_str("}\n");
    out
}
