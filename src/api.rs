//! Server functions: the browser's (and outside tests') door to the server,
//! mounted under `/api/` with stable endpoint names. Each one is thin: it
//! runs its body through `ssr::signed_in` (or `ssr::public` for the ones
//! that do not need a person), which fetch the state and the account and
//! always give an error its HTTP status, then calls the server side.

#[cfg(feature = "ssr")]
use crate::server::ids::TaskId;
use leptos::prelude::*;
#[cfg(feature = "ssr")]
use leptos::server_fn::ServerFn;

use crate::codec::Json;
use crate::error::AppError;
use crate::model::{
    Checkout, CreditPackage, Generated, GeneratorInfo, HistoryPage, LedgerPage, Purchase, ShareLink, TaskView, User,
};

#[cfg(feature = "ssr")]
mod ssr {
    //! Helpers shared by the server functions.
    use std::future::Future;
    use std::net::IpAddr;

    use axum::http::{StatusCode, header::ACCEPT, request::Parts};
    use leptos::prelude::use_context;
    use leptos_axum::ResponseOptions;

    use crate::error::{AppError, Result};
    pub use crate::server::auth::{Account, AuthSession};
    use crate::server::state::{AppState, app_state};

    /// Runs the body of the server function at `path` with the state and
    /// the signed-in account ("please sign in" otherwise), and answers its
    /// error with the error's status.
    pub async fn signed_in<T, F, Fut>(path: &'static str, body: F) -> Result<T>
    where
        F: FnOnce(AppState, Account) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        signed_in_session(path, |state, account, _| body(state, account)).await
    }

    /// Like [`signed_in`], for polls: the body also gets the account's
    /// count of deleted tasks, read with this request's session (see
    /// `sessions::task_deletions`).
    pub async fn polling<T, F, Fut>(path: &'static str, body: F) -> Result<T>
    where
        F: FnOnce(AppState, Account, Option<i64>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        signed_in_session(path, |state, account, auth| async move {
            let deletions = crate::server::sessions::task_deletions(&auth.session).await;
            body(state, account, deletions).await
        })
        .await
    }

    async fn signed_in_session<T, F, Fut>(path: &'static str, body: F) -> Result<T>
    where
        F: FnOnce(AppState, Account, AuthSession) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        answer(
            async {
                let state = started(path)?;
                let mut auth = auth_session().await?;
                let account = auth.user.take().ok_or_else(AppError::unauthorized)?;
                body(state, account, auth).await
            }
            .await,
        )
    }

    /// Like [`signed_in`], for the server functions anyone may call.
    pub async fn public<T, F, Fut>(path: &'static str, body: F) -> Result<T>
    where
        F: FnOnce(AppState) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        answer(async { body(started(path)?).await }.await)
    }

    /// The state, and the run of the server function at `path` counted:
    /// called over HTTP (`api`) or by a page as it renders (`page`).
    fn started(path: &'static str) -> Result<AppState> {
        let state = app_state()?;
        let from_api = use_context::<Parts>().is_some_and(|p| p.uri.path() == path);
        state.metrics.server_fn(path, if from_api { "api" } else { "page" });
        Ok(state)
    }

    /// Gives an error its HTTP status — except for a plain form post (no
    /// JavaScript), which Leptos answers with a redirect carrying the error.
    fn answer<T>(result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && !form_post()
            && let Some(options) = use_context::<ResponseOptions>()
        {
            options.set_status(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        }
        result
    }

    /// Whether the call is a plain form post from a page (a browser
    /// without JavaScript, or a form no island handles): Leptos answers it
    /// with a redirect back to the page, not with data.
    pub fn form_post() -> bool {
        use_context::<Parts>()
            .and_then(|p| p.headers.get(ACCEPT).and_then(|v| v.to_str().ok()).map(|v| v.contains("text/html")))
            .unwrap_or(false)
    }

    pub async fn auth_session() -> Result<AuthSession> {
        leptos_axum::extract::<AuthSession>().await.map_err(AppError::internal)
    }

    /// The site's origin as this request reached it (see
    /// `http::site_base`).
    pub fn site_base(state: &AppState) -> String {
        let parts = use_context::<Parts>();
        let headers = parts.as_ref().map(|p| p.headers.clone()).unwrap_or_default();
        let client = parts.as_ref().and_then(|p| p.extensions.get::<crate::server::client::Client>().copied());
        crate::server::http::site_base(state, &headers, client.as_ref())
    }

    /// What rate limits count the client by (its address behind trusted
    /// proxies, an IPv6 client's /64).
    pub fn client_key() -> IpAddr {
        use_context::<Parts>()
            .and_then(|p| p.extensions.get::<crate::server::client::Client>().copied())
            .unwrap_or_else(crate::server::client::Client::unknown)
            .limit_key()
    }

    /// Signs `account` in on a fresh session id, whatever the request came
    /// with: an id planted before sign-in (or a previous account's) must not
    /// become the new sign-in's. `epoch` is the account's session epoch as
    /// read with the password just checked. The last step that can fail: a
    /// failed server function answers an error, and the session is not
    /// saved then.
    pub async fn sign_in_fresh(auth: &mut AuthSession, account: &Account, epoch: i64) -> Result<()> {
        auth.session.cycle_id().await.map_err(AppError::internal)?;
        auth.login(account).await.map_err(AppError::internal)?;
        crate::server::sessions::set_epoch(&auth.session, epoch).await
    }
}

/// Creates an account with the sign-up credits and signs it in. With
/// `DARKROOM_REQUIRE_VERIFIED_EMAIL`, instead answers "check your inbox"
/// (`check_inbox`), the same for a new address and a registered one, and
/// signs nobody in: the link mailed does (see `server::verification`).
#[server(endpoint = "sign_up", output = Json)]
pub async fn sign_up(email: String, password: String) -> Result<User, AppError> {
    use crate::server::auth::{Email, NewPassword, create_account};
    ssr::public(SignUp::PATH, |state| async move {
        state.attempts.check(ssr::client_key())?;
        let email = Email::parse(&email)?;
        let password = NewPassword::parse(password)?;
        state.signups_by_address.check_as(ssr::client_key(), "accounts made from this network")?;
        state.signups.check_as((), "accounts made on this site just now")?;
        if state.config.require_verified_email {
            // A registered address is mailed a note: a few an hour.
            state.mail_requests.check_as(format!("sign-up:{}", email.as_str()), "sign-ups with this address")?;
            let base = crate::server::mail::link_base(&state, &ssr::site_base(&state));
            let user = User { email: email.as_str().to_owned(), credits: 0, verified: false, check_inbox: true };
            crate::server::verification::sign_up(&state, email, password, base);
            if ssr::form_post() {
                leptos_axum::redirect("/signup?check_inbox=1");
            }
            return Ok(user);
        }
        let (account, credits) = create_account(&state.db, &email, password, state.config.signup_credits).await?;
        let mut auth = ssr::auth_session().await?;
        let user = User { email: account.email.clone(), credits, verified: false, check_inbox: false };
        // A new account's sessions start at epoch 0.
        ssr::sign_in_fresh(&mut auth, &account, 0).await?;
        Ok(user)
    })
    .await
}

/// Confirms the address a verification link was sent to: grants the
/// sign-up credits (once per mailbox) and signs the account in. From a
/// page without JavaScript, on to the generator.
#[server(endpoint = "verify_email", output = Json)]
pub async fn verify_email(token: String) -> Result<User, AppError> {
    ssr::public(VerifyEmail::PATH, |state| async move {
        state.attempts.check(ssr::client_key())?;
        let (account, epoch, _) = crate::server::verification::verify(&state, &token).await?;
        let now = crate::server::auth::standing(&state.db, &account.id).await?;
        let mut auth = ssr::auth_session().await?;
        ssr::sign_in_fresh(&mut auth, &account, epoch).await?;
        if ssr::form_post() {
            leptos_axum::redirect("/");
        }
        Ok(now.into_user())
    })
    .await
}

/// Mails the signed-in account a new verification link (a few an hour).
/// From a page without JavaScript, back to the generator.
#[server(endpoint = "resend_verification", output = Json)]
pub async fn resend_verification() -> Result<(), AppError> {
    ssr::signed_in(ResendVerification::PATH, |state, account| async move {
        state.mail_requests.check_as(format!("verify:{}", account.id), "links sent to this address")?;
        let base = crate::server::mail::link_base(&state, &ssr::site_base(&state));
        crate::server::verification::resend(&state, &account, base).await?;
        if ssr::form_post() {
            leptos_axum::redirect("/?resent=1");
        }
        Ok(())
    })
    .await
}

/// Signs in with email and password.
#[server(endpoint = "sign_in", output = Json)]
pub async fn sign_in(email: String, password: String) -> Result<User, AppError> {
    use crate::error::ErrorKind;
    use crate::server::auth::{self, Credentials};
    ssr::public(SignIn::PATH, |state| async move {
        state.attempts.check(ssr::client_key())?;
        // Per account too: guesses spread over many addresses (IPv6 hands
        // them out by the billion) still take turns.
        if let Ok(address) = auth::Email::parse(&email) {
            state.sign_in_attempts.check(address.as_str().to_owned())?;
        }
        let mut auth = ssr::auth_session().await?;
        let (account, epoch) = auth
            .backend
            .verify(Credentials { email, password })
            .await
            .map_err(AppError::internal)?
            .ok_or_else(|| AppError::new(ErrorKind::Unauthorized, "wrong email or password"))?;
        let now = auth::standing(&state.db, &account.id).await?;
        let user = now.into_user();
        ssr::sign_in_fresh(&mut auth, &account, epoch).await?;
        Ok(user)
    })
    .await
}

/// Signs out (a no-op when signed out).
#[server(endpoint = "sign_out", output = Json)]
pub async fn sign_out() -> Result<(), AppError> {
    ssr::public(SignOut::PATH, |_| async {
        let mut auth = ssr::auth_session().await?;
        auth.logout().await.map_err(AppError::internal)?;
        // From a page: on to the sign-in page, not back to the page (which
        // would send a signed-out visitor there with `?next=`).
        if ssr::form_post() {
            leptos_axum::redirect("/login");
        }
        Ok(())
    })
    .await
}

/// The signed-in person and their balance; fails when signed out.
#[server(endpoint = "me", output = Json)]
pub async fn me() -> Result<User, AppError> {
    ssr::signed_in(Me::PATH, |state, account| async move {
        let now = crate::server::auth::standing(&state.db, &account.id).await?;
        Ok(now.into_user())
    })
    .await
}

/// The signed-in person, or `None`: what pages use to decide what to show
/// (being signed out is not an error there).
#[server(endpoint = "current_user", output = Json)]
pub async fn current_user() -> Result<Option<User>, AppError> {
    ssr::public(CurrentUser::PATH, |state| async move {
        match ssr::auth_session().await?.user {
            None => Ok(None),
            Some(account) => {
                let now = crate::server::auth::standing(&state.db, &account.id).await?;
                Ok(Some(now.into_user()))
            }
        }
    })
    .await
}

/// Models, price, polling pace, and the latest processing task to resume.
#[server(endpoint = "generator_setup", output = Json)]
pub async fn generator_setup() -> Result<GeneratorInfo, AppError> {
    ssr::signed_in(GeneratorSetup::PATH, |state, account| async move {
        crate::server::engine::service::generator_setup(&state, &account.user_id()).await
    })
    .await
}

/// Charges the cost, submits the prediction and answers the task id at once.
/// The model's inputs are optional and arrive as text (form fields); each
/// is checked against the model before anything is charged. `image`: an
/// upload's id (`/api/upload_image`), for a model that takes an image.
#[server(endpoint = "generate_image", output = Json)]
pub async fn generate_image(
    prompt: String,
    model: Option<String>,
    aspect_ratio: Option<String>,
    num_outputs: Option<String>,
    seed: Option<String>,
    negative_prompt: Option<String>,
    image: Option<String>,
) -> Result<Generated, AppError> {
    use crate::server::catalogue::RawInputs;
    ssr::signed_in(GenerateImage::PATH, |state, account| async move {
        let inputs = RawInputs {
            aspect_ratio: aspect_ratio.as_deref(),
            num_outputs: num_outputs.as_deref(),
            seed: seed.as_deref(),
            negative_prompt: negative_prompt.as_deref(),
            image: image.as_deref(),
        };
        crate::server::engine::service::generate(&state, &account.user_id(), &prompt, model.as_deref(), inputs).await
    })
    .await
}

/// Makes output `index` (from 0) of the owner's completed task `scale`
/// times larger with the site's upscaler: a new task, charged the
/// upscaler's price, whose input is the stored image. Posted as a form
/// without JavaScript, it leads to the history, where the task shows.
#[server(endpoint = "upscale_image", output = Json)]
pub async fn upscale_image(task_id: String, index: u8, scale: u8) -> Result<Generated, AppError> {
    ssr::signed_in(UpscaleImage::PATH, |state, account| async move {
        let source = TaskId::parse(&task_id)?;
        let generated =
            crate::server::engine::service::upscale(&state, &account.user_id(), &source, index, scale).await?;
        if ssr::form_post() {
            leptos_axum::redirect("/history");
        }
        Ok(generated)
    })
    .await
}

/// Makes a variation of output `index` (from 0) of the owner's completed
/// task: a new task with its prompt on the model that starts from an
/// image, charged that model's price, whose input is the stored image.
/// Posted as a form without JavaScript, it leads to the history.
#[server(endpoint = "vary_image", output = Json)]
pub async fn vary_image(task_id: String, index: u8) -> Result<Generated, AppError> {
    ssr::signed_in(VaryImage::PATH, |state, account| async move {
        let source = TaskId::parse(&task_id)?;
        let generated = crate::server::engine::service::vary(&state, &account.user_id(), &source, index).await?;
        if ssr::form_post() {
            leptos_axum::redirect("/history");
        }
        Ok(generated)
    })
    .await
}

/// A task's state; advances it when the provider has finished.
#[server(endpoint = "check_image_status", output = Json)]
pub async fn check_image_status(task_id: String) -> Result<TaskView, AppError> {
    ssr::polling(CheckImageStatus::PATH, |state, account, deletions| async move {
        crate::server::engine::service::check(&state, &account.user_id(), deletions, &TaskId::parse(&task_id)?).await
    })
    .await
}

/// Several tasks' states in one call (the history page).
#[server(endpoint = "check_image_statuses", output = Json)]
pub async fn check_image_statuses(task_ids: Vec<String>) -> Result<Vec<TaskView>, AppError> {
    ssr::polling(CheckImageStatuses::PATH, |state, account, deletions| async move {
        let ids = task_ids.iter().map(|id| TaskId::parse(id)).collect::<Result<Vec<_>, _>>()?;
        crate::server::engine::service::check_many(&state, &account.user_id(), deletions, &ids).await
    })
    .await
}

/// The signed-in person's tasks, newest first, a page at a time.
#[server(endpoint = "list_history", output = Json)]
pub async fn list_history(cursor: Option<String>) -> Result<HistoryPage, AppError> {
    ssr::signed_in(ListHistory::PATH, |state, account| async move {
        crate::server::engine::service::history(&state, &account.user_id(), cursor.as_deref()).await
    })
    .await
}

/// Cancels a processing task (refunded), or answers a finished one as it is.
#[server(endpoint = "cancel_image", output = Json)]
pub async fn cancel_image(task_id: String) -> Result<TaskView, AppError> {
    ssr::signed_in(CancelImage::PATH, |state, account| async move {
        state.task_changes.check_as(account.id.clone(), "cancels and deletions")?;
        crate::server::engine::service::cancel(&state, &account.user_id(), &TaskId::parse(&task_id)?).await
    })
    .await
}

/// The signed-in person's credit ledger, newest first, a page at a time.
#[server(endpoint = "list_ledger", output = Json)]
pub async fn list_ledger(cursor: Option<String>) -> Result<LedgerPage, AppError> {
    ssr::signed_in(ListLedger::PATH, |state, account| async move {
        crate::server::ledger::page(&state, &account.user_id(), cursor.as_deref()).await
    })
    .await
}

/// Replaces the password (the current one must match, rate limited like
/// sign-in). Every session of the account ends; this browser stays signed
/// in on a new session id, so a stolen copy of its cookie is worth nothing.
#[server(endpoint = "change_password", output = Json)]
pub async fn change_password(current_password: String, new_password: String) -> Result<(), AppError> {
    use crate::server::auth::NewPassword;
    ssr::signed_in(ChangePassword::PATH, |state, account| async move {
        state.attempts.check(ssr::client_key())?;
        state.account_attempts.check(account.id.clone())?;
        let new = NewPassword::parse(new_password)?;
        let auth = ssr::auth_session().await?;
        let epoch = crate::server::auth::change_password(&state.db, &account, current_password, new).await?;
        // The old id was deleted with the others; the session's data is
        // saved under a new one, at the new epoch.
        auth.session.cycle_id().await.map_err(AppError::internal)?;
        crate::server::sessions::set_epoch(&auth.session, epoch).await
    })
    .await
}

/// Sends a password reset link to `email` if an account uses it. The
/// answer is the same, at once, either way. From a page without
/// JavaScript, on to `/forgot?sent=1`.
#[server(endpoint = "request_password_reset", output = Json)]
pub async fn request_password_reset(email: String) -> Result<(), AppError> {
    use crate::server::{auth::Email, password_reset};
    ssr::public(RequestPasswordReset::PATH, |state| async move {
        state.attempts.check(ssr::client_key())?;
        let email = Email::parse(&email)?;
        state.mail_requests.check_as(format!("reset:{}", email.as_str()), "reset links for this address")?;
        let base = crate::server::mail::link_base(&state, &ssr::site_base(&state));
        password_reset::request(&state, email, base);
        if ssr::form_post() {
            leptos_axum::redirect("/forgot?sent=1");
        }
        Ok(())
    })
    .await
}

/// Sets a new password with the link's `token`; every session of the
/// account ends. From a page without JavaScript, on to `/login?reset=1`.
#[server(endpoint = "reset_password", output = Json)]
pub async fn reset_password(token: String, new_password: String) -> Result<(), AppError> {
    use crate::server::{auth::NewPassword, password_reset};
    ssr::public(ResetPassword::PATH, |state| async move {
        state.attempts.check(ssr::client_key())?;
        let new = NewPassword::parse(new_password)?;
        password_reset::reset(&state, &token, new).await?;
        if ssr::form_post() {
            leptos_axum::redirect("/login?reset=1");
        }
        Ok(())
    })
    .await
}

/// Deletes the account, with its password: its tasks, images and uploads
/// go, every session ends, the email is freed (see
/// `server::account_deletion`). From a page, on to `/login?deleted=1`.
#[server(endpoint = "delete_account", output = Json)]
pub async fn delete_account(password: String) -> Result<(), AppError> {
    ssr::signed_in(DeleteAccount::PATH, |state, account| async move {
        state.attempts.check(ssr::client_key())?;
        state.account_attempts.check(account.id.clone())?;
        crate::server::account_deletion::delete(&state, &account, password).await?;
        let mut auth = ssr::auth_session().await?;
        auth.logout().await.map_err(AppError::internal)?;
        if ssr::form_post() {
            leptos_axum::redirect("/login?deleted=1");
        }
        Ok(())
    })
    .await
}

/// Changes the account's email, with its password: a link goes to the new
/// address (the email changes when it is opened) and a notice to the old
/// one. From a page, back to `/account?email_sent=1`.
#[server(endpoint = "change_email", output = Json)]
pub async fn change_email(new_email: String, password: String) -> Result<(), AppError> {
    ssr::signed_in(ChangeEmail::PATH, |state, account| async move {
        state.attempts.check(ssr::client_key())?;
        state.account_attempts.check(account.id.clone())?;
        let new = crate::server::auth::Email::parse(&new_email)?;
        // Each change mails an address the person chose: a few an hour.
        state.mail_requests.check_as(format!("change:{}", account.id), "email changes")?;
        let base = crate::server::mail::link_base(&state, &ssr::site_base(&state));
        crate::server::verification::change_email(&state, &account, &new, password, base).await?;
        if ssr::form_post() {
            leptos_axum::redirect("/account?email_sent=1");
        }
        Ok(())
    })
    .await
}

/// Ends every session of the account, this one included, on every device
/// and instance. From a page, on to the sign-in page.
#[server(endpoint = "sign_out_everywhere", output = Json)]
pub async fn sign_out_everywhere() -> Result<(), AppError> {
    ssr::signed_in(SignOutEverywhere::PATH, |state, account| async move {
        crate::server::auth::end_every_session(&state.db, &account).await?;
        let mut auth = ssr::auth_session().await?;
        auth.logout().await.map_err(AppError::internal)?;
        if ssr::form_post() {
            leptos_axum::redirect("/login");
        }
        Ok(())
    })
    .await
}

/// A public link to one of the person's completed images.
#[server(endpoint = "share_image", output = Json)]
pub async fn share_image(task_id: String) -> Result<ShareLink, AppError> {
    ssr::signed_in(ShareImage::PATH, |state, account| async move {
        crate::server::engine::owned::share(&state, &account.user_id(), &TaskId::parse(&task_id)?).await
    })
    .await
}

/// Stops sharing an image: its link answers 404 from now on.
#[server(endpoint = "unshare_image", output = Json)]
pub async fn unshare_image(task_id: String) -> Result<(), AppError> {
    ssr::signed_in(UnshareImage::PATH, |state, account| async move {
        crate::server::engine::owned::unshare(&state, &account.user_id(), &TaskId::parse(&task_id)?).await
    })
    .await
}

/// Deletes one of the person's tasks and its stored images (a processing
/// one is canceled first); its ledger rows stay.
#[server(endpoint = "delete_image", output = Json)]
pub async fn delete_image(task_id: String) -> Result<(), AppError> {
    ssr::signed_in(DeleteImage::PATH, |state, account| async move {
        state.task_changes.check_as(account.id.clone(), "cancels and deletions")?;
        crate::server::engine::owned::delete(&state, &account.user_id(), &TaskId::parse(&task_id)?).await
    })
    .await
}

/// The packages of credits for sale (none when buying is off).
#[server(endpoint = "list_packages", output = Json)]
pub async fn list_packages() -> Result<Vec<CreditPackage>, AppError> {
    ssr::public(ListPackages::PATH, |state| async move { Ok(crate::server::payments::packages(&state)) }).await
}

/// Starts buying `package`: a pending purchase and its checkout page. From
/// a plain form (no JavaScript), on to that page.
#[server(endpoint = "buy_credits", output = Json)]
pub async fn buy_credits(package: String) -> Result<Checkout, AppError> {
    ssr::signed_in(BuyCredits::PATH, |state, account| async move {
        state.purchase_attempts.check_as(account.id.clone(), "purchases")?;
        let site = ssr::site_base(&state);
        let checkout = crate::server::payments::buy(&state, &account.user_id(), &package, &site).await?;
        if ssr::form_post() {
            leptos_axum::redirect(&checkout.url);
        }
        Ok(checkout)
    })
    .await
}

/// The signed-in person's purchases, newest first.
#[server(endpoint = "list_purchases", output = Json)]
pub async fn list_purchases() -> Result<Vec<Purchase>, AppError> {
    ssr::signed_in(ListPurchases::PATH, |state, account| async move {
        crate::server::payments::list(&state, &account.user_id()).await
    })
    .await
}

/// Back from the checkout page: how the purchase went (asking Stripe, and
/// granting the credits if it was paid and nothing else did yet).
#[server(endpoint = "confirm_purchase", output = Json)]
pub async fn confirm_purchase(purchase_id: String) -> Result<Purchase, AppError> {
    ssr::signed_in(ConfirmPurchase::PATH, |state, account| async move {
        let id = purchase_id.trim();
        if id.is_empty() || id.len() > 64 {
            return Err(AppError::not_found());
        }
        crate::server::payments::confirm(&state, &account.user_id(), id).await
    })
    .await
}
