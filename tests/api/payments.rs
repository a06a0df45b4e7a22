//! Buying credits against the built-in Stripe simulator, over HTTP: a paid
//! checkout grants once whatever way the news comes (the webhook, the
//! success page, the reconciler) and however often; declines and failed
//! settlements grant nothing; refunds and disputes take back what they are
//! worth, below zero if spent; forged, stale and altered events change
//! nothing. After every test each account's credits equal the sum of its
//! ledger.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Clock, TestApp, client, fresh_postgres_database, manual_clock, spawn_app_on, spawn_app_with};

const KEY: &str = "sk_test_operator";

/// Starts buying `package`; (purchase id, checkout page).
async fn buy(app: &TestApp, c: &reqwest::Client, package: &str) -> (String, String) {
    let (status, body) = app.call(c, "buy_credits", &[("package", package)]).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("{}/sim/stripe/pay/cs_test_", app.base)), "{url}");
    (body["purchase_id"].as_str().expect("purchase_id").to_owned(), url)
}

/// Pays on the checkout page with `card`, as the form posts it.
async fn pay(url: &str, card: &str) -> reqwest::Response {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    browser.post(url).form(&[("card_number", card)]).send().await.expect("pay")
}

/// The Checkout Session behind a checkout page.
async fn session(app: &TestApp, url: &str) -> Value {
    let id = url.rsplit('/').next().unwrap();
    stripe_get(app, &format!("v1/checkout/sessions/{id}")).await
}

async fn stripe_get(app: &TestApp, path: &str) -> Value {
    let r =
        reqwest::Client::new().get(format!("{}/sim/stripe/{path}", app.base)).bearer_auth(KEY).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn stripe_post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/sim/stripe/{path}", app.base))
        .bearer_auth(KEY)
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// The newest event of `kind` the simulator made.
async fn newest_event(app: &TestApp, kind: &str) -> Value {
    let list = stripe_get(app, &format!("v1/events?type={kind}&limit=1")).await;
    list["data"][0].clone()
}

/// Waits until `c`'s credits are `want`.
async fn credits_become(app: &TestApp, c: &reqwest::Client, want: i64) {
    let start = Instant::now();
    loop {
        let have = app.balance(c).await;
        if have == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "credits stay {have}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every account's credits equal the sum of its ledger, and the ledger has
/// one purchase row per paid purchase.
async fn books_balance(app: &TestApp) {
    use sqlx::Row;
    let users = sqlx::query("SELECT id FROM users").fetch_all(&app.state.db).await.unwrap();
    for row in users {
        let id: String = row.get("id");
        let credits = darkroom::server::credits::balance(&app.state.db, &id).await.unwrap();
        let sum = darkroom::server::credits::ledger_sum(&app.state.db, &id).await.unwrap();
        assert_eq!(credits, sum, "account {id}: credits vs ledger");
    }
    let paid = app.count("SELECT COUNT(*) FROM purchases WHERE status IN ('paid', 'refunded')").await;
    let granted = app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'purchase'").await;
    assert_eq!(paid, granted, "one grant per paid purchase");
}

async fn purchase_status(app: &TestApp, c: &reqwest::Client, id: &str) -> String {
    let (status, list) = app.call(c, "list_purchases", &[]).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().cloned().unwrap_or_default();
    list.iter().find(|p| p["id"] == id).map(|p| p["status"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_paid_checkout_grants_its_credits_once() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (status, packages) = app.call(&c, "list_packages", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(packages[0], serde_json::json!({"id": "100", "credits": 100, "price": "5.00 USD"}));
    let (id, url) = buy(&app, &c, "100").await;
    assert_eq!(purchase_status(&app, &c, &id).await, "pending");
    assert_eq!(session(&app, &url).await["amount_total"], 500, "the server named the price");

    let paid = pay(&url, "4242 4242 4242 4242").await;
    assert_eq!(paid.status(), 303);
    let back = paid.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(back, format!("{}/account?purchase={id}", app.base));
    credits_become(&app, &c, 200).await;
    // The success page, then asked again: no second grant.
    let page = c.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Payment received: 100 credits added."), "{page}");
    let (_, again) = app.call(&c, "confirm_purchase", &[("purchase_id", &id)]).await;
    assert_eq!(again["status"], "paid");
    assert_eq!(app.balance(&c).await, 200);
    let (_, ledger) = app.call(&c, "list_ledger", &[]).await;
    let purchase = ledger["items"].as_array().unwrap().iter().find(|e| e["kind"] == "purchase").cloned().unwrap();
    assert_eq!(
        (purchase["amount"].as_i64(), purchase["what"].as_str()),
        (Some(100), Some("Bought credits (5.00 USD)"))
    );
    books_balance(&app).await;
}

#[tokio::test]
async fn the_same_news_delivered_again_in_parallel_or_as_a_new_event_grants_once() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (_, url) = buy(&app, &c, "500").await;
    stripe_post(&app, "_hold", &[]).await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    let event = newest_event(&app, "checkout.session.completed").await;
    let id = event["id"].as_str().unwrap().to_owned();
    stripe_post(&app, "_release", &[]).await;
    credits_become(&app, &c, 600).await;
    let resend = format!("_events/{id}/resend");
    let resends = (0..5).map(|_| stripe_post(&app, &resend, &[]));
    futures::future::join_all(resends).await;
    stripe_post(&app, &format!("_events/{id}/resend_as_new"), &[]).await;
    stripe_post(&app, &format!("_events/{id}/resend_as_new"), &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.balance(&c).await, 600);
    books_balance(&app).await;
}

#[tokio::test]
async fn the_success_page_grants_before_the_webhook_and_the_webhook_after_changes_nothing() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (id, url) = buy(&app, &c, "100").await;
    stripe_post(&app, "_hold", &[]).await;
    let back = pay(&url, "4242424242424242").await.headers()["location"].to_str().unwrap().to_owned();
    let page = c.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Payment received: 100 credits added."), "{page}");
    assert_eq!(app.balance(&c).await, 200);
    stripe_post(&app, "_release", &[("order", "reverse")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.balance(&c).await, 200);
    assert_eq!(purchase_status(&app, &c, &id).await, "paid");
    books_balance(&app).await;
}

#[tokio::test]
async fn a_payment_whose_news_never_comes_is_granted_by_the_reconciler() {
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_RECONCILE_INTERVAL_SECS", "5")], clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    let (id, url) = buy(&app, &c, "100").await;
    stripe_post(&app, "_hold", &[]).await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    stripe_post(&app, "_drop", &[]).await;
    // Nobody comes back, no event comes: a minute on, the reconciler asks.
    advance_until(&clock, Duration::from_secs(70), || async { app.balance(&c).await == 200 }).await;
    assert_eq!(purchase_status(&app, &c, &id).await, "paid");
    books_balance(&app).await;
}

/// Moves `clock` on a second at a time (up to `most`) until `done`.
async fn advance_until<F, Fut>(clock: &Clock, most: Duration, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..most.as_secs() {
        if done().await {
            return;
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(done().await, "not done after {most:?} of the clock");
}

#[tokio::test]
async fn a_declined_card_says_so_and_grants_nothing() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (id, url) = buy(&app, &c, "100").await;
    let declined = pay(&url, "4000000000000002").await;
    assert_eq!(declined.status(), 402);
    let page = declined.text().await.unwrap();
    assert!(page.contains("Your card was declined."), "{page}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(purchase_status(&app, &c, &id).await, "pending", "it can still be paid");
    // Paid after all, with another card.
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    credits_become(&app, &c, 200).await;
    books_balance(&app).await;
}

#[tokio::test]
async fn a_payment_that_settles_later_grants_then_and_one_that_fails_grants_nothing() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (later, later_url) = buy(&app, &c, "100").await;
    let (failing, failing_url) = buy(&app, &c, "500").await;
    assert_eq!(pay(&later_url, "4000000000000101").await.status(), 303);
    assert_eq!(pay(&failing_url, "4000000000000341").await.status(), 303);
    // Completed but not paid yet: nothing granted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.balance(&c).await, 100);
    credits_become(&app, &c, 200).await;
    let start = Instant::now();
    while purchase_status(&app, &c, &failing).await != "failed" {
        assert!(start.elapsed() < Duration::from_secs(10), "the failed settlement never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(purchase_status(&app, &c, &later).await, "paid");
    assert_eq!(app.balance(&c).await, 200);
    books_balance(&app).await;
}

#[tokio::test]
async fn a_partial_then_a_full_refund_take_back_their_share_once() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (id, url) = buy(&app, &c, "100").await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    credits_become(&app, &c, 200).await;
    let payment = session(&app, &url).await["payment_intent"].as_str().unwrap().to_owned();
    // 2.00 of 5.00: 40 of the 100 credits.
    stripe_post(&app, "v1/refunds", &[("payment_intent", &payment), ("amount", "200")]).await;
    credits_become(&app, &c, 160).await;
    let first = newest_event(&app, "charge.refunded").await["id"].as_str().unwrap().to_owned();
    stripe_post(&app, "v1/refunds", &[("payment_intent", &payment)]).await;
    credits_become(&app, &c, 100).await;
    assert_eq!(purchase_status(&app, &c, &id).await, "refunded");
    // The first refund's event again, late: nothing moves.
    stripe_post(&app, &format!("_events/{first}/resend"), &[]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.balance(&c).await, 100);
    let (_, ledger) = app.call(&c, "list_ledger", &[]).await;
    let refunds: Vec<i64> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "payment_refund")
        .filter_map(|e| e["amount"].as_i64())
        .collect();
    assert_eq!(refunds, [-60, -40]);
    books_balance(&app).await;
}

#[tokio::test]
async fn a_dispute_takes_the_credits_back_below_zero_and_a_won_one_gives_them_back() {
    let app = spawn_app_with(&[("DARKROOM_SIGNUP_CREDITS", "0")]).await;
    let c = client();
    app.sign_up(&c).await;
    // Lost: the credits stay taken back.
    let (_, url) = buy(&app, &c, "100").await;
    assert_eq!(pay(&url, "4000000000000259").await.status(), 303);
    let dispute = loop {
        let d = newest_event(&app, "charge.dispute.created").await;
        if !d.is_null() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    credits_become(&app, &c, 0).await;
    let lost = dispute["data"]["object"]["id"].as_str().unwrap().to_owned();
    stripe_post(
        &app,
        &format!("v1/disputes/{lost}"),
        &[("evidence[uncategorized_text]", "losing_evidence"), ("submit", "true")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.balance(&c).await, 0);

    // Won, after the credits were spent: below zero meanwhile, and no
    // generation until then.
    let (_, url) = buy(&app, &c, "100").await;
    assert_eq!(pay(&url, "4000000000000259").await.status(), 303);
    let start = Instant::now();
    let won = loop {
        let d = newest_event(&app, "charge.dispute.created").await;
        if d["data"]["object"]["id"] != lost.as_str() && !d.is_null() {
            break d["data"]["object"]["id"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    credits_become(&app, &c, 0).await;
    let (status, refused) = app.call(&c, "generate_image", &[("prompt", "a lighthouse")]).await;
    assert_eq!(status, 402, "{refused}");
    // Spend first in a second purchase's life: buy 100 more, generate, and
    // let the second dispute's win give back its 100.
    let (_, url) = buy(&app, &c, "100").await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    credits_become(&app, &c, 100).await;
    let task = crate::helpers::generate(&app, &c, "a spent lighthouse").await;
    crate::helpers::poll_until_done(&app, &c, &task).await;
    assert_eq!(app.balance(&c).await, 90);
    stripe_post(
        &app,
        &format!("v1/disputes/{won}"),
        &[("evidence[uncategorized_text]", "winning_evidence"), ("submit", "true")],
    )
    .await;
    credits_become(&app, &c, 190).await;
    let (_, ledger) = app.call(&c, "list_ledger", &[]).await;
    let kinds: Vec<&str> = ledger["items"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "dispute").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "dispute_won").count(), 1, "funds reinstated and closed-won: once");
    books_balance(&app).await;
}

#[tokio::test]
async fn below_zero_a_generation_is_refused_until_topped_up() {
    let app = spawn_app_with(&[("DARKROOM_SIGNUP_CREDITS", "0")]).await;
    let c = client();
    app.sign_up(&c).await;
    let (_, url) = buy(&app, &c, "100").await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    credits_become(&app, &c, 100).await;
    let task = crate::helpers::generate(&app, &c, "a spent harbour").await;
    crate::helpers::poll_until_done(&app, &c, &task).await;
    let payment = session(&app, &url).await["payment_intent"].as_str().unwrap().to_owned();
    stripe_post(&app, "v1/refunds", &[("payment_intent", &payment)]).await;
    credits_become(&app, &c, -10).await;
    let (status, refused) = app.call(&c, "generate_image", &[("prompt", "a harbour")]).await;
    assert_eq!(status, 402);
    assert_eq!(
        refused["message"],
        "Your credits are below zero after a payment was refunded or disputed; buy credits to go on."
    );
    let (_, url) = buy(&app, &c, "100").await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    credits_become(&app, &c, 90).await;
    crate::helpers::generate(&app, &c, "a harbour again").await;
    books_balance(&app).await;
}

#[tokio::test]
async fn forged_stale_and_altered_events_are_refused_and_change_nothing() {
    use darkroom::stripe::signature::sign;
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (_, url) = buy(&app, &c, "100").await;
    stripe_post(&app, "_hold", &[]).await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    stripe_post(&app, "_drop", &[]).await;
    let event = newest_event(&app, "checkout.session.completed").await;
    let body = event.to_string();
    let secret = reqwest::get(format!("{}/sim/stripe/_secret", app.base)).await.unwrap().json::<Value>().await.unwrap()
        ["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let hook = |body: String, signature: Option<String>| {
        let mut r = reqwest::Client::new().post(format!("{}/webhooks/stripe", app.base)).body(body);
        if let Some(s) = signature {
            r = r.header("Stripe-Signature", s);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    let mut altered = event.clone();
    altered["data"]["object"]["amount_total"] = 1.into();
    for (what, body, signature) in [
        ("unsigned", body.clone(), None),
        ("signed with another secret", body.clone(), Some(sign("whsec_forged", body.as_bytes(), now))),
        ("stale", body.clone(), Some(sign(&secret, body.as_bytes(), now - 400))),
        ("from the future", body.clone(), Some(sign(&secret, body.as_bytes(), now + 400))),
        ("altered after signing", altered.to_string(), Some(sign(&secret, body.as_bytes(), now))),
        ("not a signature", body.clone(), Some("t=abc,v1=zz".into())),
        ("not an event", "{".into(), Some(sign(&secret, b"{", now))),
    ] {
        assert_eq!(hook(body, signature).await, 400, "{what}");
    }
    assert_eq!(app.balance(&c).await, 100, "nothing moved");
    // The genuine one, signed now, is taken.
    assert_eq!(hook(body.clone(), Some(sign(&secret, body.as_bytes(), now))).await, 200);
    assert_eq!(app.balance(&c).await, 200);
    books_balance(&app).await;
}

#[tokio::test]
async fn bad_packages_and_strangers_are_refused_and_nothing_is_written() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    for package in ["", "99", "100; DROP TABLE purchases", &"9".repeat(5_000)] {
        let (status, body) = app.call(&c, "buy_credits", &[("package", package)]).await;
        assert!(status == 400 || status == 413, "{package:.20}: {status} {body}");
    }
    let (status, _) = app.call(&reqwest::Client::new(), "buy_credits", &[("package", "100")]).await;
    assert_eq!(status, 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM purchases").await, 0);
    // Someone else's purchase is not found.
    let (id, _) = buy(&app, &c, "100").await;
    let other = client();
    app.sign_up(&other).await;
    let (status, _) = app.call(&other, "confirm_purchase", &[("purchase_id", &id)]).await;
    assert_eq!(status, 404);
    let (_, theirs) = app.call(&other, "list_purchases", &[]).await;
    assert_eq!(theirs, serde_json::json!([]));
}

#[tokio::test]
async fn with_payments_off_nothing_is_for_sale() {
    let app = spawn_app_with(&[("DARKROOM_PAYMENTS", "off")]).await;
    let c = client();
    app.sign_up(&c).await;
    assert_eq!(app.call(&c, "list_packages", &[]).await.1, serde_json::json!([]));
    assert_eq!(app.call(&c, "buy_credits", &[("package", "100")]).await.0, 404);
    let stripe = reqwest::get(format!("{}/sim/stripe/_secret", app.base)).await.unwrap();
    assert_eq!(stripe.status(), 404);
    let page = c.get(format!("{}/account", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Buy credits"));
}

#[tokio::test]
#[ignore = "needs PostgreSQL: make test runs it with DARKROOM_TEST_POSTGRES"]
async fn two_instances_on_postgres_receiving_one_event_at_once_grant_once() {
    use darkroom::stripe::signature::sign;
    let database_url = fresh_postgres_database().await.expect("DARKROOM_TEST_POSTGRES names a PostgreSQL server");
    let secret = format!("shared-{}", crate::helpers::uuid_like());
    let settings = [("DATABASE_URL", database_url.as_str()), ("DARKROOM_SIM_SECRET", secret.as_str())];
    let a = spawn_app_with(&settings).await;
    let b = spawn_app_with(&settings).await;
    let c = client();
    a.sign_up(&c).await;
    let (_, url) = buy(&a, &c, "100").await;
    stripe_post(&a, "_hold", &[]).await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    stripe_post(&a, "_drop", &[]).await;
    let body = newest_event(&a, "checkout.session.completed").await.to_string();
    let key =
        reqwest::get(format!("{}/sim/stripe/_secret", a.base)).await.unwrap().json::<Value>().await.unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_owned();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let signature = sign(&key, body.as_bytes(), now);
    let deliveries = (0..10).map(|n| {
        let base = if n % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let (body, signature) = (body.clone(), signature.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{base}/webhooks/stripe"))
                .header("Stripe-Signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(deliveries).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(a.balance(&c).await, 200);
    books_balance(&a).await;
}

/// Events out of order: a refund's news before the payment's (held, then
/// sent newest first). The refund names a payment the app has not heard
/// of yet; the payment's metadata names the purchase, which is settled
/// first, so the refund applies and the late payment event grants nothing
/// more.
#[tokio::test]
async fn a_refund_heard_of_before_its_payment_still_ends_right() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let (id, url) = buy(&app, &c, "100").await;
    stripe_post(&app, "_hold", &[]).await;
    assert_eq!(pay(&url, "4242424242424242").await.status(), 303);
    let payment = session(&app, &url).await["payment_intent"].as_str().unwrap().to_owned();
    stripe_post(&app, "v1/refunds", &[("payment_intent", &payment), ("amount", "200")]).await;
    stripe_post(&app, "_release", &[("order", "reverse")]).await;
    credits_become(&app, &c, 160).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.balance(&c).await, 160);
    assert_eq!(purchase_status(&app, &c, &id).await, "paid");
    books_balance(&app).await;
}
