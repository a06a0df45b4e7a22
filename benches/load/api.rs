//! Set-up calls to the app's contract (`/api/…`, `/metrics`) through reqwest:
//! accounts, tasks, task views and the provider-call counter.

use std::net::SocketAddr;

use serde_json::Value;

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
        let status = res.status();
        let body = res.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{endpoint}: {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{endpoint}: {e}: {body}"))
    }

    /// Starts a generation; the new task's id.
    pub async fn generate(&self, prompt: &str) -> String {
        self.generate_with(prompt, &[]).await
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

    /// Polls until the task is no longer processing (bounded).
    pub async fn wait_finished(&self, task_id: &str, every: std::time::Duration, tries: u32) -> Value {
        for _ in 0..tries {
            if let Ok(v) = self.check(task_id).await
                && v["status"] != "processing"
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
