//! Retry policies, composable in the style of Python's tenacity.
//!
//! A policy is three parts: *whether* an error is worth retrying
//! ([`RetryIf`]), *how long* to wait before the next attempt ([`Wait`]) and
//! *when* to give up ([`Stop`]). The reducer asks the policy after every
//! failure; all elapsed times come from the run's one clock, and random waits
//! are seeded from the run id, step name and attempt number, so replaying a
//! run makes the same choices.
//!
//! ```
//! use std::time::Duration;
//! use stepwise::retry::{RetryIf, RetryPolicy, Stop, Wait};
//!
//! let policy = RetryPolicy::new()
//!     .stop(Stop::after_attempts(5) | Stop::after_delay(Duration::from_secs(60)))
//!     .wait(Wait::exponential(Duration::from_millis(100)).max(Duration::from_secs(5)) + Wait::random(Duration::ZERO, Duration::from_millis(50)))
//!     .retry_if(RetryIf::message_contains("temporarily unavailable"));
//! # let _ = policy;
//! ```

use std::fmt;
use std::ops::{Add, BitAnd, BitOr};
use std::sync::Arc;
use std::time::Duration;

use crate::core::error::StepError;

/// When to give up retrying.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Never give up.
    Never,
    /// Give up once the step has run this many times (the first try counts).
    AfterAttempts(u32),
    /// Give up once this much time has passed since the first attempt started.
    AfterDelay(Duration),
    /// Give up if the next attempt would start after this much time.
    BeforeDelay(Duration),
    /// Give up when any of these says so.
    Any(Vec<Stop>),
    /// Give up only when all of these say so.
    All(Vec<Stop>),
}

impl Stop {
    /// Stops after `n` attempts in total (`after_attempts(3)` = one try, two retries).
    pub fn after_attempts(n: u32) -> Self {
        Stop::AfterAttempts(n)
    }

    /// Stops once `delay` has elapsed since the first attempt.
    pub fn after_delay(delay: Duration) -> Self {
        Stop::AfterDelay(delay)
    }

    /// Stops when the next attempt would start `delay` or later after the first.
    pub fn before_delay(delay: Duration) -> Self {
        Stop::BeforeDelay(delay)
    }

    fn should_stop(&self, attempts: u32, elapsed: Duration, upcoming: Duration) -> bool {
        match self {
            Stop::Never => false,
            Stop::AfterAttempts(n) => attempts >= *n,
            Stop::AfterDelay(d) => elapsed >= *d,
            Stop::BeforeDelay(d) => elapsed + upcoming >= *d,
            Stop::Any(all) => all.iter().any(|s| s.should_stop(attempts, elapsed, upcoming)),
            Stop::All(all) => !all.is_empty() && all.iter().all(|s| s.should_stop(attempts, elapsed, upcoming)),
        }
    }
}

impl BitOr for Stop {
    type Output = Stop;
    /// Stops when either stops.
    fn bitor(self, rhs: Stop) -> Stop {
        match self {
            Stop::Any(mut list) => {
                list.push(rhs);
                Stop::Any(list)
            }
            other => Stop::Any(vec![other, rhs]),
        }
    }
}

impl BitAnd for Stop {
    type Output = Stop;
    /// Stops when both stop.
    fn bitand(self, rhs: Stop) -> Stop {
        match self {
            Stop::All(mut list) => {
                list.push(rhs);
                Stop::All(list)
            }
            other => Stop::All(vec![other, rhs]),
        }
    }
}

/// How long to wait before the next attempt. `attempt` below is the number of
/// failures so far (1 before the first retry).
#[derive(Clone, Debug, PartialEq)]
pub enum Wait {
    /// No wait.
    None,
    /// Always the same wait.
    Fixed(Duration),
    /// `multiplier · base^(attempt-1)`, clamped to `[min, max]`.
    Exponential {
        /// The first wait.
        multiplier: Duration,
        /// Growth factor per attempt.
        base: f64,
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// `start + increment · (attempt-1)`, at most `max`.
    Incrementing {
        /// The first wait.
        start: Duration,
        /// Added per attempt.
        increment: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// Uniformly random in `[min, max]`.
    Random {
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// `min(max, initial · base^(attempt-1) + random(0, jitter))`.
    ExponentialJitter {
        /// The first wait.
        initial: Duration,
        /// Growth factor.
        base: f64,
        /// Upper bound.
        max: Duration,
        /// Largest random addition.
        jitter: Duration,
    },
    /// "Full jitter": uniformly random in `[min, min(max, multiplier · base^(attempt-1))]`.
    RandomExponential {
        /// Scale.
        multiplier: Duration,
        /// Growth factor.
        base: f64,
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// The `attempt`-th wait of the list (the last one repeats).
    Chain(Vec<Wait>),
    /// The sum of several waits.
    Sum(Vec<Wait>),
}

/// Tenacity's default cap on exponential waits.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

impl Wait {
    /// A fixed wait.
    pub fn fixed(wait: Duration) -> Self {
        Wait::Fixed(wait)
    }

    /// No wait between attempts.
    pub fn none() -> Self {
        Wait::None
    }

    /// Doubling waits starting at `first`, capped at 60 s (change with [`Wait::max`]).
    pub fn exponential(first: Duration) -> Self {
        Wait::Exponential {
            multiplier: first,
            base: 2.0,
            min: Duration::ZERO,
            max: DEFAULT_MAX_WAIT,
        }
    }

    /// Waits growing by `increment` from `start`.
    pub fn incrementing(start: Duration, increment: Duration) -> Self {
        Wait::Incrementing {
            start,
            increment,
            max: Duration::MAX,
        }
    }

    /// Random waits in `[min, max]`.
    pub fn random(min: Duration, max: Duration) -> Self {
        Wait::Random { min, max }
    }

    /// Doubling waits from `initial` plus up to `jitter` of randomness, capped at 60 s.
    pub fn exponential_jitter(initial: Duration, jitter: Duration) -> Self {
        Wait::ExponentialJitter {
            initial,
            base: 2.0,
            max: DEFAULT_MAX_WAIT,
            jitter,
        }
    }

    /// Full-jitter exponential waits (AWS style), capped at 60 s.
    pub fn random_exponential(multiplier: Duration) -> Self {
        Wait::RandomExponential {
            multiplier,
            base: 2.0,
            min: Duration::ZERO,
            max: DEFAULT_MAX_WAIT,
        }
    }

    /// One wait per attempt; the last repeats.
    pub fn chain(waits: impl IntoIterator<Item = Wait>) -> Self {
        Wait::Chain(waits.into_iter().collect())
    }

    /// Sets the upper bound of an exponential, incrementing or jittered wait.
    pub fn max(mut self, cap: Duration) -> Self {
        match &mut self {
            Wait::Exponential { max, .. }
            | Wait::Incrementing { max, .. }
            | Wait::ExponentialJitter { max, .. }
            | Wait::RandomExponential { max, .. } => *max = cap,
            _ => {}
        }
        self
    }

    /// Sets the lower bound of an exponential wait.
    pub fn min(mut self, floor: Duration) -> Self {
        if let Wait::Exponential { min, .. } | Wait::RandomExponential { min, .. } = &mut self {
            *min = floor;
        }
        self
    }

    /// Sets the growth factor of an exponential wait.
    pub fn base(mut self, factor: f64) -> Self {
        if let Wait::Exponential { base, .. }
        | Wait::ExponentialJitter { base, .. }
        | Wait::RandomExponential { base, .. } = &mut self
        {
            *base = factor;
        }
        self
    }

    /// The wait before the retry that follows failure number `attempt` (≥ 1).
    pub fn compute(&self, attempt: u32, seed: u64) -> Duration {
        let grow = |first: Duration, base: f64| first.mul_f64(base.powi(attempt.saturating_sub(1) as i32).min(1e12));
        match self {
            Wait::None => Duration::ZERO,
            Wait::Fixed(d) => *d,
            Wait::Exponential {
                multiplier,
                base,
                min,
                max,
            } => clamp(grow(*multiplier, *base), *min, *max),
            Wait::Incrementing { start, increment, max } => {
                (*start + increment.saturating_mul(attempt.saturating_sub(1))).min(*max)
            }
            Wait::Random { min, max } => between(*min, *max, unit(seed)),
            Wait::ExponentialJitter {
                initial,
                base,
                max,
                jitter,
            } => (grow(*initial, *base) + jitter.mul_f64(unit(seed))).min(*max),
            Wait::RandomExponential {
                multiplier,
                base,
                min,
                max,
            } => {
                let high = grow(*multiplier, *base).min(*max);
                between(*min, high.max(*min), unit(seed))
            }
            Wait::Chain(waits) => match waits.len() {
                0 => Duration::ZERO,
                n => waits[(attempt.saturating_sub(1) as usize).min(n - 1)].compute(attempt, seed),
            },
            Wait::Sum(waits) => waits
                .iter()
                .enumerate()
                .map(|(i, w)| w.compute(attempt, mix(seed ^ i as u64)))
                .sum(),
        }
    }
}

impl Add for Wait {
    type Output = Wait;
    /// The sum of two waits.
    fn add(self, rhs: Wait) -> Wait {
        match self {
            Wait::Sum(mut list) => {
                list.push(rhs);
                Wait::Sum(list)
            }
            other => Wait::Sum(vec![other, rhs]),
        }
    }
}

fn clamp(d: Duration, min: Duration, max: Duration) -> Duration {
    d.max(min).min(max.max(min))
}

fn between(min: Duration, max: Duration, unit: f64) -> Duration {
    if max <= min {
        return min;
    }
    min + (max - min).mul_f64(unit)
}

/// SplitMix64: a tiny, stable mixing function (the same on every platform and
/// release, unlike `std`'s hashers).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A number in `[0, 1)` from a seed.
fn unit(seed: u64) -> f64 {
    (mix(seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// The jitter seed of a retry: stable across processes for the same run id,
/// step and attempt (FNV-1a, then mixed).
pub(crate) fn retry_seed(run_id: &str, step: &str, attempt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in run_id
        .bytes()
        .chain([0])
        .chain(step.bytes())
        .chain([0])
        .chain(attempt.to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

/// Which errors are worth retrying.
#[derive(Clone)]
pub struct RetryIf(Arc<dyn Fn(&StepError) -> bool + Send + Sync>);

impl RetryIf {
    /// Retries every error (the default).
    pub fn always() -> Self {
        RetryIf(Arc::new(|_| true))
    }

    /// Retries nothing.
    pub fn never() -> Self {
        RetryIf(Arc::new(|_| false))
    }

    /// Retries errors for which `predicate` is true.
    pub fn error(predicate: impl Fn(&StepError) -> bool + Send + Sync + 'static) -> Self {
        RetryIf(Arc::new(predicate))
    }

    /// Retries errors of type `E` (the error the step returned).
    pub fn error_type<E: std::error::Error + 'static>() -> Self {
        RetryIf(Arc::new(|e: &StepError| e.downcast_ref::<E>().is_some()))
    }

    /// Retries errors whose message contains `text`.
    pub fn message_contains(text: impl Into<String>) -> Self {
        let text = text.into();
        RetryIf(Arc::new(move |e: &StepError| e.to_string().contains(&text)))
    }

    /// Retries panics (`false` retries only returned errors).
    pub fn panics(retry: bool) -> Self {
        RetryIf(Arc::new(move |e: &StepError| e.is_panic() == retry))
    }

    /// Retries errors that this does not retry.
    pub fn negate(self) -> Self {
        RetryIf(Arc::new(move |e: &StepError| !(self.0)(e)))
    }

    pub(crate) fn matches(&self, error: &StepError) -> bool {
        (self.0)(error)
    }
}

impl BitOr for RetryIf {
    type Output = RetryIf;
    /// Retries when either matches.
    fn bitor(self, rhs: RetryIf) -> RetryIf {
        RetryIf(Arc::new(move |e: &StepError| (self.0)(e) || (rhs.0)(e)))
    }
}

impl BitAnd for RetryIf {
    type Output = RetryIf;
    /// Retries when both match.
    fn bitand(self, rhs: RetryIf) -> RetryIf {
        RetryIf(Arc::new(move |e: &StepError| (self.0)(e) && (rhs.0)(e)))
    }
}

impl fmt::Debug for RetryIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryIf(..)")
    }
}

/// What a retry policy decides from, after a failed attempt.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RetryState<'a> {
    /// The failure's number (1 after the first attempt failed).
    pub attempts: u32,
    /// Run time since the first attempt started (the run's clock).
    pub elapsed: Duration,
    /// The jitter seed: the same for the same run id, step and attempt, so a
    /// replay makes the same choice.
    pub seed: u64,
    /// The error. After a replay it is rebuilt from the journal (its message
    /// and [`StepError::is_panic`]; not its original type): decide on the
    /// type in [`Retry::retries`], whose answer is journaled.
    pub error: &'a StepError,
}

/// A retry policy: user-written, or the composed [`RetryPolicy`]. Pass one
/// to [`StepConfig::retry`](crate::StepConfig::retry) or `#[step(retry = ...)]`.
///
/// A policy must decide from its inputs alone (no clock, no global state):
/// replaying a run's journal asks it again and must get the same answer.
///
/// ```
/// use std::time::Duration;
/// use stepwise::retry::{Retry, RetryState};
/// use stepwise::{StartEvent, StepConfig, StepError, StopEvent, Workflow};
///
/// /// 10 ms, 20 ms, 30 ms, then give up.
/// struct Linear;
///
/// impl Retry for Linear {
///     fn next_delay(&self, state: &RetryState<'_>) -> Option<Duration> {
///         (state.attempts <= 3).then(|| Duration::from_millis(10 * u64::from(state.attempts)))
///     }
/// }
///
/// let wf = Workflow::builder("flaky")
///     .step_with(StepConfig::new("call").retry(Linear), |_: StartEvent| async {
///         Err::<StopEvent, _>(StepError::msg("down"))
///     })
///     .build()
///     .unwrap();
/// assert!(wf.steps()[0].retry.is_some());
/// ```
pub trait Retry: Send + Sync + 'static {
    /// Whether `error` is worth retrying at all (default: every error).
    /// Asked once, when the error happens, with the original error (so
    /// [`StepError::downcast_ref`] works); the answer is journaled.
    fn retries(&self, error: &StepError) -> bool {
        let _ = error;
        true
    }

    /// The wait before the next attempt, or `None` to give up (only asked
    /// when [`retries`](Retry::retries) said yes).
    fn next_delay(&self, state: &RetryState<'_>) -> Option<Duration>;

    /// This policy as a [`RetryPolicy`] (what a step stores).
    fn into_policy(self) -> RetryPolicy
    where
        Self: Sized,
    {
        RetryPolicy {
            custom: Some(Custom(Arc::new(self))),
            ..RetryPolicy::default()
        }
    }
}

/// A step's retry policy. The default — like the Python anchor's — retries
/// every error, waits 5 s, and stops after 3 attempts in total. A policy
/// made from a user's [`Retry`] ([`RetryPolicy::custom`]) decides by it
/// alone (its `stop`, `wait` and `retry_if` are not used).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    stop: Stop,
    wait: Wait,
    retry_if: RetryIf,
    custom: Option<Custom>,
}

/// A user-written policy inside a [`RetryPolicy`].
#[derive(Clone)]
struct Custom(Arc<dyn Retry>);

impl fmt::Debug for Custom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Custom(..)")
    }
}

impl Retry for RetryPolicy {
    fn retries(&self, error: &StepError) -> bool {
        match &self.custom {
            Some(custom) => custom.0.retries(error),
            None => self.retry_if.matches(error),
        }
    }

    fn next_delay(&self, state: &RetryState<'_>) -> Option<Duration> {
        RetryPolicy::next_delay(self, state.attempts, state.elapsed, state.error, state.seed)
    }

    fn into_policy(self) -> RetryPolicy {
        self
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            stop: Stop::after_attempts(3),
            wait: Wait::fixed(Duration::from_secs(5)),
            retry_if: RetryIf::always(),
            custom: None,
        }
    }
}

impl RetryPolicy {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy that asks `policy` (a user's [`Retry`]).
    pub fn custom(policy: impl Retry) -> Self {
        policy.into_policy()
    }

    /// `attempts` attempts in total with a fixed `wait` between them.
    pub fn fixed(attempts: u32, wait: Duration) -> Self {
        Self::new().stop(Stop::after_attempts(attempts)).wait(Wait::fixed(wait))
    }

    /// When to give up.
    pub fn stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    /// How long to wait between attempts.
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Which errors to retry.
    pub fn retry_if(mut self, retry_if: RetryIf) -> Self {
        self.retry_if = retry_if;
        self
    }

    /// Whether `error` is worth retrying (as recorded, for a replayed error).
    pub(crate) fn retryable(&self, error: &StepError) -> bool {
        error
            .recorded_retryable()
            .unwrap_or_else(|| Retry::retries(self, error))
    }

    /// After failure number `attempts` (≥ 1) at `elapsed` since the first attempt
    /// started: the wait before the next attempt, or `None` to give up.
    pub fn next_delay(&self, attempts: u32, elapsed: Duration, error: &StepError, seed: u64) -> Option<Duration> {
        if !self.retryable(error) {
            return None;
        }
        if let Some(custom) = &self.custom {
            let state = RetryState {
                attempts,
                elapsed,
                seed,
                error,
            };
            return custom.0.next_delay(&state);
        }
        let delay = self.wait.compute(attempts, seed);
        (!self.stop.should_stop(attempts, elapsed, delay)).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn err(msg: &str) -> StepError {
        StepError::msg(msg)
    }

    #[test]
    fn default_policy_counts_the_first_try() {
        let p = RetryPolicy::new();
        assert_eq!(p.next_delay(1, Duration::ZERO, &err("x"), 0), Some(5 * S));
        assert_eq!(p.next_delay(2, Duration::ZERO, &err("x"), 0), Some(5 * S));
        assert_eq!(p.next_delay(3, Duration::ZERO, &err("x"), 0), None);
    }

    #[test]
    fn exponential_doubles_and_clamps() {
        let w = Wait::exponential(S).max(5 * S);
        let waits: Vec<_> = (1..=5).map(|a| w.compute(a, 0)).collect();
        assert_eq!(waits, [S, 2 * S, 4 * S, 5 * S, 5 * S]);
        assert_eq!(Wait::exponential(S).min(3 * S).compute(1, 0), 3 * S);
    }

    #[test]
    fn incrementing_and_chain() {
        let w = Wait::incrementing(S, 2 * S).max(4 * S);
        assert_eq!(
            (1..=4).map(|a| w.compute(a, 0)).collect::<Vec<_>>(),
            [S, 3 * S, 4 * S, 4 * S]
        );
        let c = Wait::chain([Wait::fixed(S), Wait::fixed(2 * S)]);
        assert_eq!((1..=3).map(|a| c.compute(a, 0)).collect::<Vec<_>>(), [S, 2 * S, 2 * S]);
        assert_eq!((Wait::fixed(S) + Wait::fixed(2 * S)).compute(1, 0), 3 * S);
    }

    #[test]
    fn random_waits_are_seeded_and_bounded() {
        let w = Wait::random(S, 2 * S);
        for seed in 0..1000 {
            let d = w.compute(1, seed);
            assert!((S..=2 * S).contains(&d));
            assert_eq!(d, w.compute(1, seed), "same seed, same wait");
        }
        let a = retry_seed("run", "step", 1);
        assert_eq!(a, retry_seed("run", "step", 1));
        assert_ne!(a, retry_seed("run", "step", 2));
        assert_ne!(a, retry_seed("run", "other", 1));
        let j = Wait::exponential_jitter(S, S);
        assert!((S..=2 * S).contains(&j.compute(1, 7)));
        let full = Wait::random_exponential(S);
        assert!(full.compute(3, 9) <= 4 * S);
    }

    #[test]
    fn stops_compose() {
        let any = Stop::after_attempts(5) | Stop::after_delay(10 * S);
        assert!(any.should_stop(5, Duration::ZERO, Duration::ZERO));
        assert!(any.should_stop(1, 10 * S, Duration::ZERO));
        assert!(!any.should_stop(4, 9 * S, Duration::ZERO));
        let all = Stop::after_attempts(5) & Stop::after_delay(10 * S);
        assert!(!all.should_stop(5, Duration::ZERO, Duration::ZERO));
        assert!(all.should_stop(5, 10 * S, Duration::ZERO));
        assert!(Stop::before_delay(10 * S).should_stop(1, 8 * S, 2 * S));
        assert!(!Stop::Never.should_stop(u32::MAX, Duration::MAX, Duration::ZERO));
    }

    #[derive(Debug)]
    struct Flaky;
    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("flaky")
        }
    }
    impl std::error::Error for Flaky {}

    #[test]
    fn retry_conditions() {
        let p = RetryPolicy::new().retry_if(RetryIf::error_type::<Flaky>());
        assert!(p.next_delay(1, Duration::ZERO, &StepError::new(Flaky), 0).is_some());
        assert!(p.next_delay(1, Duration::ZERO, &err("other"), 0).is_none());
        let m = RetryIf::message_contains("timeout") | RetryIf::message_contains("busy");
        assert!(m.matches(&err("server busy")));
        assert!(!m.matches(&err("bad input")));
        assert!(!(m.clone() & RetryIf::never()).matches(&err("busy")));
        assert!(RetryIf::never().negate().matches(&err("x")));
    }
}
