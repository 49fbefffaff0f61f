//! `fleetsink partitions`: the listing (rows, size, range per day partition), one
//! maintenance round on demand (`--maintain`, under the same advisory lock as the
//! daemon's rounds, so it is safe while fleetsink runs), and `restore FILE` for an
//! archive written by `retention.archive_dir`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use fleetsink::config::Config;
use fleetsink::db::maintenance::{archive, partitions};

// No doc comment here: the `Partitions` variant's is the subcommand's help.
#[derive(Args)]
pub struct PartitionsArgs {
    #[arg(long)]
    maintain: bool,
    #[command(subcommand)]
    action: Option<PartitionsAction>,
}

#[derive(Subcommand)]
enum PartitionsAction {
    /// Load an archive written by retention.archive_dir back into its day's partition
    /// (rows already present are skipped).
    Restore { file: PathBuf },
}

pub async fn run(cfg: &Config, args: PartitionsArgs) -> anyhow::Result<()> {
    match args.action {
        Some(PartitionsAction::Restore { file }) => restore(cfg, &file).await,
        None => list(cfg, args.maintain).await,
    }
}

async fn restore(cfg: &Config, file: &Path) -> anyhow::Result<()> {
    let pool = super::migrated_pool(cfg).await?;
    let mut conn = pool.acquire().await?;
    let r = archive::restore(&mut conn, file).await?;
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

async fn list(cfg: &Config, maintain: bool) -> anyhow::Result<()> {
    let pool = super::migrated_pool(cfg).await?;
    if maintain {
        let today = chrono::Utc::now().date_naive();
        let report = partitions::maintain_for_day(&pool, &cfg.retention, today).await?;
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
    let rows = partitions::list(&pool).await?;
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
