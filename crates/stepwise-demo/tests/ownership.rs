//! One owner per run, with real processes on one SQLite file: two `resume`s
//! of one waiting run at once, and two `run --run-id` with the same id at
//! once. Exactly one process gets the run; the other is told who holds it
//! (or that the id is in use), and the stored run is the winner's alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stepwise-owner-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("runs.db")
    }

    fn spawn(&self, args: &[&str]) -> Child {
        demo(&self.db(), args).spawn().expect("the demo binary starts")
    }

    fn run(&self, args: &[&str]) -> Output {
        demo(&self.db(), args).output().expect("the demo binary runs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo(db: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stepwise-demo"));
    command
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("TERM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn two_resumes_of_one_run_at_once_give_it_to_exactly_one() {
    let s = Scratch::new("resume");
    let waiting = s.run(&["run", "document_pipeline", "--run-id", "w"]);
    assert_eq!(waiting.status.code(), Some(3), "{}", text(&waiting));

    // Both answers approve the draft, so whichever resume takes the run
    // completes it; the other is refused — "is held by" while the winner
    // holds it, or "has already ended" when the machine let the winner finish
    // before the other process got going.
    let first = s.spawn(&["resume", "w", "--answer", "yes"]);
    let second = s.spawn(&["resume", "w", "--answer", "ok"]);
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let both = format!("{}\n---\n{}", text(&outputs[0]), text(&outputs[1]));
    let (losers, winners): (Vec<&Output>, Vec<&Output>) = outputs
        .iter()
        .partition(|o| text(o).contains("is held by") || text(o).contains("has already ended"));
    assert_eq!(
        (losers.len(), winners.len()),
        (1, 1),
        "exactly one resume proceeds:\n{both}"
    );
    // Held by another process: exit 1; a finished run cannot be resumed: exit 2.
    let refusal = if text(losers[0]).contains("is held by") { 1 } else { 2 };
    assert_eq!(losers[0].status.code(), Some(refusal), "{both}");
    assert!(text(losers[0]).contains("run w"), "{both}");
    let winner = winners[0];
    assert_eq!(winner.status.code(), Some(0), "{both}");

    // The store agrees with the winner, and holds only its answer.
    let shown = s.run(&["show", "w"]);
    let shown_text = text(&shown);
    assert!(shown.status.success(), "{shown_text}");
    assert!(
        shown_text.contains("completed"),
        "winner:\n{}\nstored:\n{shown_text}",
        text(winner)
    );
    let answers = ["answering: yes", "answering: ok"];
    let winner_answer = answers
        .iter()
        .find(|a| text(winner).contains(*a))
        .expect("the winner answered");
    let loser_answer = answers.iter().find(|a| *a != winner_answer).unwrap();
    assert!(
        !text(losers[0]).contains(loser_answer),
        "the loser did not answer:\n{both}"
    );
    let stops = shown_text.matches(" StopEvent ").count();
    assert_eq!(stops, 1, "one ending is stored:\n{shown_text}");
}

#[test]
fn two_runs_with_one_id_at_once_give_it_to_exactly_one() {
    let s = Scratch::new("run");
    // Create the database first, so both processes race on one file.
    let listed = s.run(&["runs"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let input = r#"{"text": "One.\n\nTwo."}"#;
    let first = s.spawn(&[
        "run",
        "document_pipeline",
        "--input",
        input,
        "--answer",
        "yes",
        "--run-id",
        "same",
    ]);
    let second = s.spawn(&[
        "run",
        "document_pipeline",
        "--input",
        input,
        "--answer",
        "yes",
        "--run-id",
        "same",
    ]);
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let ok = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        ok,
        1,
        "exactly one run proceeds:\n{}\n---\n{}",
        text(&outputs[0]),
        text(&outputs[1])
    );
    let refused = outputs.iter().find(|o| !o.status.success()).unwrap();
    let refused = text(refused);
    // Refused by the store's claim, or (when the winner committed first) by
    // the command line's own check.
    assert!(
        (refused.contains("run same") && refused.contains("already in use"))
            || refused.contains("a run `same` already exists"),
        "{refused}"
    );
    // A later run with the id is refused too, and the stored run stays.
    let again = s.run(&["run", "document_pipeline", "--input", input, "--run-id", "same"]);
    assert!(!again.status.success(), "{}", text(&again));
    let shown = s.run(&["show", "same"]);
    assert!(text(&shown).contains("completed"), "{}", text(&shown));
}

/// A real process whose database's write-ahead log is deleted while its run
/// waits for an answer: the commits after it are refused, the run stops and
/// the command exits 1 saying so, instead of printing a result it could not
/// store.
#[test]
fn a_deleted_write_ahead_log_mid_run_fails_the_command() {
    use std::io::{BufRead, BufReader, Write};
    let s = Scratch::new("wal");
    let mut child = demo(&s.db(), &["run", "document_pipeline", "--run-id", "wal"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("the demo binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("the run ended before it asked: {seen}");
        }
        seen.push_str(&line);
        if line.contains("InputRequiredEvent") {
            break;
        }
    }
    let mut wal = s.db().into_os_string();
    wal.push("-wal");
    std::fs::remove_file(&wal).expect("the write-ahead log exists while the run is open");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "yes").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stdout:\n{seen}\nstderr:\n{err}");
    assert!(err.contains("write-ahead log"), "{err}");
}
