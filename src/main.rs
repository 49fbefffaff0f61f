//! The `fleetsink` binary: parse the command line, load config, init tracing, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// List day partitions (rows, size, range); with --maintain, run one maintenance
    /// round first; `partitions restore FILE` loads an archived partition back.
    Partitions {
        #[arg(long)]
        maintain: bool,
        #[command(subcommand)]
        action: Option<PartitionsAction>,
    },
    /// Publish TonyPi-shaped load to a broker and measure what lands in PostgreSQL.
    Bench(bench::BenchArgs),
    /// MQTT users (mqtt_users, go-auth's table): add, passwd, remove, list.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// MQTT ACL rules (mqtt_acls, go-auth's table): add, remove, list.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
}

#[derive(Subcommand)]
enum PartitionsAction {
    /// Load an archive written by retention.archive_dir back into its day's partition
    /// (rows already present are skipped).
    Restore { file: PathBuf },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; prompts for the password (without echo) unless --password-stdin.
    Add {
        name: String,
        /// Passes every ACL check (operators, fleetsink itself).
        #[arg(long)]
        superuser: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user and its rules.
    Remove { name: String },
    /// List users.
    List,
}

#[derive(Subcommand)]
enum AclCommand {
    /// Add a rule for USER, or with --all for every user. PATTERN may use + and #
    /// wildcards and %u / %c for the username / client id.
    Add {
        /// USER PATTERN, or with --all just PATTERN (e.g. tonypi/+/%u).
        #[arg(required = true, num_args = 1..=2, value_names = ["USER", "PATTERN"])]
        args: Vec<String>,
        /// The rule is for every user.
        #[arg(long)]
        all: bool,
        /// read (also subscribe), write, readwrite, or subscribe.
        #[arg(long, value_enum)]
        access: fleetsink::auth::users::RuleAccess,
    },
    /// Remove the rule with this id (see `acl list`).
    Remove { id: i64 },
    /// List rules, or those that apply to USER.
    List { user: Option<String> },
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: not in files, journald or docker logs.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
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
        Command::Partitions {
            action: Some(PartitionsAction::Restore { file }),
            ..
        } => restore(&cfg, &file).await,
        Command::Partitions { maintain, .. } => partitions(&cfg, maintain).await,
        Command::Bench(_) => Ok(()),
        Command::User { command } => user(&cfg, command).await,
        Command::Acl { command } => acl(&cfg, command).await,
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
        // systemd: the drain has begun (TimeoutStopSec bounds it).
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        signal.cancel();
    });
    let stall_after = cfg
        .mqtt
        .external
        .keep_alive
        .saturating_mul(2)
        .max(Duration::from_secs(60));
    let app = App::start(cfg, shutdown.clone()).await?;
    notify_ready(&app, &shutdown).await;
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(feed_watchdog(
            app.health(),
            interval,
            stall_after,
            shutdown.clone(),
        ));
    }
    app.stopped().await;
    Ok(())
}

/// systemd `Type=notify`: READY=1 once the database is up (App::start migrated it) and
/// the broker side is up (the embedded broker listens, or the external broker accepted
/// the connection).
async fn notify_ready(app: &App, shutdown: &CancellationToken) {
    let health = app.health();
    while !health.readiness().broker_connected {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("ingesting"),
    ]);
}

/// `WATCHDOG=1` every half `interval` while the pipeline progresses or idles by choice;
/// nothing once it is stalled, so systemd restarts it (`fleetsink::watchdog`).
async fn feed_watchdog(
    health: std::sync::Arc<fleetsink::health::Health>,
    interval: Duration,
    stall_after: Duration,
    shutdown: CancellationToken,
) {
    let mut stalled = false;
    loop {
        match health.progress.verdict(stall_after) {
            fleetsink::watchdog::Verdict::Alive => {
                if stalled {
                    tracing::info!("pipeline progressing again; feeding the systemd watchdog");
                    stalled = false;
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            fleetsink::watchdog::Verdict::Stalled(why) => {
                if !stalled {
                    tracing::error!(reason = %why, "pipeline stalled; no longer feeding the systemd watchdog, which will restart fleetsink");
                    let status = format!("stalled: {why}");
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
                    stalled = true;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval / 2) => {}
        }
    }
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

async fn restore(cfg: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let pool = db::pool(&cfg.database)?;
    db::MIGRATOR.run(&pool).await?;
    let mut conn = pool.acquire().await?;
    let r = db::archive::restore(&mut conn, file).await?;
    println!(
        "{}: {} rows of {} {}, {} inserted ({} already present)",
        file.display(),
        r.rows,
        r.table,
        r.day,
        r.inserted,
        r.rows.saturating_sub(r.inserted)
    );
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
        for p in &report.failed {
            println!("NOT dropped {p}: it could not be archived (see the log)");
        }
    }
    let rows = db::partitions::list(&pool).await?;
    println!("TABLE\tPARTITION\tROWS (estimate)\tSIZE\tRANGE");
    for p in rows {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            p.table,
            p.partition,
            p.rows_estimate.map_or("-".into(), |n| n.to_string()),
            p.size,
            p.range
        );
    }
    Ok(())
}

/// The password: the first line of standard input, or typed twice without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let no_tty = |e: std::io::Error| {
        anyhow::anyhow!("cannot prompt for the password ({e}); pipe it in with --password-stdin")
    };
    let first = rpassword::prompt_password("Password: ").map_err(no_tty)?;
    let again = rpassword::prompt_password("Password again: ").map_err(no_tty)?;
    anyhow::ensure!(first == again, "the passwords differ; nothing changed");
    Ok(first)
}

async fn user(cfg: &Config, command: UserCommand) -> anyhow::Result<()> {
    use fleetsink::auth::users;
    let pool = db::pool(&cfg.database)?;
    db::MIGRATOR.run(&pool).await?;
    match command {
        UserCommand::Add {
            name,
            superuser,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            users::add_user(&pool, &name, &password, superuser).await?;
            println!(
                "user {name} added{}",
                if superuser { " (superuser)" } else { "" }
            );
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            users::set_password(&pool, &name, &password).await?;
            println!("password of {name} changed");
        }
        UserCommand::Remove { name } => {
            users::remove_user(&pool, &name).await?;
            println!("user {name} and its rules removed");
        }
        UserCommand::List => {
            for (name, superuser, rules) in users::list_users(&pool).await? {
                let role = if superuser { "superuser" } else { "user" };
                println!("{name}\t{role}\t{rules} rules");
            }
        }
    }
    Ok(())
}

async fn acl(cfg: &Config, command: AclCommand) -> anyhow::Result<()> {
    use fleetsink::auth::users;
    let pool = db::pool(&cfg.database)?;
    db::MIGRATOR.run(&pool).await?;
    match command {
        AclCommand::Add { args, all, access } => {
            let (user, pattern) = match (all, args.as_slice()) {
                (true, [pattern]) => (None, pattern.clone()),
                (false, [user, pattern]) => (Some(user.clone()), pattern.clone()),
                (true, _) => anyhow::bail!("with --all give only the PATTERN"),
                (false, _) => anyhow::bail!("give USER PATTERN, or --all PATTERN"),
            };
            let id = users::add_rule(&pool, user.as_deref(), &pattern, access).await?;
            let who = user.as_deref().unwrap_or("every user");
            println!(
                "rule {id}: {who} may {} {pattern}",
                users::rw_words(access.rw())
            );
        }
        AclCommand::Remove { id } => {
            users::remove_rule(&pool, id).await?;
            println!("rule {id} removed");
        }
        AclCommand::List { user } => {
            for (id, who, pattern, rw) in users::list_rules(&pool, user.as_deref()).await? {
                let who = who.unwrap_or_else(|| "*".into());
                println!("{id}\t{who}\t{}\t{pattern}", users::rw_words(rw));
            }
        }
    }
    Ok(())
}
