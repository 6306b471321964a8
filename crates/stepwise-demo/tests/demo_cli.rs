//! The real `stepwise-demo` binary, end to end: the demo itself (what
//! `cargo run --release -p stepwise-demo` runs) and the command line over
//! its workflows.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stepwise-demo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Runs the binary in this directory with `STEPWISE_DB` in it and
    /// standard input closed.
    fn demo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_stepwise-demo"))
            .args(args)
            .current_dir(&self.0)
            .env("STEPWISE_DB", self.0.join("demo.db"))
            .env_remove("TERM")
            .stdin(Stdio::null())
            .output()
            .expect("the demo binary runs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

#[test]
fn the_demo_runs_all_four_workflows_on_the_sqlite_store() {
    let s = Scratch::new("main");
    let output = s.demo(&[]);
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        output.status
    );

    // The three seed workflows' results.
    assert!(out.contains("== parallel_flow"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("winner: \"Query ")), "{out}");
    assert!(out.contains("== concurrent_flow"), "{out}");
    assert!(out.contains("result: \"Done\" (collected in arrival order: ["), "{out}");
    assert!(out.contains("== multi_event_flow"), "{out}");
    assert!(
        out.contains(
            "result: \"Done\" (collected as [\"StepCCompleteEvent\", \"StepACompleteEvent\", \"StepBCompleteEvent\"])"
        ),
        "{out}"
    );

    // The document pipeline: fan-out, a retried LLM call, approval, result.
    assert!(out.contains("== document_pipeline"), "{out}");
    assert!(out.contains("answering \"yes\" automatically"), "{out}");
    for chunk in 1..=5 {
        assert!(out.contains(&format!("summarised chunk {chunk} of 5")), "{out}");
    }
    assert!(
        out.contains("step summarize failed: LLM call for chunk 1 timed out"),
        "{out}"
    );
    assert!(out.contains("answering: yes"), "{out}");
    assert!(
        out.contains("result: {\"version\":1,\"summary\":\"- Workflows describe"),
        "{out}"
    );

    // The stored run, shown back.
    assert!(out.contains("status    completed"), "{out}");
    assert!(out.contains("failed, retried"), "{out}");
    assert!(!out.contains('\x1b'), "plain output when piped");

    // Journaled in the SQLite file, with drawings next to it.
    let db = s.0.join("demo.db");
    assert!(db.exists(), "the SQLite store at $STEPWISE_DB");
    let flows = std::fs::read_to_string(s.0.join("document_pipeline.html")).unwrap();
    assert!(flows.contains("<svg") && flows.contains("document_pipeline"));
    let run_page = std::fs::read_dir(&s.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("document_pipeline-demo-"))
        .expect("the run's drawing");
    assert!(std::fs::read_to_string(run_page.path())
        .unwrap()
        .contains("— run demo-"));
    assert!(out.contains("flowchart TD"), "the Mermaid drawing is printed");

    // The stored run is there for the command line too.
    let runs = s.demo(&["runs", "--status", "completed"]);
    let listed = text(&runs.stdout);
    assert!(
        runs.status.success() && listed.contains("document_pipeline"),
        "{listed}"
    );
}

#[test]
fn the_binary_is_the_command_line_over_the_demo_workflows() {
    let s = Scratch::new("cli");
    let list = s.demo(&["list"]);
    assert_eq!(list.status.code(), Some(0));
    let names: Vec<String> = text(&list.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "document_pipeline",
            "parallel_flow",
            "concurrent_flow",
            "multi_event_flow"
        ]
    );

    let bad = s.demo(&["draw", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains(
            "unknown workflow `nope`; registered: document_pipeline, parallel_flow, concurrent_flow, multi_event_flow"
        ),
        "{err}"
    );
    let bad = s.demo(&["run", "document_pipeline", "--input", "{"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    let bad = s.demo(&["bogus"]);
    assert_eq!(bad.status.code(), Some(2));

    let draw = s.demo(&["draw", "document_pipeline", "--format", "mermaid"]);
    assert_eq!(draw.status.code(), Some(0));
    assert!(text(&draw.stdout).contains("external{{\"human\"}}:::external"));

    // The pipeline with standard input closed and no answer: saved, waiting.
    let waiting = s.demo(&["run", "document_pipeline", "--run-id", "w1"]);
    assert_eq!(waiting.status.code(), Some(3), "{}", text(&waiting.stderr));
    assert!(text(&waiting.stderr).contains("stepwise-demo resume w1 --answer <text>"));
    let resumed = s.demo(&["resume", "w1", "--answer", "yes"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert!(text(&resumed.stdout).contains("result: {\"version\":"));
}

#[test]
fn a_start_event_larger_than_the_argument_limit_comes_from_a_file_or_standard_input() {
    use std::io::Write;
    let s = Scratch::new("input-file");
    // Over Linux's limit for one argument (MAX_ARG_STRLEN, 128 KiB).
    let text = format!("Zebrafish swim. {}", "Words follow words. ".repeat(10_000));
    let json = serde_json::json!({ "text": text }).to_string();
    assert!(json.len() > 128 * 1024);
    let too_long = Command::new(env!("CARGO_BIN_EXE_stepwise-demo"))
        .args(["run", "document_pipeline", "--answer", "yes", "--input", &json])
        .output();
    assert!(too_long.is_err(), "the argument itself is too long for exec");

    let file = s.0.join("input.json");
    std::fs::write(&file, &json).unwrap();
    let from_file = s.demo(&[
        "run",
        "document_pipeline",
        "--answer",
        "yes",
        "--input-file",
        file.to_str().unwrap(),
    ]);
    let out = text_of(&from_file);
    assert_eq!(from_file.status.code(), Some(0), "{out}");
    assert!(
        out.contains("result: {\"version\":1,\"summary\":\"- Zebrafish swim"),
        "{out}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_stepwise-demo"))
        .args(["run", "document_pipeline", "--answer", "yes", "--input", "-"])
        .current_dir(&s.0)
        .env("STEPWISE_DB", s.0.join("demo.db"))
        .env_remove("TERM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(json.as_bytes()));
    let from_stdin = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let out = text_of(&from_stdin);
    assert_eq!(from_stdin.status.code(), Some(0), "{out}");
    assert!(
        out.contains("result: {\"version\":1,\"summary\":\"- Zebrafish swim"),
        "{out}"
    );
}

fn text_of(output: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", text(&output.stdout), text(&output.stderr))
}
