//! A realistic workflow: a document pipeline. Split a document into chunks,
//! summarise them with concurrent (simulated) LLM calls, collect the
//! summaries into a draft, ask a person to approve it, revise on feedback.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stepwise::retry::RetryPolicy;
use stepwise::{
    workflow, Context, Event, EventUnion, HumanResponseEvent, InputRequiredEvent, StartEvent, StepError, StopEvent,
    WaitFor,
};

/// A piece of the document.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct Chunk {
    /// Position in the document.
    pub index: usize,
    /// How many chunks there are.
    pub total: usize,
    /// The text.
    pub text: String,
}

/// A chunk's summary.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct ChunkSummary {
    /// Position of the chunk.
    pub index: usize,
    /// How many chunks there are.
    pub total: usize,
    /// The summary.
    pub summary: String,
}

/// A draft of the whole summary.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct Draft {
    /// 1 for the first draft.
    pub version: u32,
    /// The text.
    pub text: String,
}

/// The reviewer asked for changes.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct Revise {
    /// The draft to change.
    pub draft: Draft,
    /// What the reviewer said.
    pub feedback: String,
}

/// Streamed while the pipeline works.
#[derive(Clone, Debug, Serialize, Deserialize, Event)]
pub struct Progress {
    /// What happened.
    pub message: String,
}

/// What a review leads to.
#[derive(Clone, Debug, EventUnion)]
pub enum ReviewOutcome {
    /// Approved: the run is done.
    Done(StopEvent),
    /// Changes requested.
    Revise(Revise),
}

/// The pipeline's run state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PipelineState {
    /// Chunks in the document.
    pub chunks: usize,
    /// LLM calls made (including retried ones).
    pub llm_calls: u32,
    /// Revisions asked for.
    pub revisions: u32,
}

/// A stand-in for an LLM: latency, and optionally a first call that fails.
#[derive(Clone, Debug)]
pub struct SimulatedLlm {
    /// Shortest call.
    pub min_latency: Duration,
    /// Longest call.
    pub max_latency: Duration,
    /// The first call for this chunk index fails (to show retries).
    pub flaky_chunk: Option<usize>,
}

impl SimulatedLlm {
    fn latency(&self, index: usize) -> Duration {
        let span = self.max_latency.saturating_sub(self.min_latency);
        // Deterministic per chunk, so tests and the demo behave the same.
        let fraction = ((index * 7919) % 100) as f64 / 100.0;
        self.min_latency + span.mul_f64(fraction)
    }
}

/// The sample document the demo summarises when no `text` is given.
pub const SAMPLE_DOCUMENT: &str = "Workflows describe an application as steps triggered by events.\n\n\
Each step runs when an event it accepts arrives and may emit new events.\n\n\
Steps run concurrently, limited per step by a number of workers.\n\n\
Fan-in collects several events before a step continues.\n\n\
A journal makes every run survive a crash of its process.";

/// The document pipeline.
pub struct DocumentPipeline {
    /// The LLM stand-in.
    pub llm: SimulatedLlm,
}

impl Default for DocumentPipeline {
    fn default() -> Self {
        DocumentPipeline {
            llm: SimulatedLlm {
                min_latency: Duration::from_millis(80),
                max_latency: Duration::from_millis(400),
                flaky_chunk: Some(1),
            },
        }
    }
}

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Nothing to summarise.
    #[error("the document is empty")]
    EmptyDocument,
    /// The simulated LLM failed.
    #[error("LLM call for chunk {0} timed out")]
    LlmTimeout(usize),
}

/// Splits a document on blank lines.
pub fn split_document(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits a document, summarises the chunks with concurrent LLM calls, drafts
/// a summary and asks a person to approve it.
#[workflow(name = "document_pipeline", state = PipelineState)]
impl DocumentPipeline {
    /// Splits the document (`text`, or a sample) into chunks.
    #[step]
    async fn split(&self, ctx: &Context, ev: StartEvent) -> Result<Vec<Chunk>, StepError> {
        let text: String = ev.get_or("text", SAMPLE_DOCUMENT.to_owned()).map_err(StepError::new)?;
        let parts = split_document(&text);
        if parts.is_empty() {
            return Err(StepError::new(PipelineError::EmptyDocument));
        }
        let total = parts.len();
        ctx.state()
            .edit(|s: &mut PipelineState| s.chunks = total)
            .await
            .map_err(StepError::new)?;
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(index, text)| Chunk { index, total, text })
            .collect())
    }

    /// Summarises one chunk with a (simulated) LLM call; retried on failure.
    #[step(num_workers = 4, retry = RetryPolicy::fixed(3, Duration::from_millis(50)))]
    async fn summarize(&self, ctx: &Context, ev: Chunk) -> Result<ChunkSummary, StepError> {
        ctx.state()
            .edit(|s: &mut PipelineState| s.llm_calls += 1)
            .await
            .map_err(StepError::new)?;
        tokio::time::sleep(self.llm.latency(ev.index)).await;
        if self.llm.flaky_chunk == Some(ev.index) && ctx.retry_info().attempt == 1 {
            return Err(StepError::new(PipelineError::LlmTimeout(ev.index)));
        }
        let words: Vec<&str> = ev.text.split_whitespace().take(6).collect();
        ctx.write_event_to_stream(Progress {
            message: format!("summarised chunk {} of {}", ev.index + 1, ev.total),
        });
        Ok(ChunkSummary {
            index: ev.index,
            total: ev.total,
            summary: format!("{}…", words.join(" ")),
        })
    }

    /// Waits for every summary, then drafts the result in document order.
    #[step]
    async fn combine(&self, ctx: &Context, ev: ChunkSummary) -> Option<Draft> {
        let mut summaries = ctx.collect_n(&ev, ev.total)?;
        summaries.sort_by_key(|s| s.index);
        let text = summaries
            .iter()
            .map(|s| format!("- {}", s.summary))
            .collect::<Vec<_>>()
            .join("\n");
        Some(Draft { version: 1, text })
    }

    /// Asks a person to approve the draft ("yes"), or to say what to change.
    #[step(emits = [InputRequiredEvent], waits_for = [HumanResponseEvent])]
    async fn review(&self, ctx: &Context, ev: Draft) -> Result<ReviewOutcome, StepError> {
        let question = InputRequiredEvent {
            prompt: format!("Approve draft v{}? (yes, or what to change)", ev.version),
            data: serde_json::json!({ "draft": ev.text }),
        };
        let answer = ctx
            .wait_for_event(
                WaitFor::<HumanResponseEvent>::new()
                    .id(format!("review-v{}", ev.version))
                    .publish(question),
            )
            .await
            .map_err(StepError::new)?;
        let reply = answer.response.trim().to_lowercase();
        if matches!(reply.as_str(), "yes" | "y" | "approve" | "ok") {
            return Ok(ReviewOutcome::Done(StopEvent::new(
                serde_json::json!({ "version": ev.version, "summary": ev.text }),
            )));
        }
        ctx.state()
            .edit(|s: &mut PipelineState| s.revisions += 1)
            .await
            .map_err(StepError::new)?;
        Ok(ReviewOutcome::Revise(Revise {
            draft: ev,
            feedback: answer.response,
        }))
    }

    /// Revises the draft with the reviewer's feedback.
    #[step]
    async fn revise(&self, ev: Revise) -> Draft {
        Draft {
            version: ev.draft.version + 1,
            text: format!("{}\n(revised: {})", ev.draft.text, ev.feedback.trim()),
        }
    }
}
