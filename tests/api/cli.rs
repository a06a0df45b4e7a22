//! The operator CLI, run as a real process (`darkroom admin …`) against
//! the database of a server that is running at the same time.

use std::process::Output;

use crate::helpers::{TestApp, client, generate, poll_until_done, spawn_app};

/// Runs `darkroom args…` with the app's configuration.
async fn darkroom(app: &TestApp, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(args)
        .env("DARKROOM_DATA_DIR", &app.state.config.data_dir)
        .env("DATABASE_URL", &app.state.config.database_url)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run darkroom")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A refusal: a non-zero exit, one line on stderr saying `what`, nothing
/// on stdout.
fn refused(out: &Output, what: &str) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "expected a refusal: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(what), "{stderr:?} should say {what:?}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[tokio::test]
async fn grant_user_and_tasks_work_beside_a_running_server() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;
    let id = generate(&app, &c, "a kite over dunes").await;
    assert_eq!(poll_until_done(&app, &c, &id).await["status"], "completed");

    let out = darkroom(&app, &["admin", "grant", &email.to_uppercase(), "50", "--reason", "beta tester"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("granted 50 credits to {email} (beta tester); balance 140 credits\n"));
    assert_eq!(app.balance(&c).await, 140, "the server sees the grant");
    // The operator's reason is theirs: the person reads "Granted", or the
    // note written for them.
    let ledger = app.call(&c, "list_ledger", &[]).await.1;
    assert_eq!(ledger["items"][0]["what"], "Granted");
    assert_eq!(ledger["items"][0]["amount"], 50);
    assert!(!ledger.to_string().contains("beta tester"), "{ledger}");
    let out = darkroom(
        &app,
        &["admin", "grant", &email, "5", "--reason", "ticket 4711: outage refund", "--note", "Sorry for the outage"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ledger = app.call(&c, "list_ledger", &[]).await.1;
    assert_eq!(ledger["items"][0]["what"], "Granted: Sorry for the outage");
    assert_eq!(ledger["items"][0]["reason"], "Sorry for the outage");
    assert!(!ledger.to_string().contains("4711"), "{ledger}");
    // Who ran the command is recorded beside the reason.
    let operators = app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'grant' AND operator LIKE '%@%'").await;
    assert_eq!(operators, 2);

    let out = darkroom(&app, &["admin", "user", &email]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let user = text(&out.stdout);
    assert!(user.contains(&format!("email:    {email}")), "{user}");
    assert!(user.contains("balance:  145 credits"), "{user}");
    assert!(
        user.contains("+5  ticket 4711: outage refund  by ") && user.contains("(note: Sorry for the outage)"),
        "{user}"
    );
    assert!(user.contains("tasks:    completed 1"), "{user}");
    assert!(user.contains(&id) && user.contains("a kite over dunes"), "{user}");

    let out = darkroom(&app, &["admin", "tasks", "--status", "completed", "--email", &email, "--limit", "5"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tasks = text(&out.stdout);
    assert_eq!(tasks.lines().count(), 1, "{tasks}");
    assert!(tasks.contains(&id) && tasks.contains("completed") && tasks.contains(&email), "{tasks}");
    let out = darkroom(&app, &["admin", "tasks", "--status", "failed"]).await;
    assert_eq!(text(&out.stdout), "no tasks\n");
}

#[tokio::test]
async fn every_refusal_is_one_clear_line_and_changes_nothing() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;

    refused(
        &darkroom(&app, &["admin", "grant", "nobody@example.com", "5", "--reason", "x"]).await,
        "no account with email nobody@example.com",
    );
    for credits in ["0", "-3", "ten", "2.5", "99999999999"] {
        refused(&darkroom(&app, &["admin", "grant", &email, credits, "--reason", "x"]).await, "positive whole number");
    }
    refused(&darkroom(&app, &["admin", "grant", &email, "5"]).await, "--reason");
    refused(&darkroom(&app, &["admin", "grant", &email, "5", "--reason", "  "]).await, "--reason must say why");
    refused(
        &darkroom(&app, &["admin", "grant", &email, "5", "--reason", "x", "--note", &"n".repeat(201)]).await,
        "--note must be one line",
    );
    refused(&darkroom(&app, &["admin", "user", "not-an-email"]).await, "not a valid email");
    refused(&darkroom(&app, &["admin", "tasks", "--status", "bogus"]).await, "bogus");
    refused(&darkroom(&app, &["admin", "tasks", "--limit", "0"]).await, "0");
    refused(&darkroom(&app, &["admin", "frobnicate"]).await, "frobnicate");
    // Pointed at the wrong place: said so, and no database is created there.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .args(["admin", "user", &email])
        .env("DARKROOM_DATA_DIR", elsewhere.path())
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    refused(&out, "no database at");
    assert!(!elsewhere.path().join("darkroom.db").exists());
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger").await, 1, "only the sign-up grant");

    for args in [
        &["--help"][..],
        &["admin", "--help"],
        &["admin", "grant", "--help"],
        &["admin", "user", "--help"],
        &["admin", "tasks", "--help"],
    ] {
        let out = darkroom(&app, args).await;
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}: {}", text(&out.stdout));
    }
}

#[tokio::test]
async fn purchases_are_listed_with_their_state_and_price() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;
    let out = darkroom(&app, &["admin", "purchases"]).await;
    assert_eq!(text(&out.stdout), "no purchases\n");
    let (status, bought) = app.call(&c, "buy_credits", &[("package", "500")]).await;
    assert_eq!(status, 200, "{bought}");
    let id = bought["purchase_id"].as_str().unwrap().to_owned();
    let out = darkroom(&app, &["admin", "purchases", &email]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    for part in ["pending", id.as_str(), email.as_str(), "500 credits", "20.00 USD", "refunded 0.00 USD", "cs_test_"] {
        assert!(listed.contains(part), "{part:?} in {listed}");
    }
    refused(&darkroom(&app, &["admin", "purchases", "nobody@example.com"]).await, "no account with email");
}

/// `admin user` says whether the address is verified; `admin verify` is
/// the operator's fix for a lost link (the sign-up credits come with it,
/// once).
#[tokio::test]
async fn an_operator_sees_and_fixes_verification() {
    let app = crate::helpers::spawn_app_with(&[("DARKROOM_REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let email = format!("{}@example.com", crate::helpers::uuid_like());
    let (status, body) = app.call(&client(), "sign_up", &[("email", &email), ("password", "correct horse")]).await;
    assert_eq!((status, body["check_inbox"].as_bool()), (200, Some(true)), "{body}");
    let started = std::time::Instant::now();
    while app.count(&format!("SELECT COUNT(*) FROM users WHERE email = '{email}'")).await == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the account was not made");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let user = text(&darkroom(&app, &["admin", "user", &email]).await.stdout);
    assert!(user.contains("verified: no") && user.contains("balance:  0 credits"), "{user}");
    let out = darkroom(&app, &["admin", "verify", &email]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{email} is verified; granted 100 sign-up credits\n"));
    let again = darkroom(&app, &["admin", "verify", &email]).await;
    assert_eq!(text(&again.stdout), format!("{email} is verified; granted 0 sign-up credits\n"), "once");
    let user = text(&darkroom(&app, &["admin", "user", &email]).await.stdout);
    assert!(user.contains("verified: yes, ") && user.contains("balance:  100 credits"), "{user}");
    refused(
        &darkroom(&app, &["admin", "verify", "nobody@example.com"]).await,
        "no account with email nobody@example.com",
    );
}
