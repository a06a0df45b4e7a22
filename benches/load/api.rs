//! Set-up calls to the app's contract (`/api/…`, `/metrics`) through reqwest:
//! accounts, tasks, task views and the provider-call counter.

use std::net::SocketAddr;

use serde_json::Value;

/// Whether a task view is not finished yet (queued or processing).
pub fn unfinished(view: &Value) -> bool {
    matches!(view["status"].as_str(), Some("queued" | "processing"))
}

/// A signed-in account on one server.
#[derive(Clone)]
pub struct Session {
    pub base: String,
    /// `darkroom_session=…`, ready for a `Cookie` header.
    pub cookie: String,
    client: reqwest::Client,
}

/// Signs up `email` (password fixed) and keeps the session cookie.
pub async fn sign_up(addr: SocketAddr, email: &str) -> Session {
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/sign_up"))
        .form(&[("email", email), ("password", "bench-password-123")])
        .send()
        .await
        .expect("sign_up");
    assert!(res.status().is_success(), "sign_up answered {}", res.status());
    let cookie = res
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("darkroom_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    Session { base, cookie, client }
}

impl Session {
    async fn post(&self, endpoint: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let res = self
            .client
            .post(format!("{}/api/{endpoint}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        answer(endpoint, res).await
    }

    /// Starts a generation; the new task's id.
    pub async fn generate(&self, prompt: &str) -> String {
        self.generate_with(prompt, &[]).await
    }

    /// Starts a generation; the task id, or the refusal.
    pub async fn try_generate(&self, prompt: &str) -> Result<String, String> {
        let v = self.post("generate_image", &[("prompt", prompt)]).await?;
        v["task_id"].as_str().map(str::to_owned).ok_or_else(|| format!("no task_id in {v}"))
    }

    /// Submits `prompt` with model inputs (`num_outputs`, …); the task id.
    pub async fn generate_with(&self, prompt: &str, inputs: &[(&str, &str)]) -> String {
        let mut form = vec![("prompt", prompt)];
        form.extend_from_slice(inputs);
        let v = self.post("generate_image", &form).await.expect("generate_image");
        v["task_id"].as_str().expect("task_id").to_owned()
    }

    /// One status poll (this may advance the task, as a browser's poll does).
    pub async fn check(&self, task_id: &str) -> Result<Value, String> {
        self.post("check_image_status", &[("task_id", task_id)]).await
    }

    /// One batch poll (`/api/check_image_statuses`), as a history page does.
    pub async fn check_many(&self, task_ids: &[String]) -> Result<Value, String> {
        let keys: Vec<String> = (0..task_ids.len()).map(|i| format!("task_ids[{i}]")).collect();
        let form: Vec<(&str, &str)> =
            keys.iter().map(String::as_str).zip(task_ids.iter().map(String::as_str)).collect();
        self.post("check_image_statuses", &form).await
    }

    /// Polls until the task is no longer processing (bounded).
    pub async fn wait_finished(&self, task_id: &str, every: std::time::Duration, tries: u32) -> Value {
        for _ in 0..tries {
            if let Ok(v) = self.check(task_id).await
                && !unfinished(&v)
            {
                return v;
            }
            tokio::time::sleep(every).await;
        }
        panic!("task {task_id} still processing after {tries} polls");
    }

    /// Shares a completed task; its page's path (`/s/…`).
    pub async fn share(&self, task_id: &str) -> String {
        let v = self.post("share_image", &[("task_id", task_id)]).await.expect("share_image");
        v["url"].as_str().expect("url").to_owned()
    }

    /// The first history page (read from the database, advances nothing).
    pub async fn history(&self) -> Value {
        self.post("list_history", &[]).await.expect("list_history")
    }
}

/// The sum of `darkroom_provider_calls_total{call="get",…}` over outcomes.
pub async fn provider_gets(addr: SocketAddr) -> f64 {
    let res = reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics");
    assert!(res.status().is_success(), "GET /metrics answered {}: is the binary older than /metrics?", res.status());
    let text = res.text().await.expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with("darkroom_provider_calls_total{") && l.contains("call=\"get\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The server's `darkroom_queue_length`: generations stored `queued`,
/// waiting for the provider's budget (or for the dispatcher).
pub async fn queue_length(addr: SocketAddr) -> f64 {
    let text =
        reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics").text().await.expect("metrics");
    text.lines().find_map(|l| l.strip_prefix("darkroom_queue_length ")?.parse().ok()).unwrap_or(0.0)
}

/// What the server's simulator served since it started (`GET /sim/_stats`):
/// counted at the provider, so it is what the provider's limits see.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimStats {
    pub creates: f64,
    /// Every other API call: gets, lists and cancels.
    pub others: f64,
    pub gets: f64,
    /// Calls answered 429.
    pub throttled: f64,
    /// Webhook events delivered, attempts retried (refused or unanswered),
    /// events given up.
    pub hooks: f64,
    pub hook_retries: f64,
    pub hooks_given_up: f64,
}

pub async fn sim_stats(addr: SocketAddr) -> SimStats {
    let v: Value = reqwest::get(format!("http://{addr}/sim/_stats"))
        .await
        .expect("GET /sim/_stats")
        .json()
        .await
        .expect("stats JSON");
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    SimStats {
        creates: n("creates"),
        others: n("gets") + n("lists") + n("cancels"),
        gets: n("gets"),
        throttled: n("throttled"),
        hooks: v["webhooks"]["delivered"].as_f64().unwrap_or(0.0),
        hook_retries: v["webhooks"]["retried"].as_f64().unwrap_or(0.0),
        hooks_given_up: v["webhooks"]["given_up"].as_f64().unwrap_or(0.0),
    }
}

/// When each of the newest predictions ended, by prompt: epoch ms of
/// `completed_at` for the finished ones among the first page of each
/// instance's simulator's list (`GET /sim/v1/predictions`, newest first, as
/// Replicate lists an account's predictions). One list call per instance,
/// on the simulator's budget of other calls.
pub async fn prediction_ends(addrs: &[SocketAddr], token: &str) -> std::collections::HashMap<String, f64> {
    let client = reqwest::Client::new();
    let mut ends = std::collections::HashMap::new();
    for addr in addrs {
        let v: Value = client
            .get(format!("http://{addr}/sim/v1/predictions"))
            .bearer_auth(token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("GET /sim/v1/predictions")
            .json()
            .await
            .expect("list JSON");
        for p in v["results"].as_array().into_iter().flatten() {
            let (Some(prompt), Some(at)) = (p["input"]["prompt"].as_str(), p["completed_at"].as_str()) else {
                continue;
            };
            let at = humantime::parse_rfc3339(at).expect("completed_at is RFC 3339");
            let ms = at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64() * 1000.0;
            ends.insert(prompt.to_owned(), ms);
        }
    }
    ends
}

/// [`sim_stats`] summed over several instances' simulators (one provider
/// account seen from each instance).
pub async fn sim_stats_of(addrs: &[SocketAddr]) -> SimStats {
    let mut sum = SimStats::default();
    for addr in addrs {
        let s = sim_stats(*addr).await;
        sum = SimStats {
            creates: sum.creates + s.creates,
            others: sum.others + s.others,
            gets: sum.gets + s.gets,
            throttled: sum.throttled + s.throttled,
            hooks: sum.hooks + s.hooks,
            hook_retries: sum.hook_retries + s.hook_retries,
            hooks_given_up: sum.hooks_given_up + s.hooks_given_up,
        };
    }
    sum
}

impl std::ops::Sub for SimStats {
    type Output = Self;

    fn sub(self, before: Self) -> Self {
        Self {
            creates: self.creates - before.creates,
            others: self.others - before.others,
            gets: self.gets - before.gets,
            throttled: self.throttled - before.throttled,
            hooks: self.hooks - before.hooks,
            hook_retries: self.hook_retries - before.hook_retries,
            hooks_given_up: self.hooks_given_up - before.hooks_given_up,
        }
    }
}

impl Session {
    /// Uploads an image to start from (`/api/upload_image`); its answer.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<Value, String> {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("photo.jpg")
            .mime_str("image/jpeg")
            .map_err(|e| e.to_string())?;
        let res = self
            .client
            .post(format!("{}/api/upload_image", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        answer("upload_image", res).await
    }
}

/// A response's JSON body, or what was wrong with it.
async fn answer(endpoint: &str, res: reqwest::Response) -> Result<Value, String> {
    let status = res.status();
    let body = res.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{endpoint}: {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{endpoint}: {e}: {body}"))
}

/// The account's balance (`/api/me`).
impl Session {
    pub async fn credits(&self) -> i64 {
        self.post("me", &[]).await.expect("me")["credits"].as_i64().expect("credits")
    }
}
