//! Images in over HTTP, through the simulator's router: the Files API
//! (multipart, its limits, expiry), and predictions from an image: its file
//! URL or a data URL, image-to-image outputs that follow it, upscales made
//! from the stored file, and the 422s naming `input.image` or `input.scale`.

use std::time::Duration;

use axum::{
    Router,
    body::{Body, Bytes},
    http::{Method, Request, StatusCode, header},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{SimConfig, render::hex_digest, router, uploads::TTL_MS};
use crate::server::clock::Clock;

const TOKEN: &str = "sim-token";
const BASE: &str = "http://sim.test/sim";
const BOUNDARY: &str = "XsimBoundaryX";

struct Sim {
    app: Router,
    clock: Clock,
}

impl Sim {
    fn new() -> Self {
        let clock = Clock::manual(1_700_000_000_000);
        let cfg = SimConfig {
            public_base: BASE.parse().unwrap_or_else(|e| panic!("base: {e}")),
            api_token: TOKEN.into(),
            secret: b"images in".to_vec(),
            duration_ms: (1_000, 1_000),
            output_ttl: Duration::from_secs(3_600),
            huge_bytes: 1_000,
            webhook_secret: crate::standard_webhooks::Secret::from_bytes(b"hooks"),
            clock: clock.clone(),
            rate_limits: crate::rate::Limits::OFF,
        };
        Self { app: router(cfg), clock }
    }

    async fn call(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(path.strip_prefix(BASE).unwrap_or(path))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap_or_else(|e| panic!("request: {e}"));
        let response = self.app.clone().oneshot(request).await.unwrap_or_else(|e| match e {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap_or_else(|e| panic!("body: {e}"));
        (status, bytes)
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, bytes) = self.call(method, path, "application/json", body).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Uploads `bytes` as the Python client does; the answer's JSON.
    async fn upload(&self, bytes: &[u8]) -> (StatusCode, Value) {
        let form = multipart(&[("content", Some(("in.png", "image/png")), bytes), ("metadata", None, b"{\"a\": 1}")]);
        let (status, body) = self.call(Method::POST, "/v1/files", &form_type(), form).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Creates a prediction with `input`, lets it finish, and GETs it.
    async fn run(&self, input: Value) -> Value {
        let (status, created) = self.create(input).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        self.clock.advance(Duration::from_millis(1_000));
        let (status, done) =
            self.json(Method::GET, &format!("/v1/predictions/{}", created["id"].as_str().unwrap_or("")), None).await;
        assert_eq!((status, done["status"].as_str()), (StatusCode::OK, Some("succeeded")), "{done}");
        done
    }

    async fn create(&self, input: Value) -> (StatusCode, Value) {
        self.json(Method::POST, "/v1/models/sim/images/predictions", Some(json!({ "input": input }))).await
    }

    /// The first output, decoded; or its status when it is no image.
    async fn output(&self, prediction: &Value) -> Result<RgbImage, StatusCode> {
        let url = prediction["output"][0].as_str().unwrap_or_default();
        let (status, bytes) = self.call(Method::GET, url, "", Vec::new()).await;
        if status != StatusCode::OK {
            return Err(status);
        }
        Ok(image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("output: {e}")).to_rgb8())
    }

    async fn stats(&self) -> Value {
        self.json(Method::GET, "/_stats", None).await.1
    }
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// A part of a multipart body: its name, a file part's file name and
/// type, its bytes.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A multipart body of `parts`.
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some((file_name, content_type)) = file {
            body.extend_from_slice(format!("; filename=\"{file_name}\"\r\nContent-Type: {content_type}").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn png(image: RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    DynamicImage::from(image)
        .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap_or_else(|e| panic!("encode: {e}"));
    bytes
}

/// 64×32: red on the left, blue on the right.
fn red_blue() -> Vec<u8> {
    png(RgbImage::from_fn(64, 32, |x, _| if x < 32 { Rgb([230, 20, 20]) } else { Rgb([20, 20, 230]) }))
}

/// Mean of red minus blue over the left half, minus over the right half.
fn tilt(image: &RgbImage) -> f64 {
    let half = image.width() / 2;
    let (mut left, mut right) = (0.0, 0.0);
    for (x, _, pixel) in image.enumerate_pixels() {
        let redness = f64::from(pixel[0]) - f64::from(pixel[2]);
        if x < half { left += redness } else { right += redness }
    }
    (left - right) / f64::from(half * image.height())
}

fn field_of(problem: &Value) -> (&str, &str) {
    let field = &problem["invalid_fields"][0];
    (field["field"].as_str().unwrap_or_default(), field["description"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn a_file_is_created_listed_read_and_deleted_like_replicates() {
    let sim = Sim::new();
    let bytes = red_blue();
    let (status, file) = sim.upload(&bytes).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let id = file["id"].as_str().unwrap_or_default();
    assert_eq!((file["name"].as_str(), file["content_type"].as_str()), (Some("in.png"), Some("image/png")));
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["checksums"]["sha256"], hex_digest(&bytes));
    assert_eq!(file["metadata"], json!({"a": 1}));
    assert_eq!(file["urls"]["get"], format!("{BASE}/v1/files/{id}"));
    assert_eq!(
        (file["created_at"].as_str(), file["expires_at"].as_str()),
        (Some("2023-11-14T22:13:20.000000Z"), Some("2023-11-15T22:13:20.000000Z"))
    );
    assert_eq!(sim.stats().await["uploads"], 1);

    assert_eq!(sim.json(Method::GET, &format!("/v1/files/{id}"), None).await, (StatusCode::OK, file.clone()));
    let (status, list) = sim.json(Method::GET, "/v1/files", None).await;
    assert_eq!((status, &list["results"][0], &list["next"]), (StatusCode::OK, &file, &Value::Null));

    let (status, _) = sim.call(Method::DELETE, &format!("/v1/files/{id}"), "", Vec::new()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = sim.json(Method::GET, &format!("/v1/files/{id}"), None).await;
    assert_eq!((status, gone), (StatusCode::NOT_FOUND, json!({"detail": "Not found.", "status": 404})));
    assert_eq!(sim.call(Method::DELETE, &format!("/v1/files/{id}"), "", Vec::new()).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_upload_is_refused_and_files_expire_after_a_day() {
    let sim = Sim::new();
    let no_content = multipart(&[("metadata", None, b"{}")]);
    let (status, body) = sim.call(Method::POST, "/v1/files", &form_type(), no_content).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");
    let big = vec![0; 33 << 20];
    let too_large = multipart(&[("content", Some(("big.bin", "application/octet-stream")), &big)]);
    assert_eq!(sim.call(Method::POST, "/v1/files", &form_type(), too_large).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let listed = multipart(&[("content", Some(("big.bin", "application/octet-stream")), &big[..20 << 20])]);
    assert_eq!(sim.call(Method::POST, "/v1/files", &form_type(), listed).await.0, StatusCode::CREATED, "20 MiB fit");
    let bad_metadata = multipart(&[("content", Some(("a", "text/plain")), b"a"), ("metadata", None, b"[1]")]);
    assert_eq!(
        sim.call(Method::POST, "/v1/files", &form_type(), bad_metadata).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (status, _) = sim.call(Method::POST, "/v1/files", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(sim.stats().await["uploads"], 1);

    let (_, file) = sim.upload(&red_blue()).await;
    let url = file["urls"]["get"].as_str().unwrap_or_default().to_owned();
    sim.clock.advance(Duration::from_millis(TTL_MS - 1));
    assert_eq!(sim.json(Method::GET, &url, None).await.0, StatusCode::OK);
    sim.clock.advance(Duration::from_millis(1));
    assert_eq!(sim.json(Method::GET, &url, None).await.0, StatusCode::NOT_FOUND);
    let (status, problem) = sim.create(json!({"image": url, "prompt": "x"})).await;
    assert_eq!(
        (status, field_of(&problem)),
        (StatusCode::UNPROCESSABLE_ENTITY, ("input.image", "file not found or expired"))
    );
}

#[tokio::test]
async fn an_image_to_image_output_has_the_inputs_shape_and_follows_it() {
    let sim = Sim::new();
    let (_, file) = sim.upload(&red_blue()).await;
    let url = file["urls"]["get"].clone();
    let done = sim.run(json!({"image": url, "prompt": "a valley", "prompt_strength": 0.9})).await;
    assert_eq!(done["input"], json!({"image": url, "prompt": "a valley", "prompt_strength": 0.9}));
    assert!(done["logs"].as_str().unwrap_or_default().contains("Image to image from 64x32, prompt strength 0.9\n"));
    let output = sim.output(&done).await.unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(output.dimensions(), (768, 384));
    assert!(tilt(&output) > 100.0, "left redder than right by only {}", tilt(&output));

    let blue_red = png(RgbImage::from_fn(64, 32, |x, _| if x < 32 { Rgb([20, 20, 230]) } else { Rgb([230, 20, 20]) }));
    let data_url = format!("data:image/png;base64,{}", STANDARD.encode(&blue_red));
    let done = sim.run(json!({"image": data_url, "prompt": "a valley", "aspect_ratio": "1:1"})).await;
    let kept = done["input"]["image"].as_str().unwrap_or_default();
    assert!(kept.starts_with(&format!("{BASE}/v1/files/")), "a data URL is kept as a file: {kept}");
    assert_eq!(sim.json(Method::GET, kept, None).await.1["name"], "data-url");
    let output = sim.output(&done).await.unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(output.dimensions(), (768, 768), "an aspect ratio wins");
    assert!(tilt(&output) < -100.0, "right redder than left by only {}", -tilt(&output));
}

#[tokio::test]
async fn an_upscale_makes_one_output_from_the_stored_file() {
    let sim = Sim::new();
    let (_, file) = sim.upload(&red_blue()).await;
    let url = file["urls"]["get"].clone();
    let done = sim.run(json!({"image": url, "scale": 2, "num_outputs": 3})).await;
    assert_eq!(done["input"], json!({"image": url, "scale": 2, "num_outputs": 3}), "no prompt given, none echoed");
    assert!(done["logs"].as_str().unwrap_or_default().starts_with("Upscaling 64x32 by 2\n"));
    assert_eq!(done["output"].as_array().map(Vec::len), Some(1));
    let output = sim.output(&done).await.unwrap_or_else(|s| panic!("{s}"));
    assert_eq!(output.dimensions(), (128, 64));
    assert_eq!((output.get_pixel(10, 10).0, output.get_pixel(120, 50).0), ([230, 20, 20], [20, 20, 230]));

    let id = url.as_str().and_then(|u| u.rsplit('/').next()).unwrap_or_default();
    sim.call(Method::DELETE, &format!("/v1/files/{id}"), "", Vec::new()).await;
    assert_eq!(sim.output(&done).await.err(), Some(StatusCode::NOT_FOUND), "lost with its file");
}

#[tokio::test]
async fn image_inputs_that_cannot_be_used_are_422s_naming_the_field() {
    let sim = Sim::new();
    let (_, file) = sim.upload(&red_blue()).await;
    let url = file["urls"]["get"].as_str().unwrap_or_default().to_owned();
    let wide = sim.upload(&png(RgbImage::new(500, 10))).await.1["urls"]["get"].clone();
    let (_, text) = sim
        .call(
            Method::POST,
            "/v1/files",
            &form_type(),
            multipart(&[("content", Some(("a.txt", "text/plain")), b"hello")]),
        )
        .await;
    let text: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
    let foreign = "the simulator reads only its own files (POST /v1/files) and data URLs";
    let cases = [
        (json!({"image": "https://example.com/cat.png"}), ("input.image", foreign)),
        (json!({"image": "data:image/png;base64,aGVsbG8="}), ("input.image", "cannot identify image file")),
        (json!({"image": text["urls"]["get"]}), ("input.image", "cannot identify image file")),
        (json!({"image": format!("{BASE}/v1/files/nosuchfile")}), ("input.image", "file not found or expired")),
        (json!({"image": url, "prompt_strength": 2}), ("input.prompt_strength", "Must be less than or equal to 1")),
        (json!({"image": url, "scale": 0}), ("input.scale", "Must be greater than or equal to 1")),
        (
            json!({"image": wide, "scale": 10}),
            ("input.scale", "Upscaling 500x10 by 10 makes 5000x100; sides of at most 4096 pixels are supported"),
        ),
        (json!({"prompt_strength": 0.5}), ("input", "prompt is required")),
    ];
    for (input, expected) in cases {
        let (status, problem) = sim.create(input.clone()).await;
        assert_eq!((status, field_of(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, expected), "{input}");
    }
    assert_eq!(
        sim.json(Method::GET, "/v1/files", None).await.1["results"].as_array().map(Vec::len),
        Some(3),
        "no data URL kept"
    );
}
