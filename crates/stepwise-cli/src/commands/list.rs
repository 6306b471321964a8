//! `list`: the registered workflows.

use std::io::Write;

use crate::format::one_line;
use crate::{Cli, Failure};

pub(crate) fn list(cli: &Cli, out: &mut (dyn Write + Send)) -> Result<(), Failure> {
    if cli.registry.is_empty() {
        let _ = writeln!(out, "no workflows are registered");
    }
    for w in &cli.registry {
        let _ = writeln!(
            out,
            "{:<22} {:>2} steps  {} -> {}{}",
            w.name(),
            w.steps().len(),
            w.start_type().name(),
            w.stop_type().name(),
            w.doc().map(|d| format!("  {}", one_line(d))).unwrap_or_default()
        );
    }
    Ok(())
}
