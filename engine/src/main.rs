//! The `scorch` binary: a thin command line over `scorch_engine` (see the `cli` module).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
