//! The `graceful` command line.

mod mutate;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "graceful", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the GracefulPolicy CustomResourceDefinition (the content of crds/).
    Crd,
    /// Show what graceful does to the pods of a manifest, offline.
    Mutate(mutate::Args),
    /// Serve the admission webhook, report bad shutdowns in policy status, and serve
    /// health and metrics.
    Run(Box<run::Args>),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => crate::api::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Mutate(args) => mutate::run(&args),
        Command::Run(args) => run::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("graceful: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag of every subcommand, with its groups, conflicts and defaults, is a
    /// valid definition (clap checks ids, `requires` targets and value parsers).
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
