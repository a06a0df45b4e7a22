//! The queue and the provider budget over HTTP: generations beyond the
//! budget wait `queued` (charged) and are submitted in fair order as it
//! allows, never refused for the provider; a queued task can be canceled
//! or time out (refunded, never submitted); a 429 on a create queues the
//! task again and pauses every create; the queue is in the database, so
//! another instance takes it over; instances sharing PostgreSQL share one
//! budget and never submit a task twice. Counts come from the simulator
//! (`/sim/_stats`), which enforces its own limits.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{
    Clock, TestApp, client, fresh_postgres_database, generate, manual_clock, spawn_app_on,
    ten_long_tasks_on_a_tight_budget, unfinished, uuid_like,
};
use darkroom::server::engine::budget::Call;
use darkroom::server::engine::queries;
use darkroom::server::ids::TaskId;

/// What the app's simulator served (`GET /sim/_stats`).
async fn sim_stats(app: &TestApp) -> Value {
    reqwest::get(format!("{}/sim/_stats", app.base)).await.expect("stats").json().await.expect("json")
}

async fn view(app: &TestApp, c: &reqwest::Client, id: &str) -> Value {
    let (status, view) = app.call(c, "check_image_status", &[("task_id", id)]).await;
    assert_eq!(status, 200, "{view}");
    view
}

/// Waits (in real time, the clock standing) until `id` leaves the queue.
async fn left_queue(app: &TestApp, c: &reqwest::Client, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = view(app, c, id).await;
        if v["status"] != "queued" {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still queued: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Moves `clock` on in steps, polling `id`, until it is finished.
async fn finish_on(app: &TestApp, c: &reqwest::Client, clock: &Clock, id: &str) -> Value {
    for _ in 0..600 {
        let v = view(app, c, id).await;
        if !unfinished(&v) {
            return v;
        }
        clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never finished");
}

/// An app whose budget allows one create in 15 s (`create=5/min`: 80 % of
/// it is 4 a minute, with a burst of one), on a clock the test moves.
async fn one_create_per_15_s() -> (TestApp, Clock) {
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_PROVIDER_LIMITS", "create=5/min")], clock.clone()).await;
    (app, clock)
}

#[tokio::test]
async fn generations_beyond_the_budget_wait_in_a_fair_queue_and_all_complete() {
    let (app, clock) = one_create_per_15_s().await;
    let (a, b) = (client(), client());
    app.sign_up(&a).await;
    app.sign_up(&b).await;
    // a's first goes straight to the provider; the rest find no room.
    let a1 = generate(&app, &a, "a first lake").await;
    assert_eq!(view(&app, &a, &a1).await["status"], "processing");
    // A millisecond apart: the queue is first come, first served within
    // each round (ties within a millisecond go by id).
    let mut queued = Vec::new();
    for (c, prompt) in [(&a, "a second lake"), (&a, "a third lake"), (&b, "b's only lake")] {
        clock.advance(Duration::from_millis(1));
        queued.push(generate(&app, c, prompt).await);
    }
    let [a2, a3, b1] = <[String; 3]>::try_from(queued).expect("three");
    assert_eq!(app.balance(&a).await, 70, "charged while queued");
    // Round-robin: b's first comes before a's second and third (a already
    // has one at the provider).
    for (c, id, place) in [(&b, &b1, 1), (&a, &a2, 2), (&a, &a3, 3)] {
        let v = view(&app, c, id).await;
        assert_eq!((v["status"].as_str(), v["queue_position"].as_u64()), (Some("queued"), Some(place)), "{v}");
        let advice = v["poll_after_ms"].as_u64().expect("advice");
        assert!((500..=3_000).contains(&advice), "{advice}");
    }
    assert_eq!(sim_stats(&app).await["creates"], 1);
    // Each 15 s, the head of the queue goes.
    clock.advance(Duration::from_secs(15));
    assert_eq!(left_queue(&app, &b, &b1).await["status"], "processing");
    let v = view(&app, &a, &a2).await;
    assert_eq!((v["status"].as_str(), v["queue_position"].as_u64()), (Some("queued"), Some(1)), "{v}");
    assert_eq!(view(&app, &a, &a3).await["queue_position"], 2);
    clock.advance(Duration::from_secs(15));
    assert_eq!(left_queue(&app, &a, &a2).await["status"], "processing");
    clock.advance(Duration::from_secs(15));
    assert_eq!(left_queue(&app, &a, &a3).await["status"], "processing");
    for (c, id) in [(&a, &a1), (&a, &a2), (&a, &a3), (&b, &b1)] {
        assert_eq!(finish_on(&app, c, &clock, id).await["status"], "completed");
    }
    let stats = sim_stats(&app).await;
    assert_eq!((&stats["creates"], &stats["throttled"]), (&Value::from(4), &Value::from(0)), "{stats}");
    assert_eq!(app.balance(&a).await, 70);
    assert_eq!(app.balance(&b).await, 90);
}

#[tokio::test]
async fn a_queued_task_can_be_canceled_and_is_never_submitted() {
    let (app, clock) = one_create_per_15_s().await;
    let c = client();
    app.sign_up(&c).await;
    let first = generate(&app, &c, "the one that runs").await;
    let queued = generate(&app, &c, "the one that waits").await;
    assert_eq!(view(&app, &c, &queued).await["status"], "queued");
    let (status, canceled) = app.call(&c, "cancel_image", &[("task_id", &queued)]).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!((canceled["status"].as_str(), canceled["refunded"].as_bool()), (Some("canceled"), Some(true)));
    assert_eq!(app.balance(&c).await, 90, "refunded");
    clock.advance(Duration::from_secs(60));
    assert_eq!(finish_on(&app, &c, &clock, &first).await["status"], "completed");
    assert_eq!(sim_stats(&app).await["creates"], 1, "the canceled one never reached the provider");
    assert_eq!(view(&app, &c, &queued).await["status"], "canceled");
}

#[tokio::test]
async fn a_queued_task_past_its_deadline_fails_and_is_refunded() {
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_TASK_DEADLINE_SECS", "60")], clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    // Every create waits five minutes, as after the provider's 429.
    app.state.budget.throttled(Call::Create, Some(Duration::from_secs(300))).await.expect("pause");
    let id = generate(&app, &c, "a long wait").await;
    assert_eq!(view(&app, &c, &id).await["status"], "queued");
    assert_eq!(app.balance(&c).await, 90);
    clock.advance(Duration::from_secs(59));
    assert_eq!(view(&app, &c, &id).await["status"], "queued");
    clock.advance(Duration::from_secs(1));
    let v = view(&app, &c, &id).await;
    assert_eq!((v["status"].as_str(), v["refunded"].as_bool()), (Some("failed"), Some(true)), "{v}");
    assert_eq!(v["error"], "Timed out after 1 min in the queue (the image service was busy).");
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(sim_stats(&app).await["creates"], 0);
}

#[tokio::test]
async fn a_429_on_create_queues_the_task_again_and_pauses_every_create() {
    // The provider allows one create a minute; our budget thinks 480.
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_SIM_RATE_LIMITS", "create=1/min")], clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    let first = generate(&app, &c, "gets through").await;
    assert_eq!(view(&app, &c, &first).await["status"], "processing");
    // Refused by the provider: queued again, not failed, nothing refunded.
    clock.advance(Duration::from_millis(1));
    let second = generate(&app, &c, "throttled").await;
    let v = view(&app, &c, &second).await;
    assert_eq!((v["status"].as_str(), v["queue_position"].as_u64()), (Some("queued"), Some(1)), "{v}");
    // Every create now waits out the provider's Retry-After: the next one
    // does not even try.
    clock.advance(Duration::from_millis(1));
    let third = generate(&app, &c, "waits behind it").await;
    assert_eq!(view(&app, &c, &third).await["queue_position"], 2);
    let stats = sim_stats(&app).await;
    assert_eq!((&stats["creates"], &stats["throttled"]), (&Value::from(1), &Value::from(1)), "{stats}");
    assert_eq!(app.balance(&c).await, 70);
    // After the wait, they go (one a minute, as the provider allows).
    for id in [&second, &third] {
        let start = Instant::now();
        while view(&app, &c, id).await["status"] == "queued" {
            assert!(start.elapsed() < Duration::from_secs(20), "{id} stays queued");
            clock.advance(Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for id in [&first, &second, &third] {
        assert_eq!(finish_on(&app, &c, &clock, id).await["status"], "completed");
    }
    let stats = sim_stats(&app).await;
    assert_eq!(stats["creates"], 3, "{stats}");
    assert!(stats["throttled"].as_u64().unwrap_or(99) <= 2, "each 429 paused every create: {stats}");
    assert_eq!(app.balance(&c).await, 70);
}

#[tokio::test]
async fn another_instance_takes_the_queue_over() {
    // Instance a cannot submit (its creates are paused, as after a 429
    // with a long wait); b, on the same database with a provider token of
    // its own (so a budget of its own), can: the queue is in the
    // database, as after a restart.
    let clock = manual_clock();
    let a = spawn_app_on(&[], clock.clone()).await;
    a.state.budget.throttled(Call::Create, Some(Duration::from_secs(300))).await.expect("pause");
    let c = client();
    a.sign_up(&c).await;
    let mut ids = Vec::new();
    for prompt in ["one", "two"] {
        clock.advance(Duration::from_millis(1));
        ids.push(generate(&a, &c, prompt).await);
    }
    for (id, place) in ids.iter().zip(1..) {
        assert_eq!(view(&a, &c, id).await["queue_position"], place);
    }
    let objects = format!("file://{}", a.state.config.data_dir.join("objects").display());
    let b =
        spawn_app_on(&[("DATABASE_URL", &a.state.config.database_url), ("DARKROOM_STORAGE", &objects)], clock.clone())
            .await;
    // b's dispatcher takes the queue at its start; its own simulator
    // answers for the predictions it made.
    for id in &ids {
        left_queue(&b, &c, id).await;
        assert_eq!(finish_on(&b, &c, &clock, id).await["status"], "completed");
    }
    assert_eq!(sim_stats(&b).await["creates"], 2);
    assert_eq!(sim_stats(&a).await["creates"], 0);
}

/// A stand-in for Replicate's API that answers every request as
/// `upstream` does, `delay` late: a provider whose creates are slow. It
/// signs in upstream with `token`, whatever token its callers use (so
/// theirs, and their budget, can be their own). Its address, to give as
/// `REPLICATE_BASE_URL` (with `/v1`).
async fn slow_provider(upstream: String, token: &str, delay: Duration) -> String {
    let bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let forward = move |request: axum::extract::Request| {
        let (upstream, bearer) = (upstream.clone(), bearer.clone());
        async move {
            tokio::time::sleep(delay).await;
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, bearer);
            if let Some(value) = parts.headers.get(reqwest::header::CONTENT_TYPE) {
                headers.insert(reqwest::header::CONTENT_TYPE, value.clone());
            }
            let answer = reqwest::Client::new()
                .request(parts.method, format!("{upstream}{path}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .expect("upstream");
            let status = answer.status();
            let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
            let mut response =
                axum::response::Response::new(axum::body::Body::from(answer.bytes().await.expect("read")));
            *response.status_mut() = status;
            if let Some(content_type) = content_type {
                response.headers_mut().insert(reqwest::header::CONTENT_TYPE, content_type);
            }
            response
        }
    };
    let router = axum::Router::new().fallback(forward);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_dispatcher_reads_the_order_once_for_a_batch_of_heads() {
    // 96 tasks queued on instance a (its creates paused); b, on the same
    // database with room for all of them at once, submits them to a
    // provider that takes 300 ms per create (a's simulator behind a slow
    // stand-in), so b's 32 submission slots are busy. Reading the order is
    // a pass over every queued and in-flight task: b reads it once per
    // batch of 32 heads, not once per slot that frees up.
    let clock = manual_clock();
    let a = spawn_app_on(
        &[
            ("DARKROOM_MAX_ACTIVE_TASKS", "200"),
            ("DARKROOM_GENERATIONS_PER_MINUTE", "1000"),
            ("DARKROOM_SIGNUP_CREDITS", "10000"),
            ("DARKROOM_SIM_TOKEN", "r8_slow"),
            ("DARKROOM_SIM_RATE_LIMITS", "create=600000/min"),
        ],
        clock.clone(),
    )
    .await;
    a.state.budget.throttled(Call::Create, Some(Duration::from_secs(300))).await.expect("pause");
    let c = client();
    a.sign_up(&c).await;
    let mut ids = Vec::new();
    for n in 0..96 {
        clock.advance(Duration::from_millis(1));
        ids.push(generate(&a, &c, &format!("batch {n}")).await);
    }
    let provider = slow_provider(format!("{}/sim", a.base), "r8_slow", Duration::from_millis(300)).await;
    let objects = format!("file://{}", a.state.config.data_dir.join("objects").display());
    let b = spawn_app_on(
        &[
            ("DATABASE_URL", &a.state.config.database_url),
            ("DARKROOM_STORAGE", &objects),
            ("DARKROOM_PROVIDER", "replicate"),
            // A token (so a budget, on PostgreSQL too) of its own.
            ("REPLICATE_API_TOKEN", "r8_b"),
            ("REPLICATE_BASE_URL", &format!("{provider}/v1")),
            ("DARKROOM_PROVIDER_LIMITS", "create=600000/min"),
        ],
        clock.clone(),
    )
    .await;
    for id in &ids {
        assert_eq!(left_queue(&b, &c, id).await["status"], "processing");
    }
    // The last creates are still on their way.
    let start = Instant::now();
    while sim_stats(&a).await["creates"] != 96 {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", sim_stats(&a).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three batches of 32, and the read that found the queue empty.
    let reads = b.state.metrics.queue_reads("dispatch");
    assert!(reads <= 4, "{reads} reads of the order for 96 submissions");
    assert_eq!(b.state.metrics.queue_claims_lost(), 0);
}

#[tokio::test]
async fn polls_never_spend_more_than_the_budget() {
    // Other calls: 60 a minute published, so 48 (a burst of 1) to spend;
    // twenty tasks polled as fast as possible for 10 s of the clock.
    let clock = manual_clock();
    let app = spawn_app_on(
        &[("DARKROOM_PROVIDER_LIMITS", "other=60/min"), ("DARKROOM_SIM_DURATION_MS", "600000")],
        clock.clone(),
    )
    .await;
    let c = client();
    app.sign_up(&c).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(generate(&app, &c, &format!("a long one {n}")).await);
    }
    let before = sim_stats(&app).await["gets"].as_u64().unwrap_or(0);
    let mut advice = Vec::new();
    for _ in 0..100 {
        clock.advance(Duration::from_millis(100));
        for id in &ids {
            let v = view(&app, &c, id).await;
            advice.push(v["poll_after_ms"].as_u64().unwrap_or(0));
        }
    }
    let gets = sim_stats(&app).await["gets"].as_u64().unwrap_or(0) - before;
    // 10 s at 48 a minute, plus the burst.
    assert!(gets <= 9, "{gets} GETs in 10 s");
    assert!(gets >= 5, "the budget is spent, not hoarded: {gets}");
    assert_eq!(sim_stats(&app).await["throttled"], 0);
    let denied = app.state.metrics.provider_calls("get", "denied");
    assert!(denied > 0, "polls found no room");
    // A denied task waits for its turn instead of trying (and writing
    // itself) again on every one of its 100 polls.
    assert!(denied <= 30, "{denied} denied checks for 1,000 polls");
    // The advice says when a check can come: well past the interval.
    assert!(advice.iter().any(|&a| a > 3_000), "{:?}", &advice[advice.len() - 10..]);
}

/// While checks wait for the budget, the one worth most is made first: a
/// new short task's (its end unknown, so a check may find it done) before
/// the regular checks of long tasks whose ends are minutes away, though
/// those were denied first and their pages keep polling.
/// Other calls: 60 a minute published, 48 to spend (one every 1.25 s);
/// ten tasks in flight are checked 16.7 s apart.
#[tokio::test]
async fn a_short_task_is_checked_before_long_ones_that_waited_longer() {
    let clock = manual_clock();
    let (app, c, long) = ten_long_tasks_on_a_tight_budget(clock.clone()).await;
    // 30 s, their pages polling: their first checks (from 2 s, one every
    // 1.25 s of the budget), then the next ones 16.7 s later.
    for _ in 0..120 {
        clock.advance(Duration::from_millis(250));
        tokio::time::sleep(Duration::from_millis(10)).await;
        for id in &long {
            view(&app, &c, id).await;
        }
    }
    let first_checks = sim_stats(&app).await["gets"].as_u64().unwrap_or(0);
    assert!(first_checks >= 10, "{first_checks} checks of ten tasks");
    // A 429 pauses every check for 10 s (as `calls::counted` does on one;
    // here the test makes it, so the pause is exact). The long tasks'
    // pages poll: their checks are denied, and wait.
    app.state.budget.throttled(Call::Other, Some(Duration::from_secs(10))).await.expect("pause");
    let paused_at = clock.now_ms();
    for id in &long {
        assert_eq!(view(&app, &c, id).await["status"], "processing");
    }
    let short = generate(&app, &c, "a short one #ms=5000").await;
    // The clock stands once the provider was asked again (while the image
    // is stored, if that check was the short task's).
    let start = Instant::now();
    let done = loop {
        if sim_stats(&app).await["gets"].as_u64().unwrap_or(0) == first_checks {
            clock.advance(Duration::from_millis(250));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        for id in &long {
            view(&app, &c, id).await;
        }
        let v = view(&app, &c, &short).await;
        if !unfinished(&v) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first check after the pause was not the short task's: {v}"
        );
    };
    assert_eq!(done["status"], "completed", "{done}");
    // Its prediction ended at 5 s, during the pause; the first check after
    // it found the image. (Checked in the order they were denied, it came
    // after the ten long ones, 17.5 s after it was created.)
    let took = done["finished_ms"].as_i64().expect("finished") - done["created_ms"].as_i64().expect("created");
    assert!(took <= 10_500, "completed {took} ms after it was created");
    // Then the long ones, in turn, as the budget allows.
    for _ in 0..80 {
        clock.advance(Duration::from_millis(250));
        tokio::time::sleep(Duration::from_millis(10)).await;
        for id in &long {
            view(&app, &c, id).await;
        }
    }
    let resumed = paused_at + 10_000;
    for id in &long {
        let id = TaskId::parse(id).expect("id");
        let task = queries::load(&app.state.db, &id).await.expect("load").expect("row");
        assert!(task.last_polled_at.is_some_and(|at| at >= resumed), "{id} not checked since the pause");
    }
    let stats = sim_stats(&app).await;
    let gets = stats["gets"].as_u64().unwrap_or(0) - first_checks;
    let allowed = (clock.now_ms() - resumed) as u64 / 1_250 + 1;
    assert!(gets <= allowed, "{gets} checks since the pause, {allowed} allowed");
    assert_eq!(stats["throttled"], 0);
}

/// A task whose check waits for the budget still fails at its deadline:
/// the reconciler passes over tasks waiting in the backlog only until
/// then. (A 429's pause of five minutes holds every check here.)
#[tokio::test]
async fn a_task_waiting_for_the_budget_still_expires() {
    let clock = manual_clock();
    let app = spawn_app_on(
        &[
            ("DARKROOM_PROVIDER_LIMITS", "other=60/min"),
            ("DARKROOM_TASK_DEADLINE_SECS", "60"),
            ("DARKROOM_RECONCILE_INTERVAL_SECS", "10"),
        ],
        clock.clone(),
    )
    .await;
    let c = client();
    app.sign_up(&c).await;
    app.state.budget.throttled(Call::Other, Some(Duration::from_secs(300))).await.expect("pause");
    let id = generate(&app, &c, "a long one #ms=600000").await;
    let task = TaskId::parse(&id).expect("id");
    // Its first check is due: it waits for the pause to end.
    clock.advance(Duration::from_secs(3));
    let start = Instant::now();
    while !app.state.backlog.holds(&task, clock.now_ms()) {
        assert!(start.elapsed() < Duration::from_secs(5), "its first check did not wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past its deadline (nobody polls), the reconciler's pass fails it.
    clock.advance(Duration::from_secs(60));
    let start = Instant::now();
    while app.count("SELECT COUNT(*) FROM tasks WHERE status = 'failed'").await < 1 {
        assert!(start.elapsed() < Duration::from_secs(15), "the reconciler did not fail it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = view(&app, &c, &id).await;
    assert_eq!(v["error"], "Timed out after 1 min.", "{v}");
    assert_eq!(v["refunded"], true);
    assert_eq!(sim_stats(&app).await["gets"], 0, "never checked");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: make test runs it with DARKROOM_TEST_POSTGRES"]
async fn instances_on_one_postgres_share_one_budget_and_submit_each_task_once() {
    let database_url = fresh_postgres_database().await.expect("DARKROOM_TEST_POSTGRES names a PostgreSQL server");
    // create=30/min published: the budget is 24 a minute (one in 2.5 s,
    // a burst of one), shared by three instances with one token.
    let secret = format!("shared-{}", uuid_like());
    let settings = [
        ("DATABASE_URL", database_url.as_str()),
        ("DARKROOM_SIM_SECRET", secret.as_str()),
        ("DARKROOM_PROVIDER_LIMITS", "create=30/min"),
        ("DARKROOM_SIGNUP_CREDITS", "1000"),
    ];
    let clock = manual_clock();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(spawn_app_on(&settings, clock.clone()).await);
    }
    let people: Vec<reqwest::Client> = (0..3).map(|_| client()).collect();
    for p in &people {
        instances[0].sign_up(p).await;
    }
    let creates = || async {
        let mut n = 0;
        for app in &instances {
            n += sim_stats(app).await["creates"].as_u64().unwrap_or(0);
        }
        n
    };
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push((n % 3, generate(&instances[n % 3], &people[n % 3], &format!("shared budget {n}")).await));
    }
    assert_eq!(creates().await, 1, "one burst between the three");
    // Each 2.5 s of the clock, one more create, from whichever instance.
    for made in 2..=12 {
        clock.advance(Duration::from_millis(2_500));
        let start = Instant::now();
        while creates().await < made {
            assert!(start.elapsed() < Duration::from_secs(10), "create {made} never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(creates().await, made, "never more than the shared budget");
    }
    for (n, id) in &ids {
        assert_eq!(finish_on(&instances[*n], &people[*n], &clock, id).await["status"], "completed");
    }
    assert_eq!(creates().await, 12, "each task created once, across the instances");
    for app in &instances {
        assert_eq!(sim_stats(app).await["throttled"], 0);
    }
}
