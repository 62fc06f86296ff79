//! `kiln`: look at what kiln does with a graph. See `kiln --help` and the README's "Inspecting
//! what kiln does".

use clap::{Parser, Subcommand};
use kiln_cli::commands::{self, Format, Pass};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Inspect, differentiate and run kiln graphs (IR text or JSON)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the graph in FILE as read, or after a pass of the pipeline.
    Dump {
        /// The graph: kiln IR text or JSON.
        file: PathBuf,
        /// Show the result of this pass (default: the graph as read).
        #[arg(long, value_enum)]
        after: Option<Pass>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// First append the reverse graph for these inputs (comma-separated names), as `grad` does;
        /// pictures then show it in pink.
        #[arg(long, value_delimiter = ',')]
        wrt: Vec<String>,
    },
    /// Append the reverse graph (gradients of the sum of the outputs) and print the result.
    Grad {
        /// The graph: kiln IR text or JSON.
        file: PathBuf,
        /// The inputs to differentiate with respect to (comma-separated names).
        #[arg(long, value_delimiter = ',', required = true)]
        wrt: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Evaluate the graph on .npy inputs and print the outputs or write them as .npy files.
    Run {
        /// The graph: kiln IR text or JSON.
        file: PathBuf,
        /// One graph input: NAME=PATH.npy (repeat for each input).
        #[arg(long = "input", value_name = "NAME=PATH", value_parser = parse_input)]
        inputs: Vec<(String, PathBuf)>,
        /// Write out0.npy, out1.npy, ... here instead of printing the outputs.
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Backend: the Cranelift JIT, or the reference interpreter.
        #[arg(long, default_value = "jit", value_parser = ["jit", "interp"])]
        backend: String,
    },
    /// List the passes of the pipeline and what KILN_DUMP writes.
    Passes,
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH.npy, got '{s}'")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dump { file, after, format, wrt } => commands::dump(&file, after, format, &wrt),
        Command::Grad { file, wrt, format } => commands::grad(&file, &wrt, format),
        Command::Run { file, inputs, output, backend } => {
            commands::run(&file, &inputs, output.as_deref(), &backend)
        }
        Command::Passes => Ok(commands::passes()),
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`kiln dump ... | head`) is not an error worth a message.
            let _ = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
