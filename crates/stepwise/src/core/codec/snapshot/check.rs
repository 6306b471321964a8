//! Whole-snapshot validation: a snapshot read back (from a file someone may
//! have edited, or from a store) is checked for internal consistency before
//! a run is rebuilt from it, so that an impossible state is refused with a
//! message naming what is wrong instead of resuming into a hang or a wrong
//! result. Serde has already checked the shape; unknown event names are left
//! to decoding.

use std::collections::{HashMap, HashSet};

use super::{AttemptData, QueuedData, Snapshot};
use crate::core::define::workflow::WorkflowCore;

/// The first inconsistency found, as a sentence naming it.
pub(crate) fn check(workflow: &WorkflowCore, snapshot: &Snapshot) -> Result<(), String> {
    let run = &snapshot.run;
    let at = snapshot.at_us;
    let known = |name: &str| -> Result<usize, String> {
        workflow.step_index(name).ok_or_else(|| {
            format!(
                "it names step `{name}`, which workflow `{}` does not have",
                workflow.name
            )
        })
    };

    // Steps: each once, its busy bits counting its active workers.
    let mut steps = HashMap::new();
    for (index, step) in run.steps.iter().enumerate() {
        known(&step.name)?;
        if steps.insert(step.name.as_str(), index).is_some() {
            return Err(format!("step `{}` is listed twice in `steps`", step.name));
        }
        let busy: usize = step.busy.iter().map(|w| w.count_ones() as usize).sum();
        if busy != step.active {
            return Err(format!(
                "step `{}` has `active` {} but {busy} busy worker(s)",
                step.name, step.active
            ));
        }
        for (i, queued) in step.queue.iter().enumerate() {
            queued_ok(queued, at, false).map_err(|p| format!("queued event {i} of step `{}` {p}", step.name))?;
        }
    }

    // Invocation slots: the free list is exactly the empty slots.
    let slots = run.invocations.len();
    let mut free = HashSet::new();
    for &slot in &run.free {
        let Some(cell) = run.invocations.get(slot as usize) else {
            return Err(format!(
                "free slot {slot} is out of range (there are {slots} invocation slots)"
            ));
        };
        if cell.entry.is_some() {
            return Err(format!("slot {slot} is listed as free but holds an invocation"));
        }
        if !free.insert(slot) {
            return Err(format!("slot {slot} is listed as free twice"));
        }
    }
    if let Some(slot) = (0..slots).find(|&s| run.invocations[s].entry.is_none() && !free.contains(&(s as u32))) {
        return Err(format!("slot {slot} is empty but not listed in `free`"));
    }

    // In-flight invocations: each on a busy worker of its step, workers not
    // shared, open-wait counts matching the waiters.
    let mut workers: HashSet<(&str, u32)> = HashSet::new();
    let mut in_flight: HashMap<&str, usize> = HashMap::new();
    for (slot, cell) in run.invocations.iter().enumerate() {
        let Some(f) = &cell.entry else { continue };
        known(&f.step)?;
        let what = format!("invocation {slot} (step `{}`)", f.step);
        let Some(&index) = steps.get(f.step.as_str()) else {
            return Err(format!("{what} is of a step missing from `steps`"));
        };
        let busy = &run.steps[index].busy;
        let (word, bit) = ((f.worker / 64) as usize, f.worker % 64);
        if busy.get(word).is_none_or(|w| w & (1 << bit) == 0) {
            return Err(format!(
                "{what} runs on worker {}, which its step does not mark busy",
                f.worker
            ));
        }
        if !workers.insert((f.step.as_str(), f.worker)) {
            return Err(format!("{what} shares worker {} with another invocation", f.worker));
        }
        *in_flight.entry(f.step.as_str()).or_default() += 1;
        let pair = [slot as u32, cell.generation];
        let open = run.waiters.iter().filter(|w| w.invocation == pair).count();
        if open != f.waiting as usize {
            return Err(format!(
                "{what} counts {} open wait(s) (`waiting`) but {open} waiter(s) refer to it",
                f.waiting
            ));
        }
        attempt_ok(&f.attempt, at).map_err(|p| format!("{what}: its attempt {p}"))?;
    }
    for step in &run.steps {
        let running = in_flight.get(step.name.as_str()).copied().unwrap_or(0);
        if running != step.active {
            return Err(format!(
                "step `{}` has `active` {} but {running} invocation(s) in flight",
                step.name, step.active
            ));
        }
    }

    // Timer ids and waiter keys come from one counter, `next_timer`.
    let mut ids = HashSet::new();
    let mut waits = HashSet::new();
    for w in &run.waiters {
        let what = format!("waiter `{}` (key {})", w.id, w.key);
        known(&w.step)?;
        if w.key >= run.next_timer {
            return Err(format!("{what} is not below `next_timer` {}", run.next_timer));
        }
        if !ids.insert(w.key) {
            return Err(format!("{what} reuses a key or timer id"));
        }
        let [slot, generation] = w.invocation;
        let entry = run
            .invocations
            .get(slot as usize)
            .filter(|cell| cell.generation == generation)
            .and_then(|cell| cell.entry.as_ref());
        let Some(f) = entry else {
            return Err(format!(
                "{what} refers to invocation [{slot}, {generation}], which is not in flight"
            ));
        };
        if f.step != w.step {
            return Err(format!(
                "{what} is of step `{}` but its invocation is of step `{}`",
                w.step, f.step
            ));
        }
        if w.call >= f.waits {
            return Err(format!(
                "{what} is wait number {} of an invocation that made {} wait(s)",
                w.call, f.waits
            ));
        }
        if !waits.insert((w.invocation, w.id.as_str())) {
            return Err(format!("{what}: its invocation waits twice under that id"));
        }
    }
    for r in &run.retries {
        let what = format!("retry {} (step `{}`)", r.timer, r.step);
        known(&r.step)?;
        if r.timer >= run.next_timer {
            return Err(format!("{what} is not below `next_timer` {}", run.next_timer));
        }
        if !ids.insert(r.timer) {
            return Err(format!("{what} reuses a key or timer id"));
        }
        queued_ok(&r.queued, at, true).map_err(|p| format!("{what}: its event {p}"))?;
    }

    let mut buffers = HashSet::new();
    for b in &run.buffers {
        known(&b.step)?;
        if !buffers.insert((b.step.as_str(), b.buffer.as_str())) {
            return Err(format!(
                "collect buffer `{}` of step `{}` is listed twice",
                b.buffer, b.step
            ));
        }
        if b.events.is_empty() {
            // A run drops a buffer once it is empty: events were removed.
            return Err(format!("collect buffer `{}` of step `{}` is empty", b.buffer, b.step));
        }
    }
    for r in &run.recovered_waiters {
        let step = match r {
            super::RecoveredData::Full { step, .. } | super::RecoveredData::Bare(step, _) => step,
        };
        known(step)?;
    }
    Ok(())
}

fn queued_ok(queued: &QueuedData, at: u64, retry: bool) -> Result<(), String> {
    match &queued.attempt {
        Some(attempt) => {
            if retry && attempt.number < 2 {
                return Err(format!("is a retry but its attempt number is {}", attempt.number));
            }
            attempt_ok(attempt, at)
        }
        None if retry => Err("is a retry without an attempt".into()),
        None => Ok(()),
    }
}

fn attempt_ok(a: &AttemptData, at: u64) -> Result<(), String> {
    if a.number == 0 {
        return Err("has number 0 (attempts count from 1)".into());
    }
    if (a.number > 1) != a.last_error.is_some() {
        return Err(format!(
            "number {} does not fit its last error (only retries have one)",
            a.number
        ));
    }
    if a.first_at_us > at {
        return Err(format!(
            "started at {} µs, after the snapshot was taken ({at} µs)",
            a.first_at_us
        ));
    }
    if let Some(failed) = a.last_failed_at_us {
        if failed > at || failed < a.first_at_us {
            return Err(format!(
                "last failed at {failed} µs, outside {}..={at} µs",
                a.first_at_us
            ));
        }
    }
    let mut calls = HashSet::new();
    for (call, buffer, _) in &a.sets {
        if *call >= a.collected {
            return Err(format!(
                "holds a set for collect call {call} but made {} call(s)",
                a.collected
            ));
        }
        if !calls.insert((*call, buffer.as_str())) {
            return Err(format!("holds two sets for collect call {call}"));
        }
    }
    let mut answers = HashSet::new();
    for (call, id, _) in &a.answers {
        if !answers.insert((*call, id.as_str())) {
            return Err(format!("holds two answers for wait {call} (`{id}`)"));
        }
    }
    Ok(())
}
