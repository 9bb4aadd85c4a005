use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match promoter::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return promoter::error::usage(e),
    };
    let json = cli.json;
    match promoter::run(cli) {
        Ok(code) => code,
        Err(err) => promoter::report_error(&err, json),
    }
}
