//! Scale-out: two real `darkroom` processes on one PostgreSQL database and
//! one S3 bucket, started at the same moment (migrations race), both
//! reconcilers on, pollers split across the two. Afterwards balances are
//! exact, each completed task has exactly its one object, and the provider
//! was asked within the coalescing bound.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use rand::seq::SliceRandom;
use serde_json::Value;
use sqlx::Row;

use crate::helpers::{client, fresh_postgres_database, fresh_s3_bucket, unfinished, uuid_like};

const CHECK_MS: i64 = 500;

struct Instance {
    base: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn start(env: &[(&str, String)]) -> Instance {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let site = crate::helpers::stand_in_site(dir.path());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_darkroom"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("LEPTOS_SITE_ROOT", site)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("DARKROOM_DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start darkroom");
    Instance { base: format!("http://127.0.0.1:{port}"), _child: child, _dir: dir }
}

async fn wait_healthy(instance: &Instance) {
    let start = Instant::now();
    while reqwest::get(format!("{}/healthz", instance.base)).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(start.elapsed() < Duration::from_secs(30), "{} did not start", instance.base);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(c: &reqwest::Client, base: &str, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = c.post(format!("{base}/api/{endpoint}")).form(form).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Provider status calls an instance made, read from its `/metrics`.
async fn provider_gets(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("darkroom_provider_calls_total{") && l.contains(r#"call="get""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
#[ignore = "needs PostgreSQL and S3: make test runs it with both"]
async fn two_instances_share_one_database_and_one_bucket_exactly() {
    let database_url = fresh_postgres_database().await.expect("DARKROOM_TEST_POSTGRES names a PostgreSQL server");
    let s3 = fresh_s3_bucket().await.expect("DARKROOM_TEST_S3 names an S3 server");
    let mut env: Vec<(&str, String)> = s3.clone();
    env.extend([
        ("DATABASE_URL", database_url.clone()),
        ("DARKROOM_SIM_SECRET", format!("shared-{}", uuid_like())),
        ("DARKROOM_SIM_DURATION_MS", "300-1500".into()),
        ("DARKROOM_PROVIDER_CHECK_MS", CHECK_MS.to_string()),
        ("DARKROOM_RECONCILE_INTERVAL_SECS", "1".into()),
        ("DARKROOM_SIGNUP_CREDITS", "200".into()),
        ("DARKROOM_AUTH_ATTEMPTS_PER_MINUTE", "10000".into()),
        ("DARKROOM_SIGNUPS_PER_HOUR", "1000000".into()),
        ("DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR", "1000000".into()),
        ("DARKROOM_MAX_ACTIVE_TASKS", "10000".into()),
        ("DARKROOM_GENERATIONS_PER_MINUTE", "100000".into()),
        ("RUST_LOG", "warn".into()),
    ]);
    let (a, b) = (start(&env).await, start(&env).await);
    wait_healthy(&a).await;
    wait_healthy(&b).await;
    let bases = [a.base.as_str(), b.base.as_str()];

    let directives = ["", "", "", " #fail", " #notimage", " #error", " #ratelimit", " #expire"];
    let users: Vec<reqwest::Client> = (0..4).map(|_| client()).collect();
    let work = users.iter().enumerate().map(|(n, c)| async move {
        // Signed up on one instance, the session works on the other.
        let email = format!("{}@example.com", uuid_like());
        let (status, _) = call(c, bases[n % 2], "sign_up", &[("email", &email), ("password", "correct horse")]).await;
        assert_eq!(status, 200);
        let mut ids = Vec::new();
        for i in 0..25 {
            let d = *directives.choose(&mut rand::thread_rng()).unwrap();
            let (status, body) =
                call(c, bases[i % 2], "generate_image", &[("prompt", &format!("user {n} image {i}{d}"))]).await;
            match status {
                200 => ids.push(body["task_id"].as_str().unwrap().to_owned()),
                402 => {}
                other => panic!("generate answered {other}: {body}"),
            }
        }
        // Each task polled through both instances at once.
        let polls =
            ids.iter().flat_map(|id| bases.iter().map(move |base| (id.clone(), *base))).map(|(id, base)| async move {
                let start = Instant::now();
                loop {
                    let (status, view) = call(c, base, "check_image_status", &[("task_id", &id)]).await;
                    assert_eq!(status, 200, "{view}");
                    if !unfinished(&view) {
                        return;
                    }
                    assert!(start.elapsed() < Duration::from_secs(90), "{id} stuck: {view}");
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            });
        futures::future::join_all(polls).await;
        ids.len()
    });
    let submitted: usize = futures::future::join_all(work).await.into_iter().sum();
    assert!(submitted >= 60, "only {submitted} tasks");

    let db = darkroom::server::db::connect(&database_url).await.unwrap();
    for row in sqlx::query("SELECT id, balance FROM users").fetch_all(&db).await.unwrap() {
        let id: String = row.get("id");
        let (grants, charges, refunds) = darkroom::server::credits::totals(&db, &id).await.unwrap();
        assert_eq!(row.get::<i64, _>("balance"), grants - charges + refunds, "user {id}");
    }
    let unfinished: i64 = sqlx::query("SELECT COUNT(*) FROM tasks WHERE status NOT IN ('completed', 'failed')")
        .fetch_one(&db)
        .await
        .unwrap()
        .get(0);
    assert_eq!(unfinished, 0);

    // Exactly one object per completed task, and nothing else.
    let mut completed: Vec<String> = sqlx::query("SELECT object_key FROM tasks WHERE status = 'completed'")
        .fetch_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("object_key"))
        .collect();
    let bucket = s3.iter().find(|(k, _)| *k == "DARKROOM_STORAGE").unwrap().1.trim_start_matches("s3://").to_owned();
    let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket);
    for (k, v) in &s3 {
        if let Ok(key) = k.to_ascii_lowercase().parse::<object_store::aws::AmazonS3ConfigKey>() {
            builder = builder.with_config(key, v);
        }
    }
    let store = builder.build().unwrap();
    let mut stored: Vec<String> = store.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    completed.sort();
    stored.sort();
    assert!(!completed.is_empty());
    assert_eq!(stored, completed);

    // Coalescing across instances: at most one provider check per task per
    // interval (+2 for the first and the finishing one).
    let bound: i64 = sqlx::query("SELECT created_at, finished_at FROM tasks")
        .fetch_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>("finished_at") - r.get::<i64, _>("created_at")) / CHECK_MS + 2)
        .sum();
    let gets = provider_gets(&a.base).await + provider_gets(&b.base).await;
    assert!(gets as i64 <= bound, "{gets} provider checks, bound {bound}");
    assert!(gets > 0);
}
