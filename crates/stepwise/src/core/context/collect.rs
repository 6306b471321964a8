//! Fan-in: collect buffers and the typed shapes a step can collect into.
//!
//! Buffers live in the run state and are only touched by the reducer, so a
//! full set is handed to exactly one step invocation even when its last two
//! events arrive at the same instant.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use crate::core::event::{AnyEvent, Event, EventType};

/// A list of event types summarised: what a list-shaped collect needs, in
/// space proportional to its runs and distinct types, not its length.
#[derive(Clone, Debug, Default)]
pub struct ListSummary {
    /// The list run-length encoded: consecutive entries of one type.
    pub(crate) runs: Vec<(EventType, usize)>,
    /// Distinct types with their counts, in first-appearance order.
    pub(crate) counts: Vec<(TypeId, usize)>,
    pub(crate) len: usize,
}

impl ListSummary {
    pub(crate) fn of(list: impl IntoIterator<Item = EventType>) -> Self {
        let mut summary = ListSummary::default();
        for ty in list {
            summary.push_run(ty, 1);
        }
        summary
    }

    pub(crate) fn from_runs(runs: impl IntoIterator<Item = (EventType, usize)>) -> Self {
        let mut summary = ListSummary::default();
        for (ty, n) in runs {
            summary.push_run(ty, n);
        }
        summary
    }

    fn push_run(&mut self, ty: EventType, n: usize) {
        if n == 0 {
            return;
        }
        self.len += n;
        match self.runs.last_mut() {
            Some((last, count)) if last.type_id() == ty.type_id() => *count += n,
            _ => self.runs.push((ty, n)),
        }
        match self.counts.iter_mut().find(|(id, _)| *id == ty.type_id()) {
            Some((_, count)) => *count += n,
            None => self.counts.push((ty.type_id(), n)),
        }
    }
}

/// A list of event types for [`Context::collect_events`](crate::Context::collect_events),
/// summarised once when it is built: a call with it costs O(1) in the list's
/// length (for lists made of few runs of one type, e.g.
/// `EventList::repeat(EventType::of::<Result>(), 10_000)`), where a slice is
/// read in full on every call. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventList(Arc<ListSummary>);

impl EventList {
    /// The list `types`, in order.
    pub fn new(types: impl IntoIterator<Item = EventType>) -> Self {
        EventList(Arc::new(ListSummary::of(types)))
    }

    /// `n` events of type `ty` (the list `[ty; n]`), built in O(1).
    pub fn repeat(ty: EventType, n: usize) -> Self {
        EventList(Arc::new(ListSummary::from_runs([(ty, n)])))
    }

    /// The list's length.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// True for the empty list.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The types, in order.
    pub fn iter(&self) -> impl Iterator<Item = EventType> + '_ {
        self.0.runs.iter().flat_map(|(ty, n)| std::iter::repeat_n(*ty, *n))
    }
}

impl From<Vec<EventType>> for EventList {
    fn from(types: Vec<EventType>) -> Self {
        EventList::new(types)
    }
}

impl From<&[EventType]> for EventList {
    fn from(types: &[EventType]) -> Self {
        EventList::new(types.iter().copied())
    }
}

impl<const N: usize> From<[EventType; N]> for EventList {
    fn from(types: [EventType; N]) -> Self {
        EventList::new(types)
    }
}

impl FromIterator<EventType> for EventList {
    fn from_iter<I: IntoIterator<Item = EventType>>(types: I) -> Self {
        EventList::new(types)
    }
}

/// What [`Context::collect_events`](crate::Context::collect_events) accepts
/// as its expected list: a slice, array or `Vec` of [`EventType`]s (read in
/// full on every call: they may change between calls), or a shared list, an
/// [`EventList`] or an `Arc<[EventType]>` (summarised once: a call costs
/// O(1) in its length).
pub trait ExpectedEvents {
    /// The list as the engine reads it.
    #[doc(hidden)]
    fn expectation(&self) -> Expectation<'_>;
}

impl ExpectedEvents for [EventType] {
    fn expectation(&self) -> Expectation<'_> {
        Expectation::List(Cow::Owned(ListSummary::of(self.iter().copied())))
    }
}

impl<const N: usize> ExpectedEvents for [EventType; N] {
    fn expectation(&self) -> Expectation<'_> {
        self.as_slice().expectation()
    }
}

impl ExpectedEvents for Vec<EventType> {
    fn expectation(&self) -> Expectation<'_> {
        self.as_slice().expectation()
    }
}

impl ExpectedEvents for Box<[EventType]> {
    fn expectation(&self) -> Expectation<'_> {
        (**self).expectation()
    }
}

thread_local! {
    /// The last shared list summarised on this thread, with a clone that
    /// keeps it alive (so its address is not reused, and an `Arc<[T]>`
    /// cannot change while shared): a fan-in passes the same list K times.
    static LAST_SHARED: RefCell<Option<(Arc<[EventType]>, ListSummary)>> = const { RefCell::new(None) };
}

/// Summarised once per list (see `LAST_SHARED`), then O(runs) per call.
impl ExpectedEvents for Arc<[EventType]> {
    fn expectation(&self) -> Expectation<'_> {
        LAST_SHARED.with(|last| {
            let mut last = last.borrow_mut();
            if let Some((list, summary)) = &*last {
                if Arc::ptr_eq(list, self) {
                    return Expectation::List(Cow::Owned(summary.clone()));
                }
            }
            let summary = ListSummary::of(self.iter().copied());
            *last = Some((Arc::clone(self), summary.clone()));
            Expectation::List(Cow::Owned(summary))
        })
    }
}

impl ExpectedEvents for EventList {
    fn expectation(&self) -> Expectation<'_> {
        Expectation::List(Cow::Borrowed(&self.0))
    }
}

impl<L: ExpectedEvents + ?Sized> ExpectedEvents for &L {
    fn expectation(&self) -> Expectation<'_> {
        (**self).expectation()
    }
}

/// What a `collect` call waits for: how many events of each type, and in which
/// order to hand them back. Public only because [`ExpectedEvents`] names it.
#[derive(Debug)]
#[doc(hidden)]
pub enum Expectation<'a> {
    /// One event per list entry, handed back in list order.
    List(Cow<'a, ListSummary>),
    /// `n` events of one type, in arrival order (`collect_n`).
    Repeat(EventType, usize),
}

impl Expectation<'_> {
    /// Waits for `n` events of one type, returned in arrival order.
    pub(crate) fn repeat(ty: EventType, n: usize) -> Self {
        Expectation::Repeat(ty, n)
    }

    fn counts(&self) -> impl Iterator<Item = (TypeId, usize)> + '_ {
        let (list, repeat) = match self {
            Expectation::List(summary) => (summary.counts.as_slice(), None),
            Expectation::Repeat(ty, n) => (&[][..], Some((ty.type_id(), *n))),
        };
        list.iter().copied().chain(repeat)
    }

    fn wanted(&self, ty: TypeId) -> usize {
        self.counts().find(|(id, _)| *id == ty).map_or(0, |(_, n)| n)
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Expectation::List(summary) => summary.len == 0,
            Expectation::Repeat(_, n) => *n == 0,
        }
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
        // Grouped by type first, then each group put in front in one move
        // (one insert per event would be quadratic in the set's size).
        let mut groups: Vec<(TypeId, Vec<AnyEvent>)> = Vec::new();
        for event in set {
            let ty = event.event_type().type_id();
            match groups.iter_mut().find(|(id, _)| *id == ty) {
                Some((_, group)) => group.push(event),
                None => groups.push((ty, vec![event])),
            }
        }
        for (ty, mut group) in groups {
            let queue = self.queue_mut(ty);
            group.append(queue);
            *queue = group;
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
        let complete = expect.counts().all(|(id, n)| self.count(id) >= n);
        complete.then(|| self.take(expect))
    }

    fn take(&mut self, expect: &Expectation<'_>) -> Vec<AnyEvent> {
        match expect {
            Expectation::Repeat(ty, n) => self.queue_mut(ty.type_id()).drain(..*n).collect(),
            Expectation::List(summary) => {
                // Take each type's share first, then lay them out in list order.
                let mut taken: Vec<(TypeId, std::vec::IntoIter<AnyEvent>)> = summary
                    .counts
                    .iter()
                    .map(|(ty, n)| (*ty, self.queue_mut(*ty).drain(..*n).collect::<Vec<_>>().into_iter()))
                    .collect();
                let mut set = Vec::with_capacity(summary.len);
                for (ty, n) in &summary.runs {
                    if let Some((_, events)) = taken.iter_mut().find(|(id, _)| *id == ty.type_id()) {
                        set.extend(events.by_ref().take(*n));
                    }
                }
                set
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
        let expect = expected.expectation();
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
        let expect = expected.expectation();
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
        let expect = expected.expectation();
        let mut buf = CollectBuffer::default();
        assert!(buf.offer(AnyEvent::new(A(1)), &expect).is_none());
        assert!(buf.offer(AnyEvent::new(A(2)), &expect).is_none()); // A already present
        let set = buf.offer(AnyEvent::new(B(3)), &expect).unwrap();
        assert_eq!(names(&set), ["A(1)", "B(3)"]);
        let only_a = [EventType::of::<A>()];
        let expect_a = only_a.expectation();
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

    /// The engine before lists were summarised: counts from the whole list,
    /// then each entry takes the next buffered event of its type.
    fn reference(list: &[usize], arrivals: &[(usize, u32)]) -> Vec<Option<Vec<String>>> {
        let wanted = |ty: usize| list.iter().filter(|t| **t == ty).count();
        let mut queues: Vec<Vec<u32>> = vec![Vec::new(); 2];
        let mut out = Vec::new();
        for &(ty, v) in arrivals {
            if queues[ty].len() < wanted(ty) {
                queues[ty].push(v);
            }
            let complete = (0..2).all(|t| queues[t].len() >= wanted(t));
            if complete && !list.is_empty() {
                let mut taken: Vec<std::vec::IntoIter<u32>> = (0..2)
                    .map(|t| queues[t].drain(..wanted(t)).collect::<Vec<_>>().into_iter())
                    .collect();
                let set = list
                    .iter()
                    .map(|t| match t {
                        0 => format!("A({})", taken[0].next().unwrap()),
                        _ => format!("B({})", taken[1].next().unwrap()),
                    })
                    .collect();
                out.push(Some(set));
            } else {
                out.push(None);
            }
        }
        out
    }

    fn ty(t: usize) -> EventType {
        if t == 0 {
            EventType::of::<A>()
        } else {
            EventType::of::<B>()
        }
    }

    fn event(t: usize, v: u32) -> AnyEvent {
        if t == 0 {
            AnyEvent::new(A(v))
        } else {
            AnyEvent::new(B(v))
        }
    }

    proptest::proptest! {
        /// Every shape of the expected list (slice, `EventList`, shared `Arc`)
        /// hands out the same sets, at the same calls, in the same order as
        /// the engine did before.
        #[test]
        fn summarised_lists_behave_as_before(
            list in proptest::collection::vec(0usize..2, 1..12),
            arrivals in proptest::collection::vec((0usize..2, 0u32..1000), 0..40),
        ) {
            let want = reference(&list, &arrivals);
            let types: Vec<EventType> = list.iter().map(|t| ty(*t)).collect();
            let shared: Arc<[EventType]> = types.clone().into();
            let prepared = EventList::from(types.clone());
            for shape in 0..3 {
                let mut buf = CollectBuffer::default();
                let got: Vec<Option<Vec<String>>> = arrivals
                    .iter()
                    .map(|&(t, v)| {
                        let expect = match shape {
                            0 => types.expectation(),
                            1 => prepared.expectation(),
                            _ => shared.expectation(),
                        };
                        buf.offer(event(t, v), &expect).map(|set| names(&set))
                    })
                    .collect();
                proptest::prop_assert_eq!(&got, &want, "shape {}", shape);
            }
        }
    }

    #[test]
    fn repeat_lists_are_one_run_and_restore_keeps_order() {
        let list = EventList::repeat(EventType::of::<A>(), 100_000);
        assert_eq!((list.len(), list.0.runs.len(), list.0.counts.len()), (100_000, 1, 1));
        let ab = [EventType::of::<A>(), EventType::of::<B>(), EventType::of::<A>()];
        let expect = ab.expectation();
        let mut buf = CollectBuffer::default();
        assert!(buf.offer(AnyEvent::new(A(9)), &expect).is_none());
        // A failed attempt's set goes back ahead of the later arrival.
        buf.restore(vec![AnyEvent::new(A(1)), AnyEvent::new(B(2)), AnyEvent::new(A(3))]);
        let set = buf.offer(AnyEvent::new(B(7)), &expect).unwrap();
        assert_eq!(names(&set), ["A(1)", "B(2)", "A(3)"]);
        assert_eq!(
            names(&buf.by_type.iter().flat_map(|(_, q)| q.clone()).collect::<Vec<_>>()),
            ["A(9)"]
        );
    }
}
