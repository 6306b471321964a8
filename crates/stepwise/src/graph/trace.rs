//! A run's trace drawn: the steps and events it took, over the workflow's
//! definition (the trace itself is replayed by `durable::trace`).

use std::collections::HashMap;

use super::{EdgeStyle, GraphEdge, GraphNode, NodeKind, WorkflowGraph};
use crate::core::define::workflow::Workflow;
use crate::core::event::{Event, EventKind};
use crate::durable::trace::{RunTrace, TraceOutcome};

impl RunTrace {
    /// The trace as a graph: one node per invocation and per event instance.
    pub fn graph(&self) -> WorkflowGraph {
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for (i, event) in self.events.iter().enumerate() {
            let mut node = GraphNode::new(
                format!("ev:{i}"),
                NodeKind::EventInstance,
                format!("{} #{i}", event.name),
            );
            node.details
                .insert("at_ms".into(), (event.at_us as f64 / 1000.0).into());
            node.role = Some(event.kind);
            nodes.push(node);
            if let Some(source) = event.source {
                let (label, style) = match event.kind {
                    EventKind::InputRequired => (Some("asks"), EdgeStyle::Dashed),
                    _ if event.name == crate::core::builtin::StepFailed::NAME => (Some("fails"), EdgeStyle::Dashed),
                    _ => (None, EdgeStyle::Solid),
                };
                edges.push(GraphEdge {
                    from: format!("run:{source}"),
                    to: format!("ev:{i}"),
                    label: label.map(str::to_owned),
                    style,
                });
            }
        }
        let mut last_attempt: HashMap<(String, usize), usize> = HashMap::new();
        for (j, step) in self.steps.iter().enumerate() {
            let took = step
                .finished_us
                .map(|f| format!(" · {:.1} ms", (f.saturating_sub(step.started_us)) as f64 / 1000.0))
                .unwrap_or_default();
            let mut node = GraphNode::new(
                format!("run:{j}"),
                NodeKind::StepRun,
                format!("{} (w{}){took}", step.step, step.worker),
            );
            let status = match &step.outcome {
                TraceOutcome::Ok => "ok",
                TraceOutcome::Retried { error } | TraceOutcome::Failed { error } => {
                    node.details.insert("error".into(), error.clone().into());
                    if matches!(step.outcome, TraceOutcome::Retried { .. }) {
                        "retried"
                    } else {
                        "failed"
                    }
                }
                TraceOutcome::Running => "running",
                TraceOutcome::Interrupted => "interrupted",
                TraceOutcome::Cancelled => "cancelled",
            };
            node.status = Some(status.into());
            node.details
                .insert("started_ms".into(), (step.started_us as f64 / 1000.0).into());
            nodes.push(node);
            for &answer in &step.waited_for {
                edges.push(GraphEdge {
                    from: format!("ev:{answer}"),
                    to: format!("run:{j}"),
                    label: Some("answers".into()),
                    style: EdgeStyle::Dashed,
                });
            }
            let key = (step.step.clone(), step.input);
            match last_attempt.insert(key, j) {
                Some(previous) => edges.push(GraphEdge {
                    from: format!("run:{previous}"),
                    to: format!("run:{j}"),
                    label: Some(
                        match self.steps[previous].outcome {
                            TraceOutcome::Interrupted => "resumed",
                            _ => "retry",
                        }
                        .into(),
                    ),
                    style: EdgeStyle::Dashed,
                }),
                None => edges.push(GraphEdge {
                    from: format!("ev:{}", step.input),
                    to: format!("run:{j}"),
                    label: None,
                    style: EdgeStyle::Solid,
                }),
            }
        }
        WorkflowGraph {
            name: format!("{} — run {}", self.workflow, self.run_id),
            description: Some(format!(
                "{} step invocations, {} events",
                self.steps.len(),
                self.events.len()
            )),
            nodes,
            edges,
        }
    }
}

impl<S: Event, O: Event> Workflow<S, O> {
    /// The graph of every possible flow, built from the definition.
    pub fn graph(&self) -> WorkflowGraph {
        WorkflowGraph::of_workflow(&self.core)
    }
}
