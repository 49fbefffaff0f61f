//! The command line: the clap definitions and the dispatch to one file per subcommand
//! (`serve`, `partitions`, `user`, `acl`, `console-user`, `bench`; `migrate` and `check-config` are a
//! few lines each and live here).
//!
//! Results go to stdout and logs to stderr, so a subcommand's output can be piped;
//! `serve` has no results, and its log goes to stdout as it always has (journald and
//! `docker logs` take both). Exit codes: 0 success, 1 the subcommand failed, 2 the
//! command line or the configuration is unusable (clap's own errors exit 2 as well).

mod acl;
mod bench;
mod console_user;
mod partitions;
mod serve;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetsink::config::{Config, LogFormat};
use fleetsink::db;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "fleetsink",
    version,
    about = "MQTT-native ingestion daemon with a PostgreSQL sink"
)]
pub struct Cli {
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
    /// Validate the configuration and print it, secrets masked, and the effective MQTT
    /// access policy (as a closing comment, so the output stays valid TOML).
    CheckConfig,
    /// List day partitions (rows, size, range); with --maintain, run one maintenance
    /// round first; `partitions restore FILE` loads an archived partition back.
    Partitions(partitions::PartitionsArgs),
    /// Load generator: a fleet of robots at TonyPi's cadence (or a saturating few) over
    /// MQTT; times every publish to its PUBACK and checks every message in PostgreSQL.
    Bench(bench::BenchArgs),
    /// MQTT users (mqtt_users, go-auth's table): add, passwd, remove, list.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// MQTT ACL rules (mqtt_acls, go-auth's table): add, remove, list.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
    /// Operator console users (who signs in to the TonyPi web UI): add, passwd, remove,
    /// list.
    ConsoleUser {
        #[command(subcommand)]
        command: console_user::ConsoleUserCommand,
    },
}

/// Where a subcommand's log lines go.
#[derive(Clone, Copy)]
enum LogTo {
    Stdout,
    Stderr,
}

/// Runs the parsed command line; the exit code is the process's.
pub async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Bench(args) = command {
        // The load generator needs no config file: everything is on its command line.
        // Its progress (connected, measuring, drained) is logged; its report is stdout.
        init_tracing(
            LogFormat::Text,
            "warn,fleetsink::cli::bench=info",
            LogTo::Stderr,
        );
        return bench::main(args).await;
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("fleetsink: {e}");
            return ExitCode::from(2);
        }
    };
    let log_to = match command {
        Command::Serve => LogTo::Stdout,
        _ => LogTo::Stderr,
    };
    init_tracing(cfg.log.format, &cfg.log.level, log_to);
    let result = match command {
        Command::Serve => serve::run(cfg).await,
        Command::CheckConfig => {
            print!("{}", cfg.to_masked_toml());
            println!(
                "\n# MQTT access: {}",
                fleetsink::auth::access::describe(&cfg)
            );
            Ok(())
        }
        Command::Migrate => migrate(&cfg).await,
        Command::Partitions(args) => partitions::run(&cfg, args).await,
        Command::User { command } => user::run(&cfg, command).await,
        Command::Acl { command } => acl::run(&cfg, command).await,
        Command::ConsoleUser { command } => console_user::run(&cfg, command).await,
        Command::Bench(_) => unreachable!("handled before the config is loaded"),
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

fn init_tracing(format: LogFormat, level: &str, to: LogTo) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: not in files, journald or docker logs.
    let ansi = match to {
        LogTo::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
        LogTo::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match (format, to) {
        (LogFormat::Json, LogTo::Stdout) => builder.json().init(),
        (LogFormat::Json, LogTo::Stderr) => builder.json().with_writer(std::io::stderr).init(),
        (LogFormat::Text, LogTo::Stdout) => builder.init(),
        (LogFormat::Text, LogTo::Stderr) => builder.with_writer(std::io::stderr).init(),
    }
}

/// `fleetsink migrate`: the embedded migrations, then exit.
async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    migrated_pool(cfg).await?;
    println!("migrations applied");
    Ok(())
}

/// The pool of a one-shot subcommand, the schema migrated (they may run before the
/// daemon ever did).
async fn migrated_pool(cfg: &Config) -> anyhow::Result<sqlx::PgPool> {
    let pool = db::pool(&cfg.database)?;
    db::migrate(&pool).await?;
    Ok(pool)
}
