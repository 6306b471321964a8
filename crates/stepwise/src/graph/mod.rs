//! Workflows and runs as graphs: data first, then drawings.
//!
//! [`WorkflowGraph`] is the representation: nodes for steps, events and the
//! outside world (people answering input requests), and edges step → emitted
//! event → accepting step. [`Workflow::graph`](crate::Workflow::graph) builds it
//! from the validated definition without running anything; a run's actual path
//! ([`RunTrace`]) uses the same shape with one node per step invocation and per
//! event instance. Every graph renders to Mermaid, Graphviz DOT, JSON and a
//! self-contained HTML page that works offline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::define::workflow::WorkflowCore;
use crate::core::event::{EventKind, EventType};

mod dot;
mod html;
mod layout;
mod mermaid;
mod trace;

pub use crate::durable::trace::{RunTrace, TraceError, TraceEvent, TraceOutcome, TraceStep};

/// What a node stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A step of the workflow.
    Step,
    /// An event type.
    Event,
    /// The outside world: whoever answers input requests.
    External,
    /// One invocation of a step in a run.
    StepRun,
    /// One event instance in a run.
    EventInstance,
}

/// How an edge is drawn.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeStyle {
    /// An ordinary flow.
    Solid,
    /// A declared send, a failure path, or a retry.
    Dashed,
}

/// A node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Unique within the graph, e.g. `step:step_two`, `event:StopEvent`.
    pub id: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// The text shown.
    pub label: String,
    /// For events: their role (start, stop, input request, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<EventKind>,
    /// The step's doc comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// The event's JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// For run nodes: `ok`, `failed`, `retried`, `cancelled`, `running`,
    /// `interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Anything else worth showing (workers, timings, errors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Value>,
}

impl GraphNode {
    fn new(id: String, kind: NodeKind, label: impl Into<String>) -> Self {
        GraphNode {
            id,
            kind,
            label: label.into(),
            role: None,
            doc: None,
            schema: None,
            status: None,
            details: BTreeMap::new(),
        }
    }
}

/// An edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// Optional text on the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How it is drawn.
    pub style: EdgeStyle,
}

/// A workflow (or one run of it) as a graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowGraph {
    /// The workflow's name (and run id, for a run).
    pub name: String,
    /// The workflow's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Nodes, in a stable order.
    pub nodes: Vec<GraphNode>,
    /// Edges, in a stable order.
    pub edges: Vec<GraphEdge>,
}

/// The drawing formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DrawFormat {
    /// Mermaid `flowchart`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// A self-contained HTML page (inline SVG, no network).
    Html,
    /// The graph as JSON.
    Json,
}

impl std::str::FromStr for DrawFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mermaid" => Ok(DrawFormat::Mermaid),
            "dot" => Ok(DrawFormat::Dot),
            "html" => Ok(DrawFormat::Html),
            "json" => Ok(DrawFormat::Json),
            other => Err(format!("unknown format `{other}`; use mermaid, dot, html or json")),
        }
    }
}

impl WorkflowGraph {
    /// Renders the graph.
    pub fn draw(&self, format: DrawFormat) -> String {
        match format {
            DrawFormat::Mermaid => self.to_mermaid(),
            DrawFormat::Dot => self.to_dot(),
            DrawFormat::Html => self.to_html(),
            DrawFormat::Json => self.to_json(),
        }
    }

    /// Mermaid `flowchart TD` text.
    pub fn to_mermaid(&self) -> String {
        mermaid::render(self)
    }

    /// Graphviz DOT text.
    pub fn to_dot(&self) -> String {
        dot::render(self)
    }

    /// A standalone HTML page showing the graph as inline SVG. It loads
    /// nothing from the network.
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&GraphNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Builds the graph of every possible flow of a workflow.
    pub(crate) fn of_workflow(workflow: &WorkflowCore) -> Self {
        let mut nodes: Vec<GraphNode> = Vec::new();
        let mut edges: Vec<GraphEdge> = Vec::new();
        let mut events: Vec<EventType> = Vec::new();
        let note_event = |ty: EventType, events: &mut Vec<EventType>| {
            if !events.contains(&ty) {
                events.push(ty);
            }
        };
        let edge = |from: String, to: String, label: Option<&str>, style: EdgeStyle| GraphEdge {
            from,
            to,
            label: label.map(str::to_owned),
            style,
        };
        for (index, step) in workflow.steps.iter().enumerate() {
            let id = step_id(step.name());
            let mut node = GraphNode::new(id.clone(), NodeKind::Step, step.name());
            node.doc = step.config.doc.clone();
            node.details
                .insert("num_workers".into(), step.config.num_workers.into());
            if step.config.retry.is_some() {
                node.details.insert("retries".into(), true.into());
            }
            if let Some(catch) = &step.config.catch {
                let covers: Value = match catch.steps() {
                    Some(steps) => steps.to_vec().into(),
                    None => "all".into(),
                };
                node.details.insert("handles_errors_of".into(), covers);
            }
            nodes.push(node);
            for ty in &step.accepts {
                note_event(*ty, &mut events);
                edges.push(edge(event_id(ty.name()), id.clone(), None, EdgeStyle::Solid));
            }
            for ty in &step.returns {
                note_event(*ty, &mut events);
                edges.push(edge(id.clone(), event_id(ty.name()), None, EdgeStyle::Solid));
            }
            for ty in &step.config.extra_emits {
                note_event(*ty, &mut events);
                edges.push(edge(id.clone(), event_id(ty.name()), Some("sends"), EdgeStyle::Dashed));
            }
            for ty in &step.config.waits_for {
                note_event(*ty, &mut events);
                edges.push(edge(
                    event_id(ty.name()),
                    id.clone(),
                    Some("waits for"),
                    EdgeStyle::Dashed,
                ));
            }
            if let Some((handler, _)) = workflow.error_handler(index) {
                let failed = EventType::of::<crate::core::builtin::StepFailed>();
                note_event(failed, &mut events);
                let _ = handler;
                edges.push(edge(
                    id.clone(),
                    event_id(failed.name()),
                    Some("fails"),
                    EdgeStyle::Dashed,
                ));
            }
        }
        let mut human = false;
        for ty in &events {
            let mut node = GraphNode::new(event_id(ty.name()), NodeKind::Event, ty.name());
            node.role = Some(ty.kind());
            node.schema = Some(ty.schema());
            nodes.push(node);
            match ty.kind() {
                EventKind::InputRequired => {
                    human = true;
                    edges.push(edge(event_id(ty.name()), EXTERNAL.into(), None, EdgeStyle::Dashed));
                }
                EventKind::HumanResponse => {
                    human = true;
                    edges.push(edge(EXTERNAL.into(), event_id(ty.name()), None, EdgeStyle::Dashed));
                }
                _ => {}
            }
        }
        if human {
            nodes.push(GraphNode::new(EXTERNAL.into(), NodeKind::External, "human"));
        }
        edges.dedup();
        WorkflowGraph {
            name: workflow.name.clone(),
            description: workflow.doc.clone(),
            nodes,
            edges,
        }
    }
}

/// The id of the outside-world node.
pub const EXTERNAL: &str = "external";

fn step_id(name: &str) -> String {
    format!("step:{name}")
}

fn event_id(name: &str) -> String {
    format!("event:{name}")
}

/// The look of a node, shared by all renderers.
pub(crate) struct Look {
    pub(crate) fill: &'static str,
    pub(crate) stroke: &'static str,
    /// CSS / Mermaid class.
    pub(crate) class: &'static str,
    /// What the legend calls it.
    pub(crate) legend: &'static str,
}

const fn look_of(fill: &'static str, stroke: &'static str, class: &'static str, legend: &'static str) -> Look {
    Look {
        fill,
        stroke,
        class,
        legend,
    }
}

pub(crate) fn look(node: &GraphNode) -> Look {
    match (node.kind, node.role) {
        (NodeKind::Step, _) => look_of("#ADD8E6", "#2B6CB0", "step", "step"),
        (NodeKind::StepRun, _) => match node.status.as_deref() {
            Some("failed") => look_of("#F4A6A6", "#C0392B", "failed", "failed step"),
            Some("retried") => look_of("#FFD59E", "#C05621", "retried", "failed, retried"),
            Some("cancelled") => look_of("#D9D9D9", "#718096", "cancelled", "cancelled step"),
            Some("interrupted") => look_of("#E2E8F0", "#4A5568", "interrupted", "interrupted, resumed"),
            Some("running") => look_of("#FFF3B0", "#B7791F", "running", "running step"),
            _ => look_of("#ADD8E6", "#2B6CB0", "step", "step"),
        },
        (NodeKind::External, _) => look_of("#BEDAE4", "#4A6572", "external", "human (outside world)"),
        (_, Some(EventKind::Start)) => look_of("#E27AFF", "#8E24AA", "start", "start event"),
        (_, Some(EventKind::Stop)) => look_of("#FFA07A", "#C0392B", "stop", "stop event"),
        (_, Some(EventKind::InputRequired | EventKind::HumanResponse)) => {
            look_of("#FFE08A", "#B7791F", "human", "input request / answer")
        }
        (_, Some(EventKind::Termination)) => look_of("#F4A6A6", "#C0392B", "termination", "run ended abnormally"),
        _ => look_of("#90EE90", "#2F855A", "event", "event"),
    }
}
