//! The command-line front end, driven in-process through `Cli::run_args`
//! with buffers for its streams and a fresh SQLite database per test. Each
//! command runs on its own tokio runtime, dropped afterwards, the way each
//! command of a real binary runs in its own process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::store::RunStatus;
use stepwise::{
    Context, Event, EventKind, HumanResponseEvent, InputRequiredEvent, Journal, RunOptions, StartEvent, StepConfig,
    StepError, StopEvent, WaitFor, Workflow, WorkflowBuilder, MAX_EVENT_DEPTH,
};
use stepwise_cli::{Cli, Io, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_WAITING};
use stepwise_sqlite::SqliteStore;

// ---------------------------------------------------------------- workflows

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Progress {
    message: String,
}
impl Event for Progress {
    const NAME: &'static str = "Progress";
}

fn echo() -> Workflow {
    Workflow::builder("echo")
        .doc("Echoes `text`.")
        .event::<Progress>()
        .step("echo", |ctx: Context, ev: StartEvent| async move {
            let text: String = ev.get_or("text", "nothing".to_owned()).map_err(StepError::new)?;
            ctx.write_event_to_stream(Progress {
                message: format!("echoing {text}"),
            });
            Ok::<_, StepError>(StopEvent::new(text))
        })
        .build()
        .unwrap()
}

/// Asks two questions, one after the other.
fn interview() -> Workflow {
    Workflow::builder("interview")
        .step_with(
            StepConfig::new("ask")
                .emits::<InputRequiredEvent>()
                .waits_for::<HumanResponseEvent>(),
            |ctx: Context, _: StartEvent| async move {
                let mut answers = Vec::new();
                for (id, prompt) in [("name", "name?"), ("colour", "favourite colour?")] {
                    let question = InputRequiredEvent {
                        prompt: prompt.into(),
                        data: serde_json::Value::Null,
                    };
                    let answer = ctx
                        .wait_for_event(WaitFor::<HumanResponseEvent>::new().id(id).publish(question))
                        .await
                        .map_err(StepError::new)?;
                    answers.push(answer.response);
                }
                Ok::<_, StepError>(StopEvent::new(format!("{} likes {}", answers[0], answers[1])))
            },
        )
        .build()
        .unwrap()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    item: String,
    quantity: u32,
}
impl Event for Order {
    const NAME: &'static str = "Order";
    const KIND: EventKind = EventKind::Start;
}

fn order() -> Workflow<Order, StopEvent> {
    WorkflowBuilder::<Order, StopEvent>::new("order")
        .step("price", |order: Order| async move {
            StopEvent::new(serde_json::json!({ "item": order.item, "total": order.quantity * 3 }))
        })
        .build()
        .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("the printer is on fire")]
struct OnFire;

fn fails() -> Workflow {
    Workflow::builder("fails")
        .step("print", |_: StartEvent| async {
            Err::<StopEvent, _>(StepError::new(OnFire))
        })
        .build()
        .unwrap()
}

fn slow() -> Workflow {
    Workflow::builder("slow")
        .step("first", |_: StartEvent| async { Progress { message: "go".into() } })
        .step("wait", |ev: Progress| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            StopEvent::new(format!("{} done", ev.message))
        })
        .build()
        .unwrap()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Approval {
    approved: bool,
}
impl Event for Approval {
    const NAME: &'static str = "Approval";
    const KIND: EventKind = EventKind::HumanResponse;
}

/// Takes its own answer type instead of `HumanResponseEvent`.
fn approval() -> Workflow {
    Workflow::builder("approval")
        .step_with(
            StepConfig::new("ask")
                .emits::<InputRequiredEvent>()
                .waits_for::<Approval>(),
            |ctx: Context, _: StartEvent| async move {
                let question = InputRequiredEvent {
                    prompt: "approve?".into(),
                    data: serde_json::Value::Null,
                };
                let answer = ctx
                    .wait_for_event(WaitFor::<Approval>::new().id("approve").publish(question))
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.approved))
            },
        )
        .build()
        .unwrap()
}

const REGISTERED: &str = "echo, interview, order, fails, slow, approval";

fn cli(db: &Path) -> Cli {
    Cli::new("tool")
        .database(db)
        .workflow(echo())
        .workflow(interview())
        .workflow(order())
        .workflow(fails())
        .workflow(slow())
        .workflow(approval())
}

// ------------------------------------------------------------------ harness

/// A fresh directory with a database path in it, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stepwise-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("runs.db")
    }

    /// Runs `tool <args>` non-interactively with empty standard input.
    fn run(&self, args: &[&str]) -> Outcome {
        self.run_with(args, "", false)
    }

    fn run_with(&self, args: &[&str], stdin: &str, interactive: bool) -> Outcome {
        self.run_cli(cli(&self.db()), args, stdin, interactive)
    }

    /// Runs `args` on `cli` (one with other workflows than the usual set).
    fn run_cli(&self, cli: Cli, args: &[&str], stdin: &str, interactive: bool) -> Outcome {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut input = stdin.as_bytes();
        let argv: Vec<&str> = std::iter::once("tool").chain(args.iter().copied()).collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let code = rt.block_on(cli.run_args(
            argv,
            Io {
                out: &mut out,
                err: &mut err,
                input: &mut input,
                interactive,
            },
        ));
        rt.shutdown_background();
        Outcome {
            code,
            out: String::from_utf8(out).unwrap(),
            err: String::from_utf8(err).unwrap(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
struct Outcome {
    code: u8,
    out: String,
    err: String,
}

impl Outcome {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }

    #[track_caller]
    fn fails_with(self, code: u8, message: &str) -> Self {
        assert_eq!(self.code, code, "expected exit code {code}: {self:#?}");
        assert!(
            self.err.contains(message),
            "stderr should mention {message:?}: {self:#?}"
        );
        self
    }

    /// The run id from `run <id> of <workflow> started`.
    fn run_id(&self) -> String {
        let line = self.out.lines().find(|l| l.starts_with("run ")).expect("a run line");
        line.split_whitespace().nth(1).unwrap().to_owned()
    }
}

// -------------------------------------------------------------------- tests

#[test]
fn list_shows_every_workflow_with_its_types_and_doc() {
    let s = Scratch::new("list");
    let out = s.run(&["list"]).ok().out;
    let names: Vec<&str> = out.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names.join(", "), REGISTERED);
    let echo = out.lines().next().unwrap();
    assert!(
        echo.contains("1 steps") && echo.contains("StartEvent -> StopEvent") && echo.contains("Echoes `text`."),
        "{echo}"
    );
    assert!(out.contains("Order -> StopEvent"), "{out}");
    assert!(!s.db().exists(), "listing does not create a database");
}

#[test]
fn draw_in_every_format() {
    let s = Scratch::new("draw");
    let mermaid = s.run(&["draw", "interview"]).ok().out;
    assert!(
        mermaid.starts_with("flowchart TD\n    %% interview\n"),
        "mermaid is the default: {mermaid}"
    );
    assert!(mermaid.contains("external{{\"human\"}}:::external"), "{mermaid}");
    let same = s.run(&["draw", "interview", "--format", "mermaid"]).ok().out;
    assert_eq!(same, mermaid);

    let dot = s.run(&["draw", "echo", "--format", "dot"]).ok().out;
    assert!(
        dot.starts_with("digraph \"echo\" {") && dot.contains("\"event:StartEvent\" -> \"step:echo\";"),
        "{dot}"
    );

    let json = s.run(&["draw", "order", "-f", "json"]).ok().out;
    let graph: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(graph["name"], "order");
    let start = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "event:Order")
        .unwrap();
    assert_eq!(start["role"], "start");
    assert_eq!(start["schema"]["title"], "Order");

    let html = s.run(&["draw", "echo", "--format", "html"]).ok().out;
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"), "{html}");
    assert!(html.contains("Echoes `text`."), "the description is on the page");

    let file = s.dir.join("echo.html");
    let wrote = s
        .run(&["draw", "echo", "--format", "html", "-o", file.to_str().unwrap()])
        .ok()
        .out;
    assert_eq!(wrote.trim(), format!("wrote {}", file.display()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), html);
}

#[test]
fn draw_refuses_unknown_workflows_and_formats() {
    let s = Scratch::new("draw-bad");
    let bad = s
        .run(&["draw", "nope"])
        .fails_with(EXIT_USAGE, "unknown workflow `nope`");
    assert!(bad.err.contains(&format!("registered: {REGISTERED}")), "{}", bad.err);
    assert!(bad.out.is_empty());
    s.run(&["draw", "echo", "--format", "svg"])
        .fails_with(EXIT_USAGE, "unknown format `svg`; use mermaid, dot, html or json");
    let unwritable = s.dir.join("missing-dir").join("x.dot");
    s.run(&["draw", "echo", "--format", "dot", "-o", unwritable.to_str().unwrap()])
        .fails_with(EXIT_RUN_FAILED, "cannot write");
}

#[test]
fn run_prints_progress_and_the_result() {
    let s = Scratch::new("run");
    let run = s.run(&["run", "echo", "--input", r#"{"text": "hello"}"#]).ok();
    let lines: Vec<&str> = run.out.lines().collect();
    assert!(
        lines[0].starts_with("run ") && lines[0].ends_with(" of echo started"),
        "{}",
        run.out
    );
    let progress = lines
        .iter()
        .position(|l| l.contains("] Progress {\"message\":\"echoing hello\"}"));
    let stop = lines
        .iter()
        .position(|l| l.contains("] StopEvent {\"result\":\"hello\"}"));
    assert!(progress.is_some() && stop.is_some() && progress < stop, "{}", run.out);
    assert_eq!(*lines.last().unwrap(), "result: \"hello\"");
    assert!(
        lines[1].starts_with("[   0.0"),
        "elapsed time on each line: {}",
        lines[1]
    );
    assert!(run.err.is_empty(), "{}", run.err);
    // Journaled: the run is stored as completed.
    let runs = s.run(&["runs"]).ok().out;
    assert!(
        runs.contains(&run.run_id()) && runs.contains("completed") && runs.contains("\"hello\""),
        "{runs}"
    );
}

#[test]
fn piped_output_is_plain_and_terminal_output_redraws_a_status_line() {
    let s = Scratch::new("plain");
    for args in [
        vec!["run", "echo"],
        vec!["run", "interview", "--answer", "Ada", "--answer", "green"],
        vec!["run", "fails"],
    ] {
        let run = s.run(&args);
        assert!(
            !run.out.contains('\x1b') && !run.err.contains('\x1b'),
            "no escape codes when piped: {run:#?}"
        );
        assert!(!run.out.contains('\r'), "{run:#?}");
    }
    let tty = s.run_with(&["run", "echo"], "", true).ok();
    assert!(tty.out.contains("\r\x1b[K"), "{:?}", tty.out);
    assert!(
        tty.out.contains("running, ") && tty.out.contains(" finished · echo "),
        "{:?}",
        tty.out
    );
    assert!(tty.out.ends_with("result: \"nothing\"\n"), "{:?}", tty.out);
}

#[test]
fn run_answers_input_requests_from_arguments() {
    let s = Scratch::new("answers");
    let run = s
        .run(&["run", "interview", "--answer", "Ada", "--answer", "green"])
        .ok();
    assert!(
        run.out
            .contains("InputRequiredEvent {\"prompt\":\"name?\",\"data\":null}"),
        "{}",
        run.out
    );
    assert!(
        run.out.contains("answering: Ada") && run.out.contains("answering: green"),
        "{}",
        run.out
    );
    assert!(run.out.ends_with("result: \"Ada likes green\"\n"), "{}", run.out);
}

#[test]
fn run_answers_input_requests_from_standard_input() {
    let s = Scratch::new("stdin");
    let run = s.run_with(&["run", "interview"], "Grace\nblue\n", false).ok();
    assert!(run.out.ends_with("result: \"Grace likes blue\"\n"), "{}", run.out);
    assert!(!run.out.contains(" > "), "no prompt when not interactive");
    // On a terminal the question is asked.
    let run = s
        .run_with(&["run", "interview", "--answer", "Ada"], "red\r\n", true)
        .ok();
    assert!(run.out.contains("favourite colour? > "), "{:?}", run.out);
    assert!(run.out.ends_with("result: \"Ada likes red\"\n"), "{:?}", run.out);
}

#[test]
fn a_run_left_without_an_answer_waits_and_resumes_with_one() {
    let s = Scratch::new("waits");
    let run = s
        .run(&["run", "interview", "--run-id", "job-1"])
        .fails_with(EXIT_WAITING, "run job-1 waits for an answer to \"name?\"");
    assert!(run.err.contains("tool resume job-1 --answer <text>"), "{}", run.err);
    let running = s.run(&["runs", "--status", "running"]).ok().out;
    assert!(running.contains("job-1") && running.contains("interview"), "{running}");
    let show = s.run(&["show", "job-1"]).ok().out;
    assert!(show.contains("status    running"), "{show}");
    assert!(show.contains("waiting   for an answer to \"name?\""), "{show}");
    assert!(show.contains("continue it with `tool resume job-1`"), "{show}");

    // Still no answer: it keeps waiting. The question is not published again
    // on resume; the CLI finds it in the stored events.
    let again = s
        .run(&["resume", "job-1"])
        .fails_with(EXIT_WAITING, "an answer to \"name?\"");
    assert!(!again.out.contains("InputRequiredEvent"), "{}", again.out);
    let resumed = s.run(&["resume", "job-1", "--answer", "Ada", "--answer", "teal"]).ok();
    assert!(
        resumed.out.starts_with("run job-1 of interview resumed\n"),
        "{}",
        resumed.out
    );
    assert!(
        resumed.out.contains("answering: Ada") && resumed.out.contains("answering: teal"),
        "{}",
        resumed.out
    );
    assert!(resumed.out.ends_with("result: \"Ada likes teal\"\n"), "{}", resumed.out);
    let completed = s.run(&["runs", "--status", "completed"]).ok().out;
    assert!(
        completed.contains("job-1") && completed.contains("Ada likes teal"),
        "{completed}"
    );
    s.run(&["resume", "job-1"])
        .fails_with(EXIT_USAGE, "run `job-1` has already ended (completed)");
}

#[test]
fn an_unjournaled_run_without_an_answer_is_cancelled() {
    let s = Scratch::new("nojournal");
    s.run(&["run", "interview", "--no-journal"])
        .fails_with(EXIT_USAGE, "the run asks \"name?\" but no answer was given");
    let echo = s.run(&["run", "echo", "--no-journal"]).ok();
    assert!(echo.out.ends_with("result: \"nothing\"\n"));
    assert!(!s.db().exists(), "nothing journaled");
    assert!(s.run(&["runs"]).ok().out.contains("does not exist yet"));
}

#[test]
fn answers_fit_the_workflows_own_answer_type() {
    let s = Scratch::new("approval");
    let run = s.run(&["run", "approval", "--answer", r#"{"approved": true}"#]).ok();
    assert!(run.out.ends_with("result: true\n"), "{}", run.out);
    s.run(&["run", "approval", "--answer", "yes"])
        .fails_with(EXIT_USAGE, "workflow `approval` takes answers as JSON for `Approval`");
    s.run(&["run", "approval", "--answer", r#"{"approved": "very"}"#])
        .fails_with(EXIT_USAGE, "the answer does not fit `Approval`");
}

#[test]
fn run_refuses_bad_input() {
    let s = Scratch::new("run-bad");
    let bad = s
        .run(&["run", "nope"])
        .fails_with(EXIT_USAGE, "unknown workflow `nope`");
    assert!(bad.err.contains(&format!("registered: {REGISTERED}")), "{}", bad.err);
    s.run(&["run", "echo", "--input", "{text: hi}"])
        .fails_with(EXIT_USAGE, "--input is not valid JSON");
    s.run(&["run", "order", "--input", r#"{"item": "tea", "quantity": "lots"}"#])
        .fails_with(EXIT_USAGE, "the input does not fit `Order`");
    s.run(&["run", "order", "--input", r#"{"item": "tea"}"#])
        .fails_with(EXIT_USAGE, "the input does not fit `Order`: missing field `quantity`");
    s.run(&["run", "echo", "--input", "[1, 2]"])
        .fails_with(EXIT_USAGE, "the input does not fit `StartEvent`");
    let ok = s
        .run(&["run", "order", "--input", r#"{"item": "tea", "quantity": 2}"#])
        .ok();
    assert!(
        ok.out.ends_with("result: {\"item\":\"tea\",\"total\":6}\n"),
        "{}",
        ok.out
    );
    s.run(&["run", "echo", "--run-id", "same"]).ok();
    s.run(&["run", "echo", "--run-id", "same"])
        .fails_with(EXIT_USAGE, "a run `same` already exists");
}

#[test]
fn a_failing_run_exits_with_1_and_is_stored_as_failed() {
    let s = Scratch::new("fails");
    let run = s
        .run(&["run", "fails", "--run-id", "f1"])
        .fails_with(EXIT_RUN_FAILED, "the printer is on fire");
    assert!(
        run.out.contains("step print failed: the printer is on fire"),
        "{}",
        run.out
    );
    let failed = s.run(&["runs", "--status", "failed"]).ok().out;
    assert!(
        failed.contains("f1") && failed.contains("the printer is on fire"),
        "{failed}"
    );
    let show = s.run(&["show", "f1"]).ok().out;
    assert!(
        show.contains("status    failed") && show.contains("error     "),
        "{show}"
    );
    assert!(show.contains("print") && show.contains("  failed\n"), "{show}");
}

#[test]
fn runs_lists_and_filters_stored_runs() {
    let s = Scratch::new("runs");
    assert!(s.run(&["runs"]).ok().out.contains("no runs"));
    s.run(&["run", "echo", "--run-id", "e1", "--input", r#"{"text": "one"}"#])
        .ok();
    s.run(&["run", "fails", "--run-id", "f1"]);
    s.run(&["run", "echo", "--run-id", "e2", "--input", r#"{"text": "two"}"#])
        .ok();
    let all = s.run(&["runs"]).ok().out;
    let ids: Vec<&str> = all
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["e1", "f1", "e2"], "oldest first: {all}");
    assert!(all.lines().next().unwrap().starts_with("RUN "), "a header: {all}");
    let completed = s.run(&["runs", "--status", "completed"]).ok().out;
    assert!(
        completed.contains("e1") && completed.contains("e2") && !completed.contains("f1"),
        "{completed}"
    );
    assert!(
        completed.contains("\"one\"") && completed.contains("\"two\""),
        "{completed}"
    );
    let failed = s.run(&["runs", "--status", "failed"]).ok().out;
    assert!(failed.contains("f1") && !failed.contains("e1"), "{failed}");
    assert!(s.run(&["runs", "--status", "cancelled"]).ok().out.contains("no runs"));
    let echo = s.run(&["runs", "--workflow", "fails"]).ok().out;
    assert!(echo.contains("f1") && !echo.contains("e2"), "{echo}");
    s.run(&["runs", "--status", "done"]).fails_with(
        EXIT_USAGE,
        "unknown status `done`; use running, completed, failed or cancelled",
    );
}

#[test]
fn show_prints_status_events_and_steps_and_draws_the_run() {
    let s = Scratch::new("show");
    s.run(&[
        "run",
        "interview",
        "--run-id",
        "i1",
        "--answer",
        "Ada",
        "--answer",
        "green",
    ])
    .ok();
    let show = s.run(&["show", "i1"]).ok().out;
    for expected in [
        "run       i1\n",
        "workflow  interview\n",
        "status    completed\n",
        "result    \"Ada likes green\"\n",
        "InputRequiredEvent {\"prompt\":\"name?\",\"data\":null}",
        "StopEvent {\"result\":\"Ada likes green\"}",
        "steps     1 invocations, 6 events routed\n",
    ] {
        assert!(show.contains(expected), "{expected:?} in\n{show}");
    }
    assert!(show.contains("step state changes not listed"), "{show}");
    let step = show.lines().find(|l| l.contains(" ask ")).unwrap();
    assert!(
        step.contains("w0") && step.contains("on StartEvent #0") && step.ends_with("  ok"),
        "{step}"
    );

    let mermaid = s.run(&["show", "i1", "--draw", "mermaid"]).ok().out;
    assert!(
        mermaid.starts_with("flowchart TD\n    %% interview — run i1\n"),
        "only the drawing: {mermaid}"
    );
    assert!(mermaid.contains("run_0[\"ask (w0)"), "{mermaid}");
    assert!(mermaid.contains("-.->|\"answers\"| run_0"), "{mermaid}");
    assert!(mermaid.contains("run_0 -.->|\"asks\"|"), "{mermaid}");
    let json = s.run(&["show", "i1", "--draw", "json"]).ok().out;
    let graph: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 7, "1 invocation and 6 events");

    let file = s.dir.join("i1.html");
    let wrote = s
        .run(&["show", "i1", "--draw", "html", "-o", file.to_str().unwrap()])
        .ok()
        .out;
    assert!(wrote.starts_with(&format!("wrote {}\n", file.display())), "{wrote}");
    assert!(
        wrote.contains("status    completed"),
        "the summary still prints: {wrote}"
    );
    assert!(std::fs::read_to_string(&file).unwrap().contains("interview — run i1"));

    s.run(&["show", "i1", "--draw", "png"])
        .fails_with(EXIT_USAGE, "unknown format `png`");
    s.run(&["show", "nope"])
        .fails_with(EXIT_USAGE, "no run `nope` in this database");
}

#[test]
fn show_and_resume_need_an_existing_database() {
    let s = Scratch::new("nodb");
    s.run(&["show", "x"]).fails_with(EXIT_USAGE, "does not exist");
    s.run(&["resume", "x"]).fails_with(EXIT_USAGE, "does not exist");
    assert!(!s.db().exists(), "not created by looking");
}

#[test]
fn resume_continues_a_run_interrupted_mid_step() {
    let s = Scratch::new("resume");
    // A run journaled through the library, its process "killed" mid-step.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let journal = Journal::new(SqliteStore::open(s.db()).await.unwrap());
        let _handle = slow().run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("crashed"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        journal.flush().await.unwrap();
        let record = journal.store().run("crashed").await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Running);
    });
    rt.shutdown_background();

    let runs = s.run(&["runs", "--status", "running"]).ok().out;
    assert!(runs.contains("crashed") && runs.contains("slow"), "{runs}");
    let before = s.run(&["show", "crashed"]).ok().out;
    assert!(
        before.contains("status    running") && before.contains("  running\n"),
        "{before}"
    );

    let resumed = s.run(&["resume", "crashed"]).ok();
    assert!(
        resumed.out.starts_with("run crashed of slow resumed\n"),
        "{}",
        resumed.out
    );
    assert!(resumed.out.ends_with("result: \"go done\"\n"), "{}", resumed.out);

    let after = s.run(&["show", "crashed"]).ok().out;
    assert!(after.contains("status    completed"), "{after}");
    assert!(after.contains("interrupted, ran again"), "{after}");
    let mermaid = s.run(&["show", "crashed", "--draw", "mermaid"]).ok().out;
    assert!(
        mermaid.contains(":::interrupted") && mermaid.contains("-.->|\"resumed\"|"),
        "{mermaid}"
    );

    s.run(&["resume", "crashed"])
        .fails_with(EXIT_USAGE, "has already ended (completed)");
    s.run(&["resume", "nope"]).fails_with(EXIT_USAGE, "no run `nope`");
}

#[test]
fn the_db_flag_overrides_the_default_database() {
    let s = Scratch::new("dbflag");
    let other = s.dir.join("other.db");
    let other = other.to_str().unwrap();
    s.run(&["run", "echo", "--run-id", "elsewhere", "--db", other]).ok();
    assert!(s.run(&["runs", "--db", other]).ok().out.contains("elsewhere"));
    assert!(
        s.run(&["--db", other, "runs"]).ok().out.contains("elsewhere"),
        "global flag"
    );
    assert!(!s.run(&["runs"]).ok().out.contains("elsewhere"));
}

#[test]
fn usage_errors_and_help() {
    let s = Scratch::new("usage");
    let unknown = s.run(&["frobnicate"]);
    assert_eq!(unknown.code, EXIT_USAGE, "{unknown:#?}");
    assert!(
        unknown.err.contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        unknown.err
    );
    assert!(unknown.err.contains("Usage: tool"), "{}", unknown.err);
    let flag = s.run(&["run", "echo", "--colour"]);
    assert_eq!(flag.code, EXIT_USAGE, "{flag:#?}");
    assert!(flag.err.contains("unexpected argument '--colour'"), "{}", flag.err);
    let missing = s.run(&["draw"]);
    assert_eq!(missing.code, EXIT_USAGE, "{missing:#?}");
    assert!(missing.err.contains("<WORKFLOW>"), "{}", missing.err);
    let none = s.run(&[]);
    assert_eq!(none.code, EXIT_USAGE, "{none:#?}");

    let help = s.run(&["--help"]).ok();
    assert!(help.out.contains("Usage: tool [OPTIONS] <COMMAND>"), "{}", help.out);
    for command in ["list", "draw", "run", "runs", "show", "resume"] {
        assert!(
            help.out.contains(&format!("\n  {command} ")),
            "{command} in {}",
            help.out
        );
    }
    assert!(help.out.contains(&format!("Workflows: {REGISTERED}")), "{}", help.out);
    assert!(
        help.out
            .contains("Exit codes: 0 ok, 1 the run failed, 2 bad input, 3 the run waits"),
        "{}",
        help.out
    );
    assert!(help.err.is_empty());
    let run_help = s.run(&["run", "--help"]).ok();
    assert!(
        run_help.out.contains("--answer <TEXT>") && run_help.out.contains("--input <JSON>"),
        "{}",
        run_help.out
    );
    let version = s.run(&["--version"]).ok();
    assert!(version.out.starts_with("tool "), "{}", version.out);
}

#[test]
fn cli_is_usable_from_a_shared_reference() {
    // A binary may keep the Cli around and call it several times.
    let s = Scratch::new("shared");
    let cli = Arc::new(cli(&s.db()));
    assert_eq!(cli.workflow_names().join(", "), REGISTERED);
}

#[test]
fn run_ids_that_are_empty_blank_multi_line_or_too_long_are_refused() {
    let s = Scratch::new("run-ids");
    let long = "x".repeat(256);
    for (id, why) in [
        ("", "it is empty"),
        ("   ", "it is blank"),
        ("a\nb", "control character '\\n'"),
        ("bell\u{7}", "control character '\\u{7}'"),
        (long.as_str(), "it is 256 bytes long"),
    ] {
        for args in [
            vec!["run", "echo", "--run-id", id],
            vec!["resume", id],
            vec!["show", id],
        ] {
            let bad = s.run(&args).fails_with(EXIT_USAGE, "is not valid");
            assert!(bad.err.contains(why), "{args:?}: {}", bad.err);
            assert!(bad.err.contains("use 1 to 255 bytes of printable text"), "{}", bad.err);
            assert_eq!(bad.err.lines().count(), 1, "one line: {:?}", bad.err);
        }
    }
    assert!(!s.db().exists(), "a refused run id must not create the database");
    let id = "y".repeat(255);
    s.run(&["run", "echo", "--run-id", &id]).ok();
    s.run(&["show", &id]).ok();
}

#[test]
fn the_start_event_can_come_from_a_file_or_standard_input() {
    let s = Scratch::new("input-file");
    // Larger than one argument may be on Linux (MAX_ARG_STRLEN, 128 KiB).
    let text = "word ".repeat(60_000);
    let json = serde_json::json!({ "text": text }).to_string();
    assert!(json.len() > 128 * 1024);
    let file = s.dir.join("input.json");
    std::fs::write(&file, &json).unwrap();
    let expected = format!("result: {}\n", serde_json::to_string(&text).unwrap());
    let from_file = s.run(&["run", "echo", "--input-file", file.to_str().unwrap()]).ok();
    assert!(from_file.out.ends_with(&expected), "{}", &from_file.out[..200]);
    let from_stdin = s.run_with(&["run", "echo", "--input", "-"], &json, false).ok();
    assert!(from_stdin.out.ends_with(&expected), "{}", &from_stdin.out[..200]);

    s.run(&[
        "run",
        "echo",
        "--input-file",
        s.dir.join("missing.json").to_str().unwrap(),
    ])
    .fails_with(EXIT_USAGE, "--input-file");
    std::fs::write(&file, "{not json").unwrap();
    s.run(&["run", "echo", "--input-file", file.to_str().unwrap()])
        .fails_with(EXIT_USAGE, "is not valid JSON");
    s.run_with(&["run", "echo", "--input", "-"], "", false)
        .fails_with(EXIT_USAGE, "is not valid JSON");
    s.run(&["run", "echo", "--input", "{}", "--input-file", file.to_str().unwrap()])
        .fails_with(EXIT_USAGE, "cannot be used with");
}

// ------------------------------------------------------------ input nesting
// What `run` accepts must read back through `show` and `resume`; input
// nested deeper than `stepwise::MAX_EVENT_DEPTH` is refused as bad input
// (exit 2) and nothing is saved.

/// Asks for approval, then answers with the depth of its input's `doc`.
fn nested() -> Workflow {
    Workflow::builder("nested")
        .step_with(
            StepConfig::new("review")
                .emits::<InputRequiredEvent>()
                .waits_for::<HumanResponseEvent>(),
            |ctx: Context, ev: StartEvent| async move {
                let depth = ev.raw("doc").map_or(0, stepwise::json_depth);
                let answer = ctx
                    .wait_for_event(WaitFor::<HumanResponseEvent>::new().publish(InputRequiredEvent::new("ok?")))
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(format!("{} at depth {depth}", answer.response)))
            },
        )
        .build()
        .unwrap()
}

/// A command line with only `nested`.
fn nested_cli(db: &Path) -> Cli {
    Cli::new("tool").database(db).workflow(nested())
}

/// `{"doc": [[…[1]…]]}`, nested `depth` levels in all.
fn input(depth: usize) -> String {
    assert!(depth >= 2);
    let inner = depth - 1;
    format!("{{\"doc\": {}1{}}}", "[".repeat(inner), "]".repeat(inner))
}

#[test]
fn input_at_the_depth_limit_runs_shows_and_resumes() {
    let s = Scratch::new("depth-limit");
    let text = input(MAX_EVENT_DEPTH);
    let Outcome { code, out, err } = s.run_cli(
        nested_cli(&s.db()),
        &["run", "nested", "--run-id", "deep-ok", "--input", &text],
        "",
        false,
    );
    assert_eq!(code, EXIT_WAITING, "saved, waiting for an answer: {out}\n{err}");
    let Outcome { code, out, err } = s.run_cli(nested_cli(&s.db()), &["show", "deep-ok"], "", false);
    assert_eq!(code, 0, "show reads it back: {out}\n{err}");
    assert!(out.contains("status    running"), "{out}");
    let Outcome { code, out, err } = s.run_cli(
        nested_cli(&s.db()),
        &["resume", "deep-ok", "--answer", "yes"],
        "",
        false,
    );
    assert_eq!(code, 0, "resume reads it back: {out}\n{err}");
    let expected = format!("result: \"yes at depth {}\"", MAX_EVENT_DEPTH - 1);
    assert!(out.contains(&expected), "{out}");
    let Outcome { code, out, err } = s.run_cli(nested_cli(&s.db()), &["show", "deep-ok"], "", false);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("status    completed"), "{out}");
}

#[test]
fn input_over_the_depth_limit_is_refused_and_nothing_is_saved() {
    let s = Scratch::new("depth-over");
    // Just over the limit, and what used to be accepted, saved, and then
    // unreadable ("recursion limit exceeded" from show and resume).
    for depth in [MAX_EVENT_DEPTH + 1, 125] {
        let id = format!("deep-{depth}");
        let text = input(depth);
        let Outcome { code, out, err } = s.run_cli(
            nested_cli(&s.db()),
            &["run", "nested", "--run-id", &id, "--input", &text],
            "",
            false,
        );
        assert_eq!(code, EXIT_USAGE, "depth {depth}: {out}\n{err}");
        assert!(
            err.contains(&format!("nested {depth} levels deep")) && err.contains(&MAX_EVENT_DEPTH.to_string()),
            "names the depth and the limit: {err}"
        );
        let Outcome { code, out, .. } = s.run_cli(nested_cli(&s.db()), &["runs"], "", false);
        assert_eq!(code, 0);
        assert!(!out.contains(&id), "nothing saved: {out}");
    }
}

// ------------------------------------------------------ a store of its own

fn memory_cli(store: &Arc<stepwise::store::MemoryStore>) -> Cli {
    Cli::new("tool")
        .store_arc(store.clone())
        .workflow(echo())
        .workflow(interview())
}

#[test]
fn an_embedding_binary_can_keep_runs_in_another_store() {
    let s = Scratch::new("given-store");
    let store = Arc::new(stepwise::store::MemoryStore::new());
    let run = |args: &[&str]| s.run_cli(memory_cli(&store), args, "", false);
    assert!(run(&["runs"]).ok().out.contains("no runs in the tool's store"));
    let first = run(&["run", "echo", "--run-id", "m1", "--input", r#"{"text": "hi"}"#]).ok();
    assert!(first.out.ends_with("result: \"hi\"\n"), "{}", first.out);
    let waiting = run(&["run", "interview", "--run-id", "m2"]);
    assert_eq!(waiting.code, EXIT_WAITING, "{waiting:#?}");
    let runs = run(&["runs"]).ok().out;
    assert!(
        runs.contains("m1") && runs.contains("completed") && runs.contains("m2"),
        "{runs}"
    );
    let show = run(&["show", "m2"]).ok().out;
    assert!(show.contains("waiting   for an answer to \"name?\""), "{show}");
    let resumed = run(&["resume", "m2", "--answer", "Ada", "--answer", "green"]).ok();
    assert!(
        resumed.out.ends_with("result: \"Ada likes green\"\n"),
        "{}",
        resumed.out
    );
    assert!(!s.db().exists(), "no SQLite file was made");
    run(&["runs", "--db", "x.db"]).fails_with(EXIT_USAGE, "--db does not apply");
    assert!(run(&["--help"]).ok().out.contains("Runs: kept in the tool's store"));
}

#[test]
fn a_workflow_name_registered_twice_is_refused() {
    let error = Cli::new("tool").workflow(echo()).try_workflow(echo()).err().unwrap();
    assert_eq!(error.to_string(), "a workflow named `echo` is already registered");
    let panic = std::panic::catch_unwind(|| Cli::new("tool").workflow(echo()).workflow(echo()))
        .err()
        .unwrap();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("`echo` is already registered"), "{message}");
}
