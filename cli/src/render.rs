//! Turning DOT into SVG with Graphviz's `dot`, when it is installed.

use crate::error::{Error, Result};
use std::io::Write;
use std::process::{Command, Stdio};

/// How to get Graphviz, said when `dot` is missing.
pub const INSTALL_GRAPHVIZ: &str = "SVG output needs Graphviz's `dot` on PATH, which was not found; \
install it (Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install graphviz`), or use \
`--format dot` and render the DOT elsewhere";

/// Renders `dot_source` to SVG by running `dot -Tsvg`.
pub fn svg(dot_source: &str) -> Result<String> {
    let spawned = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(INSTALL_GRAPHVIZ.into()))
        }
        Err(e) => return Err(Error::Usage(format!("cannot run Graphviz's `dot`: {e}"))),
    };
    // Feed stdin from a thread: `dot` may start writing before it has read everything.
    let mut stdin = child.stdin.take().ok_or_else(|| Error::Usage("cannot write to `dot`".into()))?;
    let source = dot_source.to_owned();
    let feeder = std::thread::spawn(move || stdin.write_all(source.as_bytes()));
    let out = child.wait_with_output().map_err(|e| Error::Usage(format!("running `dot`: {e}")))?;
    let fed = feeder.join().map_err(|_| Error::Usage("writing to `dot` failed".into()))?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "`dot -Tsvg` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fed.map_err(|e| Error::Usage(format!("writing to `dot`: {e}")))?;
    String::from_utf8(out.stdout).map_err(|_| Error::Usage("`dot` wrote SVG that is not UTF-8".into()))
}
