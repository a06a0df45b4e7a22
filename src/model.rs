//! What crosses the wire between the server and the browser (and any HTTP
//! client of `/api/…`): the shapes of the public contract.

use serde::{Deserialize, Serialize};

/// The signed-in person as `/api/me` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub email: String,
    pub credits: i64,
    /// The address took a link we sent.
    #[serde(default)]
    pub verified: bool,
    /// A sign-up that must verify its address first: nobody is signed in
    /// yet, and the person is to open the link we mailed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check_inbox: bool,
}

/// A task's state as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Charged, waiting for room in the provider's budget
    /// (`queue_position` says where).
    Queued,
    Processing,
    Completed,
    Failed,
    /// Stopped by its owner; the cost was refunded.
    Canceled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// One generation task, as polls and history answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub status: TaskStatus,
    pub prompt: String,
    pub model: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Milliseconds since the Unix epoch (for elapsed-time displays).
    pub created_ms: i64,
    /// When the task finished, in milliseconds since the Unix epoch.
    pub finished_ms: Option<i64>,
    /// `/images/{id}` once completed (the first image).
    pub image_url: Option<String>,
    /// Every image once completed: `/images/{id}/{n}`.
    #[serde(default)]
    pub image_urls: Vec<String>,
    /// Why it failed, in words for a person.
    pub error: Option<String>,
    /// Whether the cost was given back.
    pub refunded: bool,
    /// 0–100 while the provider reports progress.
    pub progress: Option<u8>,
    /// Credits this task cost.
    pub cost: i64,
    /// While unfinished: the server's advice for the next poll, in ms (the
    /// regular interval, shorter when the end is near, longer while the
    /// provider's budget allows no check sooner; never under 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_after_ms: Option<u64>,
    /// While queued: its place in our queue (1 = next); while processing,
    /// its place in the provider's own queue when the provider says (fal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// The seed asked for, or the one the provider reported; absent while
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// The aspect ratio asked for (the model's default when none was).
    #[serde(default)]
    pub aspect_ratio: Option<String>,
    /// Images asked for.
    #[serde(default = "one")]
    pub num_outputs: u8,
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// The owner's image the task started from, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_url: Option<String>,
    /// The task whose image this one upscales or varies, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_task_id: Option<String>,
    /// How many times larger an upscale makes its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u8>,
}

fn one() -> u8 {
    1
}

impl TaskView {
    /// A task known only by what the page submitted, shown until the first
    /// poll answers for it.
    pub fn pending(id: String, prompt: String, model: String, cost: i64, created_ms: i64) -> Self {
        Self {
            id,
            status: TaskStatus::Processing,
            prompt,
            model,
            created_at: String::new(),
            created_ms,
            finished_ms: None,
            image_url: None,
            image_urls: Vec::new(),
            error: None,
            refunded: false,
            progress: None,
            cost,
            poll_after_ms: None,
            queue_position: None,
            seed: None,
            aspect_ratio: None,
            num_outputs: 1,
            negative_prompt: None,
            input_url: None,
            source_task_id: None,
            scale: None,
        }
    }
}

impl TaskView {
    /// Every image's address (a view from before several images existed
    /// carries only the first).
    pub fn images(&self) -> Vec<String> {
        if self.image_urls.is_empty() { self.image_url.iter().cloned().collect() } else { self.image_urls.clone() }
    }

    /// The generator with this task's prompt, model and inputs filled in,
    /// and its seed too when `with_seed` ("Reuse seed").
    ///
    /// Percent-encoded, a long prompt in a non-Latin script takes up to 9
    /// bytes per character, and proxies commonly refuse request lines over
    /// 8 KB. A link that would pass [`MAX_REUSE_URL`] leaves out the
    /// negative prompt, then shortens the prompt (at a character boundary)
    /// until it fits: a link that opens beats one that fails.
    pub fn reuse_url(&self, with_seed: bool) -> String {
        let count = if self.num_outputs > 1 { self.num_outputs.to_string() } else { String::new() };
        let seed = self.seed.filter(|_| with_seed).map(|s| s.to_string()).unwrap_or_default();
        let url = |prompt: &str, negative: &str| {
            crate::paths::generator_url(&[
                ("prompt", prompt),
                ("model", &self.model),
                ("aspect_ratio", self.aspect_ratio.as_deref().unwrap_or("")),
                ("num_outputs", &count),
                ("seed", &seed),
                ("negative_prompt", negative),
            ])
        };
        let full = url(&self.prompt, self.negative_prompt.as_deref().unwrap_or(""));
        if full.len() <= MAX_REUSE_URL {
            return full;
        }
        let mut prompt = self.prompt.as_str();
        loop {
            let link = url(prompt, "");
            if link.len() <= MAX_REUSE_URL || prompt.is_empty() {
                return link;
            }
            // Cut an eighth of what is left (at least one character).
            let mut end = prompt.len() - (prompt.len() / 8).max(1);
            while !prompt.is_char_boundary(end) {
                end -= 1;
            }
            prompt = &prompt[..end];
        }
    }
}

/// Longest "Use this prompt" / "Reuse seed" link, in bytes: well under
/// the 8 KB request line common proxies accept.
pub const MAX_REUSE_URL: usize = 6 * 1024;

/// Width and height of an image of aspect ratio `ratio` (`W:H`) whose long
/// side is `long`; square when the ratio is unknown.
pub fn aspect_size(ratio: Option<&str>, long: u32) -> (u32, u32) {
    let parsed = ratio
        .and_then(|r| r.split_once(':'))
        .and_then(|(w, h)| Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?)))
        .filter(|&(w, h)| (1..=100).contains(&w) && (1..=100).contains(&h));
    let scale = |short: u64, of: u64| ((u64::from(long) * short + of / 2) / of) as u32;
    match parsed {
        Some((w, h)) if w >= h => (long, scale(h, w)),
        Some((w, h)) => (scale(w, h), long),
        None => (long, long),
    }
}

/// Answer of `/api/generate_image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub task_id: String,
}

/// A page of `/api/list_history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub items: Vec<TaskView>,
    pub next_cursor: Option<String>,
}

/// A model people may pick, with the inputs it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOption {
    /// `owner/name` (optionally `:version`), as sent to the provider.
    pub id: String,
    /// What the picker shows.
    pub name: String,
    /// Credits per image.
    pub credits: i64,
    /// Aspect ratios offered (`W:H`), the default first; empty when the
    /// model takes none.
    pub aspect_ratios: Vec<String>,
    /// Images one generation may ask for.
    pub max_outputs: u8,
    /// Whether it takes a seed.
    pub seed: bool,
    /// Whether it takes a negative prompt.
    pub negative_prompt: bool,
    /// Whether it takes an image to start from, and must have one.
    #[serde(default, skip_serializing_if = "ImageInputOption::is_none")]
    pub image: ImageInputOption,
}

/// Whether a model takes an image to start from ("image to image").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageInputOption {
    /// A prompt only.
    #[default]
    None,
    /// An image may be given.
    Optional,
    /// An image must be given.
    Required,
}

impl ImageInputOption {
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// Answer of `/api/upload_image`: an image to start from, checked and
/// stored (re-encoded, without its metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub upload_id: String,
    pub width: u32,
    pub height: u32,
}

/// What the generator page needs to render: models (each with its price
/// and inputs), pace and the task to resume after a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorInfo {
    pub models: Vec<ModelOption>,
    /// Credits per image of the default (first) model.
    pub cost: i64,
    pub poll_interval_ms: u64,
    pub resume: Option<TaskView>,
    /// Whether credits can be bought on this site (a refusal for lack of
    /// credits links to "Buy credits").
    #[serde(default)]
    pub can_buy: bool,
    /// Largest image file a person may start from, in bytes.
    #[serde(default)]
    pub max_input_bytes: u64,
    /// "Upscale" on a completed image, when this site offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale: Option<UpscaleOffer>,
    /// "Vary" on a completed image, when a model here starts from one.
    #[serde(default)]
    pub vary: Option<VaryOffer>,
    /// Accounts confirm their email before they generate.
    #[serde(default)]
    pub verification_required: bool,
}

/// What "Upscale" offers: the upscaler, its price per image and scales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpscaleOffer {
    pub model: String,
    pub credits: i64,
    /// The scales offered (2 for 2×); the first is the default.
    pub scales: Vec<u8>,
}

/// What "Vary" offers: the model a variation is made with (the first
/// here that starts from an image) and its price per image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaryOffer {
    pub model: String,
    pub credits: i64,
}

/// What moved a balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Grant,
    Charge,
    Refund,
    /// Credits bought.
    Purchase,
    /// Credits taken back for money refunded.
    PaymentRefund,
    /// Credits held back while a payment is disputed.
    Dispute,
    /// Credits given back when a dispute was won.
    DisputeWon,
}

/// One row of a person's credit ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The row's number (newer rows have larger ones).
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub kind: LedgerKind,
    /// Signed: grants, refunds, purchases and won disputes positive;
    /// charges, payment refunds and disputes negative.
    pub amount: i64,
    /// The task charged or refunded (it may since have been deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// What an operator wrote to the person with a grant (`--note`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In words: "Sign-up credits", "Image: <prompt>", "Refund: <prompt>",
    /// "Granted: <note>", "Image (deleted)".
    pub what: String,
    /// Whether the task still exists.
    pub task_exists: bool,
    /// The task's image, while it exists and completed (the page links it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
}

/// A page of `/api/list_ledger`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPage {
    pub items: Vec<LedgerEntry>,
    pub next_cursor: Option<String>,
}

/// A package of credits for sale (`/api/list_packages`): the browser
/// names the package, never a price or an amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditPackage {
    pub id: String,
    pub credits: i64,
    /// "5.00 USD".
    pub price: String,
}

/// Answer of `/api/buy_credits`: where to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub purchase_id: String,
    /// The checkout page.
    pub url: String,
}

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurchaseStatus {
    /// Not paid (yet): the checkout is open, or the payment settles later.
    Pending,
    Paid,
    /// Not paid and never will be (declined for good, expired).
    Failed,
    /// Paid, then refunded in full.
    Refunded,
}

/// One purchase as `/api/list_purchases` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub id: String,
    pub credits: i64,
    pub price: String,
    pub status: PurchaseStatus,
    /// RFC 3339, UTC.
    pub at: String,
}

/// Answer of `/api/share_image`: the public link, relative to the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLink {
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_view_has_the_contracts_json_shape() {
        let view = TaskView {
            id: "t".into(),
            status: TaskStatus::Completed,
            prompt: "a cat".into(),
            model: "a/b".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            created_ms: 0,
            finished_ms: Some(1),
            image_url: Some("/images/t".into()),
            image_urls: vec!["/images/t/0".into(), "/images/t/1".into()],
            error: None,
            refunded: false,
            progress: Some(100),
            cost: 10,
            poll_after_ms: None,
            queue_position: None,
            seed: Some(42),
            aspect_ratio: Some("16:9".into()),
            num_outputs: 2,
            negative_prompt: None,
            input_url: None,
            source_task_id: None,
            scale: None,
        };
        let json = serde_json::to_value(&view).unwrap();
        for field in [
            "id",
            "status",
            "prompt",
            "model",
            "created_at",
            "image_url",
            "image_urls",
            "error",
            "refunded",
            "progress",
            "seed",
            "aspect_ratio",
            "num_outputs",
        ] {
            assert!(json.get(field).is_some(), "{field} missing");
        }
        assert_eq!(json["status"], "completed");
        assert_eq!(serde_json::to_value(TaskStatus::Processing).unwrap(), "processing");
        assert_eq!(serde_json::to_value(TaskStatus::Failed).unwrap(), "failed");
        assert_eq!(serde_json::to_value(TaskStatus::Canceled).unwrap(), "canceled");
        // Only unfinished tasks carry the advice.
        assert!(json.get("poll_after_ms").is_none());
        assert!(json.get("queue_position").is_none(), "only queued tasks have a place in the queue");
        let waiting = TaskView { poll_after_ms: Some(1200), ..view.clone() };
        assert_eq!(serde_json::to_value(&waiting).unwrap()["poll_after_ms"], 1200);
        let queued = TaskView { status: TaskStatus::Queued, queue_position: Some(3), ..view };
        let json = serde_json::to_value(&queued).unwrap();
        assert_eq!((json["status"].as_str(), json["queue_position"].as_u64()), (Some("queued"), Some(3)));
        assert!(!TaskStatus::Queued.is_finished() && !TaskStatus::Processing.is_finished());
    }

    #[test]
    fn a_task_reopens_in_the_generator_with_its_inputs() {
        let mut view = TaskView::pending("t".into(), "a fox & a hen".into(), "a/b".into(), 30, 0);
        view.aspect_ratio = Some("16:9".into());
        view.num_outputs = 3;
        view.seed = Some(42);
        assert_eq!(
            view.reuse_url(false),
            "/?prompt=a%20fox%20%26%20a%20hen&model=a%2Fb&aspect_ratio=16%3A9&num_outputs=3"
        );
        assert!(view.reuse_url(true).ends_with("&num_outputs=3&seed=42"));
        view.image_url = Some("/images/t".into());
        assert_eq!(view.images(), ["/images/t"], "an older view's one image");
    }

    #[test]
    fn a_reuse_link_stays_short_enough_for_a_proxy() {
        // 2000 characters of a script that encodes to 9 bytes each.
        let long = "漢".repeat(2000);
        let mut view = TaskView::pending("t".into(), long.clone(), "a/b".into(), 10, 0);
        view.negative_prompt = Some("blur, ".repeat(300));
        view.seed = Some(7);
        let link = view.reuse_url(true);
        assert!(link.len() <= MAX_REUSE_URL, "{} bytes", link.len());
        assert!(link.starts_with("/?prompt=%E6%BC%A2"), "the prompt's start is kept");
        assert!(!link.contains("negative_prompt"), "dropped first");
        assert!(link.ends_with("&model=a%2Fb&seed=7"), "the inputs are kept: {}", &link[link.len() - 40..]);
        // A short prompt's negative prompt fits, and stays.
        view.prompt = "a fox".into();
        assert!(view.reuse_url(false).ends_with(&format!("negative_prompt={}", "blur%2C%20".repeat(300))));
    }

    #[test]
    fn image_sizes_follow_the_aspect_ratio() {
        assert_eq!(aspect_size(Some("16:9"), 768), (768, 432));
        assert_eq!(aspect_size(Some("9:16"), 768), (432, 768));
        assert_eq!(aspect_size(Some("4:3"), 768), (768, 576));
        assert_eq!(aspect_size(Some("1:1"), 512), (512, 512));
        assert_eq!(aspect_size(None, 512), (512, 512));
        assert_eq!(aspect_size(Some("0:0"), 512), (512, 512));
        assert_eq!(aspect_size(Some("wide"), 512), (512, 512));
    }

    #[test]
    fn errors_cross_the_wire_as_kind_and_message() {
        let e = crate::error::AppError::invalid("prompt is empty");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json, serde_json::json!({ "kind": "invalid", "message": "prompt is empty" }));
        assert_eq!(e.status(), 400);
    }
}
