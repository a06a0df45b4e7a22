//! `spawn_app()`: one real Darkroom per test, on 127.0.0.1:0 with its own
//! temporary data dir (SQLite file and object folder).

use std::collections::HashMap;
use std::net::SocketAddr;

pub use darkroom::server::clock::Clock;
use darkroom::server::{self, config::Config, state::AppState};
use leptos::config::LeptosOptions;
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    _dir: tempfile::TempDir,
}

/// Settings every test app starts with (fast simulator, no reconciler
/// unless a test asks for it); `overrides` win.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(overrides, Clock::system()).await
}

/// An app on a tight budget of other calls (60 a minute published, 48 to
/// spend: one every 1.25 s) with ten long tasks (`#ms=600000`) of one
/// person in flight, checked every 2 s at most: what the tests of how the
/// budget is shared start from. Returns the app, that person's client and
/// the tasks' ids.
pub async fn ten_long_tasks_on_a_tight_budget(clock: Clock) -> (TestApp, reqwest::Client, Vec<String>) {
    let app = spawn_app_on(
        &[
            ("DARKROOM_PROVIDER_LIMITS", "other=60/min"),
            ("DARKROOM_PROVIDER_CHECK_MS", "2000"),
            ("DARKROOM_SIGNUP_CREDITS", "1000"),
            ("DARKROOM_MAX_ACTIVE_TASKS", "20"),
        ],
        clock,
    )
    .await;
    let c = client();
    app.sign_up(&c).await;
    let mut long = Vec::new();
    for n in 0..10 {
        long.push(generate(&app, &c, &format!("a long one {n} #ms=600000")).await);
    }
    (app, c, long)
}

/// A manual clock at the current time, for [`spawn_app_on`]: the app, its
/// reconciler and its simulator stand still until the test moves it.
pub fn manual_clock() -> Clock {
    Clock::manual(Clock::system().now_ms())
}

/// [`spawn_app_with`] on `clock`.
pub async fn spawn_app_on(overrides: &[(&str, &str)], clock: Clock) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DARKROOM_DATA_DIR".into(), dir.path().display().to_string()),
        ("DARKROOM_SIM_DURATION_MS".into(), "300-600".into()),
        ("DARKROOM_PROVIDER_CHECK_MS".into(), "100".into()),
        ("DARKROOM_RECONCILE_INTERVAL_SECS".into(), "86400".into()),
        ("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE".into(), "1000".into()),
        // Tests sign up many accounts from one address; the sign-up limits
        // have tests of their own.
        ("DARKROOM_SIGNUPS_PER_HOUR".into(), "1000000".into()),
        ("DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR".into(), "1000000".into()),
        // Tests start many generations per account; the caps have tests of
        // their own.
        ("DARKROOM_MAX_ACTIVE_TASKS".into(), "10000".into()),
        ("DARKROOM_GENERATIONS_PER_MINUTE".into(), "100000".into()),
    ]);
    if let Some(url) = fresh_postgres_database().await {
        vars.insert("DATABASE_URL".into(), url);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    for (k, v) in overrides {
        // `DARKROOM_PUBLIC_URL=self`: the address this app is served at.
        let v = if *k == "DARKROOM_PUBLIC_URL" && *v == "self" { format!("http://{addr}") } else { (*v).to_owned() };
        vars.insert((*k).into(), v);
    }
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let options = LeptosOptions::builder().output_name("darkroom").site_root("target/site").build();
    let built = server::build_on(config, options, addr, clock).await.expect("build app");
    tokio::spawn(async move {
        axum::serve(listener, built.router.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
    });
    TestApp { base: format!("http://{addr}"), state: built.state, _dir: dir }
}

/// With `DARKROOM_TEST_POSTGRES` set (a server URL such as
/// `postgres://postgres@127.0.0.1:5432`), each test gets a new database of
/// its own there; otherwise the app uses SQLite in its temporary data dir.
pub async fn fresh_postgres_database() -> Option<String> {
    let server = std::env::var("DARKROOM_TEST_POSTGRES").ok().filter(|s| !s.is_empty())?;
    let server = server.trim_end_matches('/');
    let name = format!("darkroom_test_{}", uuid_like());
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to the PostgreSQL server named by DARKROOM_TEST_POSTGRES");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
    Some(format!("{server}/{name}"))
}

/// Settings for a fresh bucket on the S3-compatible server named by
/// `DARKROOM_TEST_S3` (`make test` starts moto for it), or `None`.
pub async fn fresh_s3_bucket() -> Option<Vec<(&'static str, String)>> {
    let endpoint = std::env::var("DARKROOM_TEST_S3").ok().filter(|s| !s.is_empty())?;
    let bucket = format!("darkroom-test-{}", uuid_like());
    let created = reqwest::Client::new().put(format!("{endpoint}/{bucket}")).send().await.expect("S3 server");
    assert!(created.status().is_success(), "create bucket: {}", created.status());
    Some(vec![
        ("DARKROOM_STORAGE", format!("s3://{bucket}")),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ])
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A browser-like client: keeps cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().expect("client")
}

/// A client that keeps its cookies and shows redirects instead of
/// following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().expect("client")
}

impl TestApp {
    /// `form` posted to `endpoint` as a page at `page` posts it without
    /// JavaScript (the browser asks for HTML and names the page).
    pub fn page_post(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        page: &str,
        form: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        client
            .post(format!("{}/api/{endpoint}", self.base))
            .header("accept", "text/html,application/xhtml+xml")
            .header("origin", &self.base)
            .header("referer", format!("{}{page}", self.base))
            .form(form)
    }

    /// POSTs a server function with URL-encoded arguments; (status, JSON).
    pub async fn call(&self, client: &reqwest::Client, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = client.post(format!("{}/api/{endpoint}", self.base)).form(form).send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// Signs up a fresh account with `client`; returns its email.
    pub async fn sign_up(&self, client: &reqwest::Client) -> String {
        let email = format!("{}@example.com", uuid_like());
        let (status, body) = self.call(client, "sign_up", &[("email", &email), ("password", "correct horse")]).await;
        assert_eq!(status, 200, "{body}");
        email
    }

    /// The id of the account with `email`.
    pub async fn user_id(&self, email: &str) -> String {
        use sqlx::Row;
        sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&self.state.db)
            .await
            .expect("user")
            .get("id")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql).fetch_one(&self.state.db).await.expect("count").get::<i64, _>(0)
    }

    pub async fn balance(&self, client: &reqwest::Client) -> i64 {
        let (status, me) = self.call(client, "me", &[]).await;
        assert_eq!(status, 200, "{me}");
        me["credits"].as_i64().expect("credits")
    }
}

pub fn uuid_like() -> String {
    format!("u{:016x}", rand::random::<u64>())
}

/// A site folder with the two files the test build of the binary links its
/// pages to (empty: these tests drive the API, not a browser), so that the
/// binary's start-up check passes. Returns the folder.
pub fn stand_in_site(dir: &std::path::Path) -> std::path::PathBuf {
    let site = dir.join("site");
    std::fs::create_dir_all(site.join("pkg")).expect("site folder");
    for file in ["darkroom.js", "darkroom_bg.wasm"] {
        std::fs::write(site.join("pkg").join(file), b"").expect("site file");
    }
    site
}

/// Whether a task view is not finished yet (queued or processing).
pub fn unfinished(view: &Value) -> bool {
    matches!(view["status"].as_str(), Some("queued" | "processing"))
}

/// Submits `prompt`; returns the task id.
pub async fn generate(app: &TestApp, c: &reqwest::Client, prompt: &str) -> String {
    let (status, body) = app.call(c, "generate_image", &[("prompt", prompt)]).await;
    assert_eq!(status, 200, "{body}");
    body["task_id"].as_str().expect("task_id").to_owned()
}

/// Polls like the browser (faster) until the task is finished.
pub async fn poll_until_done(app: &TestApp, c: &reqwest::Client, id: &str) -> Value {
    poll_until_done_within(app, c, id, std::time::Duration::from_secs(60)).await
}

/// [`poll_until_done`], failing the test after `within`.
pub async fn poll_until_done_within(
    app: &TestApp,
    c: &reqwest::Client,
    id: &str,
    within: std::time::Duration,
) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (status, view) = app.call(c, "check_image_status", &[("task_id", id)]).await;
        assert_eq!(status, 200, "{view}");
        if !unfinished(&view) {
            return view;
        }
        assert!(start.elapsed() < within, "task {id} still unfinished: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
