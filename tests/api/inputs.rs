//! Per-model inputs over HTTP against the built-in provider: several images
//! of a chosen shape, seeds, refused inputs that charge nothing, and the
//! whole charge refunded once when any image cannot be had.

use serde_json::Value;

use crate::helpers::{TestApp, client, no_redirects, poll_until_done, spawn_app, spawn_app_with};

/// Submits `prompt` with `inputs`; the task id.
async fn generate_with(app: &TestApp, c: &reqwest::Client, prompt: &str, inputs: &[(&str, &str)]) -> String {
    let mut form = vec![("prompt", prompt)];
    form.extend_from_slice(inputs);
    let (status, body) = app.call(c, "generate_image", &form).await;
    assert_eq!(status, 200, "{body}");
    body["task_id"].as_str().expect("task_id").to_owned()
}

/// The bytes of a stored image, checked to be a PNG; with its size.
async fn png(app: &TestApp, c: &reqwest::Client, url: &str) -> (Vec<u8>, (u32, u32)) {
    let response = c.get(format!("{}{url}", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(response.headers()["content-type"], "image/png", "{url}");
    let bytes = response.bytes().await.unwrap().to_vec();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{url} is not a PNG");
    // IHDR: width and height, big-endian, right after the chunk header.
    let size =
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    (bytes, size)
}

fn urls(view: &Value) -> Vec<String> {
    view["image_urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn three_wide_images_are_charged_stored_and_served_each() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate_with(&app, &c, "three foxes", &[("aspect_ratio", "16:9"), ("num_outputs", "3")]).await;
    assert_eq!(app.balance(&c).await, 70, "10 credits per image, three images");

    let done = poll_until_done(&app, &c, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["cost"], 30);
    assert_eq!(done["aspect_ratio"], "16:9");
    assert_eq!(done["num_outputs"], 3);
    assert_eq!(done["image_url"], format!("/images/{id}"));
    assert_eq!(urls(&done), (0..3).map(|n| format!("/images/{id}/{n}")).collect::<Vec<_>>());

    let mut images = Vec::new();
    for url in urls(&done) {
        let (bytes, size) = png(&app, &c, &url).await;
        assert_eq!(size, (768, 432), "{url} is 16:9 with a long side of 768");
        images.push(bytes);
    }
    assert!(images[0] != images[1] && images[1] != images[2] && images[0] != images[2], "three different images");
    let (first, _) = png(&app, &c, &format!("/images/{id}")).await;
    assert_eq!(first, images[0], "/images/{{id}} keeps answering the first");
    // Only the canonical spelling of an index below the task's count.
    let missing = ["3", "4", "255", "256", "99999999999999999999", "01", "+1", "-1", "1.0", "x"];
    for missing in missing.map(|n| format!("/images/{id}/{n}")) {
        let status = c.get(format!("{}{missing}", app.base)).send().await.unwrap().status();
        assert_eq!(status, 404, "{missing}");
    }
    // Another person sees none of them.
    let stranger = client();
    app.sign_up(&stranger).await;
    let status = stranger.get(format!("{}/images/{id}/1", app.base)).send().await.unwrap().status();
    assert_eq!(status, 404);
    assert_eq!(app.balance(&c).await, 70);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_image_and_another_seed_another() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let mut firsts = Vec::new();
    for seed in ["42", "42", "43"] {
        let id = generate_with(&app, &c, "a seeded fox", &[("seed", seed)]).await;
        let done = poll_until_done(&app, &c, &id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["seed"].to_string(), seed);
        firsts.push(png(&app, &c, &urls(&done)[0]).await.0);
    }
    assert_eq!(firsts[0], firsts[1], "same seed, prompt and index: the same bytes");
    assert_ne!(firsts[0], firsts[2]);
}

#[tokio::test]
async fn without_a_seed_the_one_the_provider_reports_is_shown() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate_with(&app, &c, "an unseeded fox", &[]).await;
    let (_, started) = app.call(&c, "check_image_status", &[("task_id", &id)]).await;
    assert!(started.get("seed").is_none(), "absent until the provider says: {started}");
    let done = poll_until_done(&app, &c, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let seed = done["seed"].as_u64().expect("the seed from the logs");
    // Asking for it again makes the same image.
    let again = generate_with(&app, &c, "an unseeded fox", &[("seed", &seed.to_string())]).await;
    let again = poll_until_done(&app, &c, &again).await;
    assert_eq!(png(&app, &c, &urls(&done)[0]).await.0, png(&app, &c, &urls(&again)[0]).await.0);
}

#[tokio::test]
async fn every_refused_input_says_why_and_charges_nothing() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let flux = ("model", "black-forest-labs/flux-schnell");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("aspect_ratio", "7:3")], "aspect ratio 7:3 is not offered"),
        (&[("num_outputs", "0")], "number of images must be a whole number from 1 to 4"),
        (&[("num_outputs", "5")], "number of images"),
        (&[("num_outputs", "two")], "number of images"),
        (&[("seed", "-1")], "seed must be a whole number from 0 to 4294967295"),
        (&[("seed", "4294967296")], "seed must be"),
        (&[("seed", "1.5")], "seed must be"),
        (&[flux, ("negative_prompt", "blurry")], "does not take a negative prompt"),
        (&[("model", "someone/else")], "unknown model"),
    ];
    for (inputs, expected) in cases {
        let mut form = vec![("prompt", "a refused fox")];
        form.extend_from_slice(inputs);
        let (status, body) = app.call(&c, "generate_image", &form).await;
        assert_eq!(status, 400, "{inputs:?}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{inputs:?}: {message:?} lacks {expected:?}");
    }
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'charge'").await, 0);

    // The model that takes a negative prompt does.
    let sdxl = [("model", "stability-ai/sdxl"), ("negative_prompt", "blurry")];
    let id = generate_with(&app, &c, "a sharp fox", &sdxl).await;
    let done = poll_until_done(&app, &c, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["negative_prompt"], "blurry");
}

#[tokio::test]
async fn an_unaffordable_multi_image_request_is_refused_with_nothing_charged() {
    let app = spawn_app_with(&[("DARKROOM_SIGNUP_CREDITS", "30")]).await;
    let c = client();
    app.sign_up(&c).await;
    let (status, body) = app.call(&c, "generate_image", &[("prompt", "four foxes"), ("num_outputs", "4")]).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(app.balance(&c).await, 30);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    // Three are affordable.
    generate_with(&app, &c, "three foxes", &[("num_outputs", "3")]).await;
    assert_eq!(app.balance(&c).await, 0);
}

#[tokio::test]
async fn a_failed_multi_image_task_refunds_the_whole_charge_once() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = generate_with(&app, &c, "three doomed foxes #fail", &[("num_outputs", "3")]).await;
    assert_eq!(app.balance(&c).await, 70);
    let done = poll_until_done(&app, &c, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["refunded"], true);
    assert_eq!(urls(&done), Vec::<String>::new());
    for _ in 0..3 {
        app.call(&c, "check_image_status", &[("task_id", &id)]).await;
    }
    assert_eq!(app.balance(&c).await, 100);
    let refunds = app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'refund'").await;
    let refunded =
        app.count("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_ledger WHERE kind = 'refund'").await;
    assert_eq!((refunds, refunded), (1, 30));
}

#[tokio::test]
async fn ten_pollers_at_once_store_each_image_once_and_charge_once() {
    use futures::TryStreamExt;
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(generate_with(&app, &c, &format!("a crowd of foxes {n}"), &[("num_outputs", "3")]).await);
    }
    assert_eq!(app.balance(&c).await, 10);
    // Ten pages per task, polling at once.
    let pollers = ids.iter().flat_map(|id| (0..10).map(move |_| id.clone())).map(|id| {
        let (app, c) = (&app, &c);
        async move { poll_until_done(app, c, &id).await }
    });
    for done in futures::future::join_all(pollers).await {
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(urls(&done).len(), 3, "{done}");
    }
    assert_eq!(app.balance(&c).await, 10, "charged once per task, nothing refunded");
    assert_eq!(app.count("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'refund'").await, 0);
    let mut stored: Vec<String> =
        app.state.objects.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    stored.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .flat_map(|id| [format!("images/{id}"), format!("images/{id}.1"), format!("images/{id}.2")])
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(app.state.metrics.object_writes(), 9, "each image stored once");
}

#[tokio::test]
async fn one_image_failing_its_download_fails_and_refunds_the_whole_task() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    // `#bad-output`: the simulator's last output answers 404 (expired).
    let id = generate_with(&app, &c, "three foxes, one lost #bad-output", &[("num_outputs", "3")]).await;
    let done = poll_until_done(&app, &c, &id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().starts_with("Image 3 of 3:"), "{done}");
    assert_eq!(done["refunded"], true);
    assert_eq!(app.balance(&c).await, 100);
    // The two images stored before the third failed are gone too.
    let task = darkroom::server::ids::TaskId::parse(&id).unwrap();
    for n in 0..3 {
        let key = darkroom::server::engine::finalize::output_key(&task, n);
        assert!(app.state.objects.head(&key).await.is_err(), "image {n} was left in the store");
    }
    assert_eq!(app.state.metrics.object_writes(), 2, "the first two were stored, then removed");
}

#[tokio::test]
async fn a_catalogue_file_sets_the_price_and_the_inputs_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.toml");
    std::fs::write(
        &file,
        "[[models]]\nid = \"black-forest-labs/flux-schnell\"\nname = \"Flux\"\ncredits = 3\n\
         aspect_ratios = [\"9:16\", \"1:1\"]\nmax_outputs = 2\n\
         [models.fixed_inputs]\noutput_format = \"png\"\n",
    )
    .unwrap();
    let app = spawn_app_with(&[("DARKROOM_MODELS_FILE", file.to_str().unwrap())]).await;
    let c = client();
    app.sign_up(&c).await;
    let (_, setup) = app.call(&c, "generator_setup", &[]).await;
    let model = &setup["models"][0];
    assert_eq!((model["name"].as_str(), model["credits"].as_i64()), (Some("Flux"), Some(3)));
    assert_eq!(model["aspect_ratios"], serde_json::json!(["9:16", "1:1"]));
    assert_eq!((model["max_outputs"].as_u64(), model["seed"].as_bool()), (Some(2), Some(false)));

    let id = generate_with(&app, &c, "two tall foxes", &[("num_outputs", "2")]).await;
    assert_eq!(app.balance(&c).await, 94, "3 credits per image");
    let done = poll_until_done(&app, &c, &id).await;
    assert_eq!(done["aspect_ratio"], "9:16", "the first ratio is the default");
    assert_eq!(png(&app, &c, &urls(&done)[1]).await.1, (432, 768));
    // This catalogue's model takes no seed.
    let (status, body) = app.call(&c, "generate_image", &[("prompt", "a fox"), ("seed", "1")]).await;
    assert_eq!(status, 400, "{body}");
}

/// Without JavaScript the generator's form posts itself: a refusal is
/// answered with a redirect back to the page, which says why in the form
/// (as the island would) and has charged nothing.
#[tokio::test]
async fn a_form_refused_without_javascript_says_why_on_the_page() {
    let app = spawn_app().await;
    let c = no_redirects();
    app.sign_up(&c).await;
    let response = app.page_post(&c, "generate_image", "/", &[("prompt", "   ")]).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/?", app.base)) && location.contains("__err="), "{location}");
    let page = c.get(location).send().await.unwrap().text().await.unwrap();
    let form = &page[page.find("prompt-form").expect("the generator's form")..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(
        form.contains(
            r#"<p role="alert" class="form-error">The generation was refused: check the prompt and the settings.</p>"#
        ),
        "{form}"
    );
    assert_eq!(app.balance(&c).await, 100);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
}
