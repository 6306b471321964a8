//! `draw`: a workflow's every possible flow.

use std::io::Write;
use std::path::PathBuf;

use stepwise::graph::DrawFormat;

use crate::format::emit;
use crate::{usage, Cli, Failure};

pub(crate) fn draw(
    cli: &Cli,
    workflow: &str,
    format: &str,
    output: Option<PathBuf>,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    let workflow = cli.find(workflow)?;
    let format: DrawFormat = format.parse().map_err(usage)?;
    emit(out, output, &workflow.graph().draw(format))
}
