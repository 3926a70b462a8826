//! `f2b-ctl`: see the library for what it does and docs/cli.md for how to use it.

use std::process::ExitCode;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2 (help and --version exit 0).
    let cli = f2b_ctl::cli::parse_args(std::env::args_os().collect());
    let code = f2b_ctl::run(
        &cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
