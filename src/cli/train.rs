//! `burnbert train`: resolves the configuration, prints the plan, runs it with a dashboard or
//! plain lines, stops on Ctrl-C, then draws the curves and prints the summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{ArgMatches, Args};

use super::{DeviceArgs, print_notices};
use crate::config::TrainConfig;
use crate::error::Result;
use crate::training::{
    Display, RunSummary, StepTimes, Stopped, Stopper, TrainPlan, clock, format_value,
};

/// The configuration a bare `burnbert train` uses.
pub const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML configuration; flags override its keys (default: config/default.toml when no
    /// --train is given).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainConfig,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Train data parallel on several devices of the backend, the first holding the model:
    /// `gpu:0,gpu:1`, `all` (every GPU the backend sees), or `cpu,cpu` (two handles on one CPU,
    /// which shows the wiring but is no faster). Each optimizer step takes `batch_size` ×
    /// `grad_accum` examples per device.
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
}

pub fn run(args: TrainArgs, matches: &ArgMatches) -> Result<()> {
    let file = match &args.config {
        Some(path) => Some(path.clone()),
        None if args.train.train.is_none() && Path::new(DEFAULT_CONFIG).is_file() => {
            println!("burnbert: using {DEFAULT_CONFIG}");
            Some(PathBuf::from(DEFAULT_CONFIG))
        }
        None => None,
    };
    let mut config = TrainConfig::resolve(&args.train, matches, file.as_deref())?;
    config.pad_to_multiple_of = Some(args.device.pad_multiple(config.pad_to_multiple_of)?);
    let devices = match &args.devices {
        Some(names) => args.device.devices(names)?,
        None => vec![args.device.device()?],
    };

    let bar = indexing_bar();
    let plan = TrainPlan::on_devices(&config, &devices, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let plan = plan?;
    print_notices(plan.notices());
    for line in plan.describe() {
        println!("burnbert: {line}");
    }
    stop_on_ctrl_c(plan.stopper());
    let display = if !config.no_tui && std::io::stdout().is_terminal() {
        Display::Tui
    } else {
        Display::Lines {
            every: config.log_every,
            lines: Arc::new(|line: &str| println!("{line}")),
        }
    };
    let summary = plan.run(display)?;
    let resume = format!("--resume --output {}", summary.output.display());
    match summary.stopped {
        Some(Stopped::AtOnce) => println!(
            "burnbert: interrupted at once; saved the best evaluated model (continue from the last checkpoint with {resume})"
        ),
        Some(Stopped::AfterCheckpoint { step }) => println!(
            "burnbert: stopped at step {step} after a checkpoint; saved the best evaluated model (continue with {resume})"
        ),
        None => {}
    }
    crate::plot::plot_runs(std::slice::from_ref(&summary.output), None)?;
    print_summary(&summary);
    Ok(())
}

/// The bar of the pass that indexes each data file (drawn only on a terminal).
fn indexing_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "indexing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The first Ctrl-C ends the run at the next optimizer step, after an evaluation and a
/// checkpoint there; a second one stops at once (the last checkpoint stays).
fn stop_on_ctrl_c(stopper: Stopper) {
    static CURRENT: Mutex<Option<Stopper>> = Mutex::new(None);
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    if let Ok(mut current) = CURRENT.lock() {
        *current = Some(stopper);
    }
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let Ok(current) = CURRENT.lock() else {
                return;
            };
            if current.as_ref().is_some_and(Stopper::stop) {
                eprintln!(
                    "burnbert: stopping after this step's evaluation and checkpoint (Ctrl-C again to stop now)"
                );
            }
        });
    });
}

/// The closing table: best evaluation, its validation (and test) metrics, time and speed.
fn print_summary(summary: &RunSummary) {
    println!("\n{:<22}{}", "output", summary.output.display());
    let at = |key: &str| summary.eval.get(key).copied().unwrap_or(0.0);
    println!(
        "{:<22}{} (step {}, epoch {:.2})",
        "best evaluation",
        summary.best_evaluation,
        at("step"),
        at("epoch")
    );
    for (key, value) in &summary.eval {
        if key != "epoch" && key != "step" {
            println!("{:<22}{}", format!("eval {key}"), format_value(*value));
        }
    }
    if let Some(test) = &summary.test {
        for (key, value) in test {
            println!("{:<22}{}", format!("test {key}"), format_value(*value));
        }
    }
    println!("{:<22}{}", "wall time", clock(summary.seconds));
    println!("{:<22}{:.1}", "train samples/s", summary.samples_per_second);
    if let Some(times) = &summary.step_times {
        println!("{:<22}{}", "step profile", step_profile(times));
    }
}

/// `steps 6-25: forward 12.3 ms, backward 20.1 ms, optimizer 4.2 ms, rest 1.1 ms = 37.7 ms
/// a step` (means per optimizer step; the half batches' forward and backward as one phase).
fn step_profile(t: &StepTimes) -> String {
    let phases = [
        ("forward", t.forward),
        ("backward", t.backward),
        ("forward+backward of the half batches", t.halves),
        ("optimizer", t.optimizer),
    ];
    let mut parts: Vec<String> = phases
        .iter()
        .filter(|(_, ms)| *ms > 0.0)
        .map(|(name, ms)| format!("{name} {ms:.1} ms"))
        .collect();
    parts.push(format!("rest {:.1} ms", t.rest));
    format!(
        "steps {}-{}: {} = {:.1} ms a step",
        t.first_step,
        t.first_step + t.steps - 1,
        parts.join(", "),
        t.total
    )
}
