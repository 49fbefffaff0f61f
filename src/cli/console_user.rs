//! `fleetsink console-user`: the people who sign in to the operator console (TonyPi's
//! web UI), in `console_users` — not MQTT users (`fleetsink user`). The first admin is
//! made here; the rest can be managed in the UI's Users page. Passwords are prompted
//! without echo (typed twice) or read from the first line of stdin (`--password-stdin`),
//! never taken from the command line.

use clap::Subcommand;
use fleetsink::audit::Actor;
use fleetsink::auth::console::{self, Role};
use fleetsink::config::Config;
use fleetsink::db::edits::console_users::{self as edits, EditError};
use fleetsink::db::reads::console_users as reads;

use super::user::read_password;

#[derive(Subcommand)]
pub enum ConsoleUserCommand {
    /// Add a console user; prompts for the password unless --password-stdin.
    Add {
        name: String,
        /// The user's email address (TonyPi's users have one; unique).
        #[arg(long)]
        email: String,
        /// admin (manages users, thresholds, robots), operator (also sends commands,
        /// acknowledges alerts) or viewer (reads).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a console user's password (e.g. a forgotten admin password).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a console user.
    Remove { name: String },
    /// List console users.
    List,
}

pub async fn run(cfg: &Config, command: ConsoleUserCommand) -> anyhow::Result<()> {
    let pool = super::migrated_pool(cfg).await?;
    let actor = Actor::cli();
    match command {
        ConsoleUserCommand::Add {
            name,
            email,
            role,
            password_stdin,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("--role {role:?} is not a role: use admin, operator or viewer")
            })?;
            let hash = new_hash(password_stdin)?;
            match edits::create(&pool, &actor, &name, &email, &hash, role.as_str()).await {
                Ok(_) => println!("console user {name} added ({role})"),
                Err(EditError::Taken) => anyhow::bail!(
                    "a console user named {name:?} or with email {email:?} exists already; \
                     to reset its password: fleetsink console-user passwd {name}"
                ),
                Err(EditError::Db(e)) => return Err(e.into()),
            }
            if cfg.console.jwt_secret.is_none() {
                eprintln!(
                    "note: sign-in stays off until console.jwt_secret is set (FLEETSINK__CONSOLE__JWT_SECRET, 32+ characters)"
                );
            }
        }
        ConsoleUserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let hash = new_hash(password_stdin)?;
            anyhow::ensure!(
                edits::set_password(&pool, &actor, &name, &hash).await?,
                "no console user named {name:?}; see: fleetsink console-user list"
            );
            println!("password of console user {name} changed");
        }
        ConsoleUserCommand::Remove { name } => {
            anyhow::ensure!(
                edits::delete_by_name(&pool, &actor, &name).await?,
                "no console user named {name:?}; see: fleetsink console-user list"
            );
            println!("console user {name} removed");
        }
        ConsoleUserCommand::List => {
            for u in reads::list(&pool).await? {
                let active = if u.is_active { "active" } else { "inactive" };
                println!("{}\t{}\t{}\t{active}", u.username, u.role, u.email);
            }
        }
    }
    Ok(())
}

/// A hash of a new password that keeps the rules (8-128 characters).
fn new_hash(password_stdin: bool) -> anyhow::Result<String> {
    let password = read_password(password_stdin)?;
    console::check_password_rules(&password)
        .map_err(|e| anyhow::anyhow!("{e}; nothing changed"))?;
    Ok(console::hash_password(&password)?)
}
