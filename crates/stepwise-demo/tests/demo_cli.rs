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

/// Runs the binary as a user who cannot write `dir` or the database in it:
/// this user with the permissions as set, or — as root, whom permissions do
/// not stop — as `nobody` through `setpriv`.
fn demo_as_reader(s: &Scratch, args: &[&str]) -> Output {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:").map(|u| u.split_whitespace().next() == Some("0")))
        })
        .unwrap_or(false);
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_stepwise-demo"),
        ]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_stepwise-demo"))
    };
    command
        .args(args)
        .current_dir(&s.0)
        .env("STEPWISE_DB", s.0.join("demo.db"))
        .env_remove("TERM")
        .stdin(Stdio::null())
        .output()
        .expect("the demo binary runs (as root this needs `setpriv`, from util-linux)")
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_database_can_still_be_listed_and_shown() {
    let s = Scratch::new("read-only");
    let made = s.demo(&["run", "parallel_flow", "--run-id", "kept"]);
    assert_eq!(made.status.code(), Some(0), "{}", text_of(&made));
    let db = s.0.join("demo.db");
    // A read-only file in a writable directory, then a read-only directory
    // too (where SQLite cannot make the log's shared-memory file).
    for dir_mode in [0o777, 0o555] {
        set_mode(&db, 0o444);
        set_mode(&s.0, dir_mode);
        let runs = demo_as_reader(&s, &["runs"]);
        let out = text_of(&runs);
        set_mode(&s.0, 0o755);
        assert_eq!(runs.status.code(), Some(0), "dir {dir_mode:o}: {out}");
        assert!(out.contains("kept") && out.contains("completed"), "{out}");
        set_mode(&s.0, dir_mode);
        let show = demo_as_reader(&s, &["show", "kept"]);
        let drawn = demo_as_reader(&s, &["show", "kept", "--draw", "mermaid"]);
        let run = demo_as_reader(&s, &["run", "parallel_flow"]);
        set_mode(&s.0, 0o755);
        let out = text_of(&show);
        assert_eq!(show.status.code(), Some(0), "dir {dir_mode:o}: {out}");
        assert!(out.contains("status    completed"), "{out}");
        let out = text_of(&drawn);
        assert_eq!(drawn.status.code(), Some(0), "dir {dir_mode:o}: {out}");
        assert!(out.contains("flowchart TD"), "{out}");
        // Writing still fails, with the database named.
        let out = text_of(&run);
        assert_ne!(run.status.code(), Some(0), "a run on a read-only database: {out}");
        assert!(out.contains("demo.db"), "{out}");
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_exit_2_and_left_alone() {
    let s = Scratch::new("not-a-db");
    for (bytes, what) in [(&b""[..], "an empty file"), (&b"\n"[..], "a 1-byte file")] {
        let db = s.0.join("demo.db");
        std::fs::write(&db, bytes).unwrap();
        for args in [
            &["run", "parallel_flow"][..],
            &["runs"],
            &["show", "x"],
            &["resume", "x"],
        ] {
            let out = s.demo(args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text_of(&out));
            assert!(
                err.contains(&format!("demo.db is {what}, not a SQLite database")),
                "{err}"
            );
            assert_eq!(std::fs::read(&db).unwrap(), bytes, "the file was changed");
        }
    }
}
