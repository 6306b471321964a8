//! Run state shared by the steps of a run.
//!
//! The main form is typed: a user struct with `Default` and serde, declared on
//! the workflow (`#[workflow(state = MyState)]` or
//! [`WorkflowBuilder::state`](crate::WorkflowBuilder::state)). Steps read it,
//! replace it, or edit it atomically through their [`Context`](crate::Context).
//! An untyped form — JSON values addressed by dotted paths — works on any
//! store, for quick scripts.
//!
//! A [`StateStore`] outlives its run: pass it to the next run with
//! [`RunOptions::state`](crate::RunOptions::state) and the state carries over.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

/// A type usable as typed run state.
pub trait State: Any + Default + Serialize + DeserializeOwned + Send + Sync {}

impl<T: Any + Default + Serialize + DeserializeOwned + Send + Sync> State for T {}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The store holds another type.
    #[error("run state is `{found}`, not `{expected}`")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type the store holds.
        found: &'static str,
    },
    /// A dotted path names nothing.
    #[error("state path `{path}` not found")]
    PathNotFound {
        /// The path.
        path: String,
    },
    /// An empty path was given to `set`.
    #[error("state path is empty")]
    EmptyPath,
    /// A path has more than 1,000 segments.
    #[error("state path has more than {MAX_SEGMENTS} segments")]
    PathTooLong,
    /// A path goes through a value that is neither an object nor an array.
    #[error("state path `{path}` goes through a {kind} value")]
    NotAContainer {
        /// The path up to the offending segment.
        path: String,
        /// The JSON type found there.
        kind: &'static str,
    },
    /// A value could not be converted to or from JSON.
    #[error("state value at `{path}` does not convert: {source}")]
    Json {
        /// The path (`""` for the whole state).
        path: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

const MAX_SEGMENTS: usize = 1000;

/// Object-safe view of a state value.
trait ErasedState: Any + Send + Sync {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn to_json(&self) -> Result<Value, serde_json::Error>;
    fn replace_from_json(&mut self, value: Value) -> Result<(), serde_json::Error>;
}

impl<S: State> ErasedState for S {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn to_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
    fn replace_from_json(&mut self, value: Value) -> Result<(), serde_json::Error> {
        *self = S::deserialize(value)?;
        Ok(())
    }
}

/// The untyped state: a JSON object.
pub type JsonState = Map<String, Value>;

/// Called with the state's JSON after every change (journaled runs persist it).
pub(crate) type StateObserver = Arc<dyn Fn(String) + Send + Sync>;

/// A run's state, shared by its steps and by the caller. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    value: Arc<Mutex<Box<dyn ErasedState>>>,
    type_id: TypeId,
    type_name: &'static str,
    observer: Arc<std::sync::Mutex<Option<StateObserver>>>,
}

impl StateStore {
    /// A store holding `state`.
    pub fn new<S: State>(state: S) -> Self {
        StateStore {
            value: Arc::new(Mutex::new(Box::new(state))),
            type_id: TypeId::of::<S>(),
            type_name: std::any::type_name::<S>(),
            observer: Arc::default(),
        }
    }

    /// A store holding `S` decoded from JSON text.
    pub(crate) fn from_json<S: State>(json: &str) -> Result<Self, String> {
        serde_json::from_str::<S>(json)
            .map(Self::new)
            .map_err(|e| e.to_string())
    }

    /// Sets (or clears) the observer told about every change.
    pub(crate) fn observe(&self, observer: Option<StateObserver>) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = observer;
    }

    fn current_observer(&self) -> Option<StateObserver> {
        self.observer.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tells the observer, if any, about the state's new value.
    fn changed(&self, state: &dyn ErasedState) {
        if let Some(observer) = self.current_observer() {
            match state.to_json() {
                Ok(json) => observer(json.to_string()),
                Err(error) => tracing::warn!(%error, "run state does not serialise; it is not journaled"),
            }
        }
    }

    /// A store holding `S::default()`.
    pub fn default_of<S: State>() -> Self {
        Self::new(S::default())
    }

    /// An untyped store holding an empty JSON object.
    pub fn json() -> Self {
        Self::new(JsonState::new())
    }

    /// True when the store holds an `S`.
    pub fn holds<S: State>(&self) -> bool {
        self.type_id == TypeId::of::<S>()
    }

    pub(crate) fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// The Rust type name of the state.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn check<S: State>(&self) -> Result<(), StateError> {
        if self.holds::<S>() {
            Ok(())
        } else {
            Err(StateError::WrongType {
                expected: std::any::type_name::<S>(),
                found: self.type_name,
            })
        }
    }

    /// A copy of the state.
    pub async fn get<S: State + Clone>(&self) -> Result<S, StateError> {
        self.edit(|s: &mut S| s.clone()).await
    }

    /// Replaces the state.
    pub async fn set<S: State>(&self, state: S) -> Result<(), StateError> {
        self.edit(|s: &mut S| *s = state).await
    }

    /// Edits the state atomically: no other step touches it while `edit` runs.
    pub async fn edit<S: State, R>(&self, edit: impl FnOnce(&mut S) -> R) -> Result<R, StateError> {
        self.check::<S>()?;
        let mut guard = self.value.lock().await;
        let result = match guard.as_any_mut().downcast_mut::<S>() {
            Some(state) => edit(state),
            None => return Err(self.wrong::<S>()),
        };
        self.changed(&**guard);
        Ok(result)
    }

    /// Locks the state for a longer edit that may await in between. Other
    /// steps wait until the guard is dropped.
    pub async fn lock<S: State>(&self) -> Result<StateGuard<S>, StateError> {
        self.check::<S>()?;
        let guard = Arc::clone(&self.value).lock_owned().await;
        let observer = self.current_observer();
        OwnedMutexGuard::try_map(guard, |b| b.as_any_mut().downcast_mut::<S>())
            .map(|inner| StateGuard { inner, observer })
            .map_err(|_| self.wrong::<S>())
    }

    fn wrong<S: State>(&self) -> StateError {
        StateError::WrongType {
            expected: std::any::type_name::<S>(),
            found: self.type_name,
        }
    }

    /// The state as JSON text, if nobody holds the lock right now.
    pub(crate) fn try_json(&self) -> Option<String> {
        let guard = self.value.try_lock().ok()?;
        guard.to_json().ok().map(|v| v.to_string())
    }

    /// The whole state as JSON.
    pub async fn to_json(&self) -> Result<Value, StateError> {
        let guard = self.value.lock().await;
        guard.to_json().map_err(|source| StateError::Json {
            path: String::new(),
            source,
        })
    }

    /// The JSON value at a dotted path (`"user.name"`, `"items.0"`).
    pub async fn get_path(&self, path: &str) -> Result<Value, StateError> {
        let whole = self.to_json().await?;
        lookup(&whole, path).cloned()
    }

    /// The value at a dotted path, as `T`.
    pub async fn get_path_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, StateError> {
        let value = self.get_path(path).await?;
        T::deserialize(value).map_err(|source| StateError::Json {
            path: path.to_owned(),
            source,
        })
    }

    /// Sets the value at a dotted path, creating missing objects on the way.
    /// On typed state the result must still decode as the state type; if it
    /// does not, nothing changes and the error says why.
    pub async fn set_path(&self, path: &str, value: impl Serialize) -> Result<(), StateError> {
        if path.is_empty() {
            return Err(StateError::EmptyPath);
        }
        let value = serde_json::to_value(value).map_err(|source| StateError::Json {
            path: path.to_owned(),
            source,
        })?;
        let mut guard = self.value.lock().await;
        let mut whole = guard.to_json().map_err(|source| StateError::Json {
            path: String::new(),
            source,
        })?;
        *lookup_mut(&mut whole, path)? = value;
        guard.replace_from_json(whole).map_err(|source| StateError::Json {
            path: path.to_owned(),
            source,
        })?;
        self.changed(&**guard);
        Ok(())
    }
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore").field("type", &self.type_name).finish()
    }
}

/// Exclusive access to typed state; derefs to the state.
pub struct StateGuard<S: State> {
    inner: OwnedMappedMutexGuard<Box<dyn ErasedState>, S>,
    observer: Option<StateObserver>,
}

impl<S: State> Drop for StateGuard<S> {
    fn drop(&mut self) {
        if let Some(observer) = &self.observer {
            if let Ok(json) = serde_json::to_string(&*self.inner) {
                observer(json);
            }
        }
    }
}

impl<S: State> std::ops::Deref for StateGuard<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S: State> std::ops::DerefMut for StateGuard<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

fn segments(path: &str) -> Result<Vec<&str>, StateError> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() > MAX_SEGMENTS {
        return Err(StateError::PathTooLong);
    }
    Ok(parts)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn lookup<'v>(root: &'v Value, path: &str) -> Result<&'v Value, StateError> {
    if path.is_empty() {
        return Ok(root);
    }
    let mut current = root;
    for segment in segments(path)? {
        let next = match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        current = next.ok_or_else(|| StateError::PathNotFound { path: path.to_owned() })?;
    }
    Ok(current)
}

fn lookup_mut<'v>(root: &'v mut Value, path: &str) -> Result<&'v mut Value, StateError> {
    let parts = segments(path)?;
    let mut current = root;
    for (depth, segment) in parts.iter().enumerate() {
        if current.is_null() {
            *current = Value::Object(Map::new());
        }
        let here = || parts[..=depth].join(".");
        current = match current {
            Value::Object(map) => map.entry(segment.to_string()).or_insert(Value::Null),
            Value::Array(items) => {
                let index = segment.parse::<usize>().ok().filter(|i| *i < items.len());
                match index {
                    Some(i) => &mut items[i],
                    None => return Err(StateError::PathNotFound { path: here() }),
                }
            }
            other => {
                return Err(StateError::NotAContainer {
                    path: here(),
                    kind: kind(other),
                })
            }
        };
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Counter {
        count: u32,
        tags: Vec<String>,
    }

    #[tokio::test]
    async fn typed_get_set_edit() {
        let store = StateStore::default_of::<Counter>();
        store.edit(|c: &mut Counter| c.count += 2).await.unwrap();
        assert_eq!(store.get::<Counter>().await.unwrap().count, 2);
        store
            .set(Counter {
                count: 7,
                tags: vec!["a".into()],
            })
            .await
            .unwrap();
        let mut guard = store.lock::<Counter>().await.unwrap();
        guard.count += 1;
        drop(guard);
        assert_eq!(store.get::<Counter>().await.unwrap().count, 8);
        let err = store.get::<JsonState>().await.unwrap_err();
        assert!(err.to_string().contains("Counter"), "{err}");
    }

    #[tokio::test]
    async fn paths_on_typed_and_untyped_state() {
        let store = StateStore::default_of::<Counter>();
        store.set_path("count", 5).await.unwrap();
        assert_eq!(store.get_path_as::<u32>("count").await.unwrap(), 5);
        assert!(
            store.set_path("count", "five").await.is_err(),
            "must still decode as Counter"
        );
        assert_eq!(
            store.get::<Counter>().await.unwrap().count,
            5,
            "a failed set changes nothing"
        );
        assert!(matches!(
            store.get_path("missing").await,
            Err(StateError::PathNotFound { .. })
        ));

        let json = StateStore::json();
        json.set_path("user.name", "ada").await.unwrap();
        json.set_path("user.langs", ["rust", "py"]).await.unwrap();
        assert_eq!(json.get_path_as::<String>("user.langs.1").await.unwrap(), "py");
        assert!(matches!(json.set_path("", 1).await, Err(StateError::EmptyPath)));
        assert!(matches!(
            json.set_path("user.name.first", 1).await,
            Err(StateError::NotAContainer { kind: "string", .. })
        ));
    }
}
