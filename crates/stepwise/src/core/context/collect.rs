//! Fan-in: collect buffers and the typed shapes a step can collect into.
//!
//! Buffers live in the run state and are only touched by the reducer, so a
//! full set is handed to exactly one step invocation even when its last two
//! events arrive at the same instant.

use std::any::TypeId;

use crate::core::event::{AnyEvent, Event, EventType};

/// What a `collect` call waits for: how many events of each type, and in which
/// order to hand them back.
#[derive(Debug)]
pub(crate) struct Expectation<'a> {
    /// The caller's list, which fixes the output order (`None` for `collect_n`).
    pub(crate) order: Option<&'a [EventType]>,
    /// Distinct types with their counts, in first-appearance order.
    pub(crate) counts: Vec<(TypeId, usize)>,
    /// The type of a `collect_n` expectation.
    pub(crate) repeated: Option<EventType>,
}

impl<'a> Expectation<'a> {
    /// Waits for one event per entry of `list`, returned in list order.
    pub(crate) fn list(list: &'a [EventType]) -> Self {
        let mut counts: Vec<(TypeId, usize)> = Vec::new();
        for ty in list {
            match counts.iter_mut().find(|(id, _)| *id == ty.type_id()) {
                Some((_, n)) => *n += 1,
                None => counts.push((ty.type_id(), 1)),
            }
        }
        Expectation {
            order: Some(list),
            counts,
            repeated: None,
        }
    }

    /// Waits for `n` events of one type, returned in arrival order.
    pub(crate) fn repeat(ty: EventType, n: usize) -> Self {
        Expectation {
            order: None,
            counts: vec![(ty.type_id(), n)],
            repeated: Some(ty),
        }
    }

    fn wanted(&self, ty: TypeId) -> usize {
        self.counts.iter().find(|(id, _)| *id == ty).map_or(0, |(_, n)| *n)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counts.iter().all(|(_, n)| *n == 0)
    }
}

/// Events buffered for one (step, buffer id), grouped by type in arrival order.
#[derive(Debug, Default)]
pub(crate) struct CollectBuffer {
    pub(crate) by_type: Vec<(TypeId, Vec<AnyEvent>)>,
}

impl CollectBuffer {
    fn queue_mut(&mut self, ty: TypeId) -> &mut Vec<AnyEvent> {
        let index = match self.by_type.iter().position(|(id, _)| *id == ty) {
            Some(index) => index,
            None => {
                self.by_type.push((ty, Vec::new()));
                self.by_type.len() - 1
            }
        };
        &mut self.by_type[index].1
    }

    fn count(&self, ty: TypeId) -> usize {
        self.by_type
            .iter()
            .find(|(id, _)| *id == ty)
            .map_or(0, |(_, q)| q.len())
    }

    /// True when the buffer holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_type.iter().all(|(_, q)| q.is_empty())
    }

    /// Puts a set handed to a failed attempt back, ahead of later arrivals.
    pub(crate) fn restore(&mut self, set: Vec<AnyEvent>) {
        for event in set.into_iter().rev() {
            let ty = event.event_type().type_id();
            self.queue_mut(ty).insert(0, event);
        }
    }

    /// Adds `event` if its type is still missing (an extra or unexpected event is
    /// not kept), then hands out the full set if it is complete.
    pub(crate) fn offer(&mut self, event: AnyEvent, expect: &Expectation<'_>) -> Option<Vec<AnyEvent>> {
        let ty = event.event_type().type_id();
        let wanted = expect.wanted(ty);
        if self.count(ty) < wanted {
            self.queue_mut(ty).push(event);
        }
        let complete = expect.counts.iter().all(|(id, n)| self.count(*id) >= *n);
        complete.then(|| self.take(expect))
    }

    fn take(&mut self, expect: &Expectation<'_>) -> Vec<AnyEvent> {
        match expect.order {
            None => {
                let (ty, n) = expect.counts[0];
                let queue = self.queue_mut(ty);
                queue.drain(..n).collect()
            }
            Some(order) => {
                // Take each type's share first, then lay them out in list order.
                let mut taken: Vec<(TypeId, std::vec::IntoIter<AnyEvent>)> = expect
                    .counts
                    .iter()
                    .map(|(ty, n)| (*ty, self.queue_mut(*ty).drain(..*n).collect::<Vec<_>>().into_iter()))
                    .collect();
                order
                    .iter()
                    .filter_map(|ty| {
                        taken
                            .iter_mut()
                            .find(|(id, _)| *id == ty.type_id())
                            .and_then(|(_, events)| events.next())
                    })
                    .collect()
            }
        }
    }
}

/// A typed set of events to collect: a tuple of event types, e.g.
/// `ctx.collect::<(Header, Body, Footer)>(&ev)`.
pub trait CollectSet: Sized {
    /// The expected types, in tuple order.
    fn expected() -> Vec<EventType>;
    /// Builds the tuple from events in tuple order.
    fn from_events(events: Vec<AnyEvent>) -> Option<Self>;
}

macro_rules! impl_collect_set {
    ($($name:ident),+) => {
        impl<$($name: Event),+> CollectSet for ($($name,)+) {
            fn expected() -> Vec<EventType> {
                vec![$(EventType::of::<$name>()),+]
            }
            fn from_events(events: Vec<AnyEvent>) -> Option<Self> {
                let mut events = events.into_iter();
                Some(($(events.next()?.downcast::<$name>().ok()?,)+))
            }
        }
    };
}

impl_collect_set!(A);
impl_collect_set!(A, B);
impl_collect_set!(A, B, C);
impl_collect_set!(A, B, C, D);
impl_collect_set!(A, B, C, D, E);
impl_collect_set!(A, B, C, D, E, F);
impl_collect_set!(A, B, C, D, E, F, G);
impl_collect_set!(A, B, C, D, E, F, G, H);

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    struct A(u32);
    impl Event for A {
        const NAME: &'static str = "A";
    }
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    struct B(u32);
    impl Event for B {
        const NAME: &'static str = "B";
    }

    fn names(events: &[AnyEvent]) -> Vec<String> {
        events.iter().map(|e| format!("{e:?}")).collect()
    }

    #[test]
    fn list_order_wins_over_arrival_order() {
        let expected = [EventType::of::<B>(), EventType::of::<A>()];
        let expect = Expectation::list(&expected);
        let mut buf = CollectBuffer::default();
        assert!(buf.offer(AnyEvent::new(A(1)), &expect).is_none());
        let set = buf.offer(AnyEvent::new(B(2)), &expect).unwrap();
        assert_eq!(names(&set), ["B(2)", "A(1)"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn repeated_types_interleave_in_arrival_order() {
        let expected = [
            EventType::of::<A>(),
            EventType::of::<B>(),
            EventType::of::<A>(),
            EventType::of::<B>(),
        ];
        let expect = Expectation::list(&expected);
        let mut buf = CollectBuffer::default();
        for ev in [AnyEvent::new(A(1)), AnyEvent::new(A(2)), AnyEvent::new(B(1))] {
            assert!(buf.offer(ev, &expect).is_none());
        }
        let set = buf.offer(AnyEvent::new(B(2)), &expect).unwrap();
        assert_eq!(names(&set), ["A(1)", "B(1)", "A(2)", "B(2)"]);
    }

    #[test]
    fn extra_and_unexpected_events_are_not_buffered() {
        let expected = [EventType::of::<A>(), EventType::of::<B>()];
        let expect = Expectation::list(&expected);
        let mut buf = CollectBuffer::default();
        assert!(buf.offer(AnyEvent::new(A(1)), &expect).is_none());
        assert!(buf.offer(AnyEvent::new(A(2)), &expect).is_none()); // A already present
        let set = buf.offer(AnyEvent::new(B(3)), &expect).unwrap();
        assert_eq!(names(&set), ["A(1)", "B(3)"]);
        let only_a = [EventType::of::<A>()];
        let expect_a = Expectation::list(&only_a);
        assert!(buf.offer(AnyEvent::new(B(9)), &expect_a).is_none());
        assert_eq!(buf.count(TypeId::of::<B>()), 0);
    }

    #[test]
    fn repeat_hands_out_in_arrival_order() {
        let expect = Expectation::repeat(EventType::of::<A>(), 3);
        let mut buf = CollectBuffer::default();
        assert!(buf.offer(AnyEvent::new(A(3)), &expect).is_none());
        assert!(buf.offer(AnyEvent::new(A(1)), &expect).is_none());
        let set = buf.offer(AnyEvent::new(A(2)), &expect).unwrap();
        assert_eq!(names(&set), ["A(3)", "A(1)", "A(2)"]);
    }

    #[test]
    fn tuples_downcast_in_order() {
        let set = <(B, A)>::from_events(vec![AnyEvent::new(B(1)), AnyEvent::new(A(2))]).unwrap();
        assert_eq!(set, (B(1), A(2)));
        assert!(<(A, B)>::from_events(vec![AnyEvent::new(B(1)), AnyEvent::new(A(2))]).is_none());
    }
}
