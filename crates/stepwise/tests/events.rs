//! Events: names and kinds, serde, the built-in start/stop events, `AnyEvent`,
//! and workflows with custom start and stop types.

mod common;

use std::collections::HashMap;
use std::error::Error as _;

use common::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stepwise::{
    AnyEvent, Event, EventKind, EventType, FieldError, StartEvent, StepStateChanged, StopEvent, UnhandledEvent,
    WorkflowBuilder, WorkflowCancelled, WorkflowFailed, WorkflowTimedOut,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, stepwise::Event)]
#[event(name = "orders.placed")]
struct OrderPlaced {
    id: u64,
    items: Vec<String>,
    note: Option<String>,
    prices: HashMap<String, f64>,
}

/// Same stable name as `Ping`, different Rust type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PingTwin(u32);
impl Event for PingTwin {
    const NAME: &'static str = "Ping";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, stepwise::Event)]
#[event(start)]
struct MyStart {
    numbers: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, stepwise::Event)]
#[event(stop)]
struct MyStop {
    total: u32,
    count: usize,
}

fn order() -> OrderPlaced {
    OrderPlaced {
        id: 42,
        items: vec!["tea".into(), "cake".into()],
        note: None,
        prices: HashMap::from([("tea".into(), 2.5), ("cake".into(), 4.0)]),
    }
}

#[test]
fn names_and_kinds() {
    assert_eq!(Ping::NAME, "Ping");
    assert_eq!(Ping::KIND, EventKind::Regular);
    assert_eq!(OrderPlaced::NAME, "orders.placed");
    assert_eq!(MyStart::KIND, EventKind::Start);
    assert_eq!(MyStop::KIND, EventKind::Stop);
    assert_eq!(AskHuman::KIND, EventKind::InputRequired);
    assert_eq!(HumanAnswer::KIND, EventKind::HumanResponse);

    assert_eq!((StartEvent::NAME, StartEvent::KIND), ("StartEvent", EventKind::Start));
    assert_eq!((StopEvent::NAME, StopEvent::KIND), ("StopEvent", EventKind::Stop));
    assert_eq!(WorkflowTimedOut::KIND, EventKind::Termination);
    assert_eq!(WorkflowCancelled::KIND, EventKind::Termination);
    assert_eq!(WorkflowFailed::KIND, EventKind::Termination);
    assert_eq!(StepStateChanged::KIND, EventKind::Internal);
    assert_eq!(UnhandledEvent::KIND, EventKind::Regular);
}

#[test]
fn event_type_describes_a_type_and_compares_by_type_not_name() {
    let ty = EventType::of::<OrderPlaced>();
    assert_eq!(ty.name(), "orders.placed");
    assert_eq!(ty.kind(), EventKind::Regular);
    assert_eq!(ty.type_id(), std::any::TypeId::of::<OrderPlaced>());
    assert_eq!(ty.to_string(), "orders.placed");
    assert_eq!(format!("{ty:?}"), "orders.placed");
    assert_eq!(EventType::of::<Ping>(), EventType::of::<Ping>());
    // Same stable name, different type: not the same event type.
    assert_eq!(EventType::of::<PingTwin>().name(), EventType::of::<Ping>().name());
    assert_ne!(EventType::of::<PingTwin>(), EventType::of::<Ping>());
}

#[test]
fn event_kind_serialises_in_snake_case() {
    assert_eq!(
        serde_json::to_value(EventKind::HumanResponse).unwrap(),
        json!("human_response")
    );
    assert_eq!(
        serde_json::to_value(EventKind::InputRequired).unwrap(),
        json!("input_required")
    );
    let kind: EventKind = serde_json::from_value(json!("termination")).unwrap();
    assert_eq!(kind, EventKind::Termination);
}

#[test]
fn user_events_round_trip_through_json() {
    let ev = order();
    let value = serde_json::to_value(&ev).unwrap();
    assert_eq!(value["id"], json!(42));
    assert_eq!(value["items"], json!(["tea", "cake"]));
    let back: OrderPlaced = serde_json::from_value(value).unwrap();
    assert_eq!(back, ev);

    let text = serde_json::to_string(&Ping(7)).unwrap();
    assert_eq!(serde_json::from_str::<Ping>(&text).unwrap(), Ping(7));
}

#[test]
fn start_event_fields_and_getters() {
    let ev = StartEvent::new()
        .with("topic", "rust")
        .with("limit", 3)
        .with("tags", vec!["a", "b"]);
    assert_eq!(ev.get::<String>("topic").unwrap(), "rust");
    assert_eq!(ev.get::<u32>("limit").unwrap(), 3);
    assert_eq!(ev.get::<Vec<String>>("tags").unwrap(), ["a", "b"]);
    assert_eq!(ev.raw("limit"), Some(&json!(3)));
    assert_eq!(ev.raw("nope"), None);
    assert_eq!(ev.fields().len(), 3);

    // get_or: the default only when absent; a present field must still have the right type.
    assert_eq!(ev.get_or("missing", 10u32).unwrap(), 10);
    assert_eq!(ev.get_or("limit", 10u32).unwrap(), 3);
    assert!(matches!(ev.get_or("topic", 10u32), Err(FieldError::WrongType { field, .. }) if field == "topic"));

    // `with` replaces an existing field.
    let ev = ev.with("limit", 5);
    assert_eq!(ev.get::<u32>("limit").unwrap(), 5);
}

#[test]
fn start_event_missing_field_error_names_the_field() {
    let ev = StartEvent::new().with("present", 1);
    let err = ev.get::<u32>("absent_field").unwrap_err();
    assert!(
        matches!(&err, FieldError::Missing { field } if field == "absent_field"),
        "{err:?}"
    );
    assert!(err.to_string().contains("absent_field"), "{err}");
}

#[test]
fn start_event_wrong_type_error_names_the_field_and_keeps_the_cause() {
    let ev = StartEvent::new().with("count", "three");
    let err = ev.get::<u32>("count").unwrap_err();
    assert!(
        matches!(&err, FieldError::WrongType { field, .. } if field == "count"),
        "{err:?}"
    );
    assert!(err.to_string().contains("count"), "{err}");
    assert!(err.source().is_some(), "the serde error is kept as the source");
}

#[test]
fn start_event_set_rejects_values_that_are_not_json() {
    // A map with non-string keys cannot be a JSON object.
    let not_json: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    let mut ev = StartEvent::new();
    let err = ev.set("grid", &not_json).unwrap_err();
    assert!(
        matches!(&err, FieldError::NotJson { field, .. } if field == "grid"),
        "{err:?}"
    );
    assert!(err.to_string().contains("grid"));
    assert_eq!(ev.raw("grid"), None, "a failed set stores nothing");
    ev.set("ok", 1).unwrap();
    assert_eq!(ev.get::<i32>("ok").unwrap(), 1);
    // The builder form stores null instead.
    let ev = StartEvent::new().with("grid", &not_json);
    assert_eq!(ev.raw("grid"), Some(&serde_json::Value::Null));
}

#[test]
fn start_event_serialises_as_a_plain_object() {
    let ev = StartEvent::new().with("topic", "rust").with("limit", 3);
    let value = serde_json::to_value(&ev).unwrap();
    assert_eq!(value, json!({"topic": "rust", "limit": 3}));
    let back: StartEvent = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(back, ev);
    assert_eq!(StartEvent::from_json(value).unwrap(), ev);
    assert!(StartEvent::from_json(json!([1, 2])).is_err());
    assert!(StartEvent::from_json(json!("text")).is_err());
    assert_eq!(serde_json::to_value(StartEvent::new()).unwrap(), json!({}));
}

#[test]
fn stop_event_result() {
    let stop = StopEvent::new("done");
    assert_eq!(stop.result, json!("done"));
    assert_eq!(stop.result_as::<String>().unwrap(), "done");
    assert!(stop.result_as::<u32>().is_err());

    let stop = StopEvent::new(json!({"n": [1, 2, 3]}));
    assert_eq!(stop.result_as::<HashMap<String, Vec<u8>>>().unwrap()["n"], [1, 2, 3]);

    assert_eq!(serde_json::to_value(StopEvent::new(5)).unwrap(), json!({"result": 5}));
    let back: StopEvent = serde_json::from_value(json!({"result": [true]})).unwrap();
    assert_eq!(back, StopEvent::new(vec![true]));
    // `result` defaults to null.
    let empty: StopEvent = serde_json::from_value(json!({})).unwrap();
    assert_eq!(empty.result, serde_json::Value::Null);
    assert_eq!(StopEvent::default(), empty);
}

#[test]
fn any_event_describes_and_downcasts() {
    let any = AnyEvent::new(order());
    assert_eq!(any.name(), "orders.placed");
    assert_eq!(any.kind(), EventKind::Regular);
    assert_eq!(any.event_type(), EventType::of::<OrderPlaced>());
    assert!(any.is::<OrderPlaced>());
    assert!(!any.is::<Ping>());
    assert!(!any.is_internal());
    assert_eq!(any.downcast_ref::<OrderPlaced>(), Some(&order()));
    assert_eq!(any.downcast_ref::<Ping>(), None);
    assert_eq!(format!("{:?}", AnyEvent::new(Ping(8))), "Ping(8)");

    let internal: AnyEvent = StepStateChanged {
        step: "s".into(),
        phase: stepwise::StepPhase::Running,
        worker: Some(0),
        input_event: "Ping".into(),
        output_events: vec![],
        error: None,
    }
    .into();
    assert!(internal.is_internal());
}

#[test]
fn any_event_downcast_gives_the_event_back_on_the_wrong_type() {
    let any = AnyEvent::new(Ping(3));
    let back = any.downcast::<Pong>().unwrap_err();
    assert_eq!(back.downcast_ref::<Ping>(), Some(&Ping(3)));
    assert_eq!(back.downcast::<Ping>().unwrap(), Ping(3));

    // A twin with the same name is still the wrong type.
    let any = AnyEvent::new(Ping(4));
    assert!(!any.is::<PingTwin>());
    assert!(any.downcast::<PingTwin>().is_err());
}

#[test]
fn any_event_downcast_of_a_shared_event_leaves_the_other_handle_intact() {
    let any = AnyEvent::new(Ping(5));
    let other = any.clone();
    assert!(any.ptr_eq(&other));
    assert_eq!(any.downcast::<Ping>().unwrap(), Ping(5));
    assert_eq!(other.downcast_ref::<Ping>(), Some(&Ping(5)));

    let deep = other.deep_clone();
    assert!(!deep.ptr_eq(&other));
    assert_eq!(deep.downcast_ref::<Ping>(), Some(&Ping(5)));
}

#[test]
fn any_event_json() {
    let any = AnyEvent::new(order());
    let fields = any.to_json().unwrap();
    assert_eq!(fields, serde_json::to_value(order()).unwrap());
    let tagged = serde_json::to_value(&any).unwrap();
    assert_eq!(tagged, json!({"type": "orders.placed", "value": fields}));

    let start: AnyEvent = StartEvent::new().with("a", 1).into();
    assert_eq!(
        serde_json::to_value(&start).unwrap(),
        json!({"type": "StartEvent", "value": {"a": 1}})
    );
    let stop: AnyEvent = StopEvent::new("x").into();
    assert_eq!(
        serde_json::to_string(&stop).unwrap(),
        r#"{"type":"StopEvent","value":{"result":"x"}}"#
    );
}

#[tokio::test(start_paused = true)]
async fn custom_start_and_stop_types() {
    let wf = WorkflowBuilder::<MyStart, MyStop>::new("sum")
        .step("sum", |ev: MyStart| async move {
            MyStop {
                total: ev.numbers.iter().sum(),
                count: ev.numbers.len(),
            }
        })
        .build()
        .unwrap();
    assert_eq!(wf.start_event(), EventType::of::<MyStart>());
    assert_eq!(wf.stop_event(), EventType::of::<MyStop>());
    assert_eq!(wf.name(), "sum");

    let handle = wf.run(MyStart {
        numbers: vec![1, 2, 3, 4],
    });
    let stream = handle.stream_events().unwrap();
    let stop: MyStop = settle(handle).await.unwrap();
    assert_eq!(stop, MyStop { total: 10, count: 4 });
    let events = drain(stream).await;
    assert_eq!(of_type::<MyStop>(&events), [MyStop { total: 10, count: 4 }]);
    assert_eq!(events.last().unwrap().name(), "MyStop");
}

#[tokio::test(start_paused = true)]
async fn custom_stop_type_with_the_default_start_event() {
    let wf = WorkflowBuilder::<StartEvent, MyStop>::new("count")
        .step("count", |ev: StartEvent| async move {
            MyStop {
                total: ev.get_or("total", 0).unwrap(),
                count: ev.fields().len(),
            }
        })
        .build()
        .unwrap();
    let stop = settle(wf.run(StartEvent::new().with("total", 9).with("x", 0)))
        .await
        .unwrap();
    assert_eq!(stop, MyStop { total: 9, count: 2 });
}
