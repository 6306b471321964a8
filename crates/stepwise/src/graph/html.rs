//! A standalone HTML page: inline SVG drawn by our own layout, inline CSS and
//! a few lines of inline script for details on click. Nothing is fetched from
//! the network, so the page works offline and from `file://`.

use std::fmt::Write;

use super::layout::{layout, NODE_HEIGHT};
use super::{look, EdgeStyle, NodeKind, WorkflowGraph};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON safe to embed in a `<script>` element.
fn embed_json(graph: &WorkflowGraph) -> String {
    serde_json::to_string(graph)
        .unwrap_or_else(|_| "{}".into())
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--")
}

const STYLE: &str = r#"
body { margin: 0; font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1a202c; background: #f7fafc; }
header { padding: 12px 20px; background: #1a365d; color: #fff; }
header h1 { margin: 0; font-size: 18px; }
header p { margin: 4px 0 0; font-size: 13px; opacity: .85; }
main { display: flex; gap: 16px; padding: 16px; align-items: flex-start; }
#canvas { flex: 0 1 auto; min-width: 0; overflow: auto; background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; }
aside { flex: 0 0 320px; background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 12px; font-size: 13px; }
aside h2 { font-size: 14px; margin: 0 0 8px; }
aside pre { white-space: pre-wrap; word-break: break-word; background: #f1f5f9; padding: 8px; border-radius: 4px; max-height: 360px; overflow: auto; }
.legend span { display: inline-block; margin: 2px 8px 2px 0; }
.legend i { display: inline-block; width: 14px; height: 12px; vertical-align: -2px; margin-right: 4px; border: 1px solid #555; }
.legend b.dash { display: inline-block; width: 22px; vertical-align: 3px; margin-right: 4px; border-top: 2px dashed #4a5568; }
g.node { cursor: pointer; }
g.node text { font-size: 12px; pointer-events: none; }
g.node.selected rect, g.node.selected polygon { stroke-width: 3; }
path.edge { fill: none; stroke: #4a5568; stroke-width: 1.4; }
path.edge.dashed { stroke-dasharray: 5 4; }
text.edge-label { font-size: 10px; fill: #2d3748; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
g.node.external text, g.node.human text { font-weight: 600; }
"#;

const SCRIPT: &str = r#"
(function () {
  var graph = JSON.parse(document.getElementById('graph-data').textContent);
  var byId = {};
  graph.nodes.forEach(function (n) { byId[n.id] = n; });
  var panel = document.getElementById('details');
  function show(node) {
    var parts = ['<h2>' + esc(node.label) + '</h2>', '<p>' + esc(node.kind.replace('_', ' ')) +
      (node.role ? ' · ' + esc(node.role.replace('_', ' ')) : '') + (node.status ? ' · ' + esc(node.status) : '') + '</p>'];
    if (node.doc) parts.push('<p>' + esc(node.doc) + '</p>');
    if (node.details) parts.push('<pre>' + esc(JSON.stringify(node.details, null, 2)) + '</pre>');
    if (node.schema) parts.push('<h2>schema</h2><pre>' + esc(JSON.stringify(node.schema, null, 2)) + '</pre>');
    panel.innerHTML = parts.join('');
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]; }); }
  var nodes = document.querySelectorAll('g.node');
  nodes.forEach(function (g) {
    g.addEventListener('click', function () {
      nodes.forEach(function (o) { o.classList.remove('selected'); });
      g.classList.add('selected');
      show(byId[g.dataset.id]);
    });
  });
  document.body.dataset.nodes = String(nodes.length);
  document.body.dataset.edges = String(document.querySelectorAll('path.edge').length);
  document.body.dataset.rendered = 'ok';
})();
"#;

pub(super) fn render(graph: &WorkflowGraph) -> String {
    let placed = layout(graph);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" role="img" aria-label="{name}">"#,
        w = placed.width,
        h = placed.height,
        name = escape(&graph.name)
    );
    svg.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#4a5568"/></marker></defs>"##,
    );
    for edge in &placed.edges {
        let class = if edge.style == EdgeStyle::Dashed {
            "edge dashed"
        } else {
            "edge"
        };
        let _ = write!(
            svg,
            r#"<path class="{class}" d="{}" marker-end="url(#arrow)" data-from="{}" data-to="{}"/>"#,
            edge.path,
            escape(&graph.nodes[edge.from].id),
            escape(&graph.nodes[edge.to].id)
        );
    }
    // Labels after every edge, so no line is drawn over a label.
    for edge in &placed.edges {
        if let (Some(label), Some((x, y))) = (&edge.label, edge.label_at) {
            let _ = write!(
                svg,
                r#"<text class="edge-label" x="{x:.1}" y="{y:.1}" text-anchor="middle" dominant-baseline="central">{}</text>"#,
                escape(label)
            );
        }
    }
    for (node, p) in graph.nodes.iter().zip(&placed.nodes) {
        let look = look(node);
        let (left, top) = (p.x - p.width / 2.0, p.y - NODE_HEIGHT / 2.0);
        let shape = match node.kind {
            NodeKind::External => {
                let (l, r, t, b, inset) = (left, left + p.width, top, top + NODE_HEIGHT, 14.0);
                format!(
                    r#"<polygon points="{:.1},{:.1} {:.1},{t:.1} {:.1},{t:.1} {r:.1},{:.1} {:.1},{b:.1} {:.1},{b:.1}" fill="{}" stroke="{}"/>"#,
                    l,
                    p.y,
                    l + inset,
                    r - inset,
                    p.y,
                    r - inset,
                    l + inset,
                    look.fill,
                    look.stroke
                )
            }
            NodeKind::Event | NodeKind::EventInstance => format!(
                r#"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{NODE_HEIGHT}" rx="19" fill="{}" stroke="{}"/>"#,
                p.width, look.fill, look.stroke
            ),
            NodeKind::Step | NodeKind::StepRun => format!(
                r#"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{NODE_HEIGHT}" rx="5" fill="{}" stroke="{}"/>"#,
                p.width, look.fill, look.stroke
            ),
        };
        let title = match &node.doc {
            Some(doc) => format!("{}\n{doc}", node.label),
            None => node.label.clone(),
        };
        let _ = write!(
            svg,
            r#"<g class="node {class}" data-id="{id}" data-kind="{kind}"><title>{title}</title>{shape}<text x="{x:.1}" y="{y:.1}" text-anchor="middle" dominant-baseline="central">{label}</text></g>"#,
            class = look.class,
            id = escape(&node.id),
            kind = serde_json::to_value(node.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            label = escape(&node.label),
            title = escape(&title),
            x = p.x,
            y = p.y,
        );
    }
    svg.push_str("</svg>");
    // The legend lists the looks this graph uses, in order of appearance.
    let mut seen: Vec<&str> = Vec::new();
    let mut legend = String::new();
    for node in &graph.nodes {
        let look = look(node);
        if seen.contains(&look.legend) {
            continue;
        }
        seen.push(look.legend);
        let radius = match node.kind {
            NodeKind::Event | NodeKind::EventInstance => "6px",
            NodeKind::External => "0",
            NodeKind::Step | NodeKind::StepRun => "2px",
        };
        let _ = write!(
            legend,
            r#"<span class="{}"><i style="background:{};border-color:{};border-radius:{radius}"></i>{}</span>"#,
            look.class, look.fill, look.stroke, look.legend
        );
    }
    if graph.edges.iter().any(|e| e.style == EdgeStyle::Dashed) {
        let kinds: Vec<&str> = {
            let mut kinds: Vec<&str> = graph
                .edges
                .iter()
                .filter(|e| e.style == EdgeStyle::Dashed)
                .map(|e| e.label.as_deref().unwrap_or("to/from the human"))
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            kinds
        };
        let _ = write!(
            legend,
            r#"<span><b class="dash"></b>{}</span>"#,
            escape(&kinds.join(" · "))
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<script>window.addEventListener('error', function (e) {{ document.body.dataset.error = String(e.message || e); }});</script>
<header><h1>{title}</h1><p>{description}</p></header>
<main>
<div id="canvas">{svg}</div>
<aside><div class="legend">{legend}</div><div id="details"><p>Click a node for its details.</p></div></aside>
</main>
<script type="application/json" id="graph-data">{data}</script>
<script>{SCRIPT}</script>
</body>
</html>
"#,
        title = escape(&graph.name),
        description = escape(graph.description.as_deref().unwrap_or("")),
        data = embed_json(graph),
    )
}
