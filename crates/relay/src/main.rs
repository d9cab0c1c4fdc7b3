//! `troth-relay`: serves the relay API. See docs/RELAY.md.
#![forbid(unsafe_code)]

/// mimalloc: the relay allocates on every request, and glibc's malloc was a
/// fifth of a read's CPU (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use troth_relay::config::{StoreArgs, StoreConfig};
use troth_relay::store::{PgStore, SledStore, Store};
use troth_relay::{AppState, Config, SystemClock};

/// Troth's relay: stores and forwards only ciphertext.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "TROTH_RELAY_LISTEN")]
    listen: Option<String>,
    /// Folder of the embedded database [default: $XDG_DATA_HOME/troth-relay or ~/.local/share/troth-relay]
    #[arg(long, env = "TROTH_RELAY_DATA")]
    data: Option<PathBuf>,
    /// A TOML file with settings (listen, data, cache_mb, store, database_url, [limits]); flags and variables win
    #[arg(long, env = "TROTH_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// Where events are kept: `sled` (embedded, in --data) or `postgres` [default: sled]
    #[arg(long, env = "TROTH_RELAY_STORE")]
    store: Option<String>,
    /// PostgreSQL connection URL, e.g. postgres://relay@db:5432/troth (with --store postgres)
    #[arg(long, env = "TROTH_RELAY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// A file holding the PostgreSQL connection URL (a secret mounted by the service manager)
    #[arg(long, env = "TROTH_RELAY_DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,
    /// An origin whose copy of the web client may call this relay from a browser,
    /// e.g. http://127.0.0.1:8090 (`troth web serve`); repeat for several
    #[arg(
        long = "web-origin",
        env = "TROTH_RELAY_WEB_ORIGINS",
        value_delimiter = ','
    )]
    web_origins: Vec<String>,
    /// The origin of a test push service the relay may push to although it
    /// is on a loopback or private address, e.g. http://127.0.0.1:9000.
    /// For tests only: never on a relay that serves people
    #[arg(
        long = "push-test-origin",
        env = "TROTH_RELAY_PUSH_TEST_ORIGINS",
        value_delimiter = ','
    )]
    push_test_origins: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Applies the PostgreSQL schema migrations not applied yet, then exits
    /// (the relay also applies them when it starts)
    Migrate,
    /// Prints the relay's VAPID public key (base64url), which browsers
    /// subscribe to notifications with; makes the key pair in the data
    /// folder if it is not there yet
    VapidPublicKey,
}

/// Where a setting given on the command line or in the environment came
/// from: the flag if it was on the command line, else the variable.
fn source(flag: &'static str, var: &'static str) -> &'static str {
    let from_flag = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if from_flag || std::env::var_os(var).is_none() {
        flag
    } else {
        var
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TROTH_RELAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = Config::resolve_with_store(
        cli.config.as_deref(),
        cli.listen
            .map(|l| (source("--listen", "TROTH_RELAY_LISTEN"), l)),
        cli.data.map(|d| (source("--data", "TROTH_RELAY_DATA"), d)),
        StoreArgs {
            store: cli
                .store
                .map(|v| (source("--store", "TROTH_RELAY_STORE"), v)),
            database_url: cli
                .database_url
                .map(|v| (source("--database-url", "TROTH_RELAY_DATABASE_URL"), v)),
            database_url_file: cli.database_url_file.map(|v| {
                (
                    source("--database-url-file", "TROTH_RELAY_DATABASE_URL_FILE"),
                    v,
                )
            }),
        },
    )?;
    if !cli.web_origins.is_empty() {
        config.web_origins = troth_relay::config::check_web_origins(
            source("--web-origin", "TROTH_RELAY_WEB_ORIGINS"),
            &cli.web_origins,
        )?;
    }
    if !cli.push_test_origins.is_empty() {
        config.push.test_origins = troth_relay::config::check_web_origins(
            source("--push-test-origin", "TROTH_RELAY_PUSH_TEST_ORIGINS"),
            &cli.push_test_origins,
        )?;
    }
    if let Some(Command::VapidPublicKey) = cli.command {
        let key = troth_relay::push::VapidKey::load_or_create(&config.data)
            .context("cannot read or make the VAPID key (setting `--data`)")?;
        println!("{}", key.public_b64());
        return Ok(());
    }
    if let Some(Command::Migrate) = cli.command {
        let StoreConfig::Postgres { url, .. } = &config.store else {
            anyhow::bail!(
                "setting `--store` is sled: `migrate` is for the PostgreSQL store (--store postgres)"
            );
        };
        let store = PgStore::connect(url.pg_config()?, 1, true)
            .await
            .context("cannot migrate the database (setting `--database-url`)")?;
        let (version, _) = store.schema_version().await?;
        println!("database schema at version {version}");
        return Ok(());
    }
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Sled => {
            std::fs::create_dir_all(&config.data).with_context(|| {
                format!("cannot create the data folder {}", config.data.display())
            })?;
            let store = SledStore::open(&config.data, config.cache_mb * 1024 * 1024).with_context(
                || format!("cannot open the database in {}", config.data.display()),
            )?;
            Arc::new(store)
        }
        StoreConfig::Postgres { url, pool_size } => Arc::new(
            PgStore::connect(url.pg_config()?, *pool_size, true)
                .await
                .context("cannot use the PostgreSQL database (setting `--database-url`)")?,
        ),
    };
    let kind = store.kind();
    let mut state = AppState::new(store, Arc::new(SystemClock), config.limits.clone())
        .context("cannot start the flusher thread")?
        .with_web_origins(config.web_origins.clone())
        .with_help(config.help.clone());
    if config.push.enabled {
        // Kept in the data folder (with PostgreSQL too: copy it to every
        // relay process, as a TLS key; docs/RELAY.md).
        let key = troth_relay::push::VapidKey::load_or_create(&config.data)
            .context("cannot read or make the VAPID key for notifications (setting `--data`)")?;
        state = state.with_push(troth_relay::push::Push::new(config.push.clone(), key));
    }
    state.spawn_maintenance(Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (setting `listen`)", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = kind, data = %config.data.display(), "troth-relay listening");
    // A line for scripts and tests that start the relay on port 0.
    println!("listening on {addr}");
    troth_relay::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped; everything acknowledged is on disk");
    Ok(())
}
