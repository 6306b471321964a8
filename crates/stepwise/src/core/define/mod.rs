//! Workflow definitions: steps as handlers, the builder, the validated
//! [`Workflow`](crate::Workflow), and the build-time checks.

pub(crate) mod step;
pub(crate) mod validate;
pub(crate) mod workflow;
