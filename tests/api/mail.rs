//! Mail and password resets, against a real SMTP server (aiosmtpd, from
//! PyPI, installed by `make test`) whose Maildir the tests read: a reset
//! link works once and for an hour and ends every session; the answer to
//! "send me a link" says nothing about the address; a mail server that is
//! down, or a restart, loses no message; without SMTP, messages are files.

use std::time::Duration;

use crate::helpers::{TestApp, client, manual_clock, spawn_app_on, spawn_app_with};

/// Resets are tested on their own: sign-ups here sign in at once.
const NO_VERIFY: (&str, &str) = ("DARKROOM_REQUIRE_VERIFIED_EMAIL", "false");

/// A real SMTP server: aiosmtpd storing what it receives in a Maildir.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start() -> Self {
        Self::start_on(free_port().await).await
    }

    async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (make test installs it)");
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as text.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("maildir/new")) else { return Vec::new() };
        entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
    }

    /// Waits until `n` messages have arrived.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let started = std::time::Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{} of {n} messages arrived", messages.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (for now).
async fn free_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port()
}

/// A message's text body, quoted-printable decoded.
fn body(message: &str) -> String {
    let (head, body) = message.split_once("\n\n").or_else(|| message.split_once("\r\n\r\n")).expect("a body");
    if !head.to_ascii_lowercase().contains("content-transfer-encoding: quoted-printable") {
        return body.replace("\r\n", "\n");
    }
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// The reset link's token in `message`.
fn token_in(message: &str) -> String {
    let text = body(message);
    let link = text.split_whitespace().find(|w| w.contains("/reset?token=")).expect("a reset link");
    link.split_once("token=").expect("token").1.to_owned()
}

fn recipient(message: &str) -> String {
    let line = message.lines().find(|l| l.to_ascii_lowercase().starts_with("to:")).expect("To:");
    line[3..].trim().to_owned()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> (u16, reqwest::Client) {
    let c = client();
    let (status, _) = app.call(&c, "sign_in", &[("email", email), ("password", password)]).await;
    (status, c)
}

#[tokio::test]
async fn a_reset_link_by_mail_sets_a_new_password_once_and_ends_every_session() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("DARKROOM_SMTP_URL", &smtp.url()), NO_VERIFY]).await;
    let c = client();
    let email = app.sign_up(&c).await;
    let (_, elsewhere) = sign_in(&app, &email, "correct horse").await;
    assert_eq!(app.call(&elsewhere, "me", &[]).await.0, 200);

    let (status, body) = app.call(&client(), "request_password_reset", &[("email", &email.to_uppercase())]).await;
    assert_eq!(status, 200, "{body}");
    let message = smtp.wait_for(1).await.remove(0);
    assert_eq!(recipient(&message), email);
    assert!(message.contains("Subject: Reset your Darkroom password"), "{message}");
    let token = token_in(&message);
    assert!(body_has_link(&message, &app.base), "the link names this site: {message}");
    assert_eq!(app.count("SELECT COUNT(*) FROM password_resets").await, 1);
    let stored: String = {
        use sqlx::Row;
        sqlx::query("SELECT token_hash FROM password_resets").fetch_one(&app.state.db).await.unwrap().get(0)
    };
    assert!(!stored.contains(&token), "only the token's digest is kept");

    let too_short = [("token", token.as_str()), ("new_password", "short")];
    assert_eq!(app.call(&client(), "reset_password", &too_short).await.0, 400, "and the link still works");
    let form = [("token", token.as_str()), ("new_password", "a brand new secret")];
    let (status, body) = app.call(&client(), "reset_password", &form).await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(app.call(&c, "me", &[]).await.0, 401, "the sign-up's session ended");
    assert_eq!(app.call(&elsewhere, "me", &[]).await.0, 401, "and every other");
    assert_eq!(sign_in(&app, &email, "correct horse").await.0, 401, "the old password is refused");
    let (status, fresh) = sign_in(&app, &email, "a brand new secret").await;
    assert_eq!(status, 200, "the new one works");
    assert_eq!(app.call(&fresh, "me", &[]).await.0, 200);
    let again = [("token", token.as_str()), ("new_password", "yet another secret")];
    let (status, body) = app.call(&client(), "reset_password", &again).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("this reset link has expired or was already used; ask for a new one"))
    );
}

fn body_has_link(message: &str, base: &str) -> bool {
    body(message).contains(&format!("{base}/reset?token="))
}

#[tokio::test]
async fn asking_for_a_link_answers_the_same_for_any_address() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("DARKROOM_SMTP_URL", &smtp.url()), NO_VERIFY]).await;
    let email = app.sign_up(&client()).await;
    let unknown = app.call(&client(), "request_password_reset", &[("email", "nobody@example.com")]).await;
    let known = app.call(&client(), "request_password_reset", &[("email", &email)]).await;
    assert_eq!(unknown, known, "the same answer");
    assert_eq!(known.0, 200);
    smtp.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one message, to the account");
    assert_eq!(recipient(&messages[0]), email);
    assert_eq!(app.count("SELECT COUNT(*) FROM password_resets").await, 1);
    // A bad address is told; an address is sent a few links an hour.
    assert_eq!(app.call(&client(), "request_password_reset", &[("email", "not an email")]).await.0, 400);
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(app.call(&client(), "request_password_reset", &[("email", &email)]).await.0);
    }
    assert_eq!(answers, [200, 200, 200, 200, 429], "five an hour for one address");
}

#[tokio::test]
async fn an_expired_or_altered_link_is_refused() {
    let smtp = SmtpServer::start().await;
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_SMTP_URL", &smtp.url()), NO_VERIFY], clock.clone()).await;
    let email = app.sign_up(&client()).await;
    app.call(&client(), "request_password_reset", &[("email", &email)]).await;
    let token = token_in(&smtp.wait_for(1).await[0]);
    let mut altered = token.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [altered.as_str(), "", &"A".repeat(5000)] {
        let (status, _) =
            app.call(&client(), "reset_password", &[("token", bad), ("new_password", "a new secret")]).await;
        assert_eq!(status, 400, "{bad:.20}");
    }
    clock.advance(Duration::from_secs(61 * 60));
    let (status, body) =
        app.call(&client(), "reset_password", &[("token", &token), ("new_password", "a new secret")]).await;
    assert_eq!(status, 400, "an hour later the link has expired: {body}");
    assert_eq!(sign_in(&app, &email, "correct horse").await.0, 200, "the password is unchanged");
}

/// Waits until the outbox's one message has been tried `n` times.
async fn tried(app: &TestApp, n: i64) {
    let started = std::time::Instant::now();
    while app.count("SELECT COALESCE(MAX(attempts), 0) FROM mail_outbox").await < n {
        assert!(started.elapsed() < Duration::from_secs(20), "the message was not tried {n} times");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mail_waits_for_a_server_that_is_down() {
    let port = free_port().await;
    let clock = manual_clock();
    let app =
        spawn_app_on(&[("DARKROOM_SMTP_URL", &format!("smtp://127.0.0.1:{port}")), NO_VERIFY], clock.clone()).await;
    let email = app.sign_up(&client()).await;
    let (status, _) = app.call(&client(), "request_password_reset", &[("email", &email)]).await;
    assert_eq!(status, 200, "the request does not wait for the mail server");
    tried(&app, 1).await;
    let smtp = SmtpServer::start_on(port).await;
    assert!(smtp.messages().is_empty());
    // The first retry is 5 s later.
    clock.advance(Duration::from_secs(6));
    let message = smtp.wait_for(1).await.remove(0);
    assert_eq!(recipient(&message), email);
    let started = std::time::Instant::now();
    while app.count("SELECT COUNT(*) FROM mail_outbox").await > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "a sent message leaves the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn queued_mail_survives_a_restart() {
    let dead = format!("smtp://127.0.0.1:{}", free_port().await);
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().display().to_string();
    // The first process's clock stands still: after its one failed try it
    // never tries again, as if it had stopped.
    let first =
        spawn_app_on(&[("DARKROOM_SMTP_URL", &dead), NO_VERIFY, ("DARKROOM_DATA_DIR", &data_dir)], manual_clock())
            .await;
    let email = first.sign_up(&client()).await;
    first.call(&client(), "request_password_reset", &[("email", &email)]).await;
    tried(&first, 1).await;

    let smtp = SmtpServer::start().await;
    let database = first.state.config.database_url.clone();
    let _second = spawn_app_with(&[
        ("DARKROOM_SMTP_URL", &smtp.url()),
        NO_VERIFY,
        ("DARKROOM_DATA_DIR", &data_dir),
        ("DATABASE_URL", &database),
        ("DARKROOM_SIM_SECRET", "shared"),
    ])
    .await;
    let message = smtp.wait_for(1).await.remove(0);
    assert_eq!(recipient(&message), email, "the next process sent what the first had queued");
    assert!(body(&message).contains("/reset?token="));
}

#[tokio::test]
async fn without_smtp_mail_is_written_to_the_outbox_folder() {
    let data = tempfile::tempdir().expect("temp dir");
    let app = spawn_app_with(&[("DARKROOM_DATA_DIR", &data.path().display().to_string())]).await;
    let email = app.sign_up(&client()).await;
    app.call(&client(), "request_password_reset", &[("email", &email)]).await;
    let outbox = data.path().join("outbox");
    let started = std::time::Instant::now();
    let file = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|mut d| d.next()).and_then(|e| e.ok());
        if let Some(entry) = found {
            break entry.path();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no .eml file in {}", outbox.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("eml"));
    let message = std::fs::read_to_string(&file).expect("read");
    assert_eq!(recipient(&message), email);
    let token = token_in(&message);
    let form = [("token", token.as_str()), ("new_password", "from the outbox folder")];
    assert_eq!(app.call(&client(), "reset_password", &form).await.0, 200);
}

/// A `Host` header is the client's: a link never names one it chose.
#[tokio::test]
async fn a_link_never_names_a_host_the_request_chose() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("DARKROOM_SMTP_URL", &smtp.url()), NO_VERIFY]).await;
    let email = app.sign_up(&client()).await;
    let answer = client()
        .post(format!("{}/api/request_password_reset", app.base))
        .header("host", "203.0.113.9")
        .form(&[("email", email.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 200, "the same answer");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(smtp.messages().is_empty(), "no link to a host the request named");
    assert_eq!(app.count("SELECT COUNT(*) FROM password_resets").await, 0);

    let public = spawn_app_with(&[
        ("DARKROOM_SMTP_URL", &smtp.url()),
        NO_VERIFY,
        ("DARKROOM_PUBLIC_URL", "http://darkroom.example"),
    ])
    .await;
    let email = public.sign_up(&client()).await;
    public.call(&client(), "request_password_reset", &[("email", &email)]).await;
    let message = smtp.wait_for(1).await.remove(0);
    assert!(body(&message).contains("http://darkroom.example/reset?token="), "{message}");
}

/// The verification link's token in `message`.
fn verify_token_in(message: &str) -> String {
    let text = body(message);
    let link = text.split_whitespace().find(|w| w.contains("/verify?token=")).expect("a verification link");
    link.split_once("token=").expect("token").1.to_owned()
}

/// With verification required (on with SMTP): sign-up answers "check your
/// inbox" with no session; the link grants the credits once and signs in;
/// until then the account may sign in but not generate, charged nothing.
#[tokio::test]
async fn a_sign_up_verifies_its_address_before_credits_or_generations() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("DARKROOM_SMTP_URL", &smtp.url())]).await;
    let c = client();
    let email = format!("{}@example.com", crate::helpers::uuid_like());
    let (status, body) = app.call(&c, "sign_up", &[("email", &email), ("password", "correct horse")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["check_inbox"].as_bool(), body["credits"].as_i64()), (Some(true), Some(0)), "{body}");
    assert_eq!(app.call(&c, "me", &[]).await.0, 401, "nobody is signed in yet");
    let message = smtp.wait_for(1).await.remove(0);
    assert_eq!(recipient(&message), email);
    let token = verify_token_in(&message);

    // Before the link: sign-in works, generating does not, nothing charged.
    let (status, me) = sign_in(&app, &email, "correct horse").await;
    assert_eq!(status, 200);
    let body = app.call(&me, "me", &[]).await.1;
    assert_eq!((body["verified"].as_bool(), body["credits"].as_i64()), (Some(false), Some(0)), "{body}");
    let (status, body) = app.call(&me, "generate_image", &[("prompt", "a heron")]).await;
    assert_eq!((status, body["kind"].as_str()), (403, Some("unverified")), "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("confirm your email"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

    // An altered link is refused; the real one grants once and signs in.
    let mut altered = token.clone().into_bytes();
    altered[5] = if altered[5] == b'x' { b'y' } else { b'x' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(app.call(&client(), "verify_email", &[("token", &altered)]).await.0, 400);
    let browser = client();
    let (status, body) = app.call(&browser, "verify_email", &[("token", &token)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["verified"].as_bool(), body["credits"].as_i64()), (Some(true), Some(100)), "{body}");
    assert_eq!(app.call(&browser, "me", &[]).await.1["email"], email.as_str(), "the link signed in");
    let (status, _) = app.call(&client(), "verify_email", &[("token", &token)]).await;
    assert_eq!(status, 400, "a link works once");
    assert_eq!(app.balance(&browser).await, 100, "granted once");
    let (status, body) = app.call(&browser, "generate_image", &[("prompt", "a heron")]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_registered_address_gets_the_same_answer_and_a_note() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("DARKROOM_SMTP_URL", &smtp.url())]).await;
    let email = format!("{}@example.com", crate::helpers::uuid_like());
    let first = app.call(&client(), "sign_up", &[("email", &email), ("password", "correct horse")]).await;
    smtp.wait_for(1).await;
    let again = app.call(&client(), "sign_up", &[("email", &email), ("password", "another horse")]).await;
    assert_eq!(first, again, "the same answer for a registered address");
    let messages = smtp.wait_for(2).await;
    assert!(
        messages.iter().any(|m| m.contains("Subject: You already have a Darkroom account")),
        "the registered mailbox is told: {messages:?}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1, "no second account");
    assert_eq!(sign_in(&app, &email, "another horse").await.0, 401, "the password did not change");
}

#[tokio::test]
async fn an_expired_verification_link_is_refused_and_a_new_one_can_be_sent() {
    let smtp = SmtpServer::start().await;
    let clock = manual_clock();
    let app = spawn_app_on(&[("DARKROOM_SMTP_URL", &smtp.url())], clock.clone()).await;
    let email = format!("{}@example.com", crate::helpers::uuid_like());
    app.call(&client(), "sign_up", &[("email", &email), ("password", "correct horse")]).await;
    let old = verify_token_in(&smtp.wait_for(1).await[0]);
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(app.call(&client(), "verify_email", &[("token", &old)]).await.0, 400, "a day later it has expired");
    let (_, c) = sign_in(&app, &email, "correct horse").await;
    assert_eq!(app.call(&c, "resend_verification", &[]).await.0, 200);
    let messages = smtp.wait_for(2).await;
    let fresh = messages.iter().map(|m| verify_token_in(m)).find(|t| *t != old).expect("a new link");
    let (status, body) = app.call(&c, "verify_email", &[("token", &fresh)]).await;
    assert_eq!((status, body["credits"].as_i64()), (200, Some(100)), "{body}");
    let (status, body) = app.call(&c, "resend_verification", &[]).await;
    assert_eq!((status, body["kind"].as_str()), (409, Some("conflict")), "verified already: {body}");
}

/// An email change: a link to the new address and a notice to the old;
/// the address changes when the link is opened, on every instance, with
/// no second sign-up grant.
#[tokio::test]
async fn an_email_change_takes_effect_when_the_new_address_confirms() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(&[("DARKROOM_SMTP_URL", &smtp.url())]).await;
    let objects = format!("file://{}", app.state.config.data_dir.join("objects").display());
    let other = spawn_app_with(&[
        ("DARKROOM_SMTP_URL", &smtp.url()),
        ("DATABASE_URL", &app.state.config.database_url),
        ("DARKROOM_STORAGE", &objects),
    ])
    .await;
    let old = format!("{}@example.com", crate::helpers::uuid_like());
    app.call(&client(), "sign_up", &[("email", &old), ("password", "correct horse")]).await;
    let c = client();
    let token = verify_token_in(&smtp.wait_for(1).await[0]);
    assert_eq!(app.call(&c, "verify_email", &[("token", &token)]).await.1["credits"], 100);
    let (_, there) = sign_in(&other, &old, "correct horse").await;
    assert_eq!(other.call(&there, "me", &[]).await.1["email"], old.as_str(), "the other instance knows the account");

    let new = format!("{}@example.org", crate::helpers::uuid_like());
    let wrong = [("new_email", new.as_str()), ("password", "not it")];
    assert_eq!(app.call(&c, "change_email", &wrong).await.0, 400);
    let taken = format!("{}@example.net", crate::helpers::uuid_like());
    {
        use darkroom::server::auth::{Email, NewPassword, create_account};
        let (email, password) = (Email::parse(&taken).unwrap(), NewPassword::parse("another horse".into()).unwrap());
        create_account(&app.state.db, &email, password, 0).await.unwrap();
    }
    let (status, refusal) = app.call(&c, "change_email", &[("new_email", &taken), ("password", "correct horse")]).await;
    assert_eq!((status, refusal["message"].as_str()), (409, Some("another account uses that address")));
    let (status, answer) = app.call(&c, "change_email", &[("new_email", &new), ("password", "correct horse")]).await;
    assert_eq!(status, 200, "{answer}");
    let messages = smtp.wait_for(3).await;
    let notice = messages.iter().find(|m| recipient(m) == old && m.contains("is being changed")).expect("a notice");
    assert!(!body(notice).contains(&new), "the notice does not name the new address");
    let link = messages.iter().find(|m| recipient(m) == new).expect("a link to the new address");
    assert_eq!(app.call(&c, "me", &[]).await.1["email"], old.as_str(), "nothing changes before the link");

    let (status, body) = app.call(&c, "verify_email", &[("token", &verify_token_in(link))]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["email"].as_str(), body["credits"].as_i64()), (Some(new.as_str()), Some(100)), "no second grant");
    assert_eq!(other.call(&there, "me", &[]).await.1["email"], new.as_str(), "every instance shows the new address");
    assert_eq!(sign_in(&app, &old, "correct horse").await.0, 401, "the old address signs in no more");
    assert_eq!(sign_in(&other, &new, "correct horse").await.0, 200);
}

/// An email change mails an address the person chose: five an hour.
#[tokio::test]
async fn email_changes_are_a_few_an_hour() {
    let app = spawn_app_with(&[]).await;
    let c = client();
    app.sign_up(&c).await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        let new = format!("moved-{n}-{}@example.org", crate::helpers::uuid_like());
        statuses.push(app.call(&c, "change_email", &[("new_email", &new), ("password", "correct horse")]).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
}
