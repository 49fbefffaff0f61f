//! `fleetsink user`: MQTT users in `mqtt_users`, the table go-auth and the embedded
//! broker both read. Passwords are prompted without echo (typed twice) or read from the
//! first line of stdin, never taken from the command line, where `ps` would show them.

use clap::Subcommand;
use fleetsink::auth::users;
use fleetsink::config::Config;

#[derive(Subcommand)]
pub enum UserCommand {
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

pub async fn run(cfg: &Config, command: UserCommand) -> anyhow::Result<()> {
    let pool = super::migrated_pool(cfg).await?;
    let actor = fleetsink::audit::Actor::cli();
    match command {
        UserCommand::Add {
            name,
            superuser,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            users::add_user(&pool, &actor, &name, &password, superuser).await?;
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
            users::set_password(&pool, &actor, &name, &password).await?;
            println!("password of {name} changed");
        }
        UserCommand::Remove { name } => {
            users::remove_user(&pool, &actor, &name).await?;
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

/// The password: the first line of standard input, or typed twice without echo.
pub(super) fn read_password(from_stdin: bool) -> anyhow::Result<String> {
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
