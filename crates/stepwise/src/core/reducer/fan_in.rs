//! Fan-in: events offered to a step's collect buffers, and the one
//! invocation that receives a full set.

use crate::core::context::collect::Expectation;
use crate::core::event::AnyEvent;
use crate::core::ids::InvocationId;

use super::RunState;

impl RunState {
    /// Offers `event` to the collect buffer `buffer` of the invocation's step.
    /// Returns the full set to exactly one caller.
    pub(crate) fn collect(
        &mut self,
        invocation: InvocationId,
        buffer: &str,
        event: AnyEvent,
        expect: &Expectation<'_>,
    ) -> Option<Vec<AnyEvent>> {
        if expect.is_empty() {
            return Some(Vec::new());
        }
        let inflight = self.invocations.get_mut(invocation)?;
        let step = inflight.step;
        let call = inflight.attempt.collected;
        inflight.attempt.collected += 1;
        inflight.served += 1;
        let key = (step, buffer.to_owned());
        let buf = self.buffers.entry(key).or_default();
        let set = buf.offer(event, expect)?;
        if buf.is_empty() {
            self.buffers.remove(&(step, buffer.to_owned()));
        }
        // Kept with the attempt: given back if it fails, handed again to its
        // re-run if the run is resumed before it ends.
        if let Some(inflight) = self.invocations.get_mut(invocation) {
            inflight.attempt.sets.push((call, buffer.to_owned(), set.clone()));
        }
        Some(set)
    }

    /// For a step body that runs again after a resume: the result of its next
    /// collect call, if its attempt made that call before (then the call must
    /// not offer its event again). `None` when the call is a new one.
    pub(crate) fn collected_before(&mut self, invocation: InvocationId, buffer: &str) -> Option<Option<Vec<AnyEvent>>> {
        let inflight = self.invocations.get_mut(invocation)?;
        if inflight.served >= inflight.attempt.collected {
            return None;
        }
        let call = inflight.served;
        inflight.served += 1;
        Some(
            inflight
                .attempt
                .sets
                .iter()
                .find(|(n, b, _)| *n == call && b == buffer)
                .map(|(_, _, set)| set.clone()),
        )
    }
}
