//! Project automation: `cargo xtask ci | demo | bench`.

mod bench;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask bench install [--size-mib N] [--runs N] [--all]\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["bench", rest @ ..] => bench::bench(rest),
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}{}", bench::USAGE);
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
