//! Workflows showing run state, retries with an error handler, and a human
//! in the loop. The examples `hitl_console`, `retry_flaky` and
//! `state_counter` run them; `tests/agents.rs` checks them on tokio's paused
//! clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::retry::{RetryIf, Stop, Wait};
use stepwise::state::StateError;
use stepwise::{
    workflow, CatchErrors, Context, Event, InputRequiredEvent, RetryPolicy, StartEvent, StepFailed, StopEvent,
    WaitError, WaitFor,
};

// ------------------------------------------------------ human in the loop

/// Starts an [`ApprovalFlow`]: the change to deploy.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
#[event(start)]
pub struct ChangeRequest {
    /// What would be deployed.
    pub change: String,
}

/// The plan the flow asks a person to approve.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct DeployPlan {
    /// The change.
    pub change: String,
    /// What deploying it involves.
    pub steps: Vec<String>,
}

/// How an [`ApprovalFlow`] ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(stop)]
pub struct ApprovalOutcome {
    /// The change.
    pub change: String,
    /// True when the person said yes.
    pub approved: bool,
    /// What the person answered, as typed.
    pub answer: String,
}

/// Plans a deployment, then asks a person to approve it.
///
/// The `approve` step publishes an [`InputRequiredEvent`] and suspends in
/// `wait_for_event` until a [`HumanResponseEvent`](stepwise::HumanResponseEvent)
/// arrives (sent by the caller with `handle.send_event`), or until `timeout`.
pub struct ApprovalFlow {
    /// How long to wait for the answer.
    pub timeout: Duration,
}

impl Default for ApprovalFlow {
    fn default() -> Self {
        ApprovalFlow {
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// True for the answers that mean yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes" | "ok" | "approve")
}

#[workflow(name = "approval", start = ChangeRequest, stop = ApprovalOutcome)]
impl ApprovalFlow {
    /// Works out what deploying the change involves.
    #[step]
    async fn plan(&self, ev: ChangeRequest) -> DeployPlan {
        DeployPlan {
            steps: vec![
                format!("build {}", ev.change),
                "run the migrations".into(),
                "switch traffic".into(),
            ],
            change: ev.change,
        }
    }

    /// Asks a person and waits for the answer.
    #[step]
    async fn approve(&self, ctx: &Context, ev: DeployPlan) -> Result<ApprovalOutcome, WaitError> {
        let question = InputRequiredEvent {
            prompt: format!("Deploy `{}`? [yes/no]", ev.change),
            data: serde_json::json!({ "steps": ev.steps }),
        };
        let wait = WaitFor::<stepwise::HumanResponseEvent>::new()
            .id("approval")
            .publish(question)
            .timeout(self.timeout);
        let answer = ctx.wait_for_event(wait).await?;
        Ok(ApprovalOutcome {
            approved: is_yes(&answer.response),
            answer: answer.response,
            change: ev.change,
        })
    }
}

// --------------------------------------------------------------- retries

/// Published to the stream at the start of every attempt of the flaky call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
pub struct AttemptReport {
    /// 1 for the first try.
    pub attempt: u32,
    /// Milliseconds since the first attempt started.
    pub elapsed_ms: u64,
    /// The previous attempt's error.
    pub last_error: Option<String>,
}

/// How a [`FlakyApi`] run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Event)]
#[event(stop)]
pub struct ApiOutcome {
    /// True when the call eventually succeeded.
    pub ok: bool,
    /// How many attempts were made.
    pub attempts: u32,
    /// The response, or why the flow gave up.
    pub message: String,
}

/// The flaky service's error: worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("service unavailable (attempt {attempt})")]
pub struct Unavailable {
    /// The attempt that failed.
    pub attempt: u32,
}

/// The delays [`FlakyApi`] waits between attempts: 100 ms, 200 ms, 400 ms.
pub const FLAKY_WAITS_MS: [u64; 3] = [100, 200, 400];

/// Calls a service that fails its first `failures` attempts. The call is
/// retried (4 attempts in total, exponential waits from 100 ms, only for
/// [`Unavailable`]); when it never succeeds, the `give_up` error handler ends
/// the run with a report instead of an error.
pub struct FlakyApi {
    /// How many attempts fail before one succeeds.
    pub failures: u32,
}

#[workflow(name = "flaky_api", stop = ApiOutcome)]
impl FlakyApi {
    /// The unreliable call.
    #[step(retry = RetryPolicy::new()
        .stop(Stop::after_attempts(4))
        .wait(Wait::exponential(Duration::from_millis(100)).max(Duration::from_secs(2)))
        .retry_if(RetryIf::error_type::<Unavailable>()))]
    async fn call_api(&self, ctx: &Context, _ev: StartEvent) -> Result<ApiOutcome, Unavailable> {
        let info = ctx.retry_info();
        ctx.write_event_to_stream(AttemptReport {
            attempt: info.attempt,
            elapsed_ms: info.elapsed.as_millis() as u64,
            last_error: info.last_error.map(|e| e.to_string()),
        });
        if info.attempt <= self.failures {
            return Err(Unavailable { attempt: info.attempt });
        }
        Ok(ApiOutcome {
            ok: true,
            attempts: info.attempt,
            message: format!("200 OK on attempt {}", info.attempt),
        })
    }

    /// Runs when `call_api` has failed for good.
    #[step(catch_errors = CatchErrors::for_steps(["call_api"]))]
    async fn give_up(&self, ev: StepFailed) -> ApiOutcome {
        ApiOutcome {
            ok: false,
            attempts: ev.attempts,
            message: format!(
                "gave up on {} after {} attempts in {:.1} s: {}",
                ev.step, ev.attempts, ev.elapsed_secs, ev.error
            ),
        }
    }
}

// ----------------------------------------------------------------- state

/// The typed state of a [`StateCounter`] run; carried from run to run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Sum of all increments, over every run that shared the state.
    pub total: u64,
    /// How many runs used this state.
    pub runs: u32,
    /// How many increments the current run fans out.
    pub expected: u32,
    /// Increments per source.
    pub by_source: BTreeMap<String, u64>,
}

/// One increment, handled by one concurrent invocation of `increment`.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct Increment {
    /// Who increments.
    pub source: String,
    /// By how much.
    pub amount: u64,
}

/// An increment was applied.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct Counted;

/// Fans out `increments` (start event field, default 10, at least 1) increments that
/// edit the typed [`Tally`] concurrently, then reports the total. Pass the
/// run's state to the next run and the tally carries on.
pub struct StateCounter;

#[workflow(name = "state_counter", state = Tally)]
impl StateCounter {
    /// Records the run and fans out the increments.
    #[step]
    async fn start(&self, ctx: &Context, ev: StartEvent) -> Result<Vec<Increment>, StateError> {
        let n: u32 = ev.get_or("increments", 10).unwrap_or(10).max(1);
        ctx.state()
            .edit(|t: &mut Tally| {
                t.runs += 1;
                t.expected = n;
            })
            .await?;
        Ok((0..n)
            .map(|i| Increment {
                source: format!("worker-{}", i % 5),
                amount: 1,
            })
            .collect())
    }

    /// A read-modify-write with an await in the middle: the lock keeps it atomic.
    #[step(num_workers = 16)]
    async fn increment(&self, ctx: &Context, ev: Increment) -> Result<Counted, StateError> {
        let mut tally = ctx.state().lock::<Tally>().await?;
        let before = tally.total;
        tokio::task::yield_now().await; // another step would overwrite us here without the lock
        tally.total = before + ev.amount;
        *tally.by_source.entry(ev.source).or_default() += ev.amount;
        Ok(Counted)
    }

    /// Waits for every increment, then stops with the total.
    #[step]
    async fn report(&self, ctx: &Context, ev: Counted) -> Result<Option<StopEvent>, StateError> {
        let expected = ctx.state().get::<Tally>().await?.expected;
        if ctx.collect_n(&ev, expected as usize).is_none() {
            return Ok(None);
        }
        let tally: Tally = ctx.state().get().await?;
        Ok(Some(StopEvent::new(tally.total)))
    }
}
