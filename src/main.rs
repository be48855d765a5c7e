//! The `patchbench` binary: parse arguments and dispatch. The workbench TUI
//! and the headless commands live in the library and in `cli.rs`.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    let result = match &args.command {
        Some(cli::Command::Run(a)) => cli::run(a),
        Some(cli::Command::Models) => cli::models(),
        Some(cli::Command::Sweep(a)) => cli::sweep::sweep(a),
        Some(cli::Command::Bench(cli::bench::BenchCommand::Forward(a))) => {
            cli::bench::bench_forward(a)
        }
        Some(cli::Command::Bench(cli::bench::BenchCommand::Sweep(a))) => cli::bench::bench_sweep(a),
        None => {
            use clap::CommandFactory;
            cli::Cli::command().print_help().map_err(Into::into)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
