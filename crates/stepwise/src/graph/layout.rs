//! A small layered ("Sugiyama-style") layout for the HTML drawing:
//!
//! 1. cycles are broken by reversing the back edges a depth-first search from
//!    the start event finds (they are still drawn pointing the right way);
//! 2. layers by longest path, with sources other than the start pulled down
//!    next to what they feed (a human's answer sits just above the step
//!    waiting for it);
//! 3. edges spanning several layers get a virtual node per layer crossed, so
//!    they are routed through reserved space and never across a node;
//! 4. barycentre sweeps order each layer, keeping the ordering with the
//!    fewest crossings;
//! 5. x positions by isotonic regression (each node as close as possible to
//!    the mean of its neighbours, in order, without overlaps);
//! 6. edge ends spread along each node's top and bottom, labels placed where
//!    they hit no node and no other label.
//!
//! Good enough for workflow-sized graphs (tens to a few hundred nodes) and
//! fully deterministic.

use std::collections::HashMap;

use super::{EdgeStyle, WorkflowGraph};
use crate::core::event::EventKind;

pub(super) const NODE_HEIGHT: f64 = 38.0;
const LAYER_GAP: f64 = 88.0;
const NODE_GAP: f64 = 30.0;
const DUMMY_WIDTH: f64 = 6.0;
const DUMMY_GAP: f64 = 12.0;
const MARGIN: f64 = 32.0;
const LABEL_HEIGHT: f64 = 12.0;
/// Above this many edges the crossing count is skipped (it is quadratic).
const MAX_EDGES_FOR_CROSSINGS: usize = 1500;

/// A placed node: centre and size.
#[derive(Clone, Debug)]
pub(super) struct Placed {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) width: f64,
}

/// A routed edge as an SVG path.
pub(super) struct Routed {
    pub(super) path: String,
    /// Centre of the label, when the edge has one.
    pub(super) label_at: Option<(f64, f64)>,
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

pub(super) fn node_width(label: &str) -> f64 {
    (label.chars().count() as f64 * 7.2 + 28.0).max(96.0)
}

fn label_width(label: &str) -> f64 {
    label.chars().count() as f64 * 5.8 + 8.0
}

/// How an original edge is laid out.
struct Chain {
    /// Slots from the upper end to the lower end (real nodes at both ends).
    slots: Vec<usize>,
    /// True when the edge points upwards (it was reversed to break a cycle).
    reversed: bool,
    self_loop: bool,
}

pub(super) fn layout(graph: &WorkflowGraph) -> Layout {
    let n = graph.nodes.len();
    let index: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    // Edges whose ends exist, in graph order, with their index in `graph.edges`.
    let links: Vec<(usize, usize, usize)> = graph
        .edges
        .iter()
        .enumerate()
        .filter_map(|(k, e)| Some((k, *index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .collect();
    let mut successors: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut has_incoming = vec![false; n];
    for (li, &(_, a, b)) in links.iter().enumerate() {
        successors[a].push((b, li));
        if a != b {
            has_incoming[b] = true;
        }
    }

    // 1. Depth-first search from the entry points; an edge to a node still on
    //    the stack closes a cycle and is reversed.
    let is_start = |i: usize| graph.nodes[i].role == Some(EventKind::Start);
    let mut roots: Vec<usize> = (0..n).filter(|&i| is_start(i)).collect();
    roots.extend((0..n).filter(|&i| !has_incoming[i] && !is_start(i)));
    roots.extend(0..n);
    let mut back = vec![false; links.len()];
    let mut state = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    let mut preorder = Vec::with_capacity(n);
    for &root in &roots {
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        preorder.push(root);
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            if let Some(&(succ, li)) = successors[node].get(top.1) {
                top.1 += 1;
                match state[succ] {
                    0 => {
                        state[succ] = 1;
                        preorder.push(succ);
                        stack.push((succ, 0));
                    }
                    1 => back[li] = true,
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }

    // 2. Longest-path layers over the acyclic version of the graph.
    let mut dag_succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut dag_pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (li, &(_, a, b)) in links.iter().enumerate() {
        if a == b {
            continue;
        }
        let (u, v) = if back[li] { (b, a) } else { (a, b) };
        if !dag_succ[u].contains(&v) {
            dag_succ[u].push(v);
            dag_pred[v].push(u);
        }
    }
    let mut indegree: Vec<usize> = dag_pred.iter().map(Vec::len).collect();
    let mut topo: Vec<usize> = Vec::with_capacity(n);
    let mut ready: Vec<usize> = preorder.iter().copied().filter(|&i| indegree[i] == 0).collect();
    ready.reverse();
    while let Some(u) = ready.pop() {
        topo.push(u);
        for &v in dag_succ[u].iter().rev() {
            indegree[v] -= 1;
            if indegree[v] == 0 {
                ready.push(v);
            }
        }
    }
    let mut layer = vec![0usize; n];
    for &u in &topo {
        for &v in &dag_succ[u] {
            layer[v] = layer[v].max(layer[u] + 1);
        }
    }
    // Sources other than the start sit right above what they feed.
    for &u in topo.iter().rev() {
        if dag_pred[u].is_empty() && !is_start(u) {
            if let Some(min) = dag_succ[u].iter().map(|&v| layer[v]).min() {
                layer[u] = min.saturating_sub(1);
            }
        }
    }
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);

    // 3. Virtual nodes for edges spanning several layers.
    let mut slot_layer: Vec<usize> = layer.clone();
    let mut slot_width: Vec<f64> = graph.nodes.iter().map(|n| node_width(&n.label)).collect();
    let mut chains: Vec<Chain> = Vec::with_capacity(links.len());
    for (li, &(_, a, b)) in links.iter().enumerate() {
        if a == b {
            chains.push(Chain {
                slots: vec![a],
                reversed: false,
                self_loop: true,
            });
            continue;
        }
        let reversed = back[li];
        let (u, v) = if reversed { (b, a) } else { (a, b) };
        let mut slots = vec![u];
        for l in layer[u] + 1..layer[v] {
            slot_layer.push(l);
            slot_width.push(DUMMY_WIDTH);
            slots.push(slot_layer.len() - 1);
        }
        slots.push(v);
        chains.push(Chain {
            slots,
            reversed,
            self_loop: false,
        });
    }
    let slots = slot_layer.len();
    let is_dummy = |s: usize| s >= n;
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); slots];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); slots];
    for chain in &chains {
        for pair in chain.slots.windows(2) {
            down[pair[0]].push(pair[1]);
            up[pair[1]].push(pair[0]);
        }
    }

    // 4. Order within layers: start from the search order, then barycentre
    //    sweeps, keeping the ordering with the fewest crossings.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for &i in &preorder {
        rows[layer[i]].push(i);
    }
    for s in n..slots {
        rows[slot_layer[s]].push(s);
    }
    let mut position = vec![0.0f64; slots];
    let set_positions = |rows: &Vec<Vec<usize>>, position: &mut Vec<f64>| {
        for row in rows {
            for (p, &s) in row.iter().enumerate() {
                position[s] = p as f64;
            }
        }
    };
    set_positions(&rows, &mut position);
    let count = links.len() <= MAX_EDGES_FOR_CROSSINGS;
    let mut best = rows.clone();
    let mut best_crossings = if count { crossings(&rows, &down, &position) } else { 0 };
    for sweep in 0..12 {
        let downward = sweep % 2 == 0;
        let order: Vec<usize> = if downward {
            (1..layers).collect()
        } else {
            (0..layers.saturating_sub(1)).rev().collect()
        };
        for r in order {
            let neighbours = if downward { &up } else { &down };
            let mut keyed: Vec<(f64, usize)> = rows[r]
                .iter()
                .map(|&s| {
                    let ns = &neighbours[s];
                    let key = if ns.is_empty() {
                        position[s]
                    } else {
                        ns.iter().map(|&o| position[o]).sum::<f64>() / ns.len() as f64
                    };
                    (key, s)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            rows[r] = keyed.into_iter().map(|(_, s)| s).collect();
            for (p, &s) in rows[r].iter().enumerate() {
                position[s] = p as f64;
            }
        }
        if count {
            let c = crossings(&rows, &down, &position);
            if c < best_crossings {
                best_crossings = c;
                best = rows.clone();
            }
        } else {
            best = rows.clone();
        }
    }
    let rows = best;

    // 5. x positions: each slot near the mean of its neighbours, in row order,
    //    without overlaps.
    let gap = |a: usize, b: usize| {
        let g = if is_dummy(a) || is_dummy(b) {
            DUMMY_GAP
        } else {
            NODE_GAP
        };
        slot_width[a] / 2.0 + g + slot_width[b] / 2.0
    };
    let mut x = vec![0.0f64; slots];
    for row in &rows {
        let mut at = 0.0;
        for (p, &s) in row.iter().enumerate() {
            if p > 0 {
                at += gap(row[p - 1], s);
            }
            x[s] = at;
        }
        // Centre rows on each other to start with.
        let shift = -at / 2.0;
        for &s in row {
            x[s] += shift;
        }
    }
    // Alternate downward sweeps (towards the parents) and upward sweeps
    // (towards the children), ending downward so chains hang straight.
    for round in 0..11 {
        let downward = round % 2 == 0;
        let order: Vec<usize> = if downward {
            (0..layers).collect()
        } else {
            (0..layers).rev().collect()
        };
        for r in order {
            let row = &rows[r];
            let desired: Vec<f64> = row
                .iter()
                .map(|&s| {
                    let ns = match (downward, up[s].is_empty(), down[s].is_empty()) {
                        (true, false, _) | (false, _, true) => &up[s],
                        _ => &down[s],
                    };
                    if ns.is_empty() {
                        x[s]
                    } else {
                        ns.iter().map(|&o| x[o]).sum::<f64>() / ns.len() as f64
                    }
                })
                .collect();
            let seps: Vec<f64> = row.windows(2).map(|w| gap(w[0], w[1])).collect();
            let placed = fit_in_order(&desired, &seps);
            for (&s, px) in row.iter().zip(placed) {
                x[s] = px;
            }
        }
    }
    let left = (0..slots)
        .map(|s| x[s] - slot_width[s] / 2.0)
        .fold(f64::INFINITY, f64::min);
    let shift = if left.is_finite() { MARGIN - left } else { MARGIN };
    for v in &mut x {
        *v += shift;
    }
    let y = |s: usize| MARGIN + NODE_HEIGHT / 2.0 + slot_layer[s] as f64 * LAYER_GAP;
    let placed: Vec<Placed> = (0..n)
        .map(|i| Placed {
            x: x[i],
            y: y(i),
            width: slot_width[i],
        })
        .collect();

    // 6. Ports: edge ends spread along the top and bottom of each node,
    //    ordered by where the edge goes next.
    let half = NODE_HEIGHT / 2.0;
    // (chain, end) pairs per node side; end 0 = upper end (leaves the bottom),
    // end 1 = lower end (enters the top).
    let mut bottom: Vec<Vec<(f64, usize)>> = vec![Vec::new(); n];
    let mut top: Vec<Vec<(f64, usize)>> = vec![Vec::new(); n];
    for (c, chain) in chains.iter().enumerate() {
        if chain.self_loop {
            continue;
        }
        let s = &chain.slots;
        bottom[s[0]].push((x[s[1]], c));
        top[s[s.len() - 1]].push((x[s[s.len() - 2]], c));
    }
    let mut port_bottom: HashMap<usize, f64> = HashMap::new();
    let mut port_top: HashMap<usize, f64> = HashMap::new();
    for (i, p) in placed.iter().enumerate() {
        for (side, ports) in [(&mut bottom[i], &mut port_bottom), (&mut top[i], &mut port_top)] {
            side.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            let k = side.len();
            let spacing = (p.width * 0.6 / k.max(1) as f64).min(16.0);
            for (j, &(_, c)) in side.iter().enumerate() {
                ports.insert(c, p.x + (j as f64 - (k as f64 - 1.0) / 2.0) * spacing);
            }
        }
    }

    // Obstacles for labels: every node's box.
    let mut taken: Vec<(f64, f64, f64, f64)> = placed
        .iter()
        .map(|p| (p.x - p.width / 2.0, p.y - half, p.x + p.width / 2.0, p.y + half))
        .collect();
    // Virtual nodes count too: long edges run through them.
    let mut right = (0..slots).map(|s| x[s] + slot_width[s] / 2.0).fold(0.0, f64::max);
    let mut edges = Vec::with_capacity(chains.len());
    for (c, chain) in chains.iter().enumerate() {
        let (k, a, b) = links[c];
        let edge = &graph.edges[k];
        let (path, anchor) = if chain.self_loop {
            let p = &placed[a];
            let (rx, y0) = (p.x + p.width / 2.0, p.y);
            let out = rx + 36.0;
            (
                format!(
                    "M{rx:.1},{:.1} C{out:.1},{:.1} {out:.1},{:.1} {rx:.1},{:.1}",
                    y0 - 8.0,
                    y0 - 24.0,
                    y0 + 24.0,
                    y0 + 8.0
                ),
                (out + 4.0, y0),
            )
        } else {
            // Points from the upper end to the lower end.
            let s = &chain.slots;
            let mut points: Vec<(f64, f64)> = Vec::with_capacity(2 * s.len());
            points.push((port_bottom[&c], y(s[0]) + half));
            for &d in &s[1..s.len() - 1] {
                points.push((x[d], y(d) - half));
                points.push((x[d], y(d) + half));
            }
            points.push((port_top[&c], y(s[s.len() - 1]) - half));
            if chain.reversed {
                points.reverse();
            }
            let mut path = format!("M{:.1},{:.1}", points[0].0, points[0].1);
            for pair in points.windows(2) {
                let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
                if (x1 - x2).abs() < 0.05 {
                    path.push_str(&format!(" L{x2:.1},{y2:.1}"));
                } else {
                    let mid = (y1 + y2) / 2.0;
                    path.push_str(&format!(" C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}"));
                }
            }
            // Labels go on the first segment, near its source.
            let ((x1, y1), (x2, y2)) = (points[0], points[1]);
            (path, ((x1 + x2) / 2.0, (y1 + y2) / 2.0))
        };
        let label_at = edge.label.as_ref().map(|text| {
            let w = label_width(text);
            let candidates = [
                (0.0, 0.0),
                (0.0, -14.0),
                (0.0, 14.0),
                (w / 2.0 + 6.0, 0.0),
                (-w / 2.0 - 6.0, 0.0),
                (w / 2.0 + 6.0, -14.0),
                (-w / 2.0 - 6.0, 14.0),
                (0.0, -28.0),
                (0.0, 28.0),
            ];
            let boxed = |(cx, cy): (f64, f64)| {
                (
                    cx - w / 2.0,
                    cy - LABEL_HEIGHT / 2.0,
                    cx + w / 2.0,
                    cy + LABEL_HEIGHT / 2.0,
                )
            };
            let spot = candidates
                .iter()
                .map(|(dx, dy)| (anchor.0 + dx, anchor.1 + dy))
                .find(|&at| {
                    let bx = boxed(at);
                    bx.0 >= 2.0 && bx.1 >= 2.0 && !taken.iter().any(|t| overlaps(*t, bx))
                })
                .unwrap_or((anchor.0.max(w / 2.0 + 2.0), anchor.1));
            taken.push(boxed(spot));
            right = right.max(spot.0 + w / 2.0);
            spot
        });
        if chain.self_loop {
            right = right.max(anchor.0);
        }
        edges.push(Routed {
            path,
            label_at,
            style: edge.style,
            label: edge.label.clone(),
            from: a,
            to: b,
        });
    }
    let width = right + MARGIN;
    let height = MARGIN * 2.0 + NODE_HEIGHT + layers.saturating_sub(1) as f64 * LAYER_GAP;
    Layout {
        nodes: placed,
        edges,
        width,
        height,
    }
}

fn overlaps(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Edge crossings between consecutive layers.
fn crossings(rows: &[Vec<usize>], down: &[Vec<usize>], position: &[f64]) -> usize {
    let mut total = 0;
    for row in rows {
        let mut segments: Vec<(f64, f64)> = Vec::new();
        for &s in row {
            for &t in &down[s] {
                segments.push((position[s], position[t]));
            }
        }
        for i in 0..segments.len() {
            for j in i + 1..segments.len() {
                let (a, b) = (segments[i], segments[j]);
                if (a.0 - b.0) * (a.1 - b.1) < 0.0 {
                    total += 1;
                }
            }
        }
    }
    total
}

/// Positions as close as possible (least squares) to `desired`, in order,
/// with at least `seps[i]` between item `i` and item `i + 1`: isotonic
/// regression by pooling adjacent violators.
fn fit_in_order(desired: &[f64], seps: &[f64]) -> Vec<f64> {
    let mut offsets = Vec::with_capacity(desired.len());
    let mut acc = 0.0;
    for i in 0..desired.len() {
        if i > 0 {
            acc += seps[i - 1];
        }
        offsets.push(acc);
    }
    // Blocks of (sum, count); the block value is the mean.
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for (d, o) in desired.iter().zip(&offsets) {
        blocks.push((d - o, 1));
        while blocks.len() > 1 {
            let (s2, c2) = blocks[blocks.len() - 1];
            let (s1, c1) = blocks[blocks.len() - 2];
            if s1 / c1 as f64 > s2 / c2 as f64 {
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (s1 + s2, c1 + c2);
            } else {
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(desired.len());
    for (sum, count) in blocks {
        let value = sum / count as f64;
        for _ in 0..count {
            let o = offsets[out.len()];
            out.push(value + o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::{fit_in_order, layout, NODE_HEIGHT};
    use crate::core::event::EventKind;
    use crate::graph::{EdgeStyle, GraphEdge, GraphNode, NodeKind, WorkflowGraph};

    fn graph(labels: &[usize], edges: &[(usize, usize, bool)]) -> WorkflowGraph {
        let n = labels.len();
        WorkflowGraph {
            name: "random".into(),
            description: None,
            nodes: labels
                .iter()
                .enumerate()
                .map(|(i, &len)| GraphNode {
                    id: format!("n{i}"),
                    kind: if i % 2 == 0 { NodeKind::Event } else { NodeKind::Step },
                    label: "x".repeat(len),
                    role: (i == 0).then_some(EventKind::Start),
                    doc: None,
                    schema: None,
                    status: None,
                    details: BTreeMap::new(),
                })
                .collect(),
            edges: edges
                .iter()
                .map(|&(a, b, labelled)| GraphEdge {
                    from: format!("n{}", a % n),
                    to: format!("n{}", b % n),
                    label: labelled.then(|| "waits for".to_owned()),
                    style: if labelled { EdgeStyle::Dashed } else { EdgeStyle::Solid },
                })
                .collect(),
        }
    }

    /// Every number pair in an SVG path.
    fn points(path: &str) -> Vec<(f64, f64)> {
        path.split(|c: char| c.is_ascii_alphabetic() || c == ' ')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    proptest! {
        #[test]
        fn everything_is_on_the_canvas_and_nodes_never_overlap(
            labels in prop::collection::vec(1usize..30, 1..24),
            edges in prop::collection::vec((0usize..24, 0usize..24, any::<bool>()), 0..60),
        ) {
            let g = graph(&labels, &edges);
            let l = layout(&g);
            prop_assert_eq!(l.nodes.len(), g.nodes.len());
            prop_assert_eq!(l.edges.len(), g.edges.len());
            let half = NODE_HEIGHT / 2.0;
            for (i, p) in l.nodes.iter().enumerate() {
                prop_assert!(p.x - p.width / 2.0 >= 0.0 && p.x + p.width / 2.0 <= l.width, "node {} off the canvas sideways", i);
                prop_assert!(p.y - half >= 0.0 && p.y + half <= l.height, "node {} off the canvas vertically", i);
                for (j, q) in l.nodes.iter().enumerate().skip(i + 1) {
                    let apart = (p.x - q.x).abs() >= (p.width + q.width) / 2.0 || (p.y - q.y).abs() >= NODE_HEIGHT;
                    prop_assert!(apart, "nodes {} and {} overlap", i, j);
                }
            }
            for e in &l.edges {
                for (x, y) in points(&e.path) {
                    prop_assert!((0.0..=l.width).contains(&x) && (0.0..=l.height).contains(&y), "edge point ({}, {}) off the canvas", x, y);
                }
                if let Some((x, y)) = e.label_at {
                    prop_assert!(x > 0.0 && x < l.width && y > 0.0 && y < l.height, "label at ({}, {})", x, y);
                }
            }
        }
    }

    #[test]
    fn a_chain_hangs_straight_and_a_cycle_points_back_up() {
        // start -> a -> b -> c, and c -> a.
        let g = graph(
            &[5, 5, 5, 5],
            &[(0, 1, false), (1, 2, false), (2, 3, false), (3, 1, true)],
        );
        let l = layout(&g);
        let ys: Vec<f64> = l.nodes.iter().map(|p| p.y).collect();
        assert!(
            ys.windows(2).all(|w| w[0] < w[1]),
            "one node per layer, top to bottom: {ys:?}"
        );
        // The back edge starts at c's top and ends at a's bottom.
        let back = &l.edges[3];
        let pts = points(&back.path);
        assert!(
            (pts[0].1 - (l.nodes[3].y - NODE_HEIGHT / 2.0)).abs() < 0.1,
            "{}",
            back.path
        );
        assert!(
            (pts[pts.len() - 1].1 - (l.nodes[1].y + NODE_HEIGHT / 2.0)).abs() < 0.1,
            "{}",
            back.path
        );
        assert!(back.label_at.is_some());
    }

    #[test]
    fn fitting_keeps_order_and_separation() {
        let placed = fit_in_order(&[10.0, 10.0, 10.0], &[4.0, 4.0]);
        assert_eq!(placed, vec![6.0, 10.0, 14.0]);
        let placed = fit_in_order(&[0.0, 100.0], &[4.0]);
        assert_eq!(placed, vec![0.0, 100.0]);
        let placed = fit_in_order(&[5.0, 0.0], &[10.0]);
        assert_eq!(placed, vec![-2.5, 7.5]);
    }
}
