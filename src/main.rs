//! The `fleetsink` binary: parse the command line, load config, init tracing, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetsink::app::App;
use fleetsink::config::{Config, LogFormat};
use fleetsink::{bench, db};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "fleetsink",
    version,
    about = "MQTT-native ingestion daemon with a PostgreSQL sink"
)]
struct Cli {
    /// TOML config file (default: config/fleetsink.toml when it exists).
    #[arg(long, global = true, env = "FLEETSINK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Apply the embedded database migrations and exit.
    Migrate,
    /// Validate the configuration and print it, secrets masked.
    CheckConfig,
    /// List day partitions; with --maintain, run one maintenance round now.
    Partitions {
        #[arg(long)]
        maintain: bool,
    },
    /// Publish TonyPi-shaped load to a broker and measure what lands in PostgreSQL.
    Bench(bench::BenchArgs),
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Bench(args)) = cli.command {
        init_tracing(LogFormat::Text, "warn");
        return match bench::run(args).await {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fleetsink bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("fleetsink: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(cfg.log.format, &cfg.log.level);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cfg).await,
        Command::CheckConfig => {
            print!("{}", cfg.to_masked_toml());
            Ok(())
        }
        Command::Migrate => migrate(&cfg).await,
        Command::Partitions { maintain } => partitions(&cfg, maintain).await,
        Command::Bench(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fleetsink: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    App::start(cfg, shutdown).await?.stopped().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let pool = db::pool(&cfg.database)?;
    db::MIGRATOR.run(&pool).await?;
    println!("migrations applied");
    Ok(())
}

async fn partitions(cfg: &Config, maintain: bool) -> anyhow::Result<()> {
    let pool = db::pool(&cfg.database)?;
    db::MIGRATOR.run(&pool).await?;
    if maintain {
        let today = chrono::Utc::now().date_naive();
        let report = db::partitions::maintain_for_day(&pool, &cfg.retention, today).await?;
        if !report.ran {
            println!("another instance holds the maintenance lock; nothing done");
        }
        for p in &report.created {
            println!("created {p}");
        }
        for p in &report.dropped {
            println!("dropped {p}");
        }
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.relname::text, c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname IN ('metrics', 'logs', 'ingest_errors') ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await?;
    for (table, partition) in rows {
        println!("{table}\t{partition}");
    }
    Ok(())
}
