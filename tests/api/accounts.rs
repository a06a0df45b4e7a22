//! Accounts: sign-up grants credits through the ledger; every bad input has
//! its message and creates nothing; sessions; the rate limit.

use crate::helpers::{client, no_redirects, spawn_app, spawn_app_with};

#[tokio::test]
async fn signing_up_grants_the_signup_credits_through_the_ledger() {
    let app = spawn_app().await;
    let c = client();
    let (status, body) = app.call(&c, "sign_up", &[("email", "Ada@Example.com"), ("password", "correct horse")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["credits"], 100);

    let (status, me) = app.call(&c, "me", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(me, serde_json::json!({ "email": "ada@example.com", "credits": 100, "verified": false }));

    let id = app.user_id("ada@example.com").await;
    let (grants, charges, refunds) = darkroom::server::credits::totals(&app.state.db, &id).await.unwrap();
    assert_eq!((grants, charges, refunds), (100, 0, 0));
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger").await, 1);
}

#[tokio::test]
async fn the_grant_follows_configuration() {
    let app = spawn_app_with(&[("DARKROOM_SIGNUP_CREDITS", "25")]).await;
    let c = client();
    app.sign_up(&c).await;
    assert_eq!(app.balance(&c).await, 25);
}

#[tokio::test]
async fn bad_sign_ups_say_why_and_create_nothing() {
    let app = spawn_app().await;
    let c = client();
    app.call(&c, "sign_up", &[("email", "taken@example.com"), ("password", "long enough")]).await;
    let before_users = app.count("SELECT COUNT(*) FROM users").await;
    let before_ledger = app.count("SELECT COUNT(*) FROM credit_ledger").await;

    let other = client();
    for (email, password, status, message) in [
        ("taken@example.com", "long enough", 409, "email already registered"),
        ("TAKEN@example.com ", "long enough", 409, "email already registered"),
        ("fresh@example.com", "short", 400, "password must be at least 8 characters"),
        ("not-an-email", "long enough", 400, "not a valid email"),
        ("", "long enough", 400, "not a valid email"),
    ] {
        let (got, body) = app.call(&other, "sign_up", &[("email", email), ("password", password)]).await;
        assert_eq!(got, status, "{email}: {body}");
        assert_eq!(body["message"], message, "{email}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, before_users);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger").await, before_ledger);
    // None of them signed the second client in.
    assert_eq!(app.call(&other, "me", &[]).await.0, 401);
}

#[tokio::test]
async fn sign_in_checks_the_password_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;
    app.call(&c, "sign_out", &[]).await;
    assert_eq!(app.call(&c, "me", &[]).await.0, 401);

    let (status, body) = app.call(&c, "sign_in", &[("email", &email), ("password", "wrong horse")]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "wrong email or password");
    let (status, body) =
        app.call(&c, "sign_in", &[("email", "nobody@example.com"), ("password", "correct horse")]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "wrong email or password");
    assert_eq!(app.call(&c, "me", &[]).await.0, 401);

    let (status, body) =
        app.call(&c, "sign_in", &[("email", &email.to_uppercase()), ("password", "correct horse")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["credits"], 100);
    assert_eq!(app.call(&c, "me", &[]).await.1["email"], email.as_str());
}

/// Sessions are read from the database on every request, never remembered
/// by an instance: a sign-out on one ends the session on the others at once.
#[tokio::test]
async fn a_sign_out_on_one_instance_ends_the_session_on_another() {
    let a = spawn_app().await;
    let b = spawn_app_with(&[("DATABASE_URL", &a.state.config.database_url)]).await;
    // Cookies do not depend on the port: the client sends its session to both.
    let c = client();
    let email = a.sign_up(&c).await;
    assert_eq!(b.call(&c, "me", &[]).await.1["email"], email.as_str());
    assert_eq!(a.call(&c, "sign_out", &[]).await.0, 200);
    assert_eq!(b.call(&c, "me", &[]).await.0, 401);
    assert_eq!(a.call(&c, "me", &[]).await.0, 401);
}

/// A session used every day never expires; its expiry (in the database and
/// in the cookie) moves with the first visit of each day, not with every
/// request.
#[tokio::test]
async fn a_session_in_use_is_kept_alive_once_a_day() {
    use sqlx::Row;
    let app = spawn_app_with(&[("DARKROOM_SESSION_DAYS", "30")]).await;
    let c = client();
    app.sign_up(&c).await;
    let row = sqlx::query("SELECT id, data FROM sessions").fetch_one(&app.state.db).await.unwrap();
    let (id, data): (String, String) = (row.get("id"), row.get("data"));
    let mut data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert!(data["darkroom.seen_day"].is_i64(), "{data}");

    // Another request the same day writes nothing (no Set-Cookie either).
    let response = c.post(format!("{}/api/me", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none());

    // Pretend it was last seen long ago and expires in a minute.
    data["darkroom.seen_day"] = 0.into();
    let soon = darkroom::server::clock::Clock::system().now_ms() + 60_000;
    sqlx::query("UPDATE sessions SET data = $1, expires_at = $2 WHERE id = $3")
        .bind(data.to_string())
        .bind(soon)
        .bind(&id)
        .execute(&app.state.db)
        .await
        .unwrap();
    let response = c.post(format!("{}/api/me", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers().get("set-cookie").expect("cookie refreshed").to_str().unwrap().to_owned();
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
    let expires: i64 = sqlx::query("SELECT expires_at FROM sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
        .get(0);
    let thirty_days = 30 * 86_400_000;
    assert!(expires > soon + thirty_days - 120_000, "expiry moved to 30 days from now");
}

#[tokio::test]
async fn signed_out_calls_fail_without_side_effects() {
    let app = spawn_app().await;
    let c = client();
    let (status, body) = app.call(&c, "me", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "please sign in");
    let (status, _) = app.call(&c, "generate_image", &[("prompt", "a cat")]).await;
    assert_eq!(status, 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger").await, 0);
}

#[tokio::test]
async fn repeated_attempts_are_rate_limited_per_client() {
    let app = spawn_app_with(&[("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "3")]).await;
    let c = client();
    for _ in 0..3 {
        let (status, _) = app.call(&c, "sign_in", &[("email", "a@example.com"), ("password", "whatever1")]).await;
        assert_eq!(status, 401);
    }
    let (status, body) = app.call(&c, "sign_in", &[("email", "a@example.com"), ("password", "whatever1")]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("too many attempts, try again in"), "{body}");
    let (status, _) = app.call(&c, "sign_up", &[("email", "b@example.com"), ("password", "whatever1")]).await;
    assert_eq!(status, 429);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn health_answers_when_the_database_does() {
    let app = spawn_app().await;
    let response = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    app.state.db.pool().close().await;
    let response = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in_before_anything_renders() {
    let app = spawn_app().await;
    let c = no_redirects();
    for (page, location) in [
        ("/", "/login"),
        ("/history", "/login?next=/history"),
        ("/history?cursor=1_x", "/login?next=/history%3Fcursor%3D1_x"),
        ("/account", "/login?next=/account"),
    ] {
        for accept in ["text/html", "*/*"] {
            let response = c.get(format!("{}{page}", app.base)).header("accept", accept).send().await.unwrap();
            assert_eq!(response.status(), 303, "{page}");
            assert_eq!(response.headers()["location"], location, "{page}");
        }
    }
    let response = c.get(format!("{}/login?next=/history", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("Sign in"));
}

#[tokio::test]
async fn after_signing_in_only_a_local_next_page_is_followed() {
    let app = spawn_app().await;
    let c = no_redirects();
    app.sign_up(&c).await;
    for (next, location) in [
        ("/history", "/history"),
        ("%2Fhistory%3Fcursor%3D1_x", "/history?cursor=1_x"),
        ("https://evil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("//evil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("/\\evil.example", "/"),
    ] {
        for page in ["/login", "/signup"] {
            let response = c.get(format!("{}{page}?next={next}", app.base)).send().await.unwrap();
            assert_eq!(response.status(), 303, "{page}?next={next}");
            assert_eq!(response.headers()["location"], location, "{page}?next={next}");
        }
    }
    // Signed in, the private pages render.
    assert_eq!(c.get(format!("{}/history", app.base)).send().await.unwrap().status(), 200);
}

/// "Sign out" in the header is a plain form: from any page, the post is
/// answered with the sign-in page (not the page it came from, which would
/// ask to sign in again to come back to it).
#[tokio::test]
async fn signing_out_from_a_page_leads_to_the_sign_in_page() {
    let app = spawn_app().await;
    let c = no_redirects();
    app.sign_up(&c).await;
    let response = app.page_post(&c, "sign_out", "/account", &[]).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/login");
    let after = c.get(format!("{}/account", app.base)).send().await.unwrap();
    assert_eq!(after.headers()["location"], "/login?next=/account", "signed out");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .env("DARKROOM_DATA_DIR", dir.path())
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("DARKROOM_GENERATION_COST", "ten")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("DARKROOM_GENERATION_COST"), "{said}");
}

#[tokio::test]
async fn a_binary_whose_page_files_are_missing_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |site: std::path::PathBuf| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
            .env("DARKROOM_DATA_DIR", dir.path())
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("LEPTOS_SITE_ROOT", site)
            .kill_on_drop(true)
            .output()
    };
    let empty = dir.path().join("empty-site");
    std::fs::create_dir_all(&empty).unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), run(empty)).await.unwrap().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stdout);
    // This test binary was built by cargo, not cargo-leptos: it links the
    // WebAssembly under cargo's name, and says so.
    assert!(said.contains("darkroom.js") && said.contains("does not exist"), "{said}");
    assert!(said.contains("not built by cargo-leptos"), "{said}");

    // With the files it links to, it starts (and is stopped here).
    let site = crate::helpers::stand_in_site(dir.path());
    let started = tokio::time::timeout(std::time::Duration::from_secs(3), run(site)).await;
    assert!(started.is_err(), "it kept running: {started:?}");
}

#[tokio::test]
async fn a_failed_migration_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    // A database whose `users` table is not ours: the first migration fails.
    let url = format!("sqlite://{}/darkroom.db?mode=rwc", dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE users (something_else TEXT)").execute(&pool).await.unwrap();
    pool.close().await;

    let vars = [("DARKROOM_DATA_DIR", dir.path().display().to_string())];
    let config =
        darkroom::server::config::Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let options = leptos::config::LeptosOptions::builder().output_name("darkroom").build();
    let error =
        darkroom::server::build(config, options, "127.0.0.1:0".parse().unwrap()).await.err().expect("must fail");
    assert!(error.to_string().contains("database migration failed"), "{error}");
}

/// Many people at once, each asking who they are: every request gets its
/// own account. On PostgreSQL the session loads of concurrent requests are
/// made together in one statement (`server::reads::PgBatch`), and each
/// answer must still go to the request that asked for it.
#[tokio::test]
async fn concurrent_requests_each_get_their_own_session() {
    let app = spawn_app().await;
    let mut people = Vec::new();
    for _ in 0..24 {
        let c = client();
        let email = app.sign_up(&c).await;
        people.push((c, email));
    }
    let asks = people.iter().flat_map(|(c, email)| (0..4).map(move |_| (c, email))).map(|(c, email)| {
        let app = &app;
        async move {
            let (status, me) = app.call(c, "me", &[]).await;
            assert_eq!(status, 200, "{me}");
            assert_eq!(me["email"].as_str(), Some(email.as_str()));
        }
    });
    futures::future::join_all(asks).await;
    // Without a session: nobody.
    let stranger = client();
    let (status, body) = app.call(&stranger, "me", &[]).await;
    assert_eq!(status, 401, "{body}");
}

/// On PostgreSQL, a session read that stalls (here, a table lock held by
/// another connection) fails within its timeout instead of holding that
/// request, and every request queued behind it, until the database moves.
#[tokio::test]
#[ignore = "needs PostgreSQL: make test runs it with DARKROOM_TEST_POSTGRES"]
async fn a_stalled_session_read_fails_in_time_on_postgres() {
    use sqlx::Connection;
    assert!(std::env::var("DARKROOM_TEST_POSTGRES").is_ok(), "DARKROOM_TEST_POSTGRES names a PostgreSQL server");
    let app = crate::helpers::spawn_app().await;
    let c = crate::helpers::client();
    app.sign_up(&c).await;
    let mut locker = sqlx::PgConnection::connect(&app.state.config.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), app.call(&c, "me", &[])).await;
    let took = started.elapsed();
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let (status, body) = answer.expect("an answer while the lock is held");
    assert!(status >= 500, "{status}: {body}");
    assert!(took < std::time::Duration::from_secs(9), "the stalled read held the request {took:?}");
    assert_eq!(app.call(&c, "me", &[]).await.0, 200, "and the next request is served");
}
