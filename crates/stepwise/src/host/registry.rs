//! Workflows of any start and stop types behind one object-safe trait, and
//! the registry that finds them by name.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::decode::{EventDecodeError, StartError};
use crate::graph::{RunTrace, TraceError, WorkflowGraph};
use crate::{
    AnyEvent, Event, EventType, Journal, ResumeError, ResumeOptions, RunHandle, RunOptions, StepInfo, Workflow,
};

/// A boxed, sendable future: what [`AnyWorkflow`]'s async methods return
/// (a trait with `async fn` would not be object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A workflow with its start and stop types erased, so that workflows of
/// different types can be held together and driven from JSON. Every
/// [`Workflow<S, O>`] implements it.
///
/// ```
/// use stepwise::host::AnyWorkflow;
/// use stepwise::{StartEvent, StopEvent, Workflow};
///
/// let echo = Workflow::builder("echo")
///     .step("echo", |_: StartEvent| async { StopEvent::new("done") })
///     .build()
///     .unwrap();
/// let erased: Box<dyn AnyWorkflow> = Box::new(echo);
/// assert_eq!(erased.name(), "echo");
/// assert_eq!(erased.start_type().name(), "StartEvent");
/// assert!(erased.event_type("StopEvent").is_some());
/// ```
pub trait AnyWorkflow: Send + Sync + 'static {
    /// The workflow's name.
    fn name(&self) -> &str;
    /// The workflow's description.
    fn doc(&self) -> Option<&str>;
    /// The start event type.
    fn start_type(&self) -> EventType;
    /// The stop event type.
    fn stop_type(&self) -> EventType;
    /// The definition's fingerprint (what resume compares).
    fn fingerprint(&self) -> &str;
    /// The steps, in definition order.
    fn steps(&self) -> Vec<StepInfo>;
    /// Every event type the workflow knows.
    fn events(&self) -> Vec<EventType>;
    /// The graph of every possible flow.
    fn graph(&self) -> WorkflowGraph;

    /// The start event built from JSON (its fields). Refuses JSON nested
    /// deeper than [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH) and JSON that
    /// does not fit the start type.
    fn decode_start(&self, input: Value) -> Result<AnyEvent, StartError>;

    /// Starts a run from a start event of this workflow's start type (see
    /// [`decode_start`](Self::decode_start)); another type is refused.
    fn run_any(&self, start: AnyEvent, options: RunOptions) -> Result<RunHandle<AnyEvent>, StartError>;

    /// Decodes the start event from JSON and starts a run.
    fn run_json(&self, input: Value, options: RunOptions) -> Result<RunHandle<AnyEvent>, StartError> {
        let start = self.decode_start(input)?;
        self.run_any(start, options)
    }

    /// Resumes a stored run of this workflow (see
    /// [`Workflow::resume_with`]).
    fn resume<'a>(
        &'a self,
        journal: &'a Journal,
        run_id: &'a str,
        options: ResumeOptions,
    ) -> BoxFuture<'a, Result<RunHandle<AnyEvent>, ResumeError>>;

    /// The actual path of a stored run (see [`Workflow::trace`]).
    fn trace<'a>(&'a self, journal: &'a Journal, run_id: &'a str) -> BoxFuture<'a, Result<RunTrace, TraceError>>;

    /// The event type the workflow knows by this name, if any (to decode
    /// events sent to a run as `{"type": .., "value": ..}`).
    fn event_type(&self, name: &str) -> Option<EventType> {
        self.events().into_iter().find(|e| e.name() == name)
    }

    /// One of the workflow's events from its type name and fields (what a
    /// client sends to a run as `{"type": .., "value": ..}`), refusing
    /// unknown names, JSON nested deeper than
    /// [`MAX_EVENT_DEPTH`](crate::MAX_EVENT_DEPTH) and fields that do not fit.
    fn decode_event(&self, name: &str, value: Value) -> Result<AnyEvent, EventDecodeError> {
        super::decode::decode_event(self.name(), self.events(), name, value)
    }
}

impl fmt::Debug for dyn AnyWorkflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyWorkflow")
            .field("name", &self.name())
            .field("start", &self.start_type())
            .field("stop", &self.stop_type())
            .finish()
    }
}

impl<S: Event, O: Event> AnyWorkflow for Workflow<S, O> {
    fn name(&self) -> &str {
        Workflow::name(self)
    }

    fn doc(&self) -> Option<&str> {
        Workflow::doc(self)
    }

    fn start_type(&self) -> EventType {
        self.start_event()
    }

    fn stop_type(&self) -> EventType {
        self.stop_event()
    }

    fn fingerprint(&self) -> &str {
        Workflow::fingerprint(self)
    }

    fn steps(&self) -> Vec<StepInfo> {
        Workflow::steps(self)
    }

    fn events(&self) -> Vec<EventType> {
        Workflow::events(self)
    }

    fn graph(&self) -> WorkflowGraph {
        Workflow::graph(self)
    }

    fn decode_start(&self, input: Value) -> Result<AnyEvent, StartError> {
        super::decode::decode::<S>(Workflow::name(self), input).map(AnyEvent::new)
    }

    fn run_any(&self, start: AnyEvent, options: RunOptions) -> Result<RunHandle<AnyEvent>, StartError> {
        let given = start.name();
        let start = start.downcast::<S>().map_err(|_| StartError::WrongType {
            workflow: Workflow::name(self).to_owned(),
            expected: S::NAME,
            given,
        })?;
        Ok(self.run_with(start, options).erase())
    }

    fn resume<'a>(
        &'a self,
        journal: &'a Journal,
        run_id: &'a str,
        options: ResumeOptions,
    ) -> BoxFuture<'a, Result<RunHandle<AnyEvent>, ResumeError>> {
        Box::pin(async move {
            Workflow::resume_with(self, journal, run_id, options)
                .await
                .map(RunHandle::erase)
        })
    }

    fn trace<'a>(&'a self, journal: &'a Journal, run_id: &'a str) -> BoxFuture<'a, Result<RunTrace, TraceError>> {
        Box::pin(Workflow::trace(self, journal, run_id))
    }
}

/// The workflows a front end serves, by name, in registration order. Cloning
/// is cheap (the workflows are shared).
///
/// ```
/// use stepwise::host::WorkflowRegistry;
/// use stepwise::{StartEvent, StopEvent, Workflow};
///
/// let build = |name: &str| {
///     Workflow::builder(name)
///         .step("only", |_: StartEvent| async { StopEvent::new(()) })
///         .build()
///         .unwrap()
/// };
/// let mut registry = WorkflowRegistry::new();
/// registry.register(build("a")).unwrap();
/// registry.register(build("b")).unwrap();
/// assert_eq!(registry.names(), ["a", "b"]);
///
/// let refused = registry.register(build("a")).unwrap_err();
/// assert_eq!(refused.to_string(), "a workflow named `a` is already registered");
///
/// let unknown = registry.find("c").unwrap_err();
/// assert_eq!(unknown.to_string(), "unknown workflow `c`; registered: a, b");
/// ```
#[derive(Clone, Default)]
pub struct WorkflowRegistry {
    workflows: Vec<Arc<dyn AnyWorkflow>>,
}

impl WorkflowRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a workflow under its name; a name already taken is refused.
    pub fn register<S: Event, O: Event>(&mut self, workflow: Workflow<S, O>) -> Result<(), DuplicateWorkflow> {
        self.register_arc(Arc::new(workflow))
    }

    /// Adds an already erased workflow under its name; a name already taken
    /// is refused.
    pub fn register_arc(&mut self, workflow: Arc<dyn AnyWorkflow>) -> Result<(), DuplicateWorkflow> {
        if self.get(workflow.name()).is_some() {
            return Err(DuplicateWorkflow {
                name: workflow.name().to_owned(),
            });
        }
        self.workflows.push(workflow);
        Ok(())
    }

    /// The workflow called `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AnyWorkflow>> {
        self.workflows.iter().find(|w| w.name() == name)
    }

    /// The workflow called `name`, or an error listing what is registered.
    pub fn find(&self, name: &str) -> Result<&Arc<dyn AnyWorkflow>, UnknownWorkflow> {
        self.get(name).ok_or_else(|| UnknownWorkflow {
            name: name.to_owned(),
            known: self.names().into_iter().map(str::to_owned).collect(),
        })
    }

    /// The registered workflows, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn AnyWorkflow>> + '_ {
        self.workflows.iter()
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.workflows.iter().map(|w| w.name()).collect()
    }

    /// How many workflows are registered.
    pub fn len(&self) -> usize {
        self.workflows.len()
    }

    /// True when no workflow is registered.
    pub fn is_empty(&self) -> bool {
        self.workflows.is_empty()
    }
}

impl fmt::Debug for WorkflowRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowRegistry")
            .field("workflows", &self.names())
            .finish()
    }
}

impl<'a> IntoIterator for &'a WorkflowRegistry {
    type Item = &'a Arc<dyn AnyWorkflow>;
    type IntoIter = std::slice::Iter<'a, Arc<dyn AnyWorkflow>>;

    fn into_iter(self) -> Self::IntoIter {
        self.workflows.iter()
    }
}

/// A workflow was registered under a name already taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a workflow named `{name}` is already registered")]
pub struct DuplicateWorkflow {
    /// The name.
    pub name: String,
}

/// No workflow is registered under a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown workflow `{name}`; {}", known_text(.known))]
pub struct UnknownWorkflow {
    /// The name asked for.
    pub name: String,
    /// The registered names, in registration order.
    pub known: Vec<String>,
}

fn known_text(known: &[String]) -> String {
    if known.is_empty() {
        "no workflows are registered".to_owned()
    } else {
        format!("registered: {}", known.join(", "))
    }
}
