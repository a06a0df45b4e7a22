//! Cancel: refunded exactly once, only by the owner, never undoing a
//! completion, and exact under a race with finishing polls.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;

use crate::helpers::{client, generate, poll_until_done, spawn_app, spawn_app_with, unfinished};

#[tokio::test]
async fn a_cancel_refunds_once_and_a_second_changes_nothing() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a regretted fox #slow").await;
    assert_eq!(app.balance(&c).await, 90);

    let (status, view) = app.call(&c, "cancel_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "canceled");
    assert_eq!(view["refunded"], true);
    assert_eq!(app.balance(&c).await, 100);

    let (status, again) = app.call(&c, "cancel_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200);
    assert_eq!(again, view);
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'refund'").await, 1);
    // Polls, history and the image route agree.
    assert_eq!(app.call(&c, "check_image_status", &[("task_id", &id)]).await.1["status"], "canceled");
    assert_eq!(app.call(&c, "list_history", &[]).await.1["items"][0]["status"], "canceled");
    assert_eq!(c.get(format!("{}/images/{id}", app.base)).send().await.unwrap().status(), 404);
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"darkroom_finalizations_total{outcome="canceled"} 1"#), "{metrics}");
}

#[tokio::test]
async fn another_person_cannot_cancel() {
    let app = spawn_app().await;
    let (owner, other) = (client(), client());
    app.sign_up(&owner).await;
    app.sign_up(&other).await;
    let id = generate(&app, &owner, "a guarded fox #slow").await;
    let (status, body) = app.call(&other, "cancel_image", &[("task_id", &id)]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(app.call(&owner, "check_image_status", &[("task_id", &id)]).await.1["status"], "processing");
    assert_eq!(app.call(&other, "cancel_image", &[("task_id", "not-an-id")]).await.0, 400);
    assert_eq!(app.call(&client(), "cancel_image", &[("task_id", &id)]).await.0, 401);
    assert_eq!(app.balance(&owner).await, 90);
}

#[tokio::test]
async fn a_completed_task_stays_completed_and_charged() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a finished fox").await;
    assert_eq!(poll_until_done(&app, &c, &id).await["status"], "completed");
    let (status, view) = app.call(&c, "cancel_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "completed");
    assert_eq!(app.balance(&c).await, 90);
}

#[tokio::test]
async fn a_cancel_the_provider_finished_first_completes_the_task() {
    let app = spawn_app_with(&[("DARKROOM_PROVIDER_CHECK_MS", "60000")]).await;
    let c = client();
    app.sign_up(&c).await;
    // Done at the provider, not yet seen here (checks are a minute apart).
    let id = generate(&app, &c, "a quick fox #ms=50").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, view) = app.call(&c, "cancel_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{view}");
    assert_ne!(view["status"], "canceled", "{view}");
    // Whatever the next check sees, the task ends completed and charged.
    sqlx::query("UPDATE tasks SET next_check_at = 0 WHERE id = $1").bind(&id).execute(&app.state.db).await.unwrap();
    assert_eq!(poll_until_done(&app, &c, &id).await["status"], "completed");
    assert_eq!(app.balance(&c).await, 90);
}

/// Many tasks, each canceled at about the moment it completes while ten
/// pollers poll it: each ends completed (charged, with its image) or
/// canceled (refunded, without one), exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_completions_end_exactly_once() {
    let app = spawn_app_with(&[("DARKROOM_SIGNUP_CREDITS", "1000"), ("DARKROOM_PROVIDER_CHECK_MS", "20")]).await;
    let c = client();
    let email = app.sign_up(&c).await;
    let tasks = 16;
    let races = (0..tasks).map(|n| {
        let (app, c) = (&app, &c);
        async move {
            let id = &generate(app, c, &format!("racing fox {n} #ms=1400")).await;
            let pollers = (0..10).map(|_| async move {
                let start = Instant::now();
                loop {
                    let (_, view) = app.call(c, "check_image_status", &[("task_id", id)]).await;
                    if !unfinished(&view) || start.elapsed() > Duration::from_secs(30) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            });
            let cancel = async move {
                // Spread from well before to well after the provider's
                // completion (1.4 s after create), most of them close to it.
                let at = [200, 1100, 1250, 1350, 1450, 1550, 1700, 2600][n % 8];
                tokio::time::sleep(Duration::from_millis(at)).await;
                let (status, view) = app.call(c, "cancel_image", &[("task_id", id)]).await;
                assert_eq!(status, 200, "{view}");
            };
            futures::future::join(futures::future::join_all(pollers), cancel).await;
            poll_until_done(app, c, id).await
        }
    });
    let finals = futures::future::join_all(races).await;

    let objects: Vec<String> =
        app.state.objects.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    let (mut completed, mut canceled) = (0, 0);
    for view in &finals {
        let id = view["id"].as_str().unwrap();
        let has_image = objects.iter().any(|o| o.ends_with(id));
        match view["status"].as_str().unwrap() {
            "completed" => {
                completed += 1;
                assert!(has_image, "{view}");
                assert_eq!(view["refunded"], false);
            }
            "canceled" => {
                canceled += 1;
                assert!(!has_image, "a canceled task kept an image: {view}");
                assert_eq!(view["refunded"], true);
            }
            other => panic!("{other}: {view}"),
        }
    }
    assert_eq!(completed + canceled, tasks);
    assert!(completed > 0 && canceled > 0, "the race was not a race: {completed} completed, {canceled} canceled");
    assert_eq!(objects.len(), completed, "{objects:?}");
    let user = darkroom::server::ids::UserId::from_db(app.user_id(&email).await);
    let (grants, charges, refunds) = darkroom::server::credits::totals(&app.state.db, user.as_str()).await.unwrap();
    assert_eq!((grants, charges, refunds), (1000, 10 * tasks as i64, 10 * canceled as i64));
    assert_eq!(app.balance(&c).await, 1000 - 10 * completed as i64);
    eprintln!("race: {completed} completed, {canceled} canceled");
}
