//! The account page's ledger, password change, share links and deletion,
//! over HTTP against the real app (SQLite, or PostgreSQL in the second leg
//! of `make test`), with a second instance on the same database and store
//! where a change must reach every instance.

use object_store::ObjectStore;
use serde_json::Value;

use crate::helpers::{TestApp, client, fresh_s3_bucket, generate, poll_until_done, spawn_app, spawn_app_with};
use darkroom::server::{admin, engine, ids::TaskId};

/// A second instance on `a`'s database and object store.
async fn second_instance(a: &TestApp) -> TestApp {
    let objects = format!("file://{}", a.state.config.data_dir.join("objects").display());
    spawn_app_with(&[("DATABASE_URL", &a.state.config.database_url), ("DARKROOM_STORAGE", &objects)]).await
}

/// Every page of the signed-in person's ledger.
async fn whole_ledger(app: &TestApp, c: &reqwest::Client) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let form: Vec<(&str, &str)> = cursor.as_deref().map(|c| vec![("cursor", c)]).unwrap_or_default();
        let (status, page) = app.call(c, "list_ledger", &form).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (items, pages),
        }
    }
}

async fn completed_task(app: &TestApp, c: &reqwest::Client, prompt: &str) -> String {
    let id = generate(app, c, prompt).await;
    let view = poll_until_done(app, c, &id).await;
    assert_eq!(view["status"], "completed", "{view}");
    id
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let r = c.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.expect("body"))
}

#[tokio::test]
async fn the_ledger_sums_to_the_balance_after_grants_charges_refunds_and_deletions() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;
    // Enough rows for two pages.
    for i in 0..55 {
        let note = format!("thanks #{i}");
        admin::grant(&app.state.db, &email, 1, "beta", Some(&note), "test@here").await.expect("grant");
    }
    let kept = completed_task(&app, &c, "a lighthouse at dusk").await;
    let deleted = completed_task(&app, &c, "a red bicycle").await;
    let failed = generate(&app, &c, "a storm #fail").await;
    assert_eq!(poll_until_done(&app, &c, &failed).await["status"], "failed");
    let (status, body) = app.call(&c, "delete_image", &[("task_id", &deleted)]).await;
    assert_eq!(status, 200, "{body}");

    let (items, pages) = whole_ledger(&app, &c).await;
    assert_eq!(pages, 2, "55 grants and 5 more rows fill two pages");
    assert_eq!(items.len(), 1 + 55 + 3 + 1);
    let sum: i64 = items.iter().map(|i| i["amount"].as_i64().unwrap()).sum();
    let balance = app.balance(&c).await;
    assert_eq!(sum, balance);
    assert_eq!(balance, 100 + 55 - 20);
    // Newest first, each row once.
    let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    let what = |task: &str, kind: &str| -> String {
        items
            .iter()
            .find(|i| i["task_id"] == task && i["kind"] == kind)
            .map(|i| i["what"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {kind} of {task}"))
    };
    assert_eq!(what(&kept, "charge"), "Image: a lighthouse at dusk");
    assert_eq!(what(&deleted, "charge"), "Image (deleted)");
    assert_eq!(what(&failed, "charge"), "Image: a storm #fail");
    assert_eq!(what(&failed, "refund"), "Refund: a storm #fail");
    let charge = items.iter().find(|i| i["task_id"] == kept.as_str()).unwrap();
    assert_eq!(charge["amount"], -10);
    assert_eq!(charge["image_url"], format!("/images/{kept}"));
    assert!(
        items.iter().any(|i| i["what"] == "Granted: thanks #54" && i["kind"] == "grant" && i["reason"] == "thanks #54")
    );
    let signup = items.last().unwrap();
    assert_eq!((signup["what"].as_str(), signup["amount"].as_i64()), (Some("Sign-up credits"), Some(100)));
    assert!(signup.get("task_id").is_none());

    // A bad cursor is refused; signed out, nothing.
    assert_eq!(app.call(&c, "list_ledger", &[("cursor", "nope")]).await.0, 400);
    assert_eq!(app.call(&client(), "list_ledger", &[]).await.0, 401);
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_on_every_instance() {
    let a = spawn_app().await;
    let b = second_instance(&a).await;
    let (mine, other_here, other_there) = (client(), client(), client());
    let email = a.sign_up(&mine).await;
    let old = "correct horse";
    for (app, c) in [(&a, &other_here), (&b, &other_there)] {
        let (status, body) = app.call(c, "sign_in", &[("email", &email), ("password", old)]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.call(c, "me", &[]).await.0, 200);
    }

    // Refusals change nothing.
    let (status, body) = a
        .call(&mine, "change_password", &[("current_password", "wrong one"), ("new_password", "battery staple")])
        .await;
    assert_eq!((status, body["message"].as_str()), (400, Some("the current password is wrong")));
    let (status, body) =
        a.call(&mine, "change_password", &[("current_password", old), ("new_password", "short")]).await;
    assert_eq!((status, body["message"].as_str()), (400, Some("password must be at least 8 characters")));
    assert_eq!(
        a.call(&client(), "change_password", &[("current_password", old), ("new_password", "x".repeat(9).as_str())])
            .await
            .0,
        401
    );
    assert_eq!(a.call(&other_here, "me", &[]).await.0, 200);
    assert_eq!(b.call(&other_there, "me", &[]).await.0, 200);

    let new = "battery staple";
    let (status, body) = a.call(&mine, "change_password", &[("current_password", old), ("new_password", new)]).await;
    assert_eq!(status, 200, "{body}");
    // This session stays; the others end, here and on the other instance.
    assert_eq!(a.call(&mine, "me", &[]).await.0, 200);
    assert_eq!(b.call(&mine, "me", &[]).await.0, 200, "the session is valid on every instance");
    assert_eq!(a.call(&other_here, "me", &[]).await.0, 401);
    assert_eq!(b.call(&other_there, "me", &[]).await.0, 401);
    let user = a.user_id(&email).await;
    assert_eq!(a.count(&format!("SELECT COUNT(*) FROM sessions WHERE user_id = '{user}'")).await, 1);

    // The old password no longer signs in; the new one does.
    let fresh = client();
    assert_eq!(b.call(&fresh, "sign_in", &[("email", &email), ("password", old)]).await.0, 401);
    assert_eq!(b.call(&fresh, "sign_in", &[("email", &email), ("password", new)]).await.0, 200);
    assert_eq!(b.call(&fresh, "me", &[]).await.0, 200);
}

/// Two instances on one database, and a person signed up on the first
/// (the cookie holds on both: same host).
async fn owner_on_two_instances() -> (TestApp, TestApp, reqwest::Client) {
    let a = spawn_app().await;
    let b = second_instance(&a).await;
    let owner = client();
    a.sign_up(&owner).await;
    (a, b, owner)
}

#[tokio::test]
async fn a_shared_image_is_public_until_unshared_or_deleted_on_every_instance() {
    let (a, b, owner) = owner_on_two_instances().await;
    let id = completed_task(&a, &owner, "a \"quoted\" <b>owl</b>").await;

    let (status, shared) = a.call(&owner, "share_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{shared}");
    let url = shared["url"].as_str().unwrap().to_owned();
    let token = url.strip_prefix("/s/").expect("a /s/ link");
    assert_eq!(token.len(), 22, "128 bits, base64url");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    // Sharing again gives the same link.
    assert_eq!(a.call(&owner, "share_image", &[("task_id", &id)]).await.1["url"], url.as_str());

    // Anyone, signed out, on either instance.
    let stranger = reqwest::Client::new();
    for app in [&a, &b] {
        let (status, headers, page) = get(&stranger, &format!("{}{url}", app.base)).await;
        assert_eq!(status, 200);
        assert!(headers[reqwest::header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let page = String::from_utf8(page.to_vec()).unwrap();
        assert!(page.contains(&format!(r#"<meta property="og:image" content="{}{url}/image">"#, app.base)), "{page}");
        assert!(page.contains(r#"<meta name="twitter:card" content="summary_large_image">"#));
        assert!(page.contains(r#"<meta property="og:image:width" content=""#), "the size is read at share time");
        assert!(page.contains(r#"<meta property="og:image:height" content=""#));
        assert!(page.contains("a &quot;quoted&quot; &lt;b&gt;owl&lt;/b&gt;"));
        assert!(!page.contains("<b>owl"));
        let (status, headers, image) = get(&stranger, &format!("{}{url}/image", app.base)).await;
        assert_eq!(status, 200);
        assert_eq!(headers[reqwest::header::CONTENT_TYPE], "image/png");
        assert!(headers[reqwest::header::CACHE_CONTROL].to_str().unwrap().starts_with("public"));
        assert!(image.starts_with(b"\x89PNG"));
    }
    let width = a.count(&format!("SELECT image_width FROM tasks WHERE id = '{id}'")).await;
    assert!(width >= 256, "{width}");

    // Stop sharing: both instances answer 404 at once.
    let (status, body) = a.call(&owner, "unshare_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{body}");
    for app in [&a, &b] {
        assert_eq!(get(&stranger, &format!("{}{url}", app.base)).await.0, 404);
        assert_eq!(get(&stranger, &format!("{}{url}/image", app.base)).await.0, 404);
    }

    // Shared again: a new link; deleted: 404 everywhere, and gone for the
    // owner too.
    let again = a.call(&owner, "share_image", &[("task_id", &id)]).await.1["url"].as_str().unwrap().to_owned();
    assert_ne!(again, url);
    assert_eq!(get(&stranger, &format!("{}{again}/image", b.base)).await.0, 200);
    let (status, body) = a.call(&owner, "delete_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{body}");
    for app in [&a, &b] {
        assert_eq!(get(&stranger, &format!("{}{again}", app.base)).await.0, 404);
        assert_eq!(get(&stranger, &format!("{}{again}/image", app.base)).await.0, 404);
        assert_eq!(get(&owner, &format!("{}/images/{id}", app.base)).await.0, 404);
    }
    assert_eq!(a.call(&owner, "check_image_status", &[("task_id", &id)]).await.0, 404);
    let history = a.call(&owner, "list_history", &[]).await.1;
    assert!(history["items"].as_array().unwrap().iter().all(|t| t["id"] != id.as_str()));
    assert_eq!(a.call(&owner, "delete_image", &[("task_id", &id)]).await.0, 404, "deleted once");
}

#[tokio::test]
async fn a_deleted_task_is_gone_from_polls_on_every_instance_at_once() {
    let (a, b, owner) = owner_on_two_instances().await;
    let gone = completed_task(&a, &owner, "an owl to forget").await;
    let kept = completed_task(&a, &owner, "an owl to keep").await;
    // b reads both, then answers them from memory.
    for _ in 0..2 {
        for id in [&gone, &kept] {
            let (status, view) = b.call(&owner, "check_image_status", &[("task_id", id)]).await;
            assert_eq!((status, view["status"].as_str()), (200, Some("completed")), "{view}");
        }
    }
    let (status, body) = a.call(&owner, "delete_image", &[("task_id", &gone)]).await;
    assert_eq!(status, 200, "{body}");
    // b has not been told, yet answers the deleted task as gone, and the
    // other one as before.
    let (status, body) = b.call(&owner, "check_image_status", &[("task_id", &gone)]).await;
    assert_eq!(status, 404, "{body}");
    let (status, view) = b.call(&owner, "check_image_status", &[("task_id", &kept)]).await;
    assert_eq!((status, view["prompt"].as_str()), (200, Some("an owl to keep")), "{view}");
}

#[tokio::test]
async fn another_person_cannot_share_unshare_or_delete() {
    let app = spawn_app().await;
    let (owner, other) = (client(), client());
    app.sign_up(&owner).await;
    app.sign_up(&other).await;
    let id = completed_task(&app, &owner, "a quiet harbour").await;
    for endpoint in ["share_image", "unshare_image", "delete_image"] {
        let (status, body) = app.call(&other, endpoint, &[("task_id", &id)]).await;
        assert_eq!((status, body["message"].as_str()), (404, Some("not found")), "{endpoint}");
        assert_eq!(app.call(&client(), endpoint, &[("task_id", &id)]).await.0, 401, "{endpoint} signed out");
    }
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM tasks WHERE id = '{id}' AND share_token IS NULL")).await, 1);
    assert_eq!(get(&owner, &format!("{}/images/{id}", app.base)).await.0, 200);

    // Bad ids and tokens are plain errors.
    assert_eq!(app.call(&owner, "share_image", &[("task_id", "../../etc")]).await.0, 400);
    assert_eq!(app.call(&owner, "delete_image", &[("task_id", "")]).await.0, 400);
    let stranger = reqwest::Client::new();
    for token in ["nope", "AAAAAAAAAAAAAAAAAAAAAA", &"A".repeat(5000)] {
        assert_eq!(get(&stranger, &format!("{}/s/{token}", app.base)).await.0, 404);
        assert_eq!(get(&stranger, &format!("{}/s/{token}/image", app.base)).await.0, 404);
    }
    // Only a completed image can be shared.
    let failed = generate(&app, &owner, "a storm #fail").await;
    assert_eq!(poll_until_done(&app, &owner, &failed).await["status"], "failed");
    let (status, body) = app.call(&owner, "share_image", &[("task_id", &failed)]).await;
    assert_eq!((status, body["message"].as_str()), (409, Some("only a completed image can be shared")));
}

/// Deletes a completed task and checks its stored object is gone.
async fn deletion_removes_the_object(app: &TestApp) {
    let c = client();
    app.sign_up(&c).await;
    let id = completed_task(app, &c, "a paper boat").await;
    let key = engine::finalize::object_key(&TaskId::from_db(id.clone()));
    app.state.objects.head(&key).await.expect("stored before");
    let (status, body) = app.call(&c, "delete_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(matches!(app.state.objects.head(&key).await, Err(object_store::Error::NotFound { .. })));
    assert_eq!(app.count("SELECT COUNT(*) FROM purges").await, 0, "purge finished");
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM tasks WHERE id = '{id}'")).await, 0);
    // The prompt is gone from the database; the ledger keeps its rows.
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM credit_ledger WHERE task_id = '{id}'")).await, 1);
}

#[tokio::test]
async fn deletion_removes_the_stored_image_from_a_local_folder() {
    deletion_removes_the_object(&spawn_app().await).await;
}

#[tokio::test]
#[ignore = "needs an S3 server: make test runs it with DARKROOM_TEST_S3"]
async fn deletion_removes_the_stored_image_from_s3() {
    let s3 = fresh_s3_bucket().await.expect("DARKROOM_TEST_S3 names an S3 server");
    let overrides: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    deletion_removes_the_object(&spawn_app_with(&overrides).await).await;
}

#[tokio::test]
async fn a_crash_between_the_row_and_the_objects_is_finished_by_the_reconciler() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;
    let id = completed_task(&app, &c, "a lantern").await;
    let task = TaskId::from_db(id.clone());
    let key = engine::finalize::object_key(&task);
    // The fault: the deletion's transaction commits, then the process dies
    // before it removes the objects (only the first step runs).
    let user = darkroom::server::ids::UserId::from_db(app.user_id(&email).await);
    assert!(
        engine::store::delete_finished(&app.state.db, &user, &task, darkroom::server::clock::Clock::system().now_ms())
            .await
            .unwrap()
    );
    app.state.objects.head(&key).await.expect("the object is left behind");
    // Deleted for everyone already, though not yet purged.
    assert_eq!(app.call(&c, "list_history", &[]).await.1["items"].as_array().unwrap().len(), 0);
    assert_eq!(get(&c, &format!("{}/images/{id}", app.base)).await.0, 404);
    assert_eq!(app.count("SELECT COUNT(*) FROM purges").await, 1);

    // A purge younger than the reconciler's grace is left to its deletion.
    assert_eq!(
        engine::reconcile::purge_pass(&app.state, darkroom::server::clock::Clock::system().now_ms() - 60_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        engine::reconcile::purge_pass(&app.state, darkroom::server::clock::Clock::system().now_ms()).await.unwrap(),
        1
    );
    assert!(matches!(app.state.objects.head(&key).await, Err(object_store::Error::NotFound { .. })));
    assert_eq!(app.count("SELECT COUNT(*) FROM purges").await, 0);
    assert_eq!(app.count(&format!("SELECT COUNT(*) FROM tasks WHERE id = '{id}'")).await, 0, "never reappears");
}

#[tokio::test]
async fn deleting_a_processing_task_cancels_and_refunds_it_first() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate(&app, &c, "a glacier #slow").await;
    assert_eq!(app.balance(&c).await, 90);
    let (status, body) = app.call(&c, "delete_image", &[("task_id", &id)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.balance(&c).await, 100, "canceled and refunded");
    assert_eq!(app.call(&c, "check_image_status", &[("task_id", &id)]).await.0, 404);
    let (items, _) = whole_ledger(&app, &c).await;
    let whats: Vec<&str> = items.iter().map(|i| i["what"].as_str().unwrap()).collect();
    assert_eq!(whats, ["Refund (deleted image)", "Image (deleted)", "Sign-up credits"]);
}

#[tokio::test]
async fn a_sign_in_checked_against_the_old_password_never_outlives_the_change() {
    use sqlx::Row;
    let app = spawn_app().await;
    let (mine, late) = (client(), client());
    let email = app.sign_up(&mine).await;
    assert_eq!(app.call(&late, "sign_in", &[("email", &email), ("password", "correct horse")]).await.0, 200);
    let user = app.user_id(&email).await;
    // The session that sign-in made, as it would be written by a sign-in
    // whose password check (against the old password) ends only after the
    // change: its row is created after the other sessions were ended.
    let row =
        sqlx::query("SELECT id, data, expires_at, epoch FROM sessions WHERE user_id = $1 ORDER BY expires_at DESC")
            .bind(&user)
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert_eq!(row.len(), 2);
    let (status, body) = app
        .call(&mine, "change_password", &[("current_password", "correct horse"), ("new_password", "battery staple")])
        .await;
    assert_eq!(status, 200, "{body}");
    let survivors: Vec<String> = sqlx::query("SELECT id FROM sessions WHERE user_id = $1")
        .bind(&user)
        .fetch_all(&app.state.db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("id"))
        .collect();
    assert_eq!(survivors.len(), 1);
    let late_row = row.iter().find(|r| !survivors.contains(&r.get::<String, _>("id"))).expect("the late session");
    sqlx::query("INSERT INTO sessions (id, data, expires_at, user_id, epoch) VALUES ($1, $2, $3, $4, $5)")
        .bind(late_row.get::<String, _>("id"))
        .bind(late_row.get::<String, _>("data"))
        .bind(late_row.get::<i64, _>("expires_at"))
        .bind(&user)
        .bind(late_row.get::<i64, _>("epoch"))
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(app.call(&late, "me", &[]).await.0, 401, "a session of the old password's epoch never loads");
    assert_eq!(app.call(&mine, "me", &[]).await.0, 200);
}

#[tokio::test]
async fn password_guesses_are_limited_per_account_whatever_the_address() {
    let app =
        spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", "127.0.0.1"), ("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "3")]).await;
    let c = client();
    app.sign_up(&c).await;
    let guess = |n: u8| {
        let c = c.clone();
        let url = format!("{}/api/change_password", app.base);
        async move {
            c.post(url)
                .header("x-forwarded-for", format!("203.0.113.{n}"))
                .form(&[("current_password", "a wrong guess"), ("new_password", "battery staple")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Each guess from another address, so the per-address limit never
    // trips; the account's allows three a minute.
    for n in 1..=3 {
        assert_eq!(guess(n).await, 400);
    }
    assert_eq!(guess(4).await, 429, "the account's limit holds across addresses");
}

#[tokio::test]
async fn sign_in_guesses_are_limited_per_account_whatever_the_address() {
    let app =
        spawn_app_with(&[("DARKROOM_TRUSTED_PROXIES", "127.0.0.1"), ("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "3")]).await;
    let email = app.sign_up(&client()).await;
    let guess = |n: u8, password: &'static str| {
        let (url, email) = (format!("{}/api/sign_in", app.base), email.clone());
        async move {
            client()
                .post(url)
                .header("x-forwarded-for", format!("2001:db8:{n}::1"))
                .form(&[("email", email.as_str()), ("password", password)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for n in 1..=3 {
        assert_eq!(guess(n, "a wrong guess").await, 401);
    }
    assert_eq!(guess(4, "a wrong guess").await, 429, "a fourth network's guess waits too");
    assert_eq!(guess(5, "correct horse").await, 429, "the account takes no guess this minute");
}

/// "Delete account": with the password, every task, image, upload and
/// session of the account goes, on every instance; the email is free for a
/// new sign-up; the ledger and purchases stay, tied to the id only.
#[tokio::test]
async fn deleting_the_account_leaves_nothing_of_it_on_any_instance() {
    let (a, b, owner) = owner_on_two_instances().await;
    let email = a.call(&owner, "me", &[]).await.1["email"].as_str().expect("email").to_owned();
    let user = a.user_id(&email).await;
    let done = completed_task(&a, &owner, "a lighthouse at dusk").await;
    let url = a.call(&owner, "share_image", &[("task_id", &done)]).await.1["url"].as_str().unwrap().to_owned();
    let (_, bought) = a.call(&owner, "buy_credits", &[("package", "100")]).await;
    assert!(bought["purchase_id"].is_string(), "{bought}");
    let part = reqwest::multipart::Part::bytes(tiny_png()).file_name("x.png").mime_str("image/png").unwrap();
    let upload = owner
        .post(format!("{}/api/upload_image", a.base))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    let elsewhere = client();
    b.call(&elsewhere, "sign_in", &[("email", &email), ("password", "correct horse")]).await;
    assert_eq!(b.call(&elsewhere, "me", &[]).await.0, 200);
    let stored = objects(&a).await;
    assert!(stored.iter().any(|k| k.contains(&done)), "{stored:?}");
    assert!(stored.iter().any(|k| k.starts_with("uploads/")), "{stored:?}");

    // A wrong password, or a generation still running, deletes nothing.
    let (status, body) = a.call(&owner, "delete_account", &[("password", "not the password")]).await;
    assert_eq!((status, body["message"].as_str()), (400, Some("the password is wrong")));
    let running = generate(&a, &owner, "a slow tide #slow").await;
    let (status, body) = a.call(&owner, "delete_account", &[("password", "correct horse")]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(a.count(&format!("SELECT COUNT(*) FROM tasks WHERE user_id = '{user}'")).await, 2);
    assert_eq!(a.call(&owner, "cancel_image", &[("task_id", &running)]).await.0, 200);

    let (status, body) = a.call(&owner, "delete_account", &[("password", "correct horse")]).await;
    assert_eq!(status, 200, "{body}");
    for (app, c) in [(&a, &owner), (&b, &elsewhere), (&b, &owner)] {
        assert_eq!(app.call(c, "me", &[]).await.0, 401, "every session ended");
        assert_eq!(get(c, &format!("{}/images/{done}", app.base)).await.0, 404);
        assert_eq!(get(&client(), &format!("{}{url}", app.base)).await.0, 404, "the share link is gone");
    }
    let left = objects(&a).await;
    assert!(left.iter().all(|k| !k.contains(&done) && !k.starts_with("uploads/")), "objects left: {left:?}");
    assert_eq!(a.count(&format!("SELECT COUNT(*) FROM tasks WHERE user_id = '{user}'")).await, 0);
    assert_eq!(a.count(&format!("SELECT COUNT(*) FROM uploads WHERE user_id = '{user}'")).await, 0);
    assert_eq!(a.count(&format!("SELECT COUNT(*) FROM users WHERE email = '{email}'")).await, 0, "no email kept");
    // The books keep their rows, tied to the id.
    assert!(a.count(&format!("SELECT COUNT(*) FROM credit_ledger WHERE user_id = '{user}'")).await >= 3);
    assert_eq!(a.count(&format!("SELECT COUNT(*) FROM purchases WHERE user_id = '{user}'")).await, 1);
    // The old password opens nothing; the address is free again.
    let (status, _) = a.call(&client(), "sign_in", &[("email", &email), ("password", "correct horse")]).await;
    assert_eq!(status, 401);
    let fresh = client();
    let (status, body) = a.call(&fresh, "sign_up", &[("email", &email), ("password", "a new start")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["credits"], 0, "the mailbox had its sign-up credits");
    assert_ne!(a.user_id(&email).await, user, "a new account");
    let history = a.call(&fresh, "list_history", &[]).await.1;
    assert_eq!(history["items"].as_array().map(Vec::len), Some(0), "nothing of the old account: {history}");
}

/// A small PNG.
fn tiny_png() -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(8, 8, image::Rgb([9, 90, 200])))
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// Every object in `app`'s store.
async fn objects(app: &TestApp) -> Vec<String> {
    use futures::TryStreamExt;
    app.state.objects.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap()
}
