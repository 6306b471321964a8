//! Following a run: progress from its event stream (a live status line on
//! a terminal, plain lines otherwise), answers to its input requests, and
//! its result.

use std::io::{BufRead, Write};
use std::time::Instant;

use serde_json::Value;
use stepwise::host::{answer_event, answer_types, bare_result, input_prompt, AnyWorkflow};
use stepwise::{AnyEvent, RunHandle, StepPhase, StepStateChanged, StreamExt, WorkflowIdle};

use crate::{failed, usage, Failure, EXIT_WAITING};

/// Follows one run to its end.
pub(crate) struct Follow<'a> {
    cli: &'a str,
    workflow: &'a dyn AnyWorkflow,
    journaled: bool,
    interactive: bool,
    answers: std::vec::IntoIter<String>,
    /// The latest input request's prompt (from the journal, when resuming).
    last_prompt: Option<String>,
}

impl<'a> Follow<'a> {
    pub(crate) fn new(
        cli: &'a str,
        workflow: &'a dyn AnyWorkflow,
        journaled: bool,
        interactive: bool,
        answers: Vec<String>,
        last_prompt: Option<String>,
    ) -> Self {
        Follow {
            cli,
            workflow,
            journaled,
            interactive,
            answers: answers.into_iter(),
            last_prompt,
        }
    }

    pub(crate) async fn follow(
        mut self,
        handle: RunHandle<AnyEvent>,
        out: &mut (dyn Write + Send),
        input: &mut (dyn BufRead + Send),
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let mut stream = handle.stream_events().map_err(|e| failed(e.to_string()))?;
        let (mut running, mut finished) = (0usize, 0usize);
        let mut status_shown = false;
        // An input request was seen (and answered) since the last idle notice:
        // that notice is about it. An idle run with no request seen waits for
        // one asked before this process (a resumed run).
        let mut asked_since_idle = false;
        let waits_for_people = !answer_types(self.workflow).is_empty();
        while let Some(event) = stream.next().await {
            let elapsed = started.elapsed().as_secs_f64();
            if let Some(change) = event.downcast_ref::<StepStateChanged>() {
                match change.phase {
                    StepPhase::Running => running += 1,
                    StepPhase::Finished => {
                        running = running.saturating_sub(1);
                        finished += 1;
                    }
                    StepPhase::Queued => {}
                }
                if let (StepPhase::Finished, Some(error)) = (change.phase, &change.error) {
                    if status_shown {
                        let _ = write!(out, "\r\x1b[K");
                        status_shown = false;
                    }
                    let _ = writeln!(out, "[{elapsed:7.2}s] step {} failed: {error}", change.step);
                }
                if self.interactive {
                    let phase = match change.phase {
                        StepPhase::Queued => "queued",
                        StepPhase::Running => "started",
                        StepPhase::Finished => "finished",
                    };
                    let _ = write!(
                        out,
                        "\r\x1b[K[{elapsed:7.2}s] {running} running, {finished} finished · {} {phase}",
                        change.step
                    );
                    let _ = out.flush();
                    status_shown = true;
                }
                continue;
            }
            if status_shown {
                let _ = write!(out, "\r\x1b[K");
                status_shown = false;
            }
            let json = event.to_json().unwrap_or(Value::Null);
            let _ = writeln!(out, "[{elapsed:7.2}s] {} {json}", event.name());
            let prompt = if let Some(prompt) = input_prompt(&event) {
                self.last_prompt = Some(prompt.clone());
                asked_since_idle = true;
                Some(prompt)
            } else if event.is::<WorkflowIdle>() {
                if std::mem::take(&mut asked_since_idle) || !waits_for_people {
                    None
                } else {
                    Some(self.last_prompt.clone().unwrap_or_else(|| "input required".into()))
                }
            } else {
                None
            };
            let Some(prompt) = prompt else { continue };
            let answer = match self.answers.next() {
                Some(answer) => answer,
                None => {
                    if self.interactive {
                        let _ = write!(out, "{prompt} > ");
                        let _ = out.flush();
                    }
                    let mut line = String::new();
                    match input.read_line(&mut line) {
                        Ok(n) if n > 0 => line.trim_end_matches(['\r', '\n']).to_owned(),
                        _ => return Err(self.no_answer(&handle, &prompt)),
                    }
                }
            };
            let _ = writeln!(out, "[{elapsed:7.2}s] answering: {answer}");
            let event = answer_event(self.workflow, &answer).map_err(|error| {
                handle.cancel();
                usage(error.to_string())
            })?;
            handle.send_any(event).map_err(|e| failed(e.to_string()))?;
        }
        if status_shown {
            let _ = write!(out, "\r\x1b[K");
        }
        match handle.await {
            Ok(stop) => {
                let value = stop.to_json().unwrap_or(Value::Null);
                let _ = writeln!(out, "result: {}", bare_result(&value));
                Ok(())
            }
            Err(error) => Err(failed(error.to_string())),
        }
    }

    /// No answer is available: a journaled run is left waiting (resumable); an
    /// unjournaled one is cancelled.
    fn no_answer(&self, handle: &RunHandle<AnyEvent>, prompt: &str) -> Failure {
        let run_id = handle.run_id();
        if self.journaled {
            Failure {
                code: EXIT_WAITING,
                message: format!(
                    "run {run_id} waits for an answer to \"{prompt}\" and none was given; it is saved unfinished: \
                     answer with `{} resume {run_id} --answer <text>`",
                    self.cli
                ),
            }
        } else {
            handle.cancel();
            usage(format!(
                "the run asks \"{prompt}\" but no answer was given (pass --answer <text>); it was cancelled"
            ))
        }
    }
}
