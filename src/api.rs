//! Server functions: the browser's (and outside tests') door to the server,
//! mounted under `/api/` with stable endpoint names. Each one is thin: it
//! gets the state and the signed-in user, then calls the server side.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{Generated, GeneratorInfo, HistoryPage, TaskView, User};

#[cfg(feature = "ssr")]
mod ssr {
    //! Helpers shared by the server functions.
    use std::net::IpAddr;

    use axum::http::{StatusCode, header::ACCEPT, request::Parts};
    use leptos::prelude::use_context;
    use leptos_axum::ResponseOptions;

    use crate::error::{AppError, Result};
    pub use crate::server::auth::{Account, AuthSession};
    pub use crate::server::state::app_state;

    /// Gives an error its HTTP status — except for a plain form post (no
    /// JavaScript), which Leptos answers with a redirect carrying the error.
    pub fn answer<T>(result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            let form_post = use_context::<Parts>()
                .and_then(|p| p.headers.get(ACCEPT).and_then(|v| v.to_str().ok()).map(|v| v.contains("text/html")))
                .unwrap_or(false);
            if let (false, Some(options)) = (form_post, use_context::<ResponseOptions>()) {
                options.set_status(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
            }
        }
        result
    }

    pub async fn auth_session() -> Result<AuthSession> {
        leptos_axum::extract::<AuthSession>().await.map_err(AppError::internal)
    }

    /// The signed-in account, or "please sign in".
    pub async fn signed_in() -> Result<Account> {
        auth_session().await?.user.ok_or_else(AppError::unauthorized)
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
    /// become the new sign-in's. The last step that can fail: a failed
    /// server function answers an error, and the session is not saved then.
    pub async fn sign_in_fresh(auth: &mut AuthSession, account: &Account) -> Result<()> {
        auth.session.cycle_id().await.map_err(AppError::internal)?;
        auth.login(account).await.map_err(AppError::internal)
    }
}

/// Creates an account with the sign-up credits and signs it in.
#[server(endpoint = "sign_up")]
pub async fn sign_up(email: String, password: String) -> Result<User, AppError> {
    use crate::server::auth::{Email, NewPassword, create_account};
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            state.attempts.check(client_key())?;
            let email = Email::parse(&email)?;
            let password = NewPassword::parse(password)?;
            let account = create_account(&state.db, &email, password, state.config.signup_credits).await?;
            let mut auth = auth_session().await?;
            let user = User { email: account.email.clone(), credits: state.config.signup_credits };
            sign_in_fresh(&mut auth, &account).await?;
            Ok(user)
        }
        .await,
    )
}

/// Signs in with email and password.
#[server(endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Result<User, AppError> {
    use crate::error::ErrorKind;
    use crate::server::{auth::Credentials, credits};
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            state.attempts.check(client_key())?;
            let mut auth = auth_session().await?;
            let account = auth
                .authenticate(Credentials { email, password })
                .await
                .map_err(AppError::internal)?
                .ok_or_else(|| AppError::new(ErrorKind::Unauthorized, "wrong email or password"))?;
            let user = User { email: account.email.clone(), credits: credits::balance(&state.db, &account.id).await? };
            sign_in_fresh(&mut auth, &account).await?;
            Ok(user)
        }
        .await,
    )
}

/// Signs out (a no-op when signed out).
#[server(endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    ssr::answer(
        async {
            let mut auth = ssr::auth_session().await?;
            auth.logout().await.map_err(AppError::internal)?;
            Ok(())
        }
        .await,
    )
}

/// The signed-in person and their balance; fails when signed out.
#[server(endpoint = "me")]
pub async fn me() -> Result<User, AppError> {
    ssr::answer(current_user().await.and_then(|u| u.ok_or_else(AppError::unauthorized)))
}

/// The signed-in person, or `None`: what pages use to decide what to show
/// (being signed out is not an error there).
#[server(endpoint = "current_user")]
pub async fn current_user() -> Result<Option<User>, AppError> {
    use ssr::*;
    let state = app_state()?;
    match auth_session().await?.user {
        None => Ok(None),
        Some(account) => {
            let credits = crate::server::credits::balance(&state.db, &account.id).await?;
            Ok(Some(User { email: account.email, credits }))
        }
    }
}

/// Models, price, polling pace, and the latest processing task to resume.
#[server(endpoint = "generator_setup")]
pub async fn generator_setup() -> Result<GeneratorInfo, AppError> {
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            let account = signed_in().await?;
            crate::server::tasks::generator_setup(&state, &account.id).await
        }
        .await,
    )
}

/// Charges the cost, submits the prediction and answers the task id at once.
#[server(endpoint = "generate_image")]
pub async fn generate_image(prompt: String, model: Option<String>) -> Result<Generated, AppError> {
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            let account = signed_in().await?;
            crate::server::tasks::generate(&state, &account.id, &prompt, model.as_deref()).await
        }
        .await,
    )
}

/// A task's state; advances it when the provider has finished.
#[server(endpoint = "check_image_status")]
pub async fn check_image_status(task_id: String) -> Result<TaskView, AppError> {
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            let account = signed_in().await?;
            crate::server::tasks::check(&state, &account.id, &task_id).await
        }
        .await,
    )
}

/// Several tasks' states in one call (the history page).
#[server(endpoint = "check_image_statuses")]
pub async fn check_image_statuses(task_ids: Vec<String>) -> Result<Vec<TaskView>, AppError> {
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            let account = signed_in().await?;
            crate::server::tasks::check_many(&state, &account.id, &task_ids).await
        }
        .await,
    )
}

/// The signed-in person's tasks, newest first, a page at a time.
#[server(endpoint = "list_history")]
pub async fn list_history(cursor: Option<String>) -> Result<HistoryPage, AppError> {
    use ssr::*;
    ssr::answer(
        async {
            let state = app_state()?;
            let account = signed_in().await?;
            crate::server::tasks::history(&state, &account.id, cursor.as_deref()).await
        }
        .await,
    )
}
