//! Object storage: the same flow against the local folder and against a
//! real S3-compatible server (moto on loopback, started by `make test`).

use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;

use crate::helpers::{TestApp, client, fresh_s3_bucket, spawn_app_with, unfinished};

async fn generate_and_wait(app: &TestApp, c: &reqwest::Client, prompt: &str) -> serde_json::Value {
    let (status, body) = app.call(c, "generate_image", &[("prompt", prompt)]).await;
    assert_eq!(status, 200, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let (_, view) = app.call(c, "check_image_status", &[("task_id", &id)]).await;
        if !unfinished(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} did not finish");
}

/// A completed image is in the store under its task's key and served from
/// there; an oversized output leaves nothing behind.
async fn images_live_in_the_store(app: TestApp) {
    let c = client();
    app.sign_up(&c).await;
    let done = generate_and_wait(&app, &c, "stored somewhere safe").await;
    assert_eq!(done["status"], "completed", "{done}");
    let id = done["id"].as_str().unwrap();
    let key = darkroom::server::engine::finalize::object_key(&darkroom::server::ids::TaskId::parse(id).unwrap());
    let stored = app.state.objects.get(&key).await.unwrap().bytes().await.unwrap();
    let served = c.get(format!("{}/images/{id}", app.base)).send().await.unwrap().bytes().await.unwrap();
    assert!(served.starts_with(b"\x89PNG"));
    assert_eq!(stored, served);

    let huge = generate_and_wait(&app, &c, "too big to keep #huge").await;
    assert_eq!(huge["status"], "failed");
    let keys: Vec<String> =
        app.state.objects.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    assert_eq!(keys, vec![key.to_string()], "only the completed image is stored");
}

#[tokio::test]
async fn images_live_in_the_local_folder() {
    let app = spawn_app_with(&[("DARKROOM_MAX_IMAGE_BYTES", "1000000")]).await;
    images_live_in_the_store(app).await;
}

#[tokio::test]
#[ignore = "needs an S3 server: make test runs it with DARKROOM_TEST_S3"]
async fn images_live_in_an_s3_bucket() {
    let s3 = fresh_s3_bucket().await.expect("DARKROOM_TEST_S3 names an S3 server");
    let mut vars: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.push(("DARKROOM_MAX_IMAGE_BYTES", "1000000"));
    let app = spawn_app_with(&vars).await;
    images_live_in_the_store(app).await;
}
