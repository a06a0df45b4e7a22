//! Official provider clients against the built-in simulators, so their
//! shapes stay the real ones: Replicate's Python client (`tests/clients/`),
//! with the simulator's rate limits on, fal's JavaScript and Python
//! clients against fal's simulator, and Stripe's Python and Node libraries. `make test` installs the clients (PyPI, npm) and runs these;
//! without them they are `#[ignore]`d, never skipped.

use crate::helpers::spawn_app_with;

const TOKEN: &str = "r8_official_client_token";

#[tokio::test]
#[ignore = "needs Python's replicate package: make test installs it and runs this"]
async fn replicates_python_client_runs_against_the_simulator_with_its_limits() {
    // Twelve creates a minute, in bursts of 10 s' worth: two at once, then
    // one each 5 s, so the client's third create (within a second or two)
    // meets the limit.
    let app = spawn_app_with(&[
        ("DARKROOM_SIM_TOKEN", TOKEN),
        ("DARKROOM_SIM_RATE_LIMITS", "create=12/min"),
        ("DARKROOM_SIM_DURATION_MS", "300"),
    ])
    .await;
    run_replicate_script(&app, "replicate_client.py", "replicate client: ok").await;
}

#[tokio::test]
#[ignore = "needs Python's replicate package: make test installs it and runs this"]
async fn replicates_python_client_uploads_a_file_input_through_the_files_api() {
    let app = spawn_app_with(&[("DARKROOM_SIM_TOKEN", TOKEN), ("DARKROOM_SIM_DURATION_MS", "300")]).await;
    run_replicate_script(&app, "replicate_files.py", "replicate files: ok").await;
}

/// Runs `tests/clients/<script>` with Replicate's client pointed at the
/// app's simulator; it must succeed and print `ok`.
async fn run_replicate_script(app: &crate::helpers::TestApp, script: &str, ok: &str) {
    let env = [
        ("REPLICATE_API_TOKEN", TOKEN.to_owned()),
        // The client's base is the API's host: it adds `/v1` itself.
        ("REPLICATE_BASE_URL", format!("{}/sim", app.base)),
        ("REPLICATE_POLL_INTERVAL", "0.1".to_owned()),
    ];
    run_client("python3", script, &env, ok).await;
}

/// Runs `tests/clients/<script>` with `program` and `env`; it must succeed
/// and print `ok`.
async fn run_client(program: &str, script: &str, env: &[(&str, String)], ok: &str) {
    let out = tokio::process::Command::new(program)
        .arg(format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR")))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect(program);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(ok));
}

#[tokio::test]
#[ignore = "needs Python's stripe package: make test installs it and runs this"]
async fn stripes_python_library_creates_and_retrieves_a_checkout_session() {
    let app = spawn_app_with(&[]).await;
    let env = [("STRIPE_API_BASE", format!("{}/sim/stripe", app.base))];
    run_client("python3", "stripe_client.py", &env, "stripe client: ok").await;
}

#[tokio::test]
#[ignore = "needs the stripe npm package in end2end/: make test installs it and runs this"]
async fn stripes_node_library_accepts_the_simulators_signatures() {
    let payload = r#"{"id":"evt_1","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_test_1","object":"checkout.session","amount_total":500,"payment_status":"paid"}}}"#;
    let secret = "whsec_darkroom_simulator_test";
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let signature = darkroom::stripe::signature::sign(secret, payload.as_bytes(), now);
    let env = [
        ("NODE_PATH", concat!(env!("CARGO_MANIFEST_DIR"), "/end2end/node_modules").to_owned()),
        ("PAYLOAD", payload.to_owned()),
        ("SIGNATURE", signature),
        ("SECRET", secret.to_owned()),
    ];
    run_client("node", "stripe_webhook.js", &env, "stripe webhook: ok").await;
}

#[tokio::test]
#[ignore = "needs the @fal-ai/client npm package in end2end/: make test installs it and runs this"]
async fn fals_javascript_client_runs_against_fals_simulator() {
    const KEY: &str = "fal_official_client_key";
    let app = spawn_app_with(&[("DARKROOM_SIM_TOKEN", KEY), ("DARKROOM_SIM_DURATION_MS", "1500")]).await;
    let env = [
        ("NODE_PATH", concat!(env!("CARGO_MANIFEST_DIR"), "/end2end/node_modules").to_owned()),
        ("FAL_KEY", KEY.to_owned()),
        ("FAL_SIM", format!("{}/sim/fal", app.base)),
    ];
    run_client("node", "fal_client.js", &env, "fal client: ok").await;
}

#[tokio::test]
#[ignore = "needs Python's fal-client package and openssl: make test installs it and runs this"]
async fn fals_python_client_runs_against_fals_simulator_behind_tls() {
    const KEY: &str = "fal_official_python_key";
    let app = spawn_app_with(&[("DARKROOM_SIM_TOKEN", KEY), ("DARKROOM_SIM_DURATION_MS", "1500")]).await;
    let env = [("FAL_KEY", KEY.to_owned()), ("FAL_SIM", format!("{}/sim/fal", app.base))];
    run_client("python3", "fal_python.py", &env, "fal python client: ok").await;
}
