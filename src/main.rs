//! The Darkroom server: reads the configuration, builds the app and serves
//! it until SIGINT/SIGTERM.

/// Worker threads' stack: a page is rendered by walking its view tree
/// recursively, and the generator page's tree needs more than the 2 MiB
/// default in a debug build (about 3 MiB measured). Memory is only
/// reserved, not used, until a thread needs it.
#[cfg(feature = "ssr")]
const THREAD_STACK_BYTES: usize = 8 << 20;

#[cfg(feature = "ssr")]
fn main() {
    // Before any other thread exists.
    darkroom::server::allocator::tune();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("darkroom: cannot start the async runtime: {e}");
            std::process::exit(1);
        });
    runtime.block_on(start());
}

#[cfg(feature = "ssr")]
async fn start() {
    use darkroom::server::admin::{self, Command};
    use tracing_subscriber::EnvFilter;

    let cli = admin::parse();
    let admin = match cli.command {
        None | Some(Command::Serve) => None,
        Some(Command::Admin(a)) => Some(a),
    };
    let filter = |default: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if admin.is_some() {
        // The admin commands print their answer on stdout; only warnings
        // are logged, on stderr.
        tracing_subscriber::fmt().with_env_filter(filter("warn")).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter("info,sqlx=warn,tower_sessions=warn")).init();
    }

    match admin {
        None => {
            if let Err(e) = run().await {
                tracing::error!("cannot start: {e:#}");
                std::process::exit(1);
            }
        }
        Some(command) => {
            if let Err(e) = admin::run(command).await {
                eprintln!("darkroom: {e:#}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(feature = "ssr")]
async fn run() -> anyhow::Result<()> {
    use std::net::SocketAddr;

    use axum::serve::ListenerExt;
    use darkroom::server::{self, config::Config};

    let config = Config::from_env()?;
    // Leptos.toml holds the run-time site settings; LEPTOS_* variables (set by
    // cargo-leptos, or by hand) override it.
    let leptos = if std::path::Path::new("Leptos.toml").exists() {
        leptos::config::get_configuration(Some("Leptos.toml"))
    } else {
        leptos::config::get_configuration(None)
    }
    .map_err(|e| anyhow::anyhow!("LEPTOS_* / Leptos.toml: {e}"))?
    .leptos_options;
    let addr: SocketAddr = leptos.site_addr;
    server::check_site(&leptos)?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("LEPTOS_SITE_ADDR: cannot listen on {addr}: {e}"))?
        // Pages are streamed in several writes: without TCP_NODELAY, Nagle's
        // algorithm holds the last one back until the client's delayed ACK.
        .tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
        });
    let built = server::build(config, leptos, addr).await?;
    tracing::info!("Darkroom listening on http://{addr}");
    axum::serve(listener, built.router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

#[cfg(feature = "ssr")]
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser bundle starts from `lib.rs`'s `hydrate()`.
}
