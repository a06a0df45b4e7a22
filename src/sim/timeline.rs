//! Where a simulated prediction is at a given instant, computed from its id
//! alone (plus a remembered cancel), and how it looks as Replicate's JSON.
//!
//! A prediction spends the first tenth of its duration `starting`, then
//! `processing` with tqdm-style logs growing over 30 steps (after a line
//! saying what it does: the seed, and the input image it starts from or
//! upscales), then ends
//! `succeeded` (or `failed` for `#fail`); a cancel, or `Cancel-After`,
//! stops it earlier as `canceled`.

use serde_json::{Value, json};

use super::{Sim, directive::Directives, id::Ticket, render};

/// Replicate's timestamps: RFC 3339 with microseconds.
pub(super) fn rfc3339(ms: u64) -> String {
    crate::server::clock::rfc3339_micros(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Denoising steps printed in the logs.
const STEPS: u64 = 30;
/// The `error` of a `#fail` prediction.
pub(super) const FAIL_MESSAGE: &str =
    "The model crashed while generating the image (simulated by the #fail directive).";

/// A status as the simulator computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// True once the status can no longer change.
    pub(super) fn is_terminal(self) -> bool {
        !matches!(self, Self::Starting | Self::Processing)
    }
}

/// A prediction at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub status: Status,
    pub started_ms: Option<u64>,
    pub completed_ms: Option<u64>,
    /// Time the model has run so far (for the logs).
    pub ran_ms: u64,
    /// Time the model runs in total when not stopped early.
    pub run_ms: u64,
}

/// Computes the state at `now_ms`. `canceled_at_ms` is a cancel this
/// instance remembers; one at or after completion has no effect.
pub(super) fn state_at(ticket: &Ticket, canceled_at_ms: Option<u64>, now_ms: u64) -> State {
    let created = ticket.created_ms;
    let duration = u64::from(ticket.duration_ms);
    let start = created + duration / 10;
    let done = created + duration;
    let cancel_after = (ticket.cancel_after_ms > 0).then(|| created + u64::from(ticket.cancel_after_ms));
    let cancel = [canceled_at_ms, cancel_after].into_iter().flatten().min().filter(|&at| at < done);
    let now = now_ms.max(created);
    let run_ms = done - start;
    let at = |status, started: bool, completed: Option<u64>, until: u64| State {
        status,
        started_ms: started.then_some(start),
        completed_ms: completed,
        ran_ms: until.saturating_sub(start),
        run_ms,
    };
    match cancel {
        Some(stop) if now >= stop => at(Status::Canceled, stop >= start, Some(stop), stop),
        _ if now >= done => {
            let status = if Directives::parse(&ticket.prompt).fail { Status::Failed } else { Status::Succeeded };
            at(status, true, Some(done), done)
        }
        _ if now >= start => at(Status::Processing, true, None, now),
        _ => at(Status::Starting, false, None, now),
    }
}

/// The prediction as Replicate's JSON at `now_ms`.
pub(super) fn prediction_json(sim: &Sim, id: &str, ticket: &Ticket, state: &State, now_ms: u64) -> Value {
    let succeeded = state.status == Status::Succeeded;
    let removed = succeeded && output_expired(sim, state, now_ms);
    let error = (state.status == Status::Failed).then_some(FAIL_MESSAGE);
    let mut logs = logs(&intro(ticket), state);
    if let Some(error) = error {
        logs.push_str(&format!("RuntimeError: {error}\n"));
    }
    let predict_time = match (state.status.is_terminal(), state.started_ms) {
        (true, Some(_)) => json!({ "predict_time": state.ran_ms as f64 / 1000.0 }),
        _ => json!({}),
    };
    json!({
        "id": id,
        "model": ticket.model,
        "version": version_of(ticket),
        "input": ticket.inputs.echo(&ticket.prompt, |file| sim.upload_url(file)),
        "logs": logs,
        "output": succeeded.then(|| output_urls(sim, id, ticket)),
        "data_removed": removed,
        "error": error,
        "status": state.status.as_str(),
        "source": "api",
        "created_at": rfc3339(ticket.created_ms),
        "started_at": state.started_ms.map(rfc3339),
        "completed_at": state.completed_ms.map(rfc3339),
        "urls": {
            "get": sim.api_url(&format!("predictions/{id}")),
            "cancel": sim.api_url(&format!("predictions/{id}/cancel")),
        },
        "metrics": predict_time,
    })
}

/// A succeeded prediction's `output`: always a list, one URL per image.
fn output_urls(sim: &Sim, id: &str, ticket: &Ticket) -> Vec<String> {
    (0..ticket.inputs.outputs()).map(|index| sim.file_url(id, index)).collect()
}

/// True once a succeeded prediction's output is past its lifetime.
pub(super) fn output_expired(sim: &Sim, state: &State, now_ms: u64) -> bool {
    let ttl = u64::try_from(sim.cfg.output_ttl.as_millis()).unwrap_or(u64::MAX);
    state.completed_ms.is_some_and(|done| now_ms >= done.saturating_add(ttl))
}

/// The version asked for, or a stable made-up version id of the model.
fn version_of(ticket: &Ticket) -> String {
    if ticket.version.is_empty() { render::hex_digest(ticket.model.as_bytes()) } else { ticket.version.clone() }
}

/// What the model prints first: an upscaler what it upscales; a diffusion
/// model its seed, and the image it starts from if any.
fn intro(ticket: &Ticket) -> String {
    let inputs = &ticket.inputs;
    if let Some(upscale) = inputs.upscale() {
        let ((width, height), scale) = (upscale.from, upscale.scale);
        return format!("Upscaling {width}x{height} by {scale}\n");
    }
    let mut intro = format!("Using seed: {}\n", inputs.seed.value());
    if let Some(image) = &inputs.image {
        let (width, height, strength) = (image.width, image.height, inputs.strength());
        intro.push_str(&format!("Image to image from {width}x{height}, prompt strength {strength}\n"));
    }
    intro
}

/// What the model prints: its `intro` once it started, then a tqdm bar
/// redrawn with `\r` after every step, and a newline once it finishes.
pub(super) fn logs(intro: &str, state: &State) -> String {
    let Some(steps_done) = steps_done(state) else { return String::new() };
    let step_ms = (state.run_ms / STEPS).max(1);
    let lines: Vec<String> = (0..=steps_done).map(|n| tqdm_line(n, step_ms)).collect();
    let mut logs = format!("{intro}{}", lines.join("\r"));
    if steps_done == STEPS {
        logs.push('\n');
    }
    logs
}

/// The model's steps done once it started: the logs (for a given ticket)
/// change when, and only when, this does.
pub(super) fn steps_done(state: &State) -> Option<u64> {
    state.started_ms?;
    let step_ms = (state.run_ms / STEPS).max(1);
    Some((state.ran_ms / step_ms).min(STEPS))
}

/// ` 45%|████▌     | 14/30 [00:03<00:04,  4.10it/s]`
fn tqdm_line(n: u64, step_ms: u64) -> String {
    const PARTIAL: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let percent = n * 100 / STEPS;
    let eighths = n * 80 / STEPS;
    let mut bar: String = "█".repeat((eighths / 8) as usize);
    if !eighths.is_multiple_of(8) {
        bar.push(PARTIAL[(eighths % 8) as usize]);
    }
    let bar = format!("{bar:<10}");
    if n == 0 {
        return format!("{percent:>3}%|{bar}| 0/{STEPS} [00:00<?, ?it/s]");
    }
    let per_sec = 1000.0 / step_ms as f64;
    let rate = if per_sec >= 1.0 { format!("{per_sec:5.2}it/s") } else { format!("{:5.2}s/it", 1.0 / per_sec) };
    let elapsed = clock_text(n * step_ms);
    let remaining = clock_text((STEPS - n) * step_ms);
    format!("{percent:>3}%|{bar}| {n}/{STEPS} [{elapsed}<{remaining}, {rate}]")
}

fn clock_text(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::inputs::{Image, Inputs, Number, SCALE_RANGE, Seed};

    fn ticket(prompt: &str, cancel_after_ms: u32) -> Ticket {
        Ticket {
            created_ms: 1_000_000,
            duration_ms: 10_000,
            cancel_after_ms,
            nonce: [0; 4],
            model: "a/b".into(),
            version: String::new(),
            prompt: prompt.into(),
            inputs: Inputs::from_prompt(prompt),
        }
    }

    #[test]
    fn a_prediction_starts_processes_then_succeeds() {
        let t = ticket("a cat", 0);
        let status = |at: u64| state_at(&t, None, 1_000_000 + at).status;
        assert_eq!(status(0), Status::Starting);
        assert_eq!(status(999), Status::Starting);
        assert_eq!(status(1_000), Status::Processing);
        assert_eq!(status(9_999), Status::Processing);
        assert_eq!(status(10_000), Status::Succeeded);
        assert_eq!(state_at(&t, None, 0).status, Status::Starting, "clock skew");
        let done = state_at(&t, None, 2_000_000);
        assert_eq!(done.completed_ms, Some(1_010_000));
        assert_eq!(done.ran_ms, 9_000);
    }

    #[test]
    fn fail_cancel_and_cancel_after_end_it_differently() {
        let failing = ticket("a cat #fail", 0);
        assert_eq!(state_at(&failing, None, 1_010_000).status, Status::Failed);
        let t = ticket("a cat", 0);
        let canceled = state_at(&t, Some(1_005_000), 1_020_000);
        assert_eq!(canceled.status, Status::Canceled);
        assert_eq!(canceled.completed_ms, Some(1_005_000));
        assert_eq!(state_at(&t, Some(1_005_000), 1_004_000).status, Status::Processing);
        let late = state_at(&t, Some(1_010_000), 1_020_000);
        assert_eq!(late.status, Status::Succeeded, "a cancel after completion is void");
        let early = state_at(&t, Some(1_000_500), 1_020_000);
        assert_eq!((early.status, early.started_ms), (Status::Canceled, None));
        let deadline = state_at(&ticket("a cat", 4_000), None, 1_020_000);
        assert_eq!(deadline.completed_ms, Some(1_004_000));
        assert_eq!(deadline.status, Status::Canceled);
    }

    #[test]
    fn logs_grow_like_tqdm_and_end_at_100_percent() {
        let t =
            Ticket { inputs: Inputs { seed: Seed::Given(42), ..Inputs::from_prompt("a cat") }, ..ticket("a cat", 0) };
        let at = |ms: u64| logs(&intro(&t), &state_at(&t, None, 1_000_000 + ms));
        assert_eq!(at(500), "");
        let half = at(5_500);
        assert!(half.starts_with("Using seed: 42\n  0%|          | 0/30 [00:00<?, ?it/s]\r"));
        assert!(half.ends_with(" 50%|█████     | 15/30 [00:04<00:04,  3.33it/s]"), "{half}");
        let done = at(10_000);
        assert!(done.ends_with("100%|██████████| 30/30 [00:09<00:00,  3.33it/s]\n"), "{done}");
        assert_eq!(tqdm_line(14, 250), " 46%|████▋     | 14/30 [00:03<00:04,  4.00it/s]");
        assert_eq!(tqdm_line(1, 2_000), "  3%|▎         | 1/30 [00:02<00:58,  2.00s/it]");
    }

    #[test]
    fn the_logs_say_what_an_image_prediction_does() {
        let image = Image { file: "f".into(), width: 512, height: 384, grid: None };
        let guided = Ticket {
            inputs: Inputs { image: Some(image.clone()), seed: Seed::Given(7), ..Inputs::from_prompt("a cat") },
            ..ticket("a cat", 0)
        };
        assert_eq!(intro(&guided), "Using seed: 7\nImage to image from 512x384, prompt strength 0.8\n");
        let upscale = Ticket {
            inputs: Inputs { image: Some(image), scale: Number::within(4.0, SCALE_RANGE), ..Inputs::from_prompt("") },
            ..ticket("", 0)
        };
        assert_eq!(intro(&upscale), "Upscaling 512x384 by 4\n");
        let done = logs(&intro(&upscale), &state_at(&upscale, None, 2_000_000));
        assert!(
            done.starts_with("Upscaling 512x384 by 4\n  0%|") && done.ends_with("30/30 [00:09<00:00,  3.33it/s]\n")
        );
    }
}
