//! `kiln`: look at what kiln does with a graph. See `kiln --help` and the README's "Inspecting
//! what kiln does".

use clap::{Parser, Subcommand};
use kiln_cli::commands::{self, Format, Pass};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Inspect, differentiate and run kiln graphs (IR text or JSON) and ONNX models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the graph in FILE as read, or after a pass of the pipeline.
    Dump {
        /// The graph: kiln IR text or JSON, or an ONNX model (.onnx).
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
        /// The graph: kiln IR text or JSON, or an ONNX model (.onnx).
        file: PathBuf,
        /// The inputs to differentiate with respect to (comma-separated names).
        #[arg(long, value_delimiter = ',', required = true)]
        wrt: Vec<String>,
        /// Output format (of the graph; ignored when gradients are evaluated).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Evaluate the gradients at these inputs instead of printing the graph: NAME=PATH.npy or
        /// NAME=PATH.pb (repeat; an ONNX model's parameters default to their initializers).
        #[arg(long = "input", value_name = "NAME=PATH", value_parser = parse_input)]
        inputs: Vec<(String, PathBuf)>,
        /// The gradient flowing into an output (its position or ONNX name): OUTPUT=PATH.npy|.pb;
        /// outputs without one are seeded with ones. Implies evaluation.
        #[arg(long = "cotangent", value_name = "OUTPUT=PATH", value_parser = parse_input)]
        cotangents: Vec<(String, PathBuf)>,
        /// Backend for the evaluation.
        #[arg(long, default_value = "jit", value_parser = ["jit", "interp"])]
        backend: String,
    },
    /// Evaluate the graph on .npy inputs and print the outputs or write them as .npy files.
    Run {
        /// The graph: kiln IR text or JSON, or an ONNX model (.onnx).
        file: PathBuf,
        /// One graph input: NAME=PATH.npy or NAME=PATH.pb (an ONNX TensorProto); repeat for each
        /// input. An ONNX model's parameters default to their initializers.
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
        _ => Err(format!("expected NAME=PATH, got '{s}'")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dump { file, after, format, wrt } => commands::dump(&file, after, format, &wrt),
        Command::Grad { file, wrt, format, inputs, cotangents, backend } => {
            if inputs.is_empty() && cotangents.is_empty() {
                commands::grad(&file, &wrt, format)
            } else {
                commands::grad_values(&file, &wrt, &inputs, &cotangents, &backend)
            }
        }
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
