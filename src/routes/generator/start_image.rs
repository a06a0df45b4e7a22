//! "Start from an image": the image a generation starts from, for the
//! models that take one. With JavaScript, a file picked, dropped on the
//! form or pasted into it is uploaded at once (`/api/upload_image`) and
//! shown, with "Remove image". Without it, the file field belongs to a form
//! of its own ([`UploadForm`]: forms cannot nest) that posts the file, and
//! the server answers with the generator again, the upload chosen
//! (`/?image=<id>`).

use leptos::prelude::*;

#[cfg(feature = "hydrate")]
use crate::error::{AppError, ErrorKind};
#[cfg(feature = "hydrate")]
use crate::model::Upload;

/// The id of the form the file field posts without JavaScript.
pub const UPLOAD_FORM: &str = "upload-form";
/// The types taken, as the file picker filters them.
const ACCEPTED: &str = "image/png,image/jpeg,image/webp";

/// The image chosen to start from, and its upload's progress.
#[derive(Clone, Copy)]
pub struct StartImage {
    /// The upload's id; empty for none.
    pub id: RwSignal<String>,
    pub busy: RwSignal<bool>,
    pub error: RwSignal<Option<String>>,
    /// Largest file taken, in bytes (checked here before sending).
    max_bytes: u64,
}

impl StartImage {
    pub fn new(id: String, max_bytes: u64) -> Self {
        Self { id: RwSignal::new(id), busy: RwSignal::new(false), error: RwSignal::new(None), max_bytes }
    }

    /// Uploads `file` and chooses it; a file of the wrong type or too
    /// large is refused here, before a byte is sent.
    #[cfg(feature = "hydrate")]
    pub fn send(self, file: web_sys::File) {
        if !ACCEPTED.split(',').any(|t| t == file.type_()) {
            self.error.set(Some("Only PNG, JPEG and WebP images can be used.".into()));
            return;
        }
        if self.max_bytes > 0 && file.size() > self.max_bytes as f64 {
            let mb = self.max_bytes.div_ceil(1024 * 1024);
            self.error.set(Some(format!("The image is too large (at most {mb} MB).")));
            return;
        }
        self.busy.set(true);
        self.error.set(None);
        leptos::task::spawn_local(async move {
            match upload(&file).await {
                Ok(upload) => self.id.set(upload.upload_id),
                Err(e) => self.error.set(Some(capitalized(&e))),
            }
            self.busy.set(false);
        });
    }

    /// Forgets the chosen image.
    pub fn clear(self) {
        self.id.set(String::new());
        self.error.set(None);
    }
}

/// An error's message as a sentence.
#[cfg(feature = "hydrate")]
fn capitalized(e: &AppError) -> String {
    let mut chars = e.message.chars();
    let mut text: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// The first file an event carries (a paste, a drop), if it is an image.
#[cfg(feature = "hydrate")]
pub fn image_file(data: Option<web_sys::DataTransfer>) -> Option<web_sys::File> {
    data?.files()?.get(0).filter(|f| f.type_().starts_with("image/"))
}

/// Sends `file` to `/api/upload_image` as `multipart/form-data`.
#[cfg(feature = "hydrate")]
async fn upload(file: &web_sys::File) -> Result<Upload, AppError> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let lost = |_| AppError::new(ErrorKind::Network, "the upload did not reach the server; try again");
    let form = web_sys::FormData::new().map_err(lost)?;
    form.append_with_blob_and_filename("file", file, &file.name()).map_err(lost)?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&form);
    let window = web_sys::window().ok_or_else(|| lost(wasm_bindgen::JsValue::NULL))?;
    let response = JsFuture::from(window.fetch_with_str_and_init("/api/upload_image", &init)).await.map_err(lost)?;
    let response: web_sys::Response = response.dyn_into().map_err(lost)?;
    let text = JsFuture::from(response.text().map_err(lost)?).await.map_err(lost)?.as_string().unwrap_or_default();
    if response.ok() {
        serde_json::from_str(&text).map_err(|_| AppError::new(ErrorKind::Network, "the server's answer was unreadable"))
    } else {
        Err(serde_json::from_str(&text).unwrap_or_else(|_| {
            AppError::new(ErrorKind::Internal, format!("the upload failed (HTTP {})", response.status()))
        }))
    }
}

/// The empty form the file field posts without JavaScript; placed outside
/// the generator's form.
#[component]
pub fn UploadForm() -> impl IntoView {
    view! {
        <form
            id=UPLOAD_FORM
            class="upload-form"
            method="post"
            action="/api/upload_image"
            enctype="multipart/form-data"
        ></form>
    }
}

/// The field: the chosen image (a preview and "Remove image"), or a file
/// picker (with "Upload" for a browser without JavaScript). Its value
/// reaches the generator's form as the hidden field `image`.
#[component]
pub fn StartImageField(image: StartImage, required: bool) -> impl IntoView {
    // "Upload" is for a browser without JavaScript: with it, a picked file
    // is sent at once.
    let scripted = RwSignal::new(false);
    Effect::new(move |_| scripted.set(true));
    let chosen = Memo::new(move |_| image.id.get());
    let mb = image.max_bytes.div_ceil(1024 * 1024);
    let hint = if required {
        format!("This model needs one: PNG, JPEG or WebP, up to {mb} MB. You can also paste or drop it here.")
    } else {
        format!("Optional: PNG, JPEG or WebP, up to {mb} MB. You can also paste or drop it here.")
    };
    view! {
        <div class="field start-image">
            <label for="image_file">"Start from an image"</label>
            {move || {
                let id = chosen.get();
                (!id.is_empty())
                    .then(|| {
                        view! {
                            <div class="start-preview">
                                <img src=format!("/uploads/{id}") alt="The image to start from" />
                                <a
                                    href="/"
                                    role="button"
                                    class="button"
                                    on:click=move |ev| {
                                        ev.prevent_default();
                                        image.clear();
                                    }
                                >
                                    "Remove image"
                                </a>
                            </div>
                        }
                    })
            }}
            <div class="picker">
                <input
                    id="image_file"
                    type="file"
                    name="file"
                    form=UPLOAD_FORM
                    accept=ACCEPTED
                    aria-describedby="image-hint"
                    disabled=move || image.busy.get()
                    on:change=move |ev| {
                        #[cfg(feature = "hydrate")]
                        {
                            use wasm_bindgen::JsCast;
                            let input = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
                            if let Some(input) = input {
                                if let Some(file) = input.files().and_then(|f| f.get(0)) {
                                    image.send(file);
                                }
                                input.set_value("");
                            }
                        }
                        #[cfg(not(feature = "hydrate"))]
                        let _ = ev;
                    }
                />
                <button type="submit" form=UPLOAD_FORM class="button" hidden=move || scripted.get()>
                    "Upload"
                </button>
            </div>
            <input type="hidden" name="image" value=image.id.get_untracked() prop:value=move || chosen.get() />
            <p id="image-hint" class="hint">
                {hint}
            </p>
            {move || image.busy.get().then(|| view! { <p class="hint" role="status">"Uploading…"</p> })}
            {move || image.error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        </div>
    }
}
