//! Partition archives: a partition due for dropping is exported before it is dropped,
//! and `fleetsink partitions restore FILE` loads one back.
//!
//! The file `<table>_<YYYYMMDD>.copy.gz` is gzip holding one header line
//! (`# fleetsink archive v1 table=… day=… rows=N columns=a,b,c`) and then the
//! partition in `COPY … TO STDOUT` text format, one row per line. Export runs in the
//! transaction that drops the partition, with the partition locked against writes:
//! the rows are counted, copied out, counted again as lines, written to a temporary
//! file that is fsynced and renamed into place (and the directory fsynced), and only
//! when both counts agree is the partition dropped and the transaction committed. A
//! crash before the commit leaves the partition in place (the next round exports it
//! again, replacing the file); after it, the file is complete. Nothing is lost and no
//! row is in both places.
//!
//! The maintenance round (`partitions.rs`) calls [`archive_and_drop`]; this file never
//! calls back into it, and takes what it shares with it (partition names, creating a
//! day for a restore) from `days.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::NaiveDate;
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::mpsc;

use super::days::{self, TABLES};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(
        "{table} partition of {day}: {counted} rows counted but {copied} exported; not dropped"
    )]
    CountMismatch {
        table: String,
        day: NaiveDate,
        counted: u64,
        copied: u64,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The archive file of `table`'s partition of `day` in `dir`.
pub fn archive_path(dir: &Path, table: &str, day: NaiveDate) -> PathBuf {
    dir.join(format!("{table}_{}.copy.gz", day.format("%Y%m%d")))
}

/// The table's columns in order (the partition's are the same).
async fn columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass \
         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}

/// Lifts `database.statement_timeout` for this transaction only: a day's COPY takes
/// as long as the day is large.
async fn without_statement_deadline(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(tx)
        .await
        .map(|_| ())
}

/// Exports `partition` (of `table`, day `day`) to `dir`, then drops it, in one
/// transaction. Returns the archive's path and row count.
pub async fn archive_and_drop(
    conn: &mut PgConnection,
    dir: &Path,
    table: &str,
    partition: &str,
    day: NaiveDate,
) -> Result<(PathBuf, u64), ArchiveError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = archive_path(dir, table, day);
    let tmp = path.with_extension("gz.partial");
    let mut tx = conn.begin().await?;
    without_statement_deadline(&mut tx).await?;
    // Identifiers come from our own naming scheme (checked by the caller's parser).
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {partition} IN SHARE MODE"
    )))
    .execute(&mut *tx)
    .await?;
    let counted: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {partition}")))
            .fetch_one(&mut *tx)
            .await?;
    let counted = counted.max(0) as u64;
    let cols = columns(&mut tx, table).await?;
    let header = format!(
        "# fleetsink archive v1 table={table} day={day} rows={counted} columns={}\n",
        cols.join(",")
    );

    // The file is written on a blocking thread, fed chunk by chunk.
    let (chunks, mut rx) = mpsc::channel::<Bytes>(16);
    let tmp_w = tmp.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, ArchiveError> {
        let file = std::fs::File::create(&tmp_w).map_err(io(&tmp_w))?;
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        gz.write_all(header.as_bytes()).map_err(io(&tmp_w))?;
        let mut lines = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            gz.write_all(&chunk).map_err(io(&tmp_w))?;
        }
        let file = gz.finish().map_err(io(&tmp_w))?;
        file.sync_all().map_err(io(&tmp_w))?;
        Ok(lines)
    });
    let copied = async {
        let mut stream = tx
            .copy_out_raw(&format!("COPY {partition} TO STDOUT"))
            .await?;
        while let Some(chunk) = stream.next().await {
            if chunks.send(chunk?).await.is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    drop(chunks);
    let written = writer
        .await
        .map_err(|e| ArchiveError::Invalid(format!("archive writer failed: {e}")))?;
    let lines = match (copied, written) {
        (Ok(()), Ok(lines)) => lines,
        (Err(e), _) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        (_, Err(e)) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if lines != counted {
        let _ = std::fs::remove_file(&tmp);
        return Err(ArchiveError::CountMismatch {
            table: table.to_string(),
            day,
            counted,
            copied: lines,
        });
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {partition}")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((path, counted))
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub table: String,
    pub day: NaiveDate,
    /// Rows in the archive.
    pub rows: u64,
    /// Rows inserted (rows already present are skipped, never duplicated).
    pub inserted: u64,
}

struct Header {
    table: &'static str,
    day: NaiveDate,
    rows: u64,
    columns: Vec<String>,
}

fn parse_header(line: &str) -> Result<Header, ArchiveError> {
    let bad = || {
        ArchiveError::Invalid(format!(
            "not a fleetsink archive header: {:?}",
            line.trim_end()
        ))
    };
    let rest = line
        .trim_end()
        .strip_prefix("# fleetsink archive v1 ")
        .ok_or_else(bad)?;
    let mut fields = std::collections::HashMap::new();
    for part in rest.split(' ') {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        fields.insert(k, v);
    }
    let table = TABLES
        .iter()
        .map(|t| t.table)
        .find(|t| fields.get("table") == Some(t))
        .ok_or_else(bad)?;
    let day = fields
        .get("day")
        .and_then(|d| d.parse::<NaiveDate>().ok())
        .ok_or_else(bad)?;
    let rows = fields
        .get("rows")
        .and_then(|r| r.parse().ok())
        .ok_or_else(bad)?;
    let columns: Vec<String> = fields
        .get("columns")
        .ok_or_else(bad)?
        .split(',')
        .map(str::to_string)
        .collect();
    if columns
        .iter()
        .any(|c| c.is_empty() || !c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
    {
        return Err(bad());
    }
    Ok(Header {
        table,
        day,
        rows,
        columns,
    })
}

/// Loads an archive back: its day's partition is created if missing, and its rows are
/// inserted except those already present (`metrics` and `logs` by their unique keys;
/// `ingest_errors`, which has none, only into an empty day).
pub async fn restore(conn: &mut PgConnection, file: &Path) -> Result<Restored, ArchiveError> {
    let f = std::fs::File::open(file).map_err(io(file))?;
    let mut reader = BufReader::new(flate2::read::GzDecoder::new(f));
    let mut first = String::new();
    reader.read_line(&mut first).map_err(io(file))?;
    let header = parse_header(&first)?;
    let table = header.table;
    days::ensure_day(conn, table, header.day).await?;
    let partition = days::partition_name(table, header.day);

    let mut tx = conn.begin().await?;
    without_statement_deadline(&mut tx).await?;
    if table == "ingest_errors" {
        let present: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {partition})"
        )))
        .fetch_one(&mut *tx)
        .await?;
        if present {
            return Err(ArchiveError::Invalid(format!(
                "{partition} already has rows; ingest_errors rows have no unique key, so restoring into it could duplicate them"
            )));
        }
    }
    let cols = header.columns.join(", ");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TEMP TABLE restore_rows (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    )))
    .execute(&mut *tx)
    .await?;
    // Decompression on a blocking thread, fed to COPY chunk by chunk.
    let (chunks, mut rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let reading = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if chunks.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = chunks.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut copy = tx
        .copy_in_raw(&format!("COPY restore_rows ({cols}) FROM STDIN"))
        .await?;
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(data) => {
                if let Err(e) = copy.send(data).await {
                    failed = Some(ArchiveError::from(e));
                    break;
                }
            }
            Err(e) => {
                failed = Some(io(file)(e));
                break;
            }
        }
    }
    drop(rx);
    let _ = reading.await;
    if let Some(e) = failed {
        let _ = copy.abort("restore failed").await;
        return Err(e);
    }
    let copied = copy.finish().await?;
    if copied != header.rows {
        return Err(ArchiveError::Invalid(format!(
            "{} holds {copied} rows but its header says {}; nothing restored",
            file.display(),
            header.rows
        )));
    }
    let conflict = if table == "ingest_errors" {
        ""
    } else {
        " ON CONFLICT DO NOTHING"
    };
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM restore_rows{conflict}"
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Restored {
        table: table.to_string(),
        day: header.day,
        rows: header.rows,
        inserted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let h = parse_header("# fleetsink archive v1 table=metrics day=2026-10-20 rows=3 columns=ts,robot,set_id,vals\n").unwrap();
        assert_eq!((h.table, h.rows, h.columns.len()), ("metrics", 3, 4));
        for bad in [
            "garbage",
            "# fleetsink archive v1 table=robots day=2026-10-20 rows=3 columns=a",
            "# fleetsink archive v1 table=metrics day=x rows=3 columns=a",
            "# fleetsink archive v1 table=metrics day=2026-10-20 rows=3 columns=a;DROP",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
