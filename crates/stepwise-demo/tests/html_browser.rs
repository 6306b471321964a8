//! The HTML drawings in a real headless browser, with the network cut off:
//! each page must render its whole graph (every node and every edge) without
//! a script error, and must not even try to load anything.
//!
//! Needs Chromium: `$CHROMIUM`, or `chromium` / `chromium-browser` on `PATH`
//! (CI installs Debian's `chromium`). Without it these tests fail — they are
//! never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stepwise::graph::WorkflowGraph;
use stepwise::store::MemoryStore;
use stepwise::{EventKind, HumanResponseEvent, Journal, RunOptions, StartEvent, StreamExt, WorkflowDefinition};
use stepwise_demo::pipeline::DocumentPipeline;
use stepwise_demo::seed::{ConcurrentFlow, Latency, MultiEventFlow, ParallelFlow};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("stepwise-html-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "$CHROMIUM is set to {}, which does not exist",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is required for the HTML drawing tests and was not found: set $CHROMIUM or put `chromium` \
         on PATH (Debian: apt-get install chromium; .ci/run installs it)"
    );
}

/// Loads `page` in headless Chromium with every host unresolvable and
/// returns the DOM after the page's scripts ran.
fn dump_dom(page: &Path, profile: &Path) -> String {
    let url = format!("file://{}", page.display());
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--host-resolver-rules=MAP * ~NOTFOUND")
        .arg("--dump-dom")
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    // Read both pipes on threads so a chatty browser cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap().unwrap();
    let log = err.join().unwrap();
    assert!(status.success(), "chromium failed on {url}: {status}\n{log}");
    assert!(
        dom.contains("<body"),
        "chromium printed no DOM for {url}:\n{dom}\n{log}"
    );
    dom
}

/// The attributes of the `<body …>` start tag.
fn body_attributes(dom: &str) -> String {
    let start = dom.find("<body").expect("a body element");
    let end = start + dom[start..].find('>').unwrap();
    dom[start..end].to_owned()
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let len = tag[at..].find('"')?;
    Some(tag[at..at + len].to_owned())
}

/// Nothing in the page points at the network or at another file.
fn assert_self_contained(name: &str, html: &str) {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<link"), "{name}: has a <link> element");
    assert!(!lower.contains("@import"), "{name}: has a CSS @import");
    assert!(
        !lower.contains("<iframe") && !lower.contains("<img"),
        "{name}: embeds another document"
    );
    for attr in ["src=", "href=", "xlink:href=", "action="] {
        for (at, _) in lower.match_indices(attr) {
            let value = lower[at + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                !value.starts_with("http") && !value.starts_with("//"),
                "{name}: {attr} points at the network: {}",
                &html[at..(at + 80).min(html.len())]
            );
        }
    }
    for (at, _) in lower.match_indices("url(") {
        let value = lower[at + 4..].trim_start_matches(['"', '\'']);
        assert!(
            value.starts_with('#'),
            "{name}: url() outside the page: {}",
            &html[at..(at + 60).min(html.len())]
        );
    }
}

fn check_in_browser(name: &str, graph: &WorkflowGraph) {
    let html = graph.to_html();
    assert_self_contained(name, &html);
    let dir = TempDir::new(name);
    let page = dir.0.join(format!("{name}.html"));
    std::fs::write(&page, &html).unwrap();
    let profile = dir.0.join("profile");
    let dom = dump_dom(&page, &profile);
    let body = body_attributes(&dom);
    assert_eq!(attribute(&body, "data-error"), None, "{name}: script error: {body}");
    assert_eq!(
        attribute(&body, "data-rendered").as_deref(),
        Some("ok"),
        "{name}: {body}"
    );
    assert_eq!(
        attribute(&body, "data-nodes"),
        Some(graph.nodes.len().to_string()),
        "{name}: every node drawn: {body}"
    );
    assert_eq!(
        attribute(&body, "data-edges"),
        Some(graph.edges.len().to_string()),
        "{name}: every edge drawn: {body}"
    );
    // The SVG made it into the live DOM.
    assert_eq!(dom.matches("<g class=\"node ").count(), graph.nodes.len(), "{name}");
}

fn latency() -> Latency {
    Latency::Fixed(Arc::new(|_| Duration::from_millis(1)))
}

#[test]
fn parallel_flow_page_renders_offline() {
    check_in_browser(
        "parallel_flow",
        &ParallelFlow { latency: latency() }.build().unwrap().graph(),
    );
}

#[test]
fn concurrent_flow_page_renders_offline() {
    let flow = ConcurrentFlow {
        latency: latency(),
        collected: Arc::default(),
    };
    check_in_browser("concurrent_flow", &flow.build().unwrap().graph());
}

#[test]
fn multi_event_flow_page_renders_offline() {
    let flow = MultiEventFlow {
        latency: latency(),
        order: Arc::default(),
    };
    check_in_browser("multi_event_flow", &flow.build().unwrap().graph());
}

#[test]
fn document_pipeline_page_renders_offline() {
    check_in_browser(
        "document_pipeline",
        &DocumentPipeline::default().build().unwrap().graph(),
    );
}

#[test]
fn run_trace_page_renders_offline() {
    // A journaled pipeline run: fan-out, a retried LLM call, a revision asked
    // for by the reviewer, then approval.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let graph = rt.block_on(async {
        let pipeline = DocumentPipeline::default().build().unwrap();
        let journal = Journal::new(MemoryStore::new());
        let handle = pipeline.run_with(
            StartEvent::new(),
            RunOptions::new().journal(&journal).run_id("browser-trace"),
        );
        let mut stream = handle.stream_events().unwrap();
        let mut answers = vec!["yes", "add a title"];
        while let Some(event) = stream.next().await {
            if event.kind() == EventKind::InputRequired {
                handle
                    .send_event(HumanResponseEvent::new(answers.pop().unwrap()))
                    .unwrap();
            }
        }
        handle.await.unwrap();
        journal.flush().await.unwrap();
        let trace = pipeline.trace(&journal, "browser-trace").await.unwrap();
        assert!(
            trace.steps.iter().any(|s| s.step == "revise"),
            "the run was revised once"
        );
        trace.graph()
    });
    assert!(graph.nodes.len() > 20, "a real trace: {} nodes", graph.nodes.len());
    check_in_browser("run_trace", &graph);
}
