//! The `graceful` command line.

pub mod mutate;
mod plugin;
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
    // kubectl runs the plugin by its file name: the same binary, another command line.
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    let as_plugin = invoked_as
        .as_ref()
        .and_then(|path| path.file_name())
        .is_some_and(|name| name == plugin::BINARY_NAME);
    let result = if as_plugin {
        plugin::run(plugin::Cli::parse())
    } else {
        graceful(Cli::parse())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("graceful: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn graceful(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => crate::api::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Mutate(args) => mutate::run(&args),
        Command::Run(args) => run::run(*args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::{Cli, plugin};

    /// Every flag of every subcommand, with its groups, conflicts and defaults, is a
    /// valid definition (clap checks ids, `requires` targets and value parsers); the
    /// same for `kubectl graceful`.
    #[test]
    fn the_command_lines_are_well_formed() {
        Cli::command().debug_assert();
        plugin::Cli::command().debug_assert();
    }
}
