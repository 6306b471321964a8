//! A human in the loop: the workflow plans a deployment, asks whether to go
//! ahead, and suspends until you answer.
//!
//! ```sh
//! cargo run -p stepwise-demo --example hitl_console                 # asks on the terminal
//! cargo run -p stepwise-demo --example hitl_console -- --answer yes # scripted (CI)
//! echo no | cargo run -p stepwise-demo --example hitl_console       # one line from stdin
//! cargo run -p stepwise-demo --example hitl_console -- --change "billing v2"
//! ```
use std::io::{BufRead, IsTerminal, Write};

use stepwise::{HumanResponseEvent, InputRequiredEvent, StreamExt, WorkflowDefinition};
use stepwise_demo::agents::{ApprovalFlow, ChangeRequest};

struct Args {
    answer: Option<String>,
    change: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        answer: None,
        change: "search v3".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{key} needs a value"))
        };
        match key.as_str() {
            "--answer" => args.answer = Some(value()?),
            "--change" => args.change = value()?,
            "-h" | "--help" => {
                return Err("usage: hitl_console [--answer <text>] [--change <text>]".to_owned());
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(args)
}

/// One line from stdin (blocking, so off the async threads).
async fn read_line() -> Result<String, String> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Err("no answer: stdin is closed (pass --answer <text>)".to_owned()),
            Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => Err(format!("cannot read stdin: {e}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let flow = ApprovalFlow::default().build()?;
    let handle = flow.run(ChangeRequest {
        change: args.change.clone(),
    });
    let mut events = handle.stream_events()?;
    while let Some(event) = events.next().await {
        let Some(request) = event.downcast_ref::<InputRequiredEvent>() else {
            continue;
        };
        println!("{}", request.prompt);
        if let Some(steps) = request.data.get("steps").and_then(|s| s.as_array()) {
            for step in steps {
                println!("  - {}", step.as_str().unwrap_or_default());
            }
        }
        let answer = match &args.answer {
            Some(scripted) => {
                println!("> {scripted}   (scripted)");
                scripted.clone()
            }
            None if std::io::stdin().is_terminal() => {
                print!("> ");
                std::io::stdout().flush()?;
                read_line().await?
            }
            None => {
                let piped = read_line().await?;
                println!("> {piped}   (from stdin)");
                piped
            }
        };
        handle.send_event(HumanResponseEvent::new(answer))?;
    }
    let outcome = handle.await?;
    if outcome.approved {
        println!("deploying `{}` (answer: {:?})", outcome.change, outcome.answer);
    } else {
        println!("not deploying `{}` (answer: {:?})", outcome.change, outcome.answer);
    }
    Ok(())
}
