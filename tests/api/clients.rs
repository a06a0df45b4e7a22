//! Official provider clients against the built-in simulators, so their
//! shapes stay the real ones: Replicate's Python client (`tests/clients/`),
//! with the simulator's rate limits on. `make test` installs the clients
//! (PyPI) and runs these; without them they are `#[ignore]`d, never
//! skipped.

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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/replicate_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .env("REPLICATE_API_TOKEN", TOKEN)
        // The client's base is the API's host: it adds `/v1` itself.
        .env("REPLICATE_BASE_URL", format!("{}/sim", app.base))
        .env("REPLICATE_POLL_INTERVAL", "0.1")
        .output()
        .await
        .expect("python3");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("replicate client: ok"));
}
