//! Drawings of workflows: golden files for the seed workflows and the
//! document pipeline (Mermaid, DOT, JSON), and the graph representation
//! itself — nodes, edges, the human node, escaping.
//!
//! `UPDATE_GOLDEN=1 cargo test -p stepwise-demo --test drawing` rewrites the
//! golden files under `tests/golden/`; review the diff before committing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::graph::{DrawFormat, EdgeStyle, NodeKind, WorkflowGraph};
use stepwise::{
    CatchErrors, Event, EventKind, HumanResponseEvent, InputRequiredEvent, StartEvent, StepConfig, StepError,
    StepFailed, StopEvent, Workflow, WorkflowDefinition,
};
use stepwise_demo::pipeline::DocumentPipeline;
use stepwise_demo::seed::{ConcurrentFlow, Latency, MultiEventFlow, ParallelFlow};

fn latency() -> Latency {
    Latency::Fixed(Arc::new(|_| Duration::from_millis(1)))
}

/// The four demo workflows' graphs, by workflow name.
fn demo_graphs() -> Vec<(String, WorkflowGraph)> {
    let graphs = vec![
        ParallelFlow { latency: latency() }.build().unwrap().graph(),
        ConcurrentFlow {
            latency: latency(),
            collected: Arc::default(),
        }
        .build()
        .unwrap()
        .graph(),
        MultiEventFlow {
            latency: latency(),
            order: Arc::default(),
        }
        .build()
        .unwrap()
        .graph(),
        DocumentPipeline::default().build().unwrap().graph(),
    ];
    graphs.into_iter().map(|g| (g.name.clone(), g)).collect()
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

/// Compares `actual` with the golden file, or rewrites it with `UPDATE_GOLDEN=1`.
fn check_golden(file: &str, actual: &str) {
    let path = golden_dir().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}\n(run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the golden file at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (if the change is intended: UPDATE_GOLDEN=1 cargo test -p stepwise-demo --test drawing, then review the diff)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn golden_mermaid() {
    for (name, graph) in demo_graphs() {
        check_golden(&format!("{name}.mmd"), &graph.to_mermaid());
    }
}

#[test]
fn golden_dot() {
    for (name, graph) in demo_graphs() {
        check_golden(&format!("{name}.dot"), &graph.to_dot());
    }
}

#[test]
fn golden_json() {
    for (name, graph) in demo_graphs() {
        check_golden(&format!("{name}.json"), &format!("{}\n", graph.to_json()));
    }
}

#[test]
fn json_round_trips() {
    for (_, graph) in demo_graphs() {
        let back: WorkflowGraph = serde_json::from_str(&graph.to_json()).unwrap();
        assert_eq!(back, graph);
    }
}

#[test]
fn draw_dispatches_to_every_format() {
    let (_, graph) = demo_graphs().remove(0);
    assert_eq!(graph.draw(DrawFormat::Mermaid), graph.to_mermaid());
    assert_eq!(graph.draw(DrawFormat::Dot), graph.to_dot());
    assert_eq!(graph.draw(DrawFormat::Json), graph.to_json());
    assert_eq!(graph.draw(DrawFormat::Html), graph.to_html());
    for (text, format) in [
        ("mermaid", DrawFormat::Mermaid),
        ("dot", DrawFormat::Dot),
        ("html", DrawFormat::Html),
        ("json", DrawFormat::Json),
    ] {
        assert_eq!(text.parse::<DrawFormat>().unwrap(), format);
    }
    let error = "svg".parse::<DrawFormat>().unwrap_err();
    assert!(
        error.contains("svg") && error.contains("mermaid, dot, html or json"),
        "{error}"
    );
}

fn has_edge(graph: &WorkflowGraph, from: &str, to: &str) -> bool {
    graph.edges.iter().any(|e| e.from == from && e.to == to)
}

fn edge<'a>(graph: &'a WorkflowGraph, from: &str, to: &str) -> &'a stepwise::graph::GraphEdge {
    graph
        .edges
        .iter()
        .find(|e| e.from == from && e.to == to)
        .unwrap_or_else(|| panic!("no edge {from} -> {to} in {:#?}", graph.edges))
}

#[test]
fn every_step_and_event_is_a_node_with_edges_both_ways() {
    let pipeline = DocumentPipeline::default().build().unwrap();
    let graph = pipeline.graph();
    let ids: BTreeSet<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), graph.nodes.len(), "node ids are unique");
    for step in pipeline.steps() {
        let id = format!("step:{}", step.name);
        let node = graph.node(&id).unwrap_or_else(|| panic!("no node {id}"));
        assert_eq!(node.kind, NodeKind::Step);
        assert_eq!(node.doc, step.doc, "step nodes carry the doc comment");
        assert!(node.doc.is_some(), "{id} has a doc comment");
        for accepted in &step.accepts {
            let event = format!("event:{}", accepted.name());
            assert!(has_edge(&graph, &event, &id), "event -> step edge {event} -> {id}");
        }
        for returned in &step.returns {
            let event = format!("event:{}", returned.name());
            assert!(has_edge(&graph, &id, &event), "step -> event edge {id} -> {event}");
        }
    }
    let used = pipeline
        .steps()
        .into_iter()
        .flat_map(|s| s.accepts.into_iter().chain(s.returns).chain(s.sends));
    for event in used {
        let id = format!("event:{}", event.name());
        let node = graph.node(&id).unwrap_or_else(|| panic!("no node {id}"));
        assert_eq!(node.kind, NodeKind::Event);
        assert_eq!(node.role, Some(event.kind()));
        assert_eq!(
            node.schema.as_ref(),
            Some(&event.schema()),
            "event nodes carry the schema"
        );
    }
    // Every edge joins existing nodes, and steps only link to events.
    for e in &graph.edges {
        let (from, to) = (graph.node(&e.from).unwrap(), graph.node(&e.to).unwrap());
        assert_ne!(from.kind, to.kind, "{e:?}");
    }
    // The schema is real: Chunk's fields are there.
    let chunk = graph.node("event:Chunk").unwrap().schema.clone().unwrap();
    assert_eq!(chunk["properties"]["index"]["type"], "integer", "{chunk}");
    assert_eq!(graph.node("step:summarize").unwrap().details["retries"], true);
    assert_eq!(graph.node("step:summarize").unwrap().details["num_workers"], 4);
}

#[test]
fn declared_sends_and_waits_are_dashed_labelled_edges() {
    let graph = DocumentPipeline::default().build().unwrap().graph();
    let sends = edge(&graph, "step:review", "event:InputRequiredEvent");
    assert_eq!(
        (sends.label.as_deref(), sends.style),
        (Some("sends"), EdgeStyle::Dashed)
    );
    let waits = edge(&graph, "event:HumanResponseEvent", "step:review");
    assert_eq!(
        (waits.label.as_deref(), waits.style),
        (Some("waits for"), EdgeStyle::Dashed)
    );
    // Returned events are solid and unlabelled.
    let returns = edge(&graph, "step:review", "event:StopEvent");
    assert_eq!((returns.label.as_deref(), returns.style), (None, EdgeStyle::Solid));
    // The seed's `emits = [...]` sends.
    let multi = MultiEventFlow {
        latency: latency(),
        order: Arc::default(),
    }
    .build()
    .unwrap()
    .graph();
    for event in ["StepAEvent", "StepBEvent", "StepCEvent"] {
        let e = edge(&multi, "step:start", &format!("event:{event}"));
        assert_eq!((e.label.as_deref(), e.style), (Some("sends"), EdgeStyle::Dashed));
    }
}

#[test]
fn the_human_node_appears_only_with_people_in_the_loop() {
    for (name, graph) in demo_graphs() {
        let human = graph.nodes.iter().filter(|n| n.kind == NodeKind::External).count();
        if name == "document_pipeline" {
            assert_eq!(human, 1);
            let request = edge(&graph, "event:InputRequiredEvent", "external");
            assert_eq!(request.style, EdgeStyle::Dashed);
            let answer = edge(&graph, "external", "event:HumanResponseEvent");
            assert_eq!(answer.style, EdgeStyle::Dashed);
            assert_eq!(
                graph.node("event:InputRequiredEvent").unwrap().role,
                Some(EventKind::InputRequired)
            );
            assert_eq!(
                graph.node("event:HumanResponseEvent").unwrap().role,
                Some(EventKind::HumanResponse)
            );
        } else {
            assert_eq!(human, 0, "{name} has no human in the loop");
            assert!(!graph.edges.iter().any(|e| e.from == "external" || e.to == "external"));
        }
    }
}

#[test]
fn an_answer_alone_brings_the_human_node() {
    // A step that only accepts a human response (the request is made by the caller).
    let wf = Workflow::builder("answers")
        .step("start", |_: StartEvent| async { StopEvent::new("started") })
        .step_with(
            StepConfig::new("answer").skip_check(stepwise::GraphCheck::Reachability),
            |ev: HumanResponseEvent| async move { StopEvent::new(ev.response) },
        )
        .build()
        .unwrap();
    let graph = wf.graph();
    assert!(graph.node("external").is_some());
    assert!(has_edge(&graph, "external", "event:HumanResponseEvent"));
    assert!(!graph.edges.iter().any(|e| e.to == "external"));

    // A returned input request, answered by another step.
    let wf = Workflow::builder("asks")
        .step("ask", |_: StartEvent| async {
            InputRequiredEvent {
                prompt: "name?".into(),
                data: serde_json::Value::Null,
            }
        })
        .step(
            "answer",
            |ev: HumanResponseEvent| async move { StopEvent::new(ev.response) },
        )
        .build()
        .unwrap();
    let graph = wf.graph();
    assert!(has_edge(&graph, "step:ask", "event:InputRequiredEvent"));
    assert!(has_edge(&graph, "event:InputRequiredEvent", "external"));
    assert!(has_edge(&graph, "external", "event:HumanResponseEvent"));
    assert!(has_edge(&graph, "event:HumanResponseEvent", "step:answer"));
}

#[derive(Debug, thiserror::Error)]
#[error("flaky")]
struct Flaky;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Work(u32);
impl Event for Work {
    const NAME: &'static str = "Work";
}

#[test]
fn error_handlers_get_fails_edges_from_the_steps_they_cover() {
    let wf = Workflow::builder("guarded")
        .step("split", |_: StartEvent| async { Work(1) })
        .step("work", |_: Work| async { Err::<StopEvent, _>(StepError::new(Flaky)) })
        .step_with(
            StepConfig::new("recover").catch_errors(CatchErrors::for_steps(["work"])),
            |ev: StepFailed| async move { StopEvent::new(format!("recovered from {}", ev.step)) },
        )
        .build()
        .unwrap();
    let graph = wf.graph();
    let fails = edge(&graph, "step:work", "event:StepFailed");
    assert_eq!(
        (fails.label.as_deref(), fails.style),
        (Some("fails"), EdgeStyle::Dashed)
    );
    assert!(has_edge(&graph, "event:StepFailed", "step:recover"));
    assert!(
        !has_edge(&graph, "step:split", "event:StepFailed"),
        "split is not covered"
    );
    assert_eq!(
        graph.node("step:recover").unwrap().details["handles_errors_of"],
        serde_json::json!(["work"])
    );
    let mermaid = graph.to_mermaid();
    assert!(
        mermaid.contains("step_work -.->|\"fails\"| event_StepFailed"),
        "{mermaid}"
    );
    let dot = graph.to_dot();
    assert!(
        dot.contains("\"step:work\" -> \"event:StepFailed\" [style=dashed, label=\"fails\"];"),
        "{dot}"
    );
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tricky {
    text: String,
}
impl Event for Tricky {
    const NAME: &'static str = "Say \"hi\" <b>&amp;</b> #quot;";
}

fn tricky_graph() -> WorkflowGraph {
    Workflow::builder("tricky \"flow\" <x>")
        .doc("Quotes \"and\" <tags> & ampersands.")
        .step_with(
            StepConfig::new("emit <\"it\">").doc("Has \"quotes\" and <brackets>."),
            |_: StartEvent| async {
                Tricky {
                    text: "</script><!--".into(),
                }
            },
        )
        .step("stop", |ev: Tricky| async move { StopEvent::new(ev.text) })
        .build()
        .unwrap()
        .graph()
}

#[test]
fn mermaid_escapes_quotes_brackets_and_entities() {
    let mermaid = tricky_graph().to_mermaid();
    assert!(
        mermaid.contains(r#"step_emit___it__["emit #lt;#quot;it#quot;#gt;"]:::step"#),
        "{mermaid}"
    );
    assert!(
        mermaid.contains(r#"(["Say #quot;hi#quot; #lt;b#gt;#amp;amp;#lt;/b#gt; #35;quot;"]):::event"#),
        "{mermaid}"
    );
    // No raw quote or bracket inside a label.
    for line in mermaid.lines().filter(|l| l.contains("[\"")) {
        let inner = &line[line.find("[\"").unwrap() + 2..line.rfind("\"]").unwrap()];
        assert!(!inner.contains(['"', '<', '>']), "{line}");
    }
    assert!(
        mermaid.starts_with("flowchart TD\n    %% tricky \"flow\" <x>\n"),
        "{mermaid}"
    );
}

#[test]
fn mermaid_ids_stay_unique() {
    let mut graph = tricky_graph();
    let mut twin = graph.nodes[0].clone();
    twin.id = "step:emit-<\"it\">".into();
    graph.nodes.push(twin);
    let mermaid = graph.to_mermaid();
    assert!(
        mermaid.contains("step_emit___it__[") && mermaid.contains("step_emit___it___2["),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("event_StartEvent --> step_emit___it__\n"),
        "edges use the first id"
    );
}

#[test]
fn dot_escapes_quotes_and_keeps_brackets_inside_strings() {
    let dot = tricky_graph().to_dot();
    assert!(dot.starts_with("digraph \"tricky \\\"flow\\\" <x>\" {"), "{dot}");
    assert!(dot.contains(r#""step:emit <\"it\">" [label="emit <\"it\">""#), "{dot}");
    assert!(dot.contains(r#"tooltip="Has \"quotes\" and <brackets>.""#), "{dot}");
    // Every quote inside a string is escaped: quotes balance on every line.
    for line in dot.lines() {
        let unescaped = line.replace("\\\\", "").replace("\\\"", "").matches('"').count();
        assert_eq!(unescaped % 2, 0, "{line}");
    }
}

#[test]
fn html_escapes_labels_and_embedded_json() {
    let html = tricky_graph().to_html();
    assert!(
        html.contains("<title>tricky &quot;flow&quot; &lt;x&gt;</title>"),
        "title escaped"
    );
    assert!(
        html.contains(">emit &lt;&quot;it&quot;&gt;</text>"),
        "node label escaped"
    );
    assert!(
        html.contains("Say &quot;hi&quot; &lt;b&gt;&amp;amp;&lt;/b&gt; #quot;"),
        "event label escaped"
    );
    // The embedded graph JSON cannot close its script element.
    let data_start = html.find("id=\"graph-data\">").unwrap();
    let data_end = data_start + html[data_start..].find("</script>").unwrap();
    let data = &html[data_start + "id=\"graph-data\">".len()..data_end];
    let markup = format!("{}{}", &html[..data_start], &html[data_end..]);
    assert!(
        !markup.contains("<b>") && !markup.contains("</b>"),
        "no markup from labels"
    );
    assert!(!data.contains("</") && !data.contains("<!--"), "{data}");
    let graph: WorkflowGraph = serde_json::from_str(data).unwrap();
    assert_eq!(graph, tricky_graph());
}

#[test]
fn html_has_one_shape_per_node_and_one_path_per_edge() {
    for (name, graph) in demo_graphs() {
        let html = graph.to_html();
        assert_eq!(html.matches("<g class=\"node ").count(), graph.nodes.len(), "{name}");
        assert_eq!(html.matches("<path class=\"edge").count(), graph.edges.len(), "{name}");
        for class in ["start", "stop", "event", "step"] {
            assert!(html.contains(&format!("<g class=\"node {class}\"")), "{name}: {class}");
        }
        let human = html.contains("<g class=\"node external\"");
        assert_eq!(human, name == "document_pipeline", "{name}");
        if human {
            assert!(html.contains("<g class=\"node human\""), "input request look");
            assert!(html.contains("<polygon"), "the human node is a hexagon");
        }
        // Everything is inline: no external resources at all.
        assert!(
            !html.contains("<link") && !html.contains("@import") && !html.contains(" src="),
            "{name}"
        );
    }
}

#[test]
fn looks_differ_by_role_in_every_format() {
    let graph = DocumentPipeline::default().build().unwrap().graph();
    let mermaid = graph.to_mermaid();
    let dot = graph.to_dot();
    let mut fills = BTreeSet::new();
    for class in ["start", "stop", "event", "step", "human", "external"] {
        let line = mermaid
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("classDef {class} ")))
            .unwrap_or_else(|| panic!("classDef {class} in {mermaid}"));
        let fill = line
            .split("fill:")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_owned();
        assert!(dot.contains(&format!("fillcolor=\"{fill}\"")), "{class} {fill}");
        fills.insert(fill);
    }
    assert_eq!(fills.len(), 6, "six distinct colours: {fills:?}");
    assert!(dot.contains("shape=hexagon"), "the human node");
    assert!(mermaid.contains("external{{\"human\"}}:::external"), "{mermaid}");
}
