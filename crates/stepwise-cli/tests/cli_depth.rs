//! `--input` nesting: what `run` accepts must read back through `show` and
//! `resume`; input nested deeper than `stepwise::MAX_EVENT_DEPTH` is refused
//! as bad input (exit 2) and nothing is saved.

use std::path::{Path, PathBuf};

use stepwise::{
    Context, HumanResponseEvent, InputRequiredEvent, StartEvent, StepConfig, StepError, StopEvent, WaitFor, Workflow,
    MAX_EVENT_DEPTH,
};
use stepwise_cli::{Cli, Io, EXIT_USAGE, EXIT_WAITING};

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

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stepwise-cli-depth-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("runs.db")
    }

    /// Runs `tool <args>` non-interactively with empty standard input, on
    /// its own runtime (as its own process would).
    fn run(&self, args: &[&str]) -> (u8, String, String) {
        let cli = cli(&self.db());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input: &[u8] = b"";
        let argv: Vec<&str> = std::iter::once("tool").chain(args.iter().copied()).collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let code = rt.block_on(cli.run_args(
            argv,
            Io {
                out: &mut out,
                err: &mut err,
                input: &mut input,
                interactive: false,
            },
        ));
        rt.shutdown_background();
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(db: &Path) -> Cli {
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
    let s = Scratch::new("limit");
    let text = input(MAX_EVENT_DEPTH);
    let (code, out, err) = s.run(&["run", "nested", "--run-id", "deep-ok", "--input", &text]);
    assert_eq!(code, EXIT_WAITING, "saved, waiting for an answer: {out}\n{err}");
    let (code, out, err) = s.run(&["show", "deep-ok"]);
    assert_eq!(code, 0, "show reads it back: {out}\n{err}");
    assert!(out.contains("status    running"), "{out}");
    let (code, out, err) = s.run(&["resume", "deep-ok", "--answer", "yes"]);
    assert_eq!(code, 0, "resume reads it back: {out}\n{err}");
    let expected = format!("result: \"yes at depth {}\"", MAX_EVENT_DEPTH - 1);
    assert!(out.contains(&expected), "{out}");
    let (code, out, err) = s.run(&["show", "deep-ok"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("status    completed"), "{out}");
}

#[test]
fn input_over_the_depth_limit_is_refused_and_nothing_is_saved() {
    let s = Scratch::new("over");
    // Just over the limit, and what used to be accepted, saved, and then
    // unreadable ("recursion limit exceeded" from show and resume).
    for depth in [MAX_EVENT_DEPTH + 1, 125] {
        let id = format!("deep-{depth}");
        let text = input(depth);
        let (code, out, err) = s.run(&["run", "nested", "--run-id", &id, "--input", &text]);
        assert_eq!(code, EXIT_USAGE, "depth {depth}: {out}\n{err}");
        assert!(
            err.contains(&format!("nested {depth} levels deep")) && err.contains(&MAX_EVENT_DEPTH.to_string()),
            "names the depth and the limit: {err}"
        );
        let (code, out, _) = s.run(&["runs"]);
        assert_eq!(code, 0);
        assert!(!out.contains(&id), "nothing saved: {out}");
    }
}
