//! Procedural macros for [stepwise](https://docs.rs/stepwise).
//!
//! Use them through the `stepwise` crate, which re-exports them:
//! `use stepwise::{workflow, step, Event, EventUnion};`. The generated code
//! refers to `::stepwise::...`, so `stepwise` must be a dependency.
//!
//! - [`derive@Event`]: implements `stepwise::Event` for a struct or enum.
//! - [`derive@EventUnion`]: an enum of events as one step input or output.
//! - [`macro@workflow`] and [`macro@step`]: an inherent `impl` block with
//!   `#[step]` methods becomes a `stepwise::WorkflowDefinition` — thin sugar
//!   over the public builder API, expansion shown on [`macro@workflow`].
//!
//! Each macro's own page is its manual (so it reads the same where
//! `stepwise` re-exports it).
//!
//! Every macro reports mistakes as compile errors spanned on the offending
//! tokens, and re-emits the annotated item unchanged so IDEs keep working.

use proc_macro::TokenStream;

mod attrs;
mod event;
mod schema;
mod union;
mod workflow;

/// Implements `stepwise::Event` for a struct or enum. The event's stable
/// name (used on the wire and in journals) defaults to the type's
/// identifier. Clone, Debug, Serialize and Deserialize are derived by you.
///
/// ```ignore
/// #[derive(Clone, Debug, Serialize, Deserialize, Event)]
/// #[event(name = "query.received", start)]
/// struct QueryReceived { query: String }
/// ```
///
/// Options of `#[event(...)]`: `name = "..."` and at most one kind flag
/// among `start`, `stop`, `input_required`, `human_response`. Generic types
/// are rejected: one event type must have one name.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    event::derive(input.into()).into()
}

/// An enum of events as one step input or output. On an enum whose
/// variants each wrap one event type, implements
/// `StepInput` (a step taking the enum accepts any of the events),
/// `StepOutput` (a step returning it emits the wrapped event), `ToAnyEvent`
/// (so `ctx.collect_events(&union, ..)` takes it as it is), and
/// `From<Event>` for each variant.
///
/// ```ignore
/// #[derive(EventUnion)]
/// enum Outcome { Done(StopEvent), Retry(RetryEvent) }
/// ```
#[proc_macro_derive(EventUnion)]
pub fn derive_event_union(input: TokenStream) -> TokenStream {
    union::derive(input.into()).into()
}

/// Turns an inherent impl block with `#[step]` methods into a
/// `stepwise::WorkflowDefinition`.
///
/// `#[workflow]` goes on an inherent `impl` block; each `async fn` in it
/// marked `#[step]` becomes a step. Options:
/// `#[workflow(name = "x", start = StartTy, stop = StopTy, state = StateTy)]`
/// (defaults: the type's name, `stepwise::StartEvent`, `stepwise::StopEvent`,
/// untyped JSON state) and
/// `#[step(name = "x", num_workers = 2, emits = [A, B], waits_for = [C], skip_checks = [dead_end])]`
/// (`emits`: events the step sends with `ctx.send_event`; `waits_for`: events it
/// waits for with `ctx.wait_for_event`; the checks are `reachability`,
/// `dead_end` and `terminal_event`), plus
/// `retry = <RetryPolicy expression>`, and `catch_errors` (a catch-all error
/// handler) or `catch_errors = <CatchErrors expression>`.
/// A step method is `async fn(&self, ev: E) -> R` or
/// `async fn(&self, ctx: &Context, ev: E) -> R`, where `E: StepInput` and
/// `R: StepOutput`. Doc comments on the block and on steps become the
/// workflow's and steps' docs.
///
/// ```ignore
/// struct Greeter { greeting: String }
///
/// /// Greets whoever starts it.
/// #[workflow(name = "greeter")]
/// impl Greeter {
///     /// Says hello.
///     #[step(num_workers = 2, emits = [Progress])]
///     async fn greet(&self, ctx: &Context, ev: StartEvent) -> StopEvent { .. }
/// }
/// ```
///
/// `#[workflow]` is thin sugar over the public builder API. The block above
/// becomes the block itself (without `#[step]`) plus the equivalent of:
///
/// ```ignore
/// impl stepwise::WorkflowDefinition for Greeter {
///     type Start = StartEvent;
///     type Stop = StopEvent;
///     fn builder(self) -> WorkflowBuilder<StartEvent, StopEvent> {
///         let this = Arc::new(self);
///         WorkflowBuilder::new("greeter")
///             .doc("Greets whoever starts it.")
///             .step_with(
///                 StepConfig::new("greet").num_workers(2).emits::<Progress>().doc("Says hello."),
///                 move |ctx: Context, ev: StartEvent| {
///                     let this = Arc::clone(&this);
///                     async move { Greeter::greet(&this, &ctx, ev).await }
///                 },
///             )
///     }
/// }
/// ```
///
/// so anything the macro does can also be written by hand. (The real
/// expansion goes through a hidden `__step_method`, which calls `step_with`
/// the same way but states the event and return bounds on those types, so a
/// step with a wrong type gets one error naming that type.)
///
/// Inside a `#[workflow]` block, `#[step]` works with or without
/// `use stepwise::step;` (an import is never reported unused). Used outside
/// a `#[workflow]` block, `#[step]` is a compile error.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    workflow::workflow(args.into(), item.into()).into()
}

/// Marks a step method inside a `#[workflow]` impl block; an error anywhere
/// else. The step options and the method's shape are on `#[workflow]`:
///
/// `#[step(name = "x", num_workers = 2, emits = [A, B], waits_for = [C], skip_checks = [dead_end], retry = <RetryPolicy>, catch_errors)]`
#[proc_macro_attribute]
pub fn step(_args: TokenStream, item: TokenStream) -> TokenStream {
    workflow::step(item.into()).into()
}

/// Adds `err` to the errors collected so far, so several mistakes are
/// reported in one compile.
fn combine(slot: &mut Option<syn::Error>, err: syn::Error) {
    match slot {
        Some(existing) => existing.combine(err),
        None => *slot = Some(err),
    }
}
