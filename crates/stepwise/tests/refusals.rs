//! Bad input is refused with a clear error naming what is wrong — never
//! accepted silently, never a panic: run ids. (Database files:
//! `stepwise-sqlite`'s `tests/refusals.rs`.)

use stepwise::store::{JournalStore, MemoryStore, RunFilter};
use stepwise::{check_run_id, Journal, ResumeError, RunError, RunOptions, StartEvent, StopEvent, Workflow};

fn echo() -> Workflow {
    Workflow::builder("echo")
        .step("echo", |_ev: StartEvent| async { StopEvent::new("done") })
        .build()
        .unwrap()
}

fn bad_ids() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        ("   ".into(), "blank"),
        ("\t \u{a0}".into(), "blank"),
        ("a\nb".into(), "control character '\\n'"),
        ("line\r".into(), "control character '\\r'"),
        ("tab\there".into(), "control character '\\t'"),
        ("nul\0".into(), "control character '\\0'"),
        ("x".repeat(256), "256 bytes long"),
        ("é".repeat(128), "256 bytes long"),
    ]
}

#[tokio::test]
async fn a_run_with_an_invalid_id_is_refused_and_nothing_is_journaled() {
    let wf = echo();
    let store = MemoryStore::new();
    let journal = Journal::new(store.clone());
    for (id, why) in bad_ids() {
        for journaled in [false, true] {
            let mut options = RunOptions::new().run_id(id.clone());
            if journaled {
                options = options.journal(&journal);
            }
            let error = wf.run_with(StartEvent::new(), options).await.unwrap_err();
            let RunError::InvalidRunId { run_id, reason } = &error else {
                panic!("{id:?}: expected InvalidRunId, got {error:?}");
            };
            assert_eq!(run_id, &id);
            assert!(reason.contains(why), "{id:?}: {reason}");
            let text = error.to_string();
            assert!(text.starts_with("run id "), "{text}");
            assert!(text.contains("is not valid"), "{text}");
            assert!(text.contains("use 1 to 255 bytes of printable text"), "{text}");
            assert!(
                !text.contains('\n') && !text.contains('\r'),
                "the message is one line: {text:?}"
            );
            assert!(text.len() < 300, "a long id is cut in the message: {text}");
        }
    }
    journal.flush().await.unwrap();
    let runs = store.runs(RunFilter::default()).await.unwrap();
    assert!(runs.is_empty(), "refused runs were journaled: {runs:?}");
}

#[tokio::test]
async fn ids_up_to_255_bytes_of_printable_text_are_accepted() {
    let wf = echo();
    let journal = Journal::new(MemoryStore::new());
    for id in ["a".to_owned(), " padded ".into(), "ünï-cødé/42".into(), "x".repeat(255)] {
        assert_eq!(check_run_id(&id), Ok(()));
        let handle = wf.run_with(
            StartEvent::new(),
            RunOptions::new().run_id(id.clone()).journal(&journal),
        );
        assert_eq!(handle.run_id(), id);
        assert_eq!(handle.await.unwrap().result, "done");
    }
}

#[tokio::test]
async fn resume_refuses_an_invalid_id() {
    let wf = echo();
    let journal = Journal::new(MemoryStore::new());
    for (id, why) in bad_ids() {
        let error = match wf.resume(&journal, &id).await {
            Err(error) => error,
            Ok(_) => panic!("{id:?} resumed"),
        };
        let ResumeError::InvalidRunId { run_id, reason } = &error else {
            panic!("{id:?}: expected InvalidRunId, got {error:?}");
        };
        assert_eq!(run_id, &id);
        assert!(reason.contains(why), "{id:?}: {reason}");
        assert!(error.to_string().contains("is not valid"), "{error}");
    }
}
