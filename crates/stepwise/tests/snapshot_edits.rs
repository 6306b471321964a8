//! Hand-edited snapshots: real snapshots of a fan-out with collect buffers, a
//! step waiting for a person, and a pending retry, each edited systematically
//! (fields removed, out of range, inconsistent with each other). Every edit
//! is either refused (`ResumeError::InvalidSnapshot`, or a decode error) or
//! resumes to an end within a timeout: never a hang, never a panic. Edits
//! that describe an impossible state must be refused.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stepwise::retry::RetryPolicy;
use stepwise::store::{JournalStore, MemoryStore, WriteBatch};
use stepwise::{
    Context, Event, HumanResponseEvent, InputRequiredEvent, Journal, JournalConfig, ResumeError, RunOptions, Snapshot,
    StartEvent, StepConfig, StepError, StopEvent, StreamExt, WaitFor, Workflow, WorkflowIdle,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Item(u32);
impl Event for Item {
    const NAME: &'static str = "Item";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Done(u32);
impl Event for Done {
    const NAME: &'static str = "Done";
}

/// While set, the slow parts of the workflows below take a minute (so a
/// snapshot catches them mid-way); resumed runs find it cleared.
static SLOW: AtomicBool = AtomicBool::new(true);

fn pause(long: bool) -> Duration {
    if long && SLOW.load(Ordering::SeqCst) {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(5)
    }
}

/// `start` sends six items; `work` (2 workers) finishes items 0 and 1 at
/// once and the rest slowly; `join` collects all six.
fn fan_out() -> Workflow {
    Workflow::builder("fan-out")
        .step_with(
            StepConfig::new("start").emits::<Item>(),
            |ctx: Context, _: StartEvent| async move {
                for i in 0..6 {
                    ctx.send_event(Item(i));
                }
            },
        )
        .step_with(StepConfig::new("work").num_workers(2), |item: Item| async move {
            tokio::time::sleep(pause(item.0 >= 2)).await;
            Done(item.0)
        })
        .step("join", |ctx: Context, done: Done| async move {
            let all = ctx.collect_n(&done, 6)?;
            Some(StopEvent::new(all.iter().map(|d| d.0).sum::<u32>()))
        })
        .build()
        .unwrap()
}

/// `ask` waits for an answer.
fn hitl() -> Workflow {
    Workflow::builder("hitl")
        .step_with(
            StepConfig::new("ask").waits_for::<HumanResponseEvent>(),
            |ctx: Context, _: StartEvent| async move {
                let answer = ctx
                    .wait_for_event(
                        WaitFor::<HumanResponseEvent>::new()
                            .id("approval")
                            .publish(InputRequiredEvent::new("ok?")),
                    )
                    .await
                    .map_err(StepError::new)?;
                Ok::<_, StepError>(StopEvent::new(answer.response))
            },
        )
        .build()
        .unwrap()
}

#[derive(Debug, thiserror::Error)]
#[error("flaky")]
struct Flaky;

/// `flaky` fails its first attempt; the retry is due 60 s later (the test
/// moves it to "now" in the snapshot it edits).
fn retrying(attempts: &Arc<AtomicU32>) -> Workflow {
    let attempts = Arc::clone(attempts);
    Workflow::builder("retrying")
        .step_with(
            StepConfig::new("flaky").retry(RetryPolicy::fixed(3, Duration::from_secs(60))),
            move |_: StartEvent| {
                let attempts = Arc::clone(&attempts);
                async move {
                    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Err(StepError::new(Flaky));
                    }
                    Ok(StopEvent::new("recovered"))
                }
            },
        )
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The first snapshot of a run of `wf` that satisfies `ready` (taken every
/// 20 ms, for at most 10 s).
async fn snapshot_of(wf: &Workflow, ready: fn(&Value) -> bool) -> Value {
    let handle = wf.run(StartEvent::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let snapshot = handle.snapshot().await.expect("a snapshot");
        let value: Value = serde_json::from_str(&snapshot.to_json().unwrap()).unwrap();
        if ready(&value) {
            handle.cancel();
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "never got there: {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn non_empty(value: &Value, list: &str) -> bool {
    value["run"][list].as_array().is_some_and(|l| !l.is_empty())
}

/// How resuming an edited snapshot went.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Ended(String),
}

/// Resumes `text` (answering input requests) and waits for the end.
async fn resume(wf: &Workflow, text: String) -> Outcome {
    let snapshot = match Snapshot::from_json(&text) {
        Ok(snapshot) => snapshot,
        Err(error) => return Outcome::Refused(format!("decode: {error}")),
    };
    let handle = match wf.resume_from_snapshot(snapshot, RunOptions::new()) {
        Ok(handle) => handle,
        Err(
            error @ (ResumeError::InvalidSnapshot { .. } | ResumeError::Decode { .. } | ResumeError::Finished { .. }),
        ) => return Outcome::Refused(error.to_string()),
        Err(error) => return Outcome::Refused(format!("other: {error}")),
    };
    let mut stream = handle.stream_events().unwrap();
    let answers = {
        let handle_events = async {
            while let Some(event) = stream.next().await {
                if event.is::<WorkflowIdle>() || event.is::<InputRequiredEvent>() {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(Duration::from_secs(5), handle_events).await
    };
    if let Ok(true) = answers {
        let _ = handle.send_event(HumanResponseEvent::new("yes"));
    }
    match tokio::time::timeout(Duration::from_secs(5), handle).await {
        Ok(result) => Outcome::Ended(format!("{result:?}")),
        Err(_) => panic!("the resumed run hangs"),
    }
}

/// One edit: what it does, whether it must be refused, and the change.
struct Edit {
    name: String,
    refuse: bool,
    apply: Box<dyn Fn(&mut Value) -> bool>,
}

fn edit(name: &str, refuse: bool, apply: impl Fn(&mut Value) -> bool + 'static) -> Edit {
    Edit {
        name: name.to_owned(),
        refuse,
        apply: Box::new(apply),
    }
}

fn at<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('/').try_fold(value, |v, key| match key.parse::<usize>() {
        Ok(i) => v.get_mut(i),
        Err(_) => v.get_mut(key),
    })
}

/// Sets `path` (adding the last key to its object when it is missing).
fn set(path: &'static str, new: Value) -> impl Fn(&mut Value) -> bool {
    move |v| {
        if let Some(slot) = at(v, path) {
            *slot = new.clone();
            return true;
        }
        let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = if parent.is_empty() { Some(v) } else { at(v, parent) };
        match parent.and_then(Value::as_object_mut) {
            Some(object) => {
                object.insert(key.to_owned(), new.clone());
                true
            }
            None => false,
        }
    }
}

fn remove(path: &'static str) -> impl Fn(&mut Value) -> bool {
    move |v| {
        let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = if parent.is_empty() { Some(v) } else { at(v, parent) };
        parent
            .and_then(Value::as_object_mut)
            .and_then(|o| o.remove(key))
            .is_some()
    }
}

fn duplicate(path: &'static str) -> impl Fn(&mut Value) -> bool {
    move |v| match at(v, path).and_then(Value::as_array_mut) {
        Some(list) if !list.is_empty() => {
            list.push(list[0].clone());
            true
        }
        _ => false,
    }
}

fn add(path: &'static str, delta: i64) -> impl Fn(&mut Value) -> bool {
    move |v| match at(v, path) {
        Some(slot) if slot.is_u64() => {
            *slot = json!(slot.as_u64().unwrap() as i64 + delta);
            true
        }
        _ => false,
    }
}

/// The first occupied invocation slot's index, as a path.
fn busy_slot(v: &Value) -> Option<usize> {
    v["run"]["invocations"]
        .as_array()?
        .iter()
        .position(|s| s.get("entry").is_some())
}

/// Edits every snapshot gets.
fn common_edits() -> Vec<Edit> {
    let mut edits = Vec::new();
    for field in [
        "steps",
        "invocations",
        "free",
        "buffers",
        "retries",
        "waiters",
        "recovered_waiters",
        "next_timer",
        "idle",
        "finished",
    ] {
        let path: &'static str = Box::leak(format!("run/{field}").into_boxed_str());
        edits.push(edit(&format!("remove {path}"), true, remove(path)));
    }
    for field in ["format", "run_id", "workflow", "fingerprint", "at_us", "run"] {
        edits.push(edit(&format!("remove {field}"), true, remove(field)));
    }
    edits.push(edit("status bogus", true, set("status", json!("bogus"))));
    edits.push(edit("status completed", true, set("status", json!("completed"))));
    edits.push(edit("finished while running", true, set("run/finished", json!(true))));
    edits.push(edit("format 2", true, set("format", json!(2))));
    edits.push(edit("unknown step name", true, set("run/steps/0/name", json!("nope"))));
    edits.push(edit("steps listed twice", true, duplicate("run/steps")));
    edits.push(edit("next_timer 0 with timers", false, set("run/next_timer", json!(0))));
    edits.push(edit("free slot out of range", true, |v| {
        v["run"]["free"].as_array_mut().map(|f| f.push(json!(99))).is_some()
    }));
    edits.push(edit("published 0", false, set("published", json!(0))));
    edits.push(edit("idle flipped", false, |v| {
        let idle = v["run"]["idle"].as_bool().unwrap_or(false);
        v["run"]["idle"] = json!(!idle);
        true
    }));
    edits.push(edit("state replaced", false, set("state", json!({"unexpected": true}))));
    edits
}

/// Edits for snapshots with work in flight.
fn in_flight_edits() -> Vec<Edit> {
    vec![
        edit("active + 1", true, |v| {
            let step = in_flight_step(v);
            add(leak(format!("run/steps/{step}/active")), 1)(v)
        }),
        edit("active 0, invocations emptied", true, |v| {
            let step = in_flight_step(v);
            v["run"]["steps"][step]["active"] = json!(0);
            v["run"]["invocations"] = json!([]);
            true
        }),
        edit("busy bits cleared", true, |v| {
            let step = in_flight_step(v);
            v["run"]["steps"][step]["busy"] = json!([]);
            true
        }),
        edit("busy bits all set", true, |v| {
            let step = in_flight_step(v);
            v["run"]["steps"][step]["busy"] = json!([u64::MAX]);
            true
        }),
        edit("worker out of range", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["worker"] = json!(999);
            true
        }),
        edit("invocation of another step", true, |v| {
            let slot = busy_slot(v).unwrap();
            let other = other_step(v);
            v["run"]["invocations"][slot]["entry"]["step"] = json!(other);
            true
        }),
        edit("invocation of an unknown step", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["step"] = json!("nope");
            true
        }),
        edit("duplicate invocation", true, |v| {
            let slot = busy_slot(v).unwrap();
            let copy = v["run"]["invocations"][slot].clone();
            v["run"]["invocations"].as_array_mut().unwrap().push(copy);
            true
        }),
        edit("occupied slot listed free", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["free"].as_array_mut().unwrap().push(json!(slot));
            true
        }),
        edit("attempt number 0", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["attempt"]["number"] = json!(0);
            true
        }),
        edit("attempt started in the future", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["attempt"]["first_at_us"] = json!(u64::MAX / 2);
            true
        }),
        edit("invocation event unknown", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["event"]["type"] = json!("Nope");
            true
        }),
        edit("invocation event removed", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]
                .as_object_mut()
                .unwrap()
                .remove("event")
                .is_some()
        }),
        edit("generation changed", false, |v| {
            let slot = busy_slot(v).unwrap();
            add(leak(format!("run/invocations/{slot}/generation")), 7)(v)
        }),
        edit("collected sets beyond calls", true, |v| {
            let slot = busy_slot(v).unwrap();
            let attempt = &mut v["run"]["invocations"][slot]["entry"]["attempt"];
            attempt["sets"] = json!([[3, "default", []]]);
            attempt["collected"] = json!(1);
            true
        }),
    ]
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn in_flight_step(v: &Value) -> usize {
    let slot = busy_slot(v).expect("an invocation in flight");
    let step = v["run"]["invocations"][slot]["entry"]["step"].clone();
    v["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["name"] == step)
        .unwrap()
}

fn other_step(v: &Value) -> String {
    let slot = busy_slot(v).unwrap();
    let step = v["run"]["invocations"][slot]["entry"]["step"].clone();
    v["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] != step)
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| "nope".into()) // a one-step workflow: an unknown one
}

fn waiter_edits() -> Vec<Edit> {
    vec![
        edit(
            "waiter of a missing invocation",
            true,
            set("run/waiters/0/invocation", json!([99, 0])),
        ),
        edit("waiter key not below next_timer", true, add("run/waiters/0/key", 1000)),
        edit("waiter listed twice", true, duplicate("run/waiters")),
        edit(
            "waiter of an unknown step",
            true,
            set("run/waiters/0/step", json!("nope")),
        ),
        edit(
            "waiter of an unknown event",
            true,
            set("run/waiters/0/event", json!("Nope")),
        ),
        edit(
            "waiter removed, invocation still waiting",
            true,
            set("run/waiters", json!([])),
        ),
        edit("waiting 0 with a waiter", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["waiting"] = json!(0);
            true
        }),
        edit("waiting 5 with one waiter", true, |v| {
            let slot = busy_slot(v).unwrap();
            v["run"]["invocations"][slot]["entry"]["waiting"] = json!(5);
            true
        }),
        edit("waiter call beyond waits", true, set("run/waiters/0/call", json!(5))),
        edit(
            "waiter requirement added",
            false,
            set("run/waiters/0/requirements", json!([["x", 1]])),
        ),
    ]
}

fn retry_edits() -> Vec<Edit> {
    vec![
        edit("retry listed twice", true, duplicate("run/retries")),
        edit(
            "retry of an unknown step",
            true,
            set("run/retries/0/step", json!("nope")),
        ),
        edit("retry without attempt", true, remove("run/retries/0/queued/attempt")),
        edit(
            "retry attempt number 1",
            true,
            set("run/retries/0/queued/attempt/number", json!(1)),
        ),
        edit(
            "retry attempt number 0",
            true,
            set("run/retries/0/queued/attempt/number", json!(0)),
        ),
        edit(
            "retry timer not below next_timer",
            true,
            add("run/retries/0/timer", 1000),
        ),
        edit(
            "retry event unknown",
            true,
            set("run/retries/0/queued/event/type", json!("Nope")),
        ),
        edit(
            "retry last error removed",
            true,
            remove("run/retries/0/queued/attempt/last_error"),
        ),
        edit("retry failed before it started", true, |v| {
            let Some(attempt) = at(v, "run/retries/0/queued/attempt") else {
                return false;
            };
            attempt["first_at_us"] = json!(1000);
            attempt["last_failed_at_us"] = json!(10);
            true
        }),
        edit("retry due at once", false, set("run/retries/0/due_us", json!(0))),
    ]
}

fn queue_and_buffer_edits() -> Vec<Edit> {
    vec![
        edit("queued event unknown", true, |v| {
            let step = queued_step(v);
            v["run"]["steps"][step]["queue"][0]["event"]["type"] = json!("Nope");
            true
        }),
        edit("queued attempt number 0", true, |v| {
            let step = queued_step(v);
            v["run"]["steps"][step]["queue"][0]["attempt"] = json!({"number": 0, "first_at_us": 0});
            true
        }),
        edit("queued lineage of an unknown handler", true, |v| {
            let step = queued_step(v);
            v["run"]["steps"][step]["queue"][0]["lineage"] = json!([["nope", 1]]);
            true
        }),
        edit(
            "buffer of an unknown step",
            true,
            set("run/buffers/0/step", json!("nope")),
        ),
        edit("buffer listed twice", true, duplicate("run/buffers")),
        edit(
            "buffer event unknown",
            true,
            set("run/buffers/0/events/0/type", json!("Nope")),
        ),
        edit("buffer emptied", true, set("run/buffers/0/events", json!([]))),
    ]
}

fn queued_step(v: &Value) -> usize {
    v["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| !s["queue"].as_array().unwrap().is_empty())
        .expect("a queued event")
}

/// Applies every edit to `snapshot`, resumes each, and checks the outcome.
fn check_edits(label: &str, wf: &Workflow, snapshot: &Value, edits: Vec<Edit>) -> usize {
    let mut applied = 0;
    let mut accepted_impossible = Vec::new();
    for e in edits {
        let mut edited = snapshot.clone();
        if !(e.apply)(&mut edited) {
            panic!("{label}: edit `{}` did not apply to {snapshot}", e.name);
        }
        applied += 1;
        let text = serde_json::to_string(&edited).unwrap();
        let outcome = runtime().block_on(resume(wf, text));
        match (&outcome, e.refuse) {
            (Outcome::Refused(_), _) | (Outcome::Ended(_), false) => {}
            (Outcome::Ended(how), true) => accepted_impossible.push(format!("{}: {how}", e.name)),
        }
        if let Outcome::Refused(why) = &outcome {
            assert!(!why.starts_with("other"), "{label}: `{}` refused oddly: {why}", e.name);
        }
    }
    assert!(
        accepted_impossible.is_empty(),
        "{label}: impossible snapshots were accepted: {accepted_impossible:#?}"
    );
    applied
}

#[test]
fn edited_snapshots_are_refused_or_resume_never_hang() {
    SLOW.store(true, Ordering::SeqCst);
    let rt = runtime();
    let attempts = Arc::new(AtomicU32::new(0));
    let (fan, waiting, retry) = (fan_out(), hitl(), retrying(&attempts));
    let (fan_snap, hitl_snap, retry_snap) = rt.block_on(async {
        // Items 0 and 1 collected, 2 and 3 in flight, 4 and 5 queued.
        let fan_snap = snapshot_of(&fan, |v| {
            v["run"]["buffers"][0]["events"]
                .as_array()
                .is_some_and(|e| e.len() == 2)
                && v["run"]["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["queue"].as_array().unwrap().len() == 2)
        })
        .await;
        let hitl_snap = snapshot_of(&waiting, |v| non_empty(v, "waiters")).await;
        let mut retry_snap = snapshot_of(&retry, |v| non_empty(v, "retries")).await;
        retry_snap["run"]["retries"][0]["due_us"] = retry_snap["at_us"].clone(); // due now
        (fan_snap, hitl_snap, retry_snap)
    });
    drop(rt);
    SLOW.store(false, Ordering::SeqCst);
    // The snapshots hold what the edits work on.
    assert!(!fan_snap["run"]["buffers"].as_array().unwrap().is_empty(), "{fan_snap}");
    assert!(
        !hitl_snap["run"]["waiters"].as_array().unwrap().is_empty(),
        "{hitl_snap}"
    );
    assert!(
        !retry_snap["run"]["retries"].as_array().unwrap().is_empty(),
        "{retry_snap}"
    );

    // Unedited, each resumes to completion.
    for (wf, snap) in [(&fan, &fan_snap), (&waiting, &hitl_snap), (&retry, &retry_snap)] {
        let outcome = runtime().block_on(resume(wf, snap.to_string()));
        assert!(
            matches!(&outcome, Outcome::Ended(how) if how.starts_with("Ok")),
            "{outcome:?}"
        );
    }

    let mut total = 0;
    let mut fan_edits = common_edits();
    fan_edits.extend(in_flight_edits());
    fan_edits.extend(queue_and_buffer_edits());
    total += check_edits("fan-out", &fan, &fan_snap, fan_edits);
    let mut hitl_edits = common_edits();
    hitl_edits.extend(in_flight_edits());
    hitl_edits.extend(waiter_edits());
    total += check_edits("hitl", &waiting, &hitl_snap, hitl_edits);
    let mut retry_edits_all = common_edits();
    retry_edits_all.extend(retry_edits());
    total += check_edits("retry", &retry, &retry_snap, retry_edits_all);
    assert!(total >= 40, "{total} edits");
}

#[test]
fn an_edited_snapshot_in_a_journal_store_is_refused_on_resume() {
    let store = MemoryStore::new();
    let wf = hitl();
    let rt = runtime();
    let (run_id, taken) = rt.block_on(async {
        let journal = Journal::with_config(store.clone(), JournalConfig::default().snapshot_every(1));
        let handle = wf.run_journaled(StartEvent::new(), &journal, RunOptions::new());
        let mut stream = handle.stream_events().unwrap();
        while let Some(event) = stream.next().await {
            if event.is::<WorkflowIdle>() {
                break;
            }
        }
        journal.flush().await.unwrap();
        // The journal snapshots a run this small rarely (their cost is kept
        // to a fraction of the journal's): store one as of now ourselves.
        let taken = handle.snapshot().await.unwrap().to_json().unwrap();
        (handle.run_id().to_owned(), taken)
    });
    rt.shutdown_background();
    let rt = runtime();
    rt.block_on(async {
        let mut value: Value = serde_json::from_str(&taken).unwrap();
        let slot = busy_slot(&value).unwrap();
        value["run"]["invocations"][slot]["entry"]["waiting"] = json!(0);
        let epoch = store.run(&run_id).await.unwrap().unwrap().epoch;
        store
            .write(&WriteBatch {
                fences: vec![(run_id.as_str().into(), epoch)],
                snapshots: vec![(run_id.as_str().into(), value.to_string())],
                ..WriteBatch::default()
            })
            .await
            .unwrap();
        let journal = Journal::new(store.clone());
        let Err(error) = wf.resume(&journal, &run_id).await else {
            panic!("refused");
        };
        assert!(
            matches!(&error, ResumeError::InvalidSnapshot { run_id: r, problem } if *r == run_id && problem.contains("open wait")),
            "{error:?}"
        );
        assert!(error.to_string().contains("the snapshot is inconsistent"), "{error}");
    });
}
