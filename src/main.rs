use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = promoter::cli::Cli::parse();
    let json = cli.json;
    match promoter::run(cli) {
        Ok(code) => code,
        Err(err) => promoter::report_error(&err, json),
    }
}
