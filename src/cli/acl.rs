//! `fleetsink acl`: ACL rules in `mqtt_acls`, for one user or (`--all`) every user.
//! Patterns are checked when added (`fleetsink::auth::users`), so a rule the broker
//! could never match is refused here rather than silently ignored later.

use clap::Subcommand;
use fleetsink::auth::users::{self, RuleAccess};
use fleetsink::config::Config;

#[derive(Subcommand)]
pub enum AclCommand {
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
        access: RuleAccess,
    },
    /// Remove the rule with this id (see `acl list`).
    Remove { id: i64 },
    /// List rules, or those that apply to USER.
    List { user: Option<String> },
}

pub async fn run(cfg: &Config, command: AclCommand) -> anyhow::Result<()> {
    let pool = super::migrated_pool(cfg).await?;
    let actor = fleetsink::audit::Actor::cli();
    match command {
        AclCommand::Add { args, all, access } => {
            let (user, pattern) = match (all, args.as_slice()) {
                (true, [pattern]) => (None, pattern.clone()),
                (false, [user, pattern]) => (Some(user.clone()), pattern.clone()),
                (true, _) => anyhow::bail!("with --all give only the PATTERN"),
                (false, _) => anyhow::bail!("give USER PATTERN, or --all PATTERN"),
            };
            let id = users::add_rule(&pool, &actor, user.as_deref(), &pattern, access).await?;
            let who = user.as_deref().unwrap_or("every user");
            println!(
                "rule {id}: {who} may {} {pattern}",
                users::rw_words(access.rw())
            );
        }
        AclCommand::Remove { id } => {
            users::remove_rule(&pool, &actor, id).await?;
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
