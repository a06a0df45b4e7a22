//! Images in: uploads checked and re-encoded before anything is charged, a
//! generation that starts from one, an upscale of a finished image, and the
//! simulator's Files API underneath. Every refusal leaves no charge, no task
//! row and no stored object.

use futures::TryStreamExt;
use object_store::ObjectStore;
use serde_json::Value;

use crate::helpers::{
    TestApp, client, manual_clock, no_redirects, poll_until_done, spawn_app, spawn_app_on, spawn_app_with,
};

/// The built-in model that takes an image to start from.
const IMAGE_MODEL: &str = "stability-ai/sdxl";
/// A built-in model that takes none.
const TEXT_MODEL: &str = "black-forest-labs/flux-schnell";

/// A PNG of one colour.
fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    encode(
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(width, height, image::Rgb(rgb))),
        image::ImageFormat::Png,
    )
}

fn encode(picture: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut bytes), format).expect("encode");
    bytes
}

/// A PNG whose header claims `width` × `height` and which has nothing else.
fn claimed_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png
}

/// A JPEG 40 wide and 20 high whose EXIF says to turn it a quarter right
/// (orientation 6) and carries a GPS position and a description.
fn jpeg_with_exif() -> Vec<u8> {
    let picture =
        image::RgbImage::from_fn(40, 20, |x, _| if x < 20 { image::Rgb([250, 0, 0]) } else { image::Rgb([0, 0, 250]) });
    let jpeg = encode(image::DynamicImage::ImageRgb8(picture), image::ImageFormat::Jpeg);
    // TIFF, little-endian: IFD0 (description, orientation, GPS pointer),
    // the description, then the GPS IFD (latitude N 51° 30′ 0″).
    let description = b"DARKROOM-SECRET-PLACE\0";
    let ifd0 = 8u32;
    let text_at = ifd0 + 2 + 3 * 12 + 4;
    let gps_at = text_at + description.len() as u32;
    let rationals_at = gps_at + 2 + 2 * 12 + 4;
    let mut tiff = b"II\x2a\x00".to_vec();
    tiff.extend_from_slice(&ifd0.to_le_bytes());
    let entry = |tiff: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&count.to_le_bytes());
        tiff.extend_from_slice(&value);
    };
    tiff.extend_from_slice(&3u16.to_le_bytes());
    entry(&mut tiff, 0x010E, 2, description.len() as u32, text_at.to_le_bytes());
    entry(&mut tiff, 0x0112, 3, 1, [6, 0, 0, 0]);
    entry(&mut tiff, 0x8825, 4, 1, gps_at.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(description);
    tiff.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut tiff, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut tiff, 0x0002, 5, 3, rationals_at.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    for (n, d) in [(51u32, 1u32), (30, 1), (0, 1)] {
        tiff.extend_from_slice(&n.to_le_bytes());
        tiff.extend_from_slice(&d.to_le_bytes());
    }
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    // Right after the start-of-image marker.
    [&jpeg[..2], &app1, &jpeg[2..]].concat()
}

/// Uploads `bytes` as the file `name` of `content_type`; (status, JSON).
async fn upload(app: &TestApp, c: &reqwest::Client, bytes: Vec<u8>, name: &str, content_type: &str) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()).mime_str(content_type).expect("type");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response =
        c.post(format!("{}/api/upload_image", app.base)).multipart(form).send().await.expect("upload request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn upload_png(app: &TestApp, c: &reqwest::Client, bytes: Vec<u8>) -> String {
    let (status, body) = upload(app, c, bytes, "input.png", "image/png").await;
    assert_eq!(status, 200, "{body}");
    body["upload_id"].as_str().expect("upload_id").to_owned()
}

/// Every stored object's key.
async fn objects(app: &TestApp) -> Vec<String> {
    app.state.objects.list(None).map_ok(|m| m.location.to_string()).try_collect().await.expect("list")
}

async fn read_object(app: &TestApp, key: &str) -> Vec<u8> {
    let object = app.state.objects.get(&object_store::path::Path::from(key)).await.expect("stored");
    object.bytes().await.expect("bytes").to_vec()
}

/// A served image, decoded.
async fn fetch_image(app: &TestApp, c: &reqwest::Client, path: &str) -> image::DynamicImage {
    let response = c.get(format!("{}{path}", app.base)).send().await.expect("image request");
    assert_eq!(response.status(), 200, "{path}");
    image::load_from_memory(&response.bytes().await.expect("bytes")).expect("an image")
}

/// Mean red minus mean blue of an image.
fn red_over_blue(picture: &image::DynamicImage) -> f64 {
    let rgb = picture.to_rgb8();
    let n = f64::from(rgb.width() * rgb.height());
    rgb.pixels().map(|p| f64::from(p[0]) - f64::from(p[2])).sum::<f64>() / n
}

#[tokio::test]
async fn a_generation_starts_from_an_uploaded_image_that_its_output_follows() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let mut views = Vec::new();
    for colour in [[230, 20, 20], [20, 20, 230]] {
        let id = upload_png(&app, &c, png(96, 64, colour)).await;
        let form = [("prompt", "a barn by a field"), ("model", IMAGE_MODEL), ("seed", "5"), ("image", id.as_str())];
        let (status, body) = app.call(&c, "generate_image", &form).await;
        assert_eq!(status, 200, "{body}");
        let view = poll_until_done(&app, &c, body["task_id"].as_str().expect("task_id")).await;
        assert_eq!(view["status"], "completed", "{view}");
        views.push(view);
    }
    let (red, blue) = (&views[0], &views[1]);
    let input_url = red["input_url"].as_str().expect("the view names its input");
    assert_eq!(input_url, format!("/images/{}/input", red["id"].as_str().unwrap_or_default()));
    let input = fetch_image(&app, &c, input_url).await;
    assert_eq!((input.width(), input.height()), (96, 64), "the input as uploaded");
    // Same prompt, seed and model: only the image differs, and the
    // outputs follow it.
    let red_out = fetch_image(&app, &c, &format!("/images/{}", red["id"].as_str().unwrap_or_default())).await;
    let blue_out = fetch_image(&app, &c, &format!("/images/{}", blue["id"].as_str().unwrap_or_default())).await;
    assert!(
        red_over_blue(&red_out) > red_over_blue(&blue_out) + 40.0,
        "the red input gives a redder output: {} vs {}",
        red_over_blue(&red_out),
        red_over_blue(&blue_out)
    );
    // The input is its owner's alone.
    let stranger = client();
    app.sign_up(&stranger).await;
    let response = stranger.get(format!("{}{input_url}", app.base)).send().await.expect("request");
    assert_eq!(response.status(), 404);
    let shared = app.call(&c, "share_image", &[("task_id", red["id"].as_str().unwrap_or_default())]).await.1;
    let page = reqwest::get(format!("{}{}", app.base, shared["url"].as_str().expect("url"))).await.expect("page");
    let html = page.text().await.expect("html");
    assert!(!html.contains("/input"), "a share page shows the output only");
}

/// Each bad upload or image input answers a clear 4xx, and leaves no
/// charge, no task, no upload row and no stored object.
#[tokio::test]
async fn bad_images_are_refused_before_anything_is_charged_or_kept() {
    let app = spawn_app_with(&[("DARKROOM_MAX_INPUT_BYTES", "200000")]).await;
    let c = client();
    app.sign_up(&c).await;
    let balance = app.balance(&c).await;
    let mut corrupt = png(64, 64, [1, 2, 3]);
    let end = corrupt.len() - 40;
    corrupt[40..end].fill(0x5A);
    let noise: Vec<u8> = (0..250_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut bomb = claimed_png(50_000, 50_000);
    bomb.extend_from_slice(&[0, 0, 0, 0]);
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("empty", Vec::new(), "image/png", 400, "empty"),
        (
            "svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
            "image/svg+xml",
            400,
            "PNG, JPEG and WebP",
        ),
        ("html", b"<!doctype html><title>x</title>".to_vec(), "image/png", 400, "PNG, JPEG and WebP"),
        ("gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "image/gif", 400, "PNG, JPEG and WebP"),
        ("claims html", png(8, 8, [9, 9, 9]), "text/html", 400, "says it is text/html"),
        ("too large", noise, "image/png", 413, "too large"),
        ("decompression bomb", bomb, "image/png", 400, "50000 × 50000"),
        ("corrupt", corrupt, "image/png", 400, "cannot be read"),
    ];
    for (what, bytes, content_type, status, words) in cases {
        let (got, body) = upload(&app, &c, bytes, "x.png", content_type).await;
        assert_eq!(got, status, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{what}: {message}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM uploads").await, 0);
    assert_eq!(objects(&app).await, Vec::<String>::new(), "nothing stored");

    // Inputs that name an image wrongly.
    let mine = upload_png(&app, &c, png(32, 32, [200, 200, 0])).await;
    let stranger = client();
    app.sign_up(&stranger).await;
    let theirs = upload_png(&app, &stranger, png(32, 32, [0, 200, 200])).await;
    let cases = [
        (TEXT_MODEL, mine.as_str(), "does not take an image"),
        (IMAGE_MODEL, theirs.as_str(), "is gone"),
        (IMAGE_MODEL, "0b8f7c1e-0000-4000-8000-000000000000", "is gone"),
        (IMAGE_MODEL, "../../etc/passwd", "is gone"),
    ];
    for (model, image, words) in cases {
        let form = [("prompt", "a lamp"), ("model", model), ("image", image)];
        let (status, body) = app.call(&c, "generate_image", &form).await;
        assert_eq!(status, 400, "{model} {image}: {body}");
        assert!(body["message"].as_str().unwrap_or_default().contains(words), "{body}");
    }
    assert_eq!(app.balance(&c).await, balance, "nothing was charged");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0, "no task row");
    let stored = objects(&app).await;
    assert!(stored.iter().all(|k| k.starts_with("uploads/")), "only the two uploads are stored: {stored:?}");
    assert_eq!(stored.len(), 2);
}

#[tokio::test]
async fn uploads_are_reencoded_upright_without_their_metadata() {
    let app = spawn_app().await;
    let c = client();
    let email = app.sign_up(&c).await;
    let original = jpeg_with_exif();
    assert!(original.windows(21).any(|w| w == b"DARKROOM-SECRET-PLACE"), "the test's JPEG carries its EXIF");
    let (status, body) = upload(&app, &c, original, "photo.jpg", "image/jpeg").await;
    assert_eq!(status, 200, "{body}");
    // Turned a quarter right: 40 × 20 becomes 20 × 40.
    assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(20), Some(40)), "{body}");
    let user = app.user_id(&email).await;
    let key = format!("uploads/{user}/{}", body["upload_id"].as_str().unwrap_or_default());
    let stored = read_object(&app, &key).await;
    assert!(stored.starts_with(b"\x89PNG\r\n\x1a\n"), "stored as a PNG");
    for needle in [&b"Exif"[..], b"DARKROOM-SECRET", b"eXIf", b"tEXt", b"iTXt", b"zTXt"] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle),
            "{:?} left the server",
            String::from_utf8_lossy(needle)
        );
    }
    let upright = image::load_from_memory(&stored).expect("decodes").to_rgb8();
    assert_eq!(upright.dimensions(), (20, 40));
    // The left (red) half of the original is now the top.
    let (top, bottom) = (upright.get_pixel(10, 5), upright.get_pixel(10, 35));
    assert!(top[0] > 150 && top[2] < 100 && bottom[2] > 150 && bottom[0] < 100, "{top:?} {bottom:?}");
    // Its owner can look at it; nobody else.
    let preview = format!("{}/uploads/{}", app.base, body["upload_id"].as_str().unwrap_or_default());
    assert_eq!(c.get(&preview).send().await.expect("request").status(), 200);
    let stranger = client();
    app.sign_up(&stranger).await;
    assert_eq!(stranger.get(&preview).send().await.expect("request").status(), 404);
}

#[tokio::test]
async fn a_form_posted_without_javascript_uploads_and_leads_back_to_the_generator() {
    let app = spawn_app().await;
    let c = no_redirects();
    app.sign_up(&c).await;
    let post = |bytes: Vec<u8>| {
        let part = reqwest::multipart::Part::bytes(bytes).file_name("x.png").mime_str("image/png").expect("type");
        c.post(format!("{}/api/upload_image", app.base))
            .header("accept", "text/html,application/xhtml+xml")
            .header("origin", &app.base)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    let answer = post(png(40, 40, [10, 200, 10])).await.expect("post");
    assert_eq!(answer.status(), 303);
    let to = answer.headers()["location"].to_str().expect("location").to_owned();
    let id = to.strip_prefix("/?image=").expect("back to the generator with the upload");
    let page = c.get(format!("{}{to}", app.base)).send().await.expect("page").text().await.expect("html");
    assert!(page.contains(&format!("src=\"/uploads/{id}\"")), "the page shows the upload");
    assert!(page.contains(&format!("name=\"image\" value=\"{id}\"")), "and posts it with the prompt");
    // The generator's form, posted as a browser without JavaScript would.
    let form = [("prompt", "a green field"), ("model", IMAGE_MODEL), ("image", id)];
    let answer = app.page_post(&c, "generate_image", &to, &form).send().await.expect("post");
    assert!(answer.status().is_redirection(), "leptos leads back to the page: {}", answer.status());
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks WHERE input_key IS NOT NULL").await, 1);

    let refused = post(b"not an image".to_vec()).await.expect("post");
    assert_eq!(refused.status(), 303);
    assert_eq!(refused.headers()["location"], "/?upload_error=invalid");
    let page = c.get(format!("{}/?upload_error=invalid", app.base)).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(html.contains("That file cannot be used"), "the site's own words for the refusal");
}

#[tokio::test]
async fn an_upscale_reads_our_stored_image_after_the_providers_url_expired() {
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_SIM_OUTPUT_TTL_SECS", "60")], clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a pier"), ("model", TEXT_MODEL)]).await;
    let source = body["task_id"].as_str().expect("task_id").to_owned();
    clock.advance(std::time::Duration::from_secs(5));
    let view = poll_until_done(&app, &c, &source).await;
    assert_eq!(view["status"], "completed", "{view}");
    let prediction: String = {
        use sqlx::Row;
        sqlx::query("SELECT prediction_id FROM tasks WHERE id = $1")
            .bind(&source)
            .fetch_one(&app.state.db)
            .await
            .expect("row")
            .get("prediction_id")
    };
    // The provider's output is gone by now.
    clock.advance(std::time::Duration::from_secs(3600));
    let output = reqwest::get(format!("{}/sim/files/{prediction}/out-0.png", app.base)).await.expect("request");
    assert_eq!(output.status(), 410, "the provider's URL has expired");

    let balance = app.balance(&c).await;
    let (status, body) = app.call(&c, "upscale_image", &[("task_id", &source), ("index", "0"), ("scale", "2")]).await;
    assert_eq!(status, 200, "{body}");
    let upscale = body["task_id"].as_str().expect("task_id").to_owned();
    assert_eq!(app.balance(&c).await, balance - 10, "charged the upscaler's price");
    clock.advance(std::time::Duration::from_secs(5));
    let done = poll_until_done(&app, &c, &upscale).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["source_task_id"], source.as_str());
    assert_eq!(done["scale"], 2);
    let small = fetch_image(&app, &c, &format!("/images/{source}")).await;
    let large = fetch_image(&app, &c, &format!("/images/{upscale}")).await;
    assert_eq!((large.width(), large.height()), (small.width() * 2, small.height() * 2));
    let input = fetch_image(&app, &c, done["input_url"].as_str().expect("input_url")).await;
    assert_eq!((input.width(), input.height()), (small.width(), small.height()), "its input is the source image");
    // History shows the pair: the upscale, linked to its source.
    let (_, page) = app.call(&c, "list_history", &[]).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items[0]["id"], upscale.as_str());
    assert_eq!(items[0]["source_task_id"], source.as_str());
    assert_eq!(items[1]["id"], source.as_str());
}

#[tokio::test]
async fn upscales_that_cannot_be_made_are_refused_without_a_charge() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a mill #slow"), ("model", TEXT_MODEL)]).await;
    let running = body["task_id"].as_str().expect("task_id").to_owned();
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a mill"), ("model", TEXT_MODEL)]).await;
    let done = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &done).await;
    let stranger = client();
    app.sign_up(&stranger).await;
    let balance = app.balance(&c).await;
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    let cases = [
        (&c, running.as_str(), "0", "2", 409),
        (&c, done.as_str(), "1", "2", 400),
        (&c, done.as_str(), "0", "3", 400),
        (&stranger, done.as_str(), "0", "2", 404),
        (&c, "not-a-task", "0", "2", 400),
    ];
    for (who, task, index, scale, status) in cases {
        let (got, body) =
            app.call(who, "upscale_image", &[("task_id", task), ("index", index), ("scale", scale)]).await;
        assert_eq!(got, status, "{task} {index} {scale}: {body}");
    }
    assert_eq!(app.balance(&c).await, balance);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks, "no task row");
    assert!(!objects(&app).await.iter().any(|k| k.starts_with("inputs/")), "no input stored");
}

/// A variation is a task of the model that starts from an image, with
/// the source's prompt and its stored image as input: a red source gives
/// a red variation, a blue one a blue one.
#[tokio::test]
async fn a_variation_starts_from_the_stored_image_with_its_prompt() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let (_, setup) = app.call(&c, "generator_setup", &[]).await;
    assert_eq!(setup["vary"]["model"], IMAGE_MODEL, "{setup}");
    let price = setup["vary"]["credits"].as_i64().expect("a variation's price");
    let mut pairs = Vec::new();
    for colour in [[230, 20, 20], [20, 20, 230]] {
        let id = upload_png(&app, &c, png(96, 64, colour)).await;
        let form = [("prompt", "a barn by a field"), ("model", IMAGE_MODEL), ("seed", "5"), ("image", id.as_str())];
        let (_, body) = app.call(&c, "generate_image", &form).await;
        let source = body["task_id"].as_str().expect("task_id").to_owned();
        assert_eq!(poll_until_done(&app, &c, &source).await["status"], "completed");
        let balance = app.balance(&c).await;
        let (status, body) = app.call(&c, "vary_image", &[("task_id", &source), ("index", "0")]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.balance(&c).await, balance - price, "charged the model's price for one image");
        let variation = body["task_id"].as_str().expect("task_id").to_owned();
        let done = poll_until_done(&app, &c, &variation).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["source_task_id"], source.as_str());
        assert_eq!(done["model"], IMAGE_MODEL);
        assert_eq!(done["prompt"], "a barn by a field", "the source's prompt");
        assert!(done.get("scale").is_none_or(Value::is_null), "a variation is not an upscale: {done}");
        let stored = fetch_image(&app, &c, &format!("/images/{source}")).await;
        let input = fetch_image(&app, &c, done["input_url"].as_str().expect("input_url")).await;
        assert_eq!(input.to_rgb8(), stored.to_rgb8(), "its input is the stored source image");
        pairs.push((source, variation));
    }
    let red = fetch_image(&app, &c, &format!("/images/{}", pairs[0].1)).await;
    let blue = fetch_image(&app, &c, &format!("/images/{}", pairs[1].1)).await;
    assert!(
        red_over_blue(&red) > red_over_blue(&blue),
        "each variation follows its source (its seed is new, so only the order holds): {} vs {}",
        red_over_blue(&red),
        red_over_blue(&blue)
    );
    // History shows each variation beside its source.
    let (_, page) = app.call(&c, "list_history", &[]).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items[0]["id"], pairs[1].1.as_str());
    assert_eq!(items[0]["source_task_id"], pairs[1].0.as_str());
    assert_eq!(items[1]["id"], pairs[1].0.as_str());
}

#[tokio::test]
async fn variations_that_cannot_be_made_are_refused_without_a_charge() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a mill #slow"), ("model", TEXT_MODEL)]).await;
    let running = body["task_id"].as_str().expect("task_id").to_owned();
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a mill"), ("model", TEXT_MODEL)]).await;
    let done = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &done).await;
    let (_, body) = app.call(&c, "upscale_image", &[("task_id", &done), ("index", "0"), ("scale", "2")]).await;
    let upscaled = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &upscaled).await;
    let stranger = client();
    app.sign_up(&stranger).await;
    let balance = app.balance(&c).await;
    let tasks = app.count("SELECT COUNT(*) FROM tasks").await;
    let inputs = objects(&app).await.iter().filter(|k| k.starts_with("inputs/")).count();
    let cases = [
        (&c, running.as_str(), "0", 409),
        (&c, done.as_str(), "1", 400),
        (&c, done.as_str(), "-1", 400),
        (&c, upscaled.as_str(), "0", 400),
        (&stranger, done.as_str(), "0", 404),
        (&c, "not-a-task", "0", 400),
    ];
    for (who, task, index, status) in cases {
        let (got, body) = app.call(who, "vary_image", &[("task_id", task), ("index", index)]).await;
        assert_eq!(got, status, "{task} {index}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a clear message: {body}");
    }
    assert_eq!(app.balance(&c).await, balance);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, tasks, "no task row");
    let now = objects(&app).await.iter().filter(|k| k.starts_with("inputs/")).count();
    assert_eq!(now, inputs, "no input stored");
}

#[tokio::test]
async fn a_site_without_an_image_model_offers_no_variations() {
    let app = spawn_app_with(&[("DARKROOM_MODELS", TEXT_MODEL)]).await;
    let c = client();
    app.sign_up(&c).await;
    let (_, setup) = app.call(&c, "generator_setup", &[]).await;
    assert!(setup["vary"].is_null(), "{setup}");
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a mill")]).await;
    let done = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &done).await;
    let balance = app.balance(&c).await;
    let (status, body) = app.call(&c, "vary_image", &[("task_id", &done), ("index", "0")]).await;
    assert_eq!((status, body["message"].as_str()), (400, Some("this site offers no variations")), "{body}");
    assert_eq!(app.balance(&c).await, balance);
}

#[tokio::test]
async fn a_variation_posted_without_javascript_leads_to_the_history() {
    let app = spawn_app().await;
    let c = no_redirects();
    app.sign_up(&c).await;
    let (_, body) = app.call(&c, "generate_image", &[("prompt", "a quay"), ("model", TEXT_MODEL)]).await;
    let source = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &source).await;
    let history = c.get(format!("{}/history", app.base)).send().await.expect("page").text().await.expect("html");
    assert!(history.contains(r#"action="/api/vary_image""#) && history.contains(">Vary</button>"), "offered");
    let form = [("task_id", source.as_str()), ("index", "0")];
    let answer = app.page_post(&c, "vary_image", "/history", &form).send().await.expect("post");
    assert_eq!(answer.status(), 302, "leads to the history");
    assert_eq!(answer.headers()["location"], "/history");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks WHERE source_task_id IS NOT NULL").await, 1);
}

#[tokio::test]
async fn deleting_a_task_removes_the_image_it_started_from() {
    let app = spawn_app().await;
    let c = client();
    app.sign_up(&c).await;
    let id = upload_png(&app, &c, png(48, 48, [120, 60, 200])).await;
    let form = [("prompt", "violet hills"), ("model", IMAGE_MODEL), ("image", id.as_str())];
    let (_, body) = app.call(&c, "generate_image", &form).await;
    let task = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &task).await;
    let (_, body) = app.call(&c, "upscale_image", &[("task_id", &task), ("index", "0"), ("scale", "2")]).await;
    let upscale = body["task_id"].as_str().expect("task_id").to_owned();
    poll_until_done(&app, &c, &upscale).await;
    for t in [&task, &upscale] {
        assert!(objects(&app).await.contains(&format!("inputs/{t}")), "stored with the task");
    }
    for t in [&task, &upscale] {
        let (status, body) = app.call(&c, "delete_image", &[("task_id", t)]).await;
        assert_eq!(status, 200, "{body}");
    }
    let left = objects(&app).await;
    assert!(
        left.iter().all(|k| !k.starts_with("images/") && !k.starts_with("inputs/")),
        "every image of both tasks is gone: {left:?}"
    );
}

#[tokio::test]
async fn uploads_no_task_used_are_removed_after_a_day() {
    let clock = manual_clock();
    let app = spawn_app_on(&[], clock.clone()).await;
    let c = client();
    app.sign_up(&c).await;
    let id = upload_png(&app, &c, png(16, 16, [1, 1, 1])).await;
    clock.advance(std::time::Duration::from_secs(23 * 3600));
    assert_eq!(darkroom::server::uploads::expire(&app.state).await.expect("expire"), 0);
    // A day on, the reconciler is due too (its interval is at most a day)
    // and may sweep first: what counts is that the upload is gone.
    clock.advance(std::time::Duration::from_secs(3601));
    assert!(darkroom::server::uploads::expire(&app.state).await.expect("expire") <= 1);
    let started = std::time::Instant::now();
    while app.count("SELECT COUNT(*) FROM uploads").await > 0 || !objects(&app).await.is_empty() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the upload outlived its day");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let form = [("prompt", "x"), ("model", IMAGE_MODEL), ("image", id.as_str())];
    let (status, body) = app.call(&c, "generate_image", &form).await;
    assert_eq!(status, 400, "{body}");
}

/// Replicate's Files API as the simulator serves it: an upload, its
/// metadata, and its expiry a day later (a prediction naming it is then
/// refused).
#[tokio::test]
async fn the_simulators_files_expire_like_replicates() {
    const TOKEN: &str = "r8_files_test_token";
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_SIM_TOKEN", TOKEN)], clock.clone()).await;
    let http = reqwest::Client::new();
    let part =
        reqwest::multipart::Part::bytes(png(20, 10, [5, 5, 5])).file_name("a.png").mime_str("image/png").expect("type");
    let answer = http
        .post(format!("{}/sim/v1/files", app.base))
        .bearer_auth(TOKEN)
        .multipart(reqwest::multipart::Form::new().part("content", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(answer.status(), 201);
    let file: Value = answer.json().await.expect("json");
    let id = file["id"].as_str().expect("id").to_owned();
    assert_eq!(file["urls"]["get"], format!("{}/sim/v1/files/{id}", app.base));
    assert_eq!(file["content_type"], "image/png");
    assert!(file["expires_at"].is_string() && file["checksums"]["sha256"].is_string(), "{file}");
    let get = |id: String| http.get(format!("{}/sim/v1/files/{id}", app.base)).bearer_auth(TOKEN).send();
    assert_eq!(get(id.clone()).await.expect("get").status(), 200);
    let create = |url: Value| {
        http.post(format!("{}/sim/v1/models/{IMAGE_MODEL}/predictions", app.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"input": {"prompt": "x", "image": url}}))
            .send()
    };
    assert_eq!(create(file["urls"]["get"].clone()).await.expect("create").status(), 201);
    clock.advance(std::time::Duration::from_secs(24 * 3600 + 1));
    assert_eq!(get(id).await.expect("get").status(), 404, "expired a day later");
    let refused = create(file["urls"]["get"].clone()).await.expect("create");
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["invalid_fields"][0]["field"], "input.image", "{body}");
    let stats: Value =
        reqwest::get(format!("{}/sim/_stats", app.base)).await.expect("stats").json().await.expect("json");
    assert_eq!(stats["uploads"], 1, "{stats}");
}
