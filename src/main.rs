//! The `patchbench` binary: parse arguments and dispatch. Without a
//! subcommand it starts the workbench TUI (`patchbench::tui::run`); the
//! headless commands live in `cli/`.

mod cli;

fn main() {
    // Before anything starts a thread or touches candle.
    patchbench::model::cpu_threads::configure();
    patchbench::model::malloc::configure();
    let args = cli::parse_args();
    let result = match &args.command {
        Some(cli::Command::Run(a)) => cli::run(a),
        Some(cli::Command::Models) => cli::models(),
        Some(cli::Command::Sweep(a)) => cli::sweep_command(a),
        Some(cli::Command::Circuit(a)) => cli::circuit::circuit(a),
        Some(cli::Command::Merge(a)) => cli::merge::merge_parts(a),
        Some(cli::Command::Bench(cli::bench::BenchCommand::Forward(a))) => {
            cli::bench::bench_forward(a)
        }
        Some(cli::Command::Bench(cli::bench::BenchCommand::Sweep(a))) => cli::bench::bench_sweep(a),
        Some(cli::Command::Bench(cli::bench::BenchCommand::Load(a))) => {
            cli::bench_load::bench_load(a)
        }
        Some(cli::Command::Bench(cli::bench::BenchCommand::Circuit(a))) => {
            cli::bench_circuit::bench_circuit(a)
        }
        Some(cli::Command::Bench(cli::bench::BenchCommand::Estimate(a))) => {
            cli::bench::bench_estimate(a)
        }
        Some(cli::Command::Bench(cli::bench::BenchCommand::Dataset(a))) => {
            cli::bench_dataset::bench_dataset(a)
        }
        Some(cli::Command::TrainDemo(a)) => cli::train::train_demo(a),
        Some(cli::Command::Check(a)) => cli::session::check(a),
        Some(cli::Command::Export(a)) => cli::session::export(a),
        Some(cli::Command::Dataset(cli::dataset::DatasetCommand::Gen(a))) => cli::dataset::gen(a),
        Some(cli::Command::Compare(a)) => cli::compare::compare(a),
        Some(cli::Command::CheckDevice(a)) => cli::check_device::check_device(a),
        Some(cli::Command::Open(a)) => cli::tui::start(&a.tui, Some(&a.file)),
        None => cli::tui::start(&args.tui, None),
    };
    if let Err(e) = result {
        // Messages quote files and arguments: escape and clip them.
        eprintln!(
            "error: {}",
            patchbench::util::text::for_terminal(&format!("{e:#}"))
        );
        std::process::exit(1);
    }
}
