//! Crash recovery across processes: the `crashtest` binary runs a journaled
//! workflow on a SQLite file and is SIGKILLed mid-step; a second process
//! resumes the run. Checked: the right result; the stored stream is numbered
//! 0..n with each work step's event exactly once; the journal holds exactly
//! one `step_done` entry per completed step invocation; steps whose results
//! were committed before the kill did not run again, and every other step ran
//! exactly once more.
//!
//! The test waits for marker lines, never for fixed sleeps: what had been
//! committed at the kill is read from the database, so the checks hold
//! whatever the machine's load did to the timing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use stepwise::store::{JournalStore, RunStatus};
use stepwise_sqlite::SqliteStore;

const BIN: &str = env!("CARGO_BIN_EXE_crashtest");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stepwise-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How often each step body started, from the side file.
fn starts(side: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(side).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

fn total(counts: &BTreeMap<String, usize>, prefix: &str) -> usize {
    counts
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

/// What the database holds for the run.
struct Stored {
    status: RunStatus,
    result: Option<Value>,
    /// Event names in sequence order, with the sequence numbers.
    events: Vec<(u64, Value)>,
    /// Journal entries (parsed), in sequence order.
    entries: Vec<Value>,
}

impl Stored {
    fn progress(&self) -> Vec<u64> {
        let mut items: Vec<u64> = self
            .events
            .iter()
            .filter(|(_, e)| e["type"] == "Progress")
            .map(|(_, e)| e["value"]["i"].as_u64().unwrap())
            .collect();
        items.sort_unstable();
        items
    }

    /// The items of the `work` steps whose results are committed (their
    /// step_done entries emit `Done`).
    fn works_done(&self) -> Vec<u64> {
        fn dones(value: &Value, found: &mut Vec<u64>) {
            match value {
                Value::Array(items) if items.len() == 2 && items[0] == "Done" => {
                    found.extend(items[1]["i"].as_u64());
                }
                Value::Object(map) if map.get("type").is_some_and(|t| t == "Done") => {
                    found.extend(map["value"]["i"].as_u64());
                }
                Value::Array(items) => items.iter().for_each(|v| dones(v, found)),
                Value::Object(map) => map.values().for_each(|v| dones(v, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for entry in self.entries.iter().filter(|e| entry_kind(e) == "step_done") {
            dones(entry, &mut found);
        }
        found.sort_unstable();
        found
    }

    fn step_dones(&self) -> usize {
        self.entries.iter().filter(|e| entry_kind(e) == "step_done").count()
    }
}

/// An entry is `{"seq", "at_us", "tick": {"tick": <kind>, …}}`, or in the
/// compact form `[seq, at_us, "a" | "d" | "p", …]` (see `stepwise::journal`).
fn entry_seq(entry: &Value) -> u64 {
    entry
        .get(0)
        .unwrap_or(&entry["seq"])
        .as_u64()
        .expect("an entry has a sequence number")
}

fn entry_kind(entry: &Value) -> &str {
    match entry[2].as_str() {
        Some("a") => "add_event",
        Some("d") => "step_done",
        Some("p") => "publish",
        _ => entry["tick"]["tick"].as_str().unwrap_or_default(),
    }
}

fn read_db(db: &Path, run_id: &str) -> Stored {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db).await.unwrap();
        let record = store.run(run_id).await.unwrap().expect("the run is recorded");
        let events = store
            .events(run_id, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, serde_json::from_str(&e.event).unwrap()))
            .collect();
        let mut entries = Vec::new();
        for row in store.entries(run_id, 0).await.unwrap() {
            let Value::Array(rows) = serde_json::from_str(&row.data).expect("a journal row is a JSON array") else {
                panic!("a journal row is a JSON array: {}", row.data);
            };
            assert_eq!(
                rows.len() as u64,
                row.last_seq - row.first_seq + 1,
                "row {}",
                row.first_seq
            );
            entries.extend(rows);
        }
        Stored {
            status: record.status,
            result: record.result,
            events,
            entries,
        }
    })
}

/// Starts `crashtest`, waits for `marker`, SIGKILLs it; returns the run id.
fn start_and_kill(db: &Path, side: &Path, marker: &str) -> String {
    let mut child = Command::new(BIN)
        .args(["start", db.to_str().unwrap(), side.to_str().unwrap(), "400"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("crashtest starts");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut run_id = None;
    let mut seen = Vec::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(error) => {
                let _ = child.kill();
                panic!("no `{marker}` from crashtest ({error}); saw {seen:?}");
            }
        };
        if let Some(id) = line.strip_prefix("RUN ") {
            run_id = Some(id.to_owned());
        }
        let done = line == marker;
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().expect("SIGKILL"); // `Child::kill` sends SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "crashtest was killed, not finished: {seen:?}");
    run_id.expect("crashtest printed its run id first")
}

fn resume(db: &Path, side: &Path) -> Value {
    let mut child = Command::new(BIN)
        .args(["resume", db.to_str().unwrap(), side.to_str().unwrap(), "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crashtest resume runs");
    // A resumed run that hangs must fail the test, not hang it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the resumed run did not finish in 120 s; stdout: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "resume failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The results are the last line (markers come before).
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("resume printed `{stdout}`: {e}"))
}

fn crash_and_recover(name: &str, marker: &str) {
    let dir = temp_dir(name);
    let (db, side) = (dir.join("runs.db"), dir.join("starts.log"));
    let run_id = start_and_kill(&db, &side, marker);

    // What was committed when the process died.
    let before = read_db(&db, &run_id);
    assert_eq!(before.status, RunStatus::Running);
    let works_before = before.works_done();
    let done_before = before.step_dones();
    // A work step's progress is committed when it is written (live), its
    // result when it ends: every finished work step has its progress stored.
    let works_done = works_before.len();
    assert!(works_before.iter().all(|i| before.progress().contains(i)), "{marker}");
    let gathers_done = done_before - 1 - works_done;
    let starts_before = starts(&side);
    assert_eq!(starts_before["start"], 1);

    let results = resume(&db, &side);
    assert_eq!(
        results,
        serde_json::json!([{ "run_id": run_id, "result": 30 }]),
        "{marker}"
    );

    let after = read_db(&db, &run_id);
    assert_eq!(after.status, RunStatus::Completed);
    assert_eq!(
        after.result,
        Some(serde_json::json!({ "type": "StopEvent", "value": { "result": 30 } }))
    );
    // The stream: 0..n, no gaps, no repeats; each work step's event once.
    let seqs: Vec<u64> = after.events.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (0..after.events.len() as u64).collect::<Vec<_>>(), "{marker}");
    assert_eq!(after.progress(), [0, 1, 2, 3, 4], "{marker}: {:?}", after.events);
    assert_eq!(after.events.last().unwrap().1["type"], "StopEvent");
    let stops = after.events.iter().filter(|(_, e)| e["type"] == "StopEvent").count();
    assert_eq!(stops, 1);
    // Events stored before the kill are still there, unchanged.
    assert_eq!(after.events[..before.events.len()], before.events[..]);
    // The journal: consecutive entries, one step_done per completed
    // invocation (start, 5 × work, 5 × gather).
    let seqs: Vec<u64> = after.entries.iter().map(entry_seq).collect();
    assert_eq!(seqs, (0..after.entries.len() as u64).collect::<Vec<_>>());
    assert_eq!(after.step_dones(), 11, "{marker}");
    assert_eq!(after.entries[..before.entries.len()], before.entries[..]);

    // Completed steps were not recomputed; everything else ran exactly once
    // more (in-flight steps again from their start: at-least-once bodies).
    let starts_after = starts(&side);
    assert_eq!(starts_after["start"], 1, "{marker}: start ran again");
    for i in 0..5 {
        let key = format!("work {i}");
        let (was, now) = (starts_before.get(&key).copied().unwrap_or(0), starts_after[&key]);
        if works_before.contains(&(i as u64)) {
            assert_eq!(
                now, was,
                "{marker}: work {i} had completed before the kill but ran again"
            );
            assert_eq!(now, 1);
        } else {
            assert_eq!(
                now,
                was + 1,
                "{marker}: work {i} should run exactly once after the resume"
            );
        }
    }
    assert_eq!(
        total(&starts_after, "work") - total(&starts_before, "work"),
        5 - works_done
    );
    assert_eq!(
        total(&starts_after, "gather") - total(&starts_before, "gather"),
        5 - gathers_done,
        "{marker}: gather invocations committed before the kill ran again"
    );

    // Nothing is left to resume.
    assert_eq!(resume(&db, &side), serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_while_the_first_work_step_runs() {
    crash_and_recover("work0", "MIDWAY work 0");
}

#[test]
fn killed_while_later_work_steps_run() {
    crash_and_recover("work2", "MIDWAY work 2");
    crash_and_recover("work4", "MIDWAY work 4");
}

#[test]
fn killed_while_the_fan_in_holds_the_full_set() {
    crash_and_recover("gather", "MIDWAY gather final");
}
