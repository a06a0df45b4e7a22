//! Why a form posted without JavaScript was refused. Leptos answers such a
//! post with a redirect back to the page that carries the error in the
//! address (`?__path=<endpoint>&__err=<base64 JSON>`). Anyone can write such
//! an address, so a page reads only the error's *kind* from it and shows
//! this site's own sentence for that form and kind: a crafted link can pick
//! one of these sentences, never put words of its own on the page.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::server_fn::error::ServerFnUrlError;
use leptos_router::hooks::use_query_map;

use crate::api::{
    BuyCredits, ChangeEmail, ChangePassword, DeleteAccount, GenerateImage, RequestPasswordReset, ResendVerification,
    ResetPassword, SignIn, SignUp, UpscaleImage, VaryImage, VerifyEmail,
};
use crate::error::{AppError, ErrorKind};

/// The forms that work without JavaScript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    SignIn,
    SignUp,
    Generate,
    ChangePassword,
    BuyCredits,
    /// `/api/upload_image`, which names the refusal's kind itself
    /// (`?upload_error=<kind>`, see [`upload_refused`]).
    Upload,
    Upscale,
    Vary,
    Forgot,
    Reset,
    DeleteAccount,
    Verify,
    ResendVerification,
    ChangeEmail,
}

impl Form {
    fn path(self) -> &'static str {
        match self {
            Self::SignIn => SignIn::PATH,
            Self::SignUp => SignUp::PATH,
            Self::Generate => GenerateImage::PATH,
            Self::ChangePassword => ChangePassword::PATH,
            Self::BuyCredits => BuyCredits::PATH,
            Self::Upload => "/api/upload_image",
            Self::Upscale => UpscaleImage::PATH,
            Self::Vary => VaryImage::PATH,
            Self::Forgot => RequestPasswordReset::PATH,
            Self::Reset => ResetPassword::PATH,
            Self::DeleteAccount => DeleteAccount::PATH,
            Self::Verify => VerifyEmail::PATH,
            Self::ResendVerification => ResendVerification::PATH,
            Self::ChangeEmail => ChangeEmail::PATH,
        }
    }
}

const TOO_MANY: &str = "Too many attempts; wait a minute and try again.";

/// This site's sentence for a refusal of `form` with `kind`.
pub fn message(form: Form, kind: ErrorKind) -> &'static str {
    use ErrorKind::*;
    match (form, kind) {
        (Form::SignIn, Unauthorized) => "Wrong email or password.",
        (Form::SignIn, Invalid) => "Enter your email address and password.",
        (Form::SignIn | Form::SignUp | Form::ChangePassword | Form::Reset | Form::DeleteAccount, RateLimited) => {
            TOO_MANY
        }
        (Form::SignIn, _) => "Signing in did not work; please try again.",
        (Form::SignUp, Conflict) => "An account with this email already exists; sign in instead.",
        (Form::SignUp, Invalid) => "Enter a valid email address and a password of at least 8 characters.",
        (Form::SignUp, _) => "The account could not be created; please try again.",
        (Form::Generate | Form::Upscale | Form::Vary, Unverified) => {
            "Confirm your email address first: open the link we sent you."
        }
        (Form::Generate, NotEnoughCredits) => "Not enough credits for this generation.",
        (Form::Generate | Form::Upscale | Form::Vary, RateLimited) => {
            "You have reached your limit of generations for now; try again shortly."
        }
        (Form::Generate, Invalid) => "The generation was refused: check the prompt and the settings.",
        (Form::Generate | Form::Upscale | Form::Vary, Provider) => {
            "The image service could not be reached. Nothing was charged."
        }
        (Form::Generate, Unauthorized) => "Please sign in.",
        (Form::Generate, _) => "Something went wrong; nothing was charged. Please try again.",
        (Form::ChangePassword, Invalid) => {
            "The current password is wrong, or the new one is shorter than 8 characters."
        }
        (Form::ChangePassword, Conflict) => "The password was changed meanwhile; sign in again.",
        (Form::ChangePassword, _) => "The password was not changed; please try again.",
        (Form::BuyCredits, RateLimited) => "Too many checkouts started; wait a minute and try again.",
        (Form::BuyCredits, Provider) => "The payment service could not be reached; nothing was charged.",
        (Form::BuyCredits, Unauthorized) => "Please sign in.",
        (Form::BuyCredits, _) => "The checkout could not be started; nothing was charged. Please try again.",
        (Form::Upload, Invalid) => {
            "That file cannot be used: choose a PNG, JPEG or WebP image of at most 25 megapixels."
        }
        (Form::Upload, TooLarge) => "The image file is too large.",
        (Form::Upload, RateLimited) => "Too many uploads; wait a minute and try again.",
        (Form::Upload | Form::Upscale | Form::Vary, Unauthorized) => "Please sign in.",
        (Form::Upload, _) => "The image could not be uploaded; please try again.",
        (Form::Upscale, NotEnoughCredits) => "Not enough credits for this upscale.",
        (Form::Upscale, _) => "The image could not be upscaled; nothing was charged.",
        (Form::Vary, NotEnoughCredits) => "Not enough credits for this variation.",
        (Form::Vary, _) => "The variation could not be made; nothing was charged.",
        (Form::Forgot, Invalid) => "Enter a valid email address.",
        (Form::Forgot, RateLimited) => "Too many links asked for; wait a while and try again.",
        (Form::Forgot, _) => "The link could not be sent; please try again.",
        (Form::Reset, Invalid) => {
            "The password was not set: the new one needs at least 8 characters, and the link works once, for an hour."
        }
        (Form::Reset, _) => "The password was not set; please try again.",
        (Form::DeleteAccount, Invalid) => "The password is wrong; the account was not deleted.",
        (Form::DeleteAccount, Conflict) => {
            "A generation is still running: cancel it or let it end, then delete the account."
        }
        (Form::DeleteAccount, _) => "The account was not deleted; please try again.",
        (Form::Verify, Invalid) => "This link has expired or was already used: sign in to have a new one sent.",
        (Form::Verify, RateLimited) => TOO_MANY,
        (Form::Verify, _) => "The address was not confirmed; please try again.",
        (Form::ResendVerification, RateLimited) => "Several links were sent already; wait a while and try again.",
        (Form::ResendVerification, Conflict) => "Your address is confirmed already.",
        (Form::ResendVerification, _) => "The link could not be sent; please try again.",
        (Form::ChangeEmail, Invalid) => "Check the new address and your password; the email was not changed.",
        (Form::ChangeEmail, Conflict) => "Another account uses that address.",
        (Form::ChangeEmail, RateLimited) => TOO_MANY,
        (Form::ChangeEmail, _) => "The email was not changed; please try again.",
    }
}

/// The refusal of `form` the address names, in this site's words; read by
/// the page as it renders (on the server) and given to the form's island.
pub fn refused(form: Form) -> Option<AppError> {
    let (path, err) = use_query_map().with_untracked(|q| (q.get("__path"), q.get("__err")));
    if path.as_deref() != Some(form.path()) {
        return None;
    }
    let kind = ServerFnUrlError::<AppError>::decode_err(&err?).kind;
    Some(AppError::new(kind, message(form, kind)))
}

/// The refusal of an upload posted without JavaScript, which the address
/// names by its kind (`?upload_error=too_large`), in this site's words.
pub fn upload_refused() -> Option<AppError> {
    let kind = use_query_map().with_untracked(|q| q.get("upload_error"))?;
    let kind: ErrorKind = serde_json::from_value(serde_json::Value::String(kind)).ok()?;
    Some(AppError::new(kind, message(Form::Upload, kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_has_a_sentence_for_every_kind() {
        use ErrorKind::*;
        for form in [
            Form::SignIn,
            Form::SignUp,
            Form::Generate,
            Form::ChangePassword,
            Form::BuyCredits,
            Form::Upload,
            Form::Upscale,
            Form::Vary,
            Form::Forgot,
            Form::Reset,
            Form::DeleteAccount,
            Form::Verify,
            Form::ResendVerification,
            Form::ChangeEmail,
        ] {
            for kind in [
                Invalid,
                Unauthorized,
                Unverified,
                NotEnoughCredits,
                NotFound,
                Conflict,
                TooLarge,
                RateLimited,
                Provider,
                Internal,
                Network,
            ] {
                let text = message(form, kind);
                assert!(text.ends_with('.') && text.len() > 10, "{form:?} {kind:?}: {text}");
            }
        }
    }
}
