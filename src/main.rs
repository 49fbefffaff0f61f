//! The `fleetsink` binary: parse the command line and hand over to [`cli`], which owns
//! the subcommands. Everything the daemon does lives in the library (`fleetsink::app`);
//! the load generator (`fleetsink bench`) lives only here, with the CLI.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, not the system allocator: see Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    cli::run(cli::Cli::parse()).await
}
