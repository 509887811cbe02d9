use std::process::ExitCode;

fn main() -> ExitCode {
    graceful::cli::main()
}
