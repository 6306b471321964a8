//! Build-time validation: a workflow is checked once, before any run, and every
//! problem is reported together with the steps and events involved.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::core::builtin::StepFailed;
use crate::core::define::step::{GraphCheck, StepSpec};
use crate::core::event::{Event, EventKind, EventType};

/// One problem found in a workflow definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationIssue {
    /// The workflow has no steps.
    NoSteps,
    /// Two steps share a name.
    DuplicateStep {
        /// The repeated name.
        step: String,
    },
    /// A step has `num_workers = 0`.
    ZeroWorkers {
        /// The step.
        step: String,
    },
    /// The workflow has `num_concurrent_runs = 0` (no run could ever start).
    ZeroConcurrentRuns,
    /// A step has `max_concurrent_across_runs = 0` (it could never run).
    ZeroStepLimit {
        /// The step.
        step: String,
    },
    /// No step accepts a start event.
    NoStartEvent,
    /// Steps accept more than one start event type.
    MultipleStartEvents {
        /// Each start type with the steps accepting it.
        events: Vec<(String, Vec<String>)>,
    },
    /// The start type found differs from the declared one.
    StartTypeMismatch {
        /// What the workflow declares (`run` takes it).
        declared: String,
        /// What the steps accept.
        found: String,
    },
    /// No step returns a stop event.
    NoStopEvent,
    /// Steps return more than one stop event type.
    MultipleStopEvents {
        /// Each stop type with the steps returning it.
        events: Vec<(String, Vec<String>)>,
    },
    /// The stop type found differs from the declared one.
    StopTypeMismatch {
        /// What the workflow declares (the handle yields it).
        declared: String,
        /// What the steps return.
        found: String,
    },
    /// Steps accept the stop event, which ends the run instead of being routed.
    StepAcceptsStop {
        /// The steps.
        steps: Vec<String>,
        /// The stop event.
        event: String,
    },
    /// Events that some step accepts but nothing produces.
    ConsumedNeverProduced {
        /// Each event with the steps waiting for it.
        events: Vec<(String, Vec<String>)>,
    },
    /// Events that some step produces but nothing accepts.
    ProducedNeverConsumed {
        /// Each event with the steps producing it.
        events: Vec<(String, Vec<String>)>,
    },
    /// Steps that no chain of events from the start reaches.
    Unreachable {
        /// The steps.
        steps: Vec<String>,
    },
    /// Steps that emit events but have no path to the stop event.
    DeadEnd {
        /// The steps.
        steps: Vec<String>,
    },
    /// Two different event types share a stable name.
    DuplicateEventName {
        /// The name.
        event: String,
    },
    /// An error handler whose input does not accept `StepFailed`.
    HandlerRejectsStepFailed {
        /// The handler.
        handler: String,
    },
    /// An error handler with `max_recoveries = 0`.
    ZeroRecoveries {
        /// The handler.
        handler: String,
    },
    /// More than one catch-all error handler.
    SeveralCatchAllHandlers {
        /// The handlers.
        handlers: Vec<String>,
    },
    /// An error handler lists a step that does not exist.
    UnknownHandledStep {
        /// The handler.
        handler: String,
        /// The missing step.
        step: String,
    },
    /// An error handler lists another error handler.
    HandlerCoversHandler {
        /// The handler.
        handler: String,
        /// The other handler it lists.
        step: String,
    },
    /// Two error handlers claim the same step.
    StepClaimedTwice {
        /// The step.
        step: String,
        /// The two handlers.
        handlers: (String, String),
    },
}

fn pairs(events: &[(String, Vec<String>)], role: &str) -> String {
    events
        .iter()
        .map(|(event, steps)| format!("`{event}` ({role} {})", quoted(steps)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ValidationIssue::*;
        match self {
            NoSteps => write!(f, "the workflow has no steps"),
            DuplicateStep { step } => write!(f, "two steps are named `{step}`; step names must be unique"),
            ZeroWorkers { step } => write!(f, "step `{step}` has num_workers = 0; it needs at least 1"),
            ZeroConcurrentRuns => write!(
                f,
                "num_concurrent_runs = 0 would let no run start; give at least 1, or leave it unset for no limit"
            ),
            ZeroStepLimit { step } => write!(
                f,
                "step `{step}` has max_concurrent_across_runs = 0, so it could never run; give at least 1, or leave it unset for no limit"
            ),
            NoStartEvent => write!(f, "no step accepts a start event, so a run could never begin"),
            MultipleStartEvents { events } => write!(
                f,
                "steps accept more than one start event type: {}; a workflow has exactly one",
                pairs(events, "accepted by")
            ),
            StartTypeMismatch { declared, found } => write!(
                f,
                "the workflow is declared to start with `{declared}` but its steps accept `{found}`"
            ),
            NoStopEvent => write!(f, "no step returns a stop event, so a run could never complete"),
            MultipleStopEvents { events } => write!(
                f,
                "steps return more than one stop event type: {}; a workflow has exactly one",
                pairs(events, "returned by")
            ),
            StopTypeMismatch { declared, found } => write!(
                f,
                "the workflow is declared to stop with `{declared}` but its steps return `{found}`"
            ),
            StepAcceptsStop { steps, event } => write!(
                f,
                "step(s) {} accept the stop event `{event}`; a stop event ends the run and is never routed, use another event type",
                quoted(steps)
            ),
            ConsumedNeverProduced { events } => {
                // The usual cause: a step sends the event with `ctx.send_event`
                // without declaring it, which validation cannot see.
                let names: Vec<&str> = events.iter().map(|(event, _)| event.as_str()).collect();
                let (it, list) = match names[..] {
                    [one] => ("it", one.to_owned()),
                    _ => ("one", names.join(", ")),
                };
                write!(
                    f,
                    "events are consumed but never produced: {}; no step returns or declares {}. \
                     A step that sends {it} with `ctx.send_event` must declare it: \
                     `#[step(emits = [{list}])]` (by hand: `StepConfig::new(..).emits::<{}>()`)",
                    pairs(events, "waited for by"),
                    if names.len() == 1 { "it" } else { "them" },
                    names[0],
                )
            }
            ProducedNeverConsumed { events } => write!(
                f,
                "[terminal_event] events are produced but never consumed: {}; only the stop event and input requests may be terminal",
                pairs(events, "produced by")
            ),
            Unreachable { steps } => write!(
                f,
                "[reachability] step(s) {} cannot be reached from the start event (or a human response)",
                quoted(steps)
            ),
            DeadEnd { steps } => write!(
                f,
                "[dead_end] step(s) {} have no path to the stop event (or an input request)",
                quoted(steps)
            ),
            DuplicateEventName { event } => write!(
                f,
                "two different event types are named `{event}`; give one another name with #[event(name = \"...\")]"
            ),
            HandlerRejectsStepFailed { handler } => write!(
                f,
                "error handler `{handler}` must accept `StepFailed` (its input type does not)"
            ),
            ZeroRecoveries { handler } => {
                write!(f, "error handler `{handler}` has max_recoveries = 0; it needs at least 1")
            }
            SeveralCatchAllHandlers { handlers } => write!(
                f,
                "only one catch-all error handler is allowed, found {}",
                quoted(handlers)
            ),
            UnknownHandledStep { handler, step } => {
                write!(f, "error handler `{handler}` lists unknown step `{step}`")
            }
            HandlerCoversHandler { handler, step } => write!(
                f,
                "error handler `{handler}` lists `{step}`, which is an error handler itself; a handler's failure always fails the run"
            ),
            StepClaimedTwice { step, handlers } => write!(
                f,
                "step `{step}` is claimed by two error handlers: `{}` and `{}`",
                handlers.0, handlers.1
            ),
        }
    }
}

/// A workflow definition that failed validation. Lists every issue found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("workflow `{workflow}` is invalid:{}", render(.issues))]
pub struct BuildError {
    /// The workflow's name.
    pub workflow: String,
    /// Everything that is wrong, in check order.
    pub issues: Vec<ValidationIssue>,
}

fn render(issues: &[ValidationIssue]) -> String {
    issues.iter().map(|i| format!("\n  - {i}")).collect()
}

struct Graph<'a> {
    steps: &'a [StepSpec],
    skip: &'a [GraphCheck],
}

impl Graph<'_> {
    fn skips(&self, step: &StepSpec, check: GraphCheck) -> bool {
        self.skip.contains(&check) || step.config.skip_checks.contains(&check)
    }

    fn names(&self, indices: impl IntoIterator<Item = usize>) -> Vec<String> {
        indices.into_iter().map(|i| self.steps[i].name().to_owned()).collect()
    }

    /// Every event type the steps touch, in first-seen order, with who uses it.
    fn event_table(&self) -> Vec<(EventType, Vec<usize>, Vec<usize>)> {
        let mut table: Vec<(EventType, Vec<usize>, Vec<usize>)> = Vec::new();
        let mut index: HashMap<EventType, usize> = HashMap::new();
        let mut slot = |ty: EventType, table: &mut Vec<(EventType, Vec<usize>, Vec<usize>)>| -> usize {
            *index.entry(ty).or_insert_with(|| {
                table.push((ty, Vec::new(), Vec::new()));
                table.len() - 1
            })
        };
        for (i, step) in self.steps.iter().enumerate() {
            for ty in &step.accepts {
                let at = slot(*ty, &mut table);
                table[at].1.push(i);
            }
            for ty in step.emits() {
                let at = slot(ty, &mut table);
                if !table[at].2.contains(&i) {
                    table[at].2.push(i);
                }
            }
        }
        table
    }
}

/// What validation learned about a sound workflow.
pub(crate) struct Validated {
    pub(crate) start: EventType,
    pub(crate) stop: EventType,
    /// Per step: the error handler covering it and its recovery budget.
    pub(crate) handlers: Vec<Option<(usize, u32)>>,
}

/// Which handler covers each step (scoped claims first, then the catch-all),
/// with its recovery budget. Handlers never cover handlers.
pub(crate) fn error_handlers(steps: &[StepSpec], issues: &mut Vec<ValidationIssue>) -> Vec<Option<(usize, u32)>> {
    let failed = EventType::of::<StepFailed>();
    let name_of = |i: usize| steps[i].name().to_owned();
    let handlers: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].config.catch.is_some()).collect();
    let mut covered: Vec<Option<(usize, u32)>> = vec![None; steps.len()];
    let mut catch_all = Vec::new();
    for &h in &handlers {
        let Some(catch) = &steps[h].config.catch else { continue };
        if !steps[h].accepts(&failed) {
            issues.push(ValidationIssue::HandlerRejectsStepFailed { handler: name_of(h) });
        }
        if catch.max_recoveries == 0 {
            issues.push(ValidationIssue::ZeroRecoveries { handler: name_of(h) });
        }
        let Some(for_steps) = &catch.for_steps else {
            catch_all.push(h);
            continue;
        };
        for step in for_steps {
            let Some(target) = steps.iter().position(|s| s.name() == step) else {
                issues.push(ValidationIssue::UnknownHandledStep {
                    handler: name_of(h),
                    step: step.clone(),
                });
                continue;
            };
            if steps[target].config.catch.is_some() {
                issues.push(ValidationIssue::HandlerCoversHandler {
                    handler: name_of(h),
                    step: step.clone(),
                });
                continue;
            }
            match covered[target] {
                Some((other, _)) if other != h => issues.push(ValidationIssue::StepClaimedTwice {
                    step: step.clone(),
                    handlers: (name_of(other), name_of(h)),
                }),
                _ => covered[target] = Some((h, catch.max_recoveries)),
            }
        }
    }
    match catch_all.as_slice() {
        [] => {}
        [h] => {
            let budget = steps[*h].config.catch.as_ref().map_or(1, |c| c.max_recoveries);
            for (i, slot) in covered.iter_mut().enumerate() {
                if slot.is_none() && steps[i].config.catch.is_none() {
                    *slot = Some((*h, budget));
                }
            }
        }
        many => issues.push(ValidationIssue::SeveralCatchAllHandlers {
            handlers: many.iter().map(|&h| name_of(h)).collect(),
        }),
    }
    covered
}

/// Runs every check; returns the start and stop types on success.
pub(crate) fn validate<S: Event, O: Event>(
    workflow: &str,
    steps: &[StepSpec],
    skip: &[GraphCheck],
) -> Result<Validated, BuildError> {
    let mut issues = Vec::new();
    let fail = |issues| BuildError {
        workflow: workflow.to_owned(),
        issues,
    };
    if steps.is_empty() {
        return Err(fail(vec![ValidationIssue::NoSteps]));
    }
    let graph = Graph { steps, skip };
    let mut seen = HashSet::new();
    for step in steps {
        if !seen.insert(step.name()) {
            issues.push(ValidationIssue::DuplicateStep {
                step: step.name().to_owned(),
            });
        }
        if step.config.num_workers == 0 {
            issues.push(ValidationIssue::ZeroWorkers {
                step: step.name().to_owned(),
            });
        }
        if step.config.max_concurrent_across_runs == Some(0) {
            issues.push(ValidationIssue::ZeroStepLimit {
                step: step.name().to_owned(),
            });
        }
    }
    let table = graph.event_table();
    let start = check_endpoint::<S>(&graph, &table, EventKind::Start, &mut issues);
    let stop = check_endpoint::<O>(&graph, &table, EventKind::Stop, &mut issues);
    let (Some(start), Some(stop)) = (start, stop) else {
        return Err(fail(issues));
    };
    check_connectivity(&graph, &table, stop, &mut issues);
    check_reachability(&graph, &table, start, &mut issues);
    check_dead_ends(&graph, &table, &mut issues);
    let handlers = error_handlers(steps, &mut issues);
    if issues.is_empty() {
        Ok(Validated { start, stop, handlers })
    } else {
        Err(fail(issues))
    }
}

/// Exactly one start type (accepted) or stop type (emitted), equal to the declared one.
fn check_endpoint<T: Event>(
    graph: &Graph<'_>,
    table: &[(EventType, Vec<usize>, Vec<usize>)],
    kind: EventKind,
    issues: &mut Vec<ValidationIssue>,
) -> Option<EventType> {
    let is_start = kind == EventKind::Start;
    let found: Vec<(EventType, &Vec<usize>)> = table
        .iter()
        .filter(|(ty, _, _)| ty.kind() == kind)
        .map(|(ty, consumers, producers)| (*ty, if is_start { consumers } else { producers }))
        .filter(|(_, users)| !users.is_empty())
        .collect();
    let declared = EventType::of::<T>();
    match found.as_slice() {
        [] => {
            issues.push(if is_start {
                ValidationIssue::NoStartEvent
            } else {
                ValidationIssue::NoStopEvent
            });
            None
        }
        [(ty, _)] if *ty == declared => Some(*ty),
        [(ty, _)] => {
            let (declared, found) = (declared.name().to_owned(), ty.name().to_owned());
            issues.push(if is_start {
                ValidationIssue::StartTypeMismatch { declared, found }
            } else {
                ValidationIssue::StopTypeMismatch { declared, found }
            });
            None
        }
        many => {
            let events = many
                .iter()
                .map(|(ty, users)| (ty.name().to_owned(), graph.names(users.iter().copied())))
                .collect();
            issues.push(if is_start {
                ValidationIssue::MultipleStartEvents { events }
            } else {
                ValidationIssue::MultipleStopEvents { events }
            });
            None
        }
    }
}

/// Stop never accepted; everything consumed is produced; everything produced is consumed.
fn check_connectivity(
    graph: &Graph<'_>,
    table: &[(EventType, Vec<usize>, Vec<usize>)],
    stop: EventType,
    issues: &mut Vec<ValidationIssue>,
) {
    let mut unproduced = Vec::new();
    let mut unconsumed = Vec::new();
    for (ty, consumers, producers) in table {
        if *ty == stop && !consumers.is_empty() {
            issues.push(ValidationIssue::StepAcceptsStop {
                steps: graph.names(consumers.iter().copied()),
                event: ty.name().to_owned(),
            });
        }
        let from_outside =
            matches!(ty.kind(), EventKind::Start | EventKind::HumanResponse) || *ty == EventType::of::<StepFailed>();
        let waiting: Vec<usize> = consumers
            .iter()
            .copied()
            .filter(|&s| !graph.skips(&graph.steps[s], GraphCheck::Reachability))
            .collect();
        if producers.is_empty() && !from_outside && !waiting.is_empty() {
            unproduced.push((ty.name().to_owned(), graph.names(waiting)));
        }
        let may_end = matches!(
            ty.kind(),
            EventKind::Stop | EventKind::InputRequired | EventKind::Termination
        );
        let producing: Vec<usize> = producers
            .iter()
            .copied()
            .filter(|&s| !graph.skips(&graph.steps[s], GraphCheck::TerminalEvent))
            .collect();
        if consumers.is_empty() && !may_end && !producing.is_empty() {
            unconsumed.push((ty.name().to_owned(), graph.names(producing)));
        }
    }
    if !unproduced.is_empty() {
        issues.push(ValidationIssue::ConsumedNeverProduced { events: unproduced });
    }
    if !unconsumed.is_empty() {
        issues.push(ValidationIssue::ProducedNeverConsumed { events: unconsumed });
    }
}

/// Forward search from the start type and human responses.
fn check_reachability(
    graph: &Graph<'_>,
    table: &[(EventType, Vec<usize>, Vec<usize>)],
    start: EventType,
    issues: &mut Vec<ValidationIssue>,
) {
    let consumers: HashMap<EventType, &Vec<usize>> = table.iter().map(|(ty, c, _)| (*ty, c)).collect();
    let mut reached = vec![false; graph.steps.len()];
    let mut frontier: Vec<EventType> = table
        .iter()
        .map(|(ty, _, _)| *ty)
        .filter(|ty| *ty == start || ty.kind() == EventKind::HumanResponse || *ty == EventType::of::<StepFailed>())
        .collect();
    let mut seen: HashSet<EventType> = frontier.iter().copied().collect();
    while let Some(ty) = frontier.pop() {
        for &step in consumers.get(&ty).copied().into_iter().flatten() {
            if std::mem::replace(&mut reached[step], true) {
                continue;
            }
            for next in graph.steps[step].emits() {
                if seen.insert(next) {
                    frontier.push(next);
                }
            }
        }
    }
    let unreachable: Vec<usize> = (0..graph.steps.len())
        .filter(|&s| !reached[s] && !graph.skips(&graph.steps[s], GraphCheck::Reachability))
        .collect();
    if !unreachable.is_empty() {
        issues.push(ValidationIssue::Unreachable {
            steps: graph.names(unreachable),
        });
    }
}

/// Backward search from the stop type and input requests.
fn check_dead_ends(
    graph: &Graph<'_>,
    table: &[(EventType, Vec<usize>, Vec<usize>)],
    issues: &mut Vec<ValidationIssue>,
) {
    let consumers: HashMap<EventType, &Vec<usize>> = table.iter().map(|(ty, c, _)| (*ty, c)).collect();
    let ends = |ty: &EventType| matches!(ty.kind(), EventKind::Stop | EventKind::InputRequired);
    let mut finishes: Vec<bool> = graph.steps.iter().map(|s| s.emits().any(|ty| ends(&ty))).collect();
    // Fixed point: a step finishes if something it emits triggers a step that finishes.
    let mut changed = true;
    while changed {
        changed = false;
        for (i, step) in graph.steps.iter().enumerate() {
            if finishes[i] {
                continue;
            }
            let leads = step
                .emits()
                .any(|ty| consumers.get(&ty).is_some_and(|c| c.iter().any(|&s| finishes[s])));
            if leads {
                finishes[i] = true;
                changed = true;
            }
        }
    }
    let dead: Vec<usize> = (0..graph.steps.len())
        .filter(|&s| {
            let step = &graph.steps[s];
            !finishes[s] && step.emits().next().is_some() && !graph.skips(step, GraphCheck::DeadEnd)
        })
        .collect();
    if !dead.is_empty() {
        issues.push(ValidationIssue::DeadEnd {
            steps: graph.names(dead),
        });
    }
}
