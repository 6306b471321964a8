//! A small layered layout for the HTML drawing: breadth-first layers from the
//! entry nodes, then a few barycentre sweeps to reduce crossings. Good enough
//! for workflow-sized graphs (tens of nodes) and fully deterministic.

use std::collections::{HashMap, VecDeque};

use super::{EdgeStyle, WorkflowGraph};
use crate::event::EventKind;

pub(super) const NODE_HEIGHT: f64 = 38.0;
const LAYER_GAP: f64 = 92.0;
const NODE_GAP: f64 = 34.0;
const MARGIN: f64 = 40.0;

/// A placed node: centre and size.
#[derive(Clone, Debug)]
pub(super) struct Placed {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) width: f64,
    pub(super) layer: usize,
}

/// A routed edge as an SVG path.
pub(super) struct Routed {
    pub(super) path: String,
    pub(super) label_at: (f64, f64),
    pub(super) style: EdgeStyle,
    pub(super) label: Option<String>,
    pub(super) from: usize,
    pub(super) to: usize,
}

pub(super) struct Layout {
    pub(super) nodes: Vec<Placed>,
    pub(super) edges: Vec<Routed>,
    pub(super) width: f64,
    pub(super) height: f64,
}

fn node_width(label: &str) -> f64 {
    (label.chars().count() as f64 * 7.4 + 28.0).max(96.0)
}

pub(super) fn layout(graph: &WorkflowGraph) -> Layout {
    let n = graph.nodes.len();
    let index: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let links: Vec<(usize, usize)> = graph
        .edges
        .iter()
        .filter_map(|e| Some((*index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .collect();
    let mut successors = vec![Vec::new(); n];
    let mut has_incoming = vec![false; n];
    for &(a, b) in &links {
        successors[a].push(b);
        has_incoming[b] = true;
    }
    // Entry points: start events first, then anything nothing points at.
    let is_start = |i: usize| graph.nodes[i].role == Some(EventKind::Start);
    let mut roots: Vec<usize> = (0..n).filter(|&i| is_start(i)).collect();
    roots.extend((0..n).filter(|&i| !has_incoming[i] && !is_start(i)));
    let mut layer = vec![usize::MAX; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let bfs = |roots: &[usize], base: usize, layer: &mut Vec<usize>, order: &mut Vec<usize>| {
        let mut queue: VecDeque<usize> = VecDeque::new();
        for &r in roots {
            if layer[r] == usize::MAX {
                layer[r] = base;
                queue.push_back(r);
            }
        }
        while let Some(i) = queue.pop_front() {
            order.push(i);
            for &s in &successors[i] {
                if layer[s] == usize::MAX {
                    layer[s] = layer[i] + 1;
                    queue.push_back(s);
                }
            }
        }
    };
    bfs(&roots, 0, &mut layer, &mut order);
    // Nodes only reachable through cycles: lay them out below the rest.
    while let Some(rest) = (0..n).find(|&i| layer[i] == usize::MAX) {
        let base = layer.iter().filter(|&&l| l != usize::MAX).max().map_or(0, |m| m + 1);
        bfs(&[rest], base, &mut layer, &mut order);
    }
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for &i in &order {
        rows[layer[i]].push(i);
    }
    // Barycentre sweeps: order each row by the mean position of its parents.
    let mut position = vec![0.0f64; n];
    let mut predecessors = vec![Vec::new(); n];
    for &(a, b) in &links {
        predecessors[b].push(a);
    }
    for _ in 0..4 {
        for row in rows.iter_mut() {
            for (p, &i) in row.iter().enumerate() {
                position[i] = p as f64;
            }
        }
        for (r, row) in rows.iter_mut().enumerate().skip(1) {
            let mut keyed: Vec<(f64, usize)> = row
                .iter()
                .map(|&i| {
                    let parents: Vec<f64> = predecessors[i]
                        .iter()
                        .filter(|&&p| layer[p] < r)
                        .map(|&p| position[p])
                        .collect();
                    let key = if parents.is_empty() {
                        position[i]
                    } else {
                        parents.iter().sum::<f64>() / parents.len() as f64
                    };
                    (key, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            *row = keyed.into_iter().map(|(_, i)| i).collect();
            for (p, &i) in row.iter().enumerate() {
                position[i] = p as f64;
            }
        }
    }
    let widths: Vec<f64> = graph.nodes.iter().map(|n| node_width(&n.label)).collect();
    let row_width = |row: &Vec<usize>| {
        row.iter().map(|&i| widths[i]).sum::<f64>() + NODE_GAP * (row.len().saturating_sub(1)) as f64
    };
    let max_row = rows.iter().map(row_width).fold(0.0, f64::max);
    let mut placed = vec![
        Placed {
            x: 0.0,
            y: 0.0,
            width: 0.0,
            layer: 0,
        };
        n
    ];
    for (r, row) in rows.iter().enumerate() {
        let mut x = MARGIN + (max_row - row_width(row)) / 2.0;
        for &i in row {
            placed[i] = Placed {
                x: x + widths[i] / 2.0,
                y: MARGIN + NODE_HEIGHT / 2.0 + r as f64 * LAYER_GAP,
                width: widths[i],
                layer: r,
            };
            x += widths[i] + NODE_GAP;
        }
    }
    let width = max_row + 2.0 * MARGIN + 120.0;
    let height = MARGIN * 2.0 + NODE_HEIGHT + layers.saturating_sub(1) as f64 * LAYER_GAP;
    let edges = graph
        .edges
        .iter()
        .filter_map(|e| {
            let (a, b) = (*index.get(e.from.as_str())?, *index.get(e.to.as_str())?);
            Some(route(&placed, a, b, e.style, e.label.clone()))
        })
        .collect();
    Layout {
        nodes: placed,
        edges,
        width,
        height,
    }
}

/// Forward edges go bottom → top; back edges and same-layer edges loop around
/// the right-hand side so they never cross the nodes they skip.
fn route(placed: &[Placed], a: usize, b: usize, style: EdgeStyle, label: Option<String>) -> Routed {
    let (pa, pb) = (&placed[a], &placed[b]);
    let half = NODE_HEIGHT / 2.0;
    if pb.layer > pa.layer {
        let (x1, y1, x2, y2) = (pa.x, pa.y + half, pb.x, pb.y - half);
        let mid = (y1 + y2) / 2.0;
        Routed {
            path: format!("M{x1:.1},{y1:.1} C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}"),
            label_at: ((x1 + x2) / 2.0, mid),
            style,
            label,
            from: a,
            to: b,
        }
    } else {
        let (x1, y1) = (pa.x + pa.width / 2.0, pa.y);
        let (x2, y2) = (pb.x + pb.width / 2.0, pb.y);
        let out = x1.max(x2) + 40.0 + 10.0 * (pa.layer.abs_diff(pb.layer)) as f64;
        Routed {
            path: format!("M{x1:.1},{y1:.1} C{out:.1},{y1:.1} {out:.1},{y2:.1} {x2:.1},{y2:.1}"),
            label_at: (out, (y1 + y2) / 2.0),
            style,
            label,
            from: a,
            to: b,
        }
    }
}
