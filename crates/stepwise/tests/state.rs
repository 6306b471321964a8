//! Run state: typed state shared by the steps of a run (atomic edits, locks,
//! get/set), the untyped JSON form with dotted paths, state given before a
//! run, and state carried from one run into the next.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use stepwise::state::StateError;
use stepwise::{
    Context, Event, RunError, RunOptions, StartEvent, StateStore, StepConfig, StepError, StopEvent, Workflow,
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    count: u32,
    log: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Other {
    flag: bool,
}

/// One unit of work for the concurrent steps.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Bump {
    id: u32,
}

/// A bump finished.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
struct Bumped;

const N: u32 = 10;

/// Start fans out `N` bumps; `bump` (N workers, so all run at once) applies
/// `body`; `done` collects the N results and stops with the final count.
fn fan_out<F, Fut>(body: F) -> Workflow
where
    F: Fn(Context, Bump) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Bumped, StepError>> + Send + 'static,
{
    Workflow::builder("fan_out")
        .state::<Counter>()
        .step("start", |_: StartEvent| async {
            (0..N).map(|id| Bump { id }).collect::<Vec<_>>()
        })
        .step_with(StepConfig::new("bump").num_workers(N as usize), body)
        .step("done", |ctx: Context, ev: Bumped| async move {
            if ctx.collect_n(&ev, N as usize).is_none() {
                return Ok(None);
            }
            let state: Counter = ctx.state().get().await?;
            Ok::<_, StateError>(Some(StopEvent::new(state.count)))
        })
        .build()
        .expect("valid workflow")
}

#[tokio::test(start_paused = true)]
async fn concurrent_atomic_edits_lose_no_update() {
    let wf = fan_out(|ctx: Context, ev: Bump| async move {
        // Interleave the steps before the edit, so they really run concurrently.
        tokio::time::sleep(Duration::from_millis(u64::from(N - ev.id))).await;
        ctx.state()
            .edit(|s: &mut Counter| {
                s.count += 1;
                s.log.push(format!("bump {}", ev.id));
            })
            .await
            .map_err(StepError::new)?;
        Ok(Bumped)
    });
    let handle = wf.run(StartEvent::new());
    let store = handle.state().clone();
    let stop = handle.await.expect("run");
    assert_eq!(stop.result, json!(N));
    let state: Counter = store.get().await.unwrap();
    assert_eq!(state.count, N);
    assert_eq!(state.log.len(), N as usize);
    // The sleeps reversed the order: the last bump edited first.
    assert_eq!(state.log.first().map(String::as_str), Some("bump 9"));
}

#[tokio::test(start_paused = true)]
async fn a_lock_held_across_awaits_makes_read_modify_write_atomic() {
    let wf = fan_out(|ctx: Context, _ev: Bump| async move {
        let mut guard = ctx.state().lock::<Counter>().await.map_err(StepError::new)?;
        let read = guard.count;
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        guard.count = read + 1;
        Ok(Bumped)
    });
    let started = tokio::time::Instant::now();
    let stop = wf.run(StartEvent::new()).await.expect("run");
    assert_eq!(stop.result, json!(N), "no update lost");
    // Each holder slept 1 ms with the lock held: the steps took turns.
    assert_eq!(started.elapsed(), Duration::from_millis(u64::from(N)));
}

/// The control for the two tests above: the same read-modify-write through
/// plain get and set, with an await in between, does lose updates. This shows
/// the steps really interleave, so the tests above are not trivially true.
#[tokio::test(start_paused = true)]
async fn get_then_set_with_an_await_between_is_not_atomic() {
    let wf = fan_out(|ctx: Context, _ev: Bump| async move {
        let mut state: Counter = ctx.state().get().await.map_err(StepError::new)?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        state.count += 1;
        ctx.state().set(state).await.map_err(StepError::new)?;
        Ok(Bumped)
    });
    let stop = wf.run(StartEvent::new()).await.expect("run");
    assert_eq!(stop.result, json!(1), "all ten read 0, so all ten wrote 1");
}

#[tokio::test]
async fn typed_get_and_set_between_steps() {
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Written;

    let wf = Workflow::builder("get_set")
        .state::<Counter>()
        .step("write", |ctx: Context, _: StartEvent| async move {
            ctx.state()
                .set(Counter {
                    count: 7,
                    log: vec!["written".into()],
                })
                .await?;
            Ok::<_, StateError>(Written)
        })
        .step("read", |ctx: Context, _: Written| async move {
            let state: Counter = ctx.state().get().await?;
            Ok::<_, StateError>(StopEvent::new(state))
        })
        .build()
        .expect("valid workflow");
    let stop = wf.run(StartEvent::new()).await.expect("run");
    assert_eq!(
        stop.result_as::<Counter>().unwrap(),
        Counter {
            count: 7,
            log: vec!["written".into()]
        }
    );
}

#[tokio::test]
async fn asking_for_the_wrong_state_type_in_a_step_is_an_error() {
    let wf = Workflow::builder("wrong_type")
        .state::<Counter>()
        .step("read", |ctx: Context, _: StartEvent| async move {
            ctx.state().get::<Other>().await?;
            Ok::<_, StateError>(StopEvent::new("unreachable"))
        })
        .build()
        .expect("valid workflow");
    let err = wf.run(StartEvent::new()).await.expect_err("wrong type");
    let RunError::StepFailed { step, source, .. } = &err else {
        panic!("expected a step failure, got {err}");
    };
    assert_eq!(step, "read");
    assert!(
        matches!(source.downcast_ref::<StateError>(), Some(StateError::WrongType { .. })),
        "{source}"
    );
    let text = err.to_string();
    assert!(text.contains("Counter") && text.contains("Other"), "{text}");
}

#[tokio::test]
async fn untyped_state_uses_dotted_paths() {
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    struct Written;

    // No state type declared: runs get an untyped JSON store.
    let wf = Workflow::builder("untyped")
        .step("write", |ctx: Context, _: StartEvent| async move {
            ctx.state().set_path("user.name", "ada").await?;
            ctx.state().set_path("user.langs", ["rust", "python"]).await?;
            ctx.state().set_path("visits", 1).await?;
            Ok::<_, StateError>(Written)
        })
        .step("read", |ctx: Context, _: Written| async move {
            let name: String = ctx.state().get_path_as("user.name").await?;
            let second: String = ctx.state().get_path_as("user.langs.1").await?;
            let missing = ctx.state().get_path("user.email").await;
            assert!(matches!(missing, Err(StateError::PathNotFound { .. })), "{missing:?}");
            let visits: u32 = ctx.state().get_path_as("visits").await?;
            ctx.state().set_path("visits", visits + 1).await?;
            Ok::<_, StateError>(StopEvent::new(format!("{name} likes {second}")))
        })
        .build()
        .expect("valid workflow");
    let handle = wf.run(StartEvent::new());
    let store = handle.state().clone();
    assert_eq!(handle.await.expect("run").result, "ada likes python");
    assert_eq!(
        store.to_json().await.unwrap(),
        json!({"user": {"name": "ada", "langs": ["rust", "python"]}, "visits": 2})
    );
    assert!(matches!(store.set_path("", 1).await, Err(StateError::EmptyPath)));
    assert!(matches!(
        store.set_path("user.name.first", "x").await,
        Err(StateError::NotAContainer { kind: "string", .. })
    ));
}

#[tokio::test]
async fn dotted_paths_also_work_on_typed_state() {
    let wf = Workflow::builder("typed_paths")
        .state::<Counter>()
        .step("write", |ctx: Context, _: StartEvent| async move {
            ctx.state().set_path("count", 5).await?;
            ctx.state().set_path("log", ["a", "b"]).await?;
            // The result must still decode as `Counter`: this changes nothing.
            let bad = ctx.state().set_path("count", "five").await;
            assert!(matches!(bad, Err(StateError::Json { .. })), "{bad:?}");
            let second: String = ctx.state().get_path_as("log.1").await?;
            let state: Counter = ctx.state().get().await?;
            Ok::<_, StateError>(StopEvent::new(format!("{} {second}", state.count)))
        })
        .build()
        .expect("valid workflow");
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, "5 b");
}

fn incrementer() -> Workflow {
    Workflow::builder("incrementer")
        .state::<Counter>()
        .step("inc", |ctx: Context, ev: StartEvent| async move {
            let by: u32 = ev.get_or("by", 1).map_err(StepError::new)?;
            let count = ctx
                .state()
                .edit(|s: &mut Counter| {
                    s.count += by;
                    s.log.push(format!("+{by}"));
                    s.count
                })
                .await
                .map_err(StepError::new)?;
            Ok::<_, StepError>(StopEvent::new(count))
        })
        .build()
        .expect("valid workflow")
}

#[tokio::test]
async fn state_set_before_the_run_is_visible_to_the_steps() {
    let store = StateStore::new(Counter {
        count: 41,
        log: vec!["preset".into()],
    });
    let stop = incrementer()
        .run_with(StartEvent::new(), RunOptions::new().state(store.clone()))
        .await
        .expect("run");
    assert_eq!(stop.result, json!(42));
    // The caller's store is the run's store.
    let state: Counter = store.get().await.unwrap();
    assert_eq!(state.log, ["preset", "+1"]);
}

#[tokio::test]
async fn a_runs_state_carries_over_into_the_next_run() {
    let wf = incrementer();
    let first = wf.run(StartEvent::new().with("by", 2));
    let carried = first.state().clone();
    assert_eq!(first.await.expect("run").result, json!(2));

    let second = wf.run_with(StartEvent::new().with("by", 3), RunOptions::new().state(carried));
    let carried = second.state().clone();
    assert_eq!(second.await.expect("run").result, json!(5));

    let third = wf.run_with(StartEvent::new(), RunOptions::new().state(carried.clone()));
    assert_eq!(third.await.expect("run").result, json!(6));
    assert_eq!(carried.get::<Counter>().await.unwrap().log, ["+2", "+3", "+1"]);

    // Without a store, a run starts from the default state.
    assert_eq!(wf.run(StartEvent::new()).await.expect("run").result, json!(1));
}

#[tokio::test]
async fn a_store_of_the_wrong_type_fails_the_run_before_it_starts() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let wf = Workflow::builder("mismatch")
        .state::<Counter>()
        .step("only", move |_: StartEvent| {
            flag.store(true, Ordering::SeqCst);
            async { StopEvent::new("ran") }
        })
        .build()
        .expect("valid workflow");
    for store in [StateStore::new(Other { flag: true }), StateStore::json()] {
        let handle = wf.run_with(StartEvent::new(), RunOptions::new().state(store).run_id("mm"));
        let err = handle.await.expect_err("type mismatch");
        let RunError::StateTypeMismatch {
            run_id,
            expected,
            found,
        } = &err
        else {
            panic!("expected StateTypeMismatch, got {err}");
        };
        assert_eq!(run_id, "mm");
        assert!(expected.ends_with("Counter"), "{expected}");
        assert!(!found.ends_with("Counter"), "{found}");
        let text = err.to_string();
        assert!(text.contains(expected) && text.contains(found), "{text}");
    }
    assert!(!ran.load(Ordering::SeqCst), "no step ran");
}

#[tokio::test]
async fn the_handle_and_the_caller_share_the_store_while_the_run_is_live() {
    #[derive(Clone, Debug, Serialize, Deserialize, Event)]
    #[event(human_response)]
    struct Go;

    // A step that waits for the caller, then reads what the caller wrote.
    let reads = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&reads);
    let wf = Workflow::builder("live")
        .state::<Counter>()
        .step("start", |ctx: Context, _: StartEvent| async move {
            ctx.state().edit(|s: &mut Counter| s.count = 1).await.ok();
        })
        .step("go", move |ctx: Context, _: Go| {
            let seen = Arc::clone(&seen);
            async move {
                let state: Counter = ctx.state().get().await?;
                seen.store(state.count, Ordering::SeqCst);
                Ok::<_, StateError>(StopEvent::new(state.count))
            }
        })
        .build()
        .expect("valid workflow");
    let handle = wf.run(StartEvent::new());
    // Wait until `start` has written, then overwrite from outside.
    while handle.state().get::<Counter>().await.unwrap().count != 1 {
        tokio::task::yield_now().await;
    }
    handle.state().edit(|s: &mut Counter| s.count = 99).await.unwrap();
    handle.send_event(Go).unwrap();
    assert_eq!(handle.await.expect("run").result, json!(99));
    assert_eq!(reads.load(Ordering::SeqCst), 99);
}
