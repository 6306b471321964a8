//! Stored runs, summarised for listing and showing, over any store.

use serde_json::Value;

use crate::store::{JournalStore, RunFilter, RunRecord, RunStatus, StoreError};

/// A stored run in brief: who, what state, what came of it, when.
///
/// ```
/// use stepwise::host::RunSummary;
/// use stepwise::store::{MemoryStore, RunFilter, RunStatus};
/// use stepwise::{Journal, RunOptions, StartEvent, StopEvent, Workflow};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let workflow = Workflow::builder("echo")
///     .step("echo", |_: StartEvent| async { StopEvent::new("done") })
///     .build()
///     .unwrap();
/// let journal = Journal::new(MemoryStore::new());
/// workflow.run_with(StartEvent::new(), RunOptions::new().journal(&journal).run_id("r1")).await.unwrap();
/// journal.flush().await.unwrap();
///
/// let runs = RunSummary::list(journal.store(), RunFilter::default()).await.unwrap();
/// assert_eq!(runs.len(), 1);
/// assert_eq!(runs[0].run_id, "r1");
/// assert_eq!(runs[0].status, RunStatus::Completed);
/// assert_eq!(runs[0].result_line(), "\"done\"");
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Its workflow's name.
    pub workflow: String,
    /// Where it is.
    pub status: RunStatus,
    /// The stop event's fields (`{"result": ..}` for the default one), when
    /// it completed.
    pub result: Option<Value>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was created, in Unix milliseconds (wall clock).
    pub started_ms: i64,
    /// When its record last changed (its end, once it ended), in Unix
    /// milliseconds.
    pub updated_ms: i64,
}

impl RunSummary {
    /// The summary of a stored record.
    pub fn from_record(record: &RunRecord) -> Self {
        RunSummary {
            run_id: record.run_id.clone(),
            workflow: record.workflow.clone(),
            status: record.status,
            // Records keep the stop event as `{"type", "value"}`.
            result: record.result.as_ref().map(|r| r.get("value").unwrap_or(r).clone()),
            error: record.error.clone(),
            started_ms: record.created_at_ms,
            updated_ms: record.updated_at_ms,
        }
    }

    /// Runs matching `filter`, oldest first.
    pub async fn list(store: &dyn JournalStore, filter: RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let records = store.runs(filter).await?;
        Ok(records.iter().map(RunSummary::from_record).collect())
    }

    /// One run, if the store has it.
    pub async fn load(store: &dyn JournalStore, run_id: &str) -> Result<Option<RunSummary>, StoreError> {
        Ok(store.run(run_id).await?.as_ref().map(RunSummary::from_record))
    }

    /// What came of the run in one string: the result as JSON (the default
    /// stop event's `result` bare, see [`bare_result`]), else the error,
    /// else nothing (still running, or cancelled).
    pub fn result_line(&self) -> String {
        match (&self.result, &self.error) {
            (Some(result), _) => bare_result(result).to_string(),
            (_, Some(error)) => error.clone(),
            _ => String::new(),
        }
    }

    /// How long the run took, wall clock, once it has ended.
    pub fn duration_ms(&self) -> Option<i64> {
        self.status
            .is_terminal()
            .then(|| self.updated_ms.saturating_sub(self.started_ms))
    }
}

/// A stop event's fields as people want to see them: the default stop
/// event's one field `result` bare, anything else as it is.
///
/// ```
/// use serde_json::json;
/// assert_eq!(stepwise::host::bare_result(&json!({"result": 3})), &json!(3));
/// assert_eq!(stepwise::host::bare_result(&json!({"total": 3})), &json!({"total": 3}));
/// ```
pub fn bare_result(stop: &Value) -> &Value {
    match stop.as_object() {
        Some(fields) if fields.len() == 1 && fields.contains_key("result") => &fields["result"],
        _ => stop,
    }
}

/// An event a stored run published, read back.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PublishedEvent {
    /// Its sequence number in the run (0, 1, 2, …).
    pub seq: u64,
    /// The event type's name (`?` when the stored record is unreadable).
    pub name: String,
    /// Its fields (`null` when the stored record is unreadable).
    pub value: Value,
}

impl PublishedEvent {
    /// The events a stored run published with sequence ≥ `from_seq`, in
    /// order. An unreadable record is kept (named `?`), so sequences have no
    /// gaps.
    pub async fn list(store: &dyn JournalStore, run_id: &str, from_seq: u64) -> Result<Vec<Self>, StoreError> {
        let records = store.events(run_id, from_seq).await?;
        Ok(records
            .iter()
            .map(|record| {
                let json: Value = serde_json::from_str(&record.event).unwrap_or(Value::Null);
                PublishedEvent {
                    seq: record.seq,
                    name: json.get("type").and_then(Value::as_str).unwrap_or("?").to_owned(),
                    value: json.get("value").cloned().unwrap_or(Value::Null),
                }
            })
            .collect())
    }

    /// True for the engine's step progress events (`StepStateChanged`),
    /// which listings usually leave out.
    pub fn is_step_state(&self) -> bool {
        self.name == <crate::StepStateChanged as crate::Event>::NAME
    }
}
