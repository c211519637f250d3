//! The end of a run: the best evaluation's checkpoint restored, evaluated on the validation
//! (and test) data, and saved as a transformers directory with its results.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::train::checkpoint::Checkpointer;

use super::launch::Trained;
use super::{AtomicCheckpointer, RunSummary, TrainPlan, best_epoch, evaluate, read_history};
use crate::checkpoint::{PeftAdapter, save_peft_adapter, save_pretrained};
use crate::data::Examples;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::metrics::MetricValues;

/// Restores the best evaluation of the run into `trained`, evaluates and saves it.
pub(super) fn finish(plan: &TrainPlan, trained: Trained, started: Instant) -> Result<RunSummary> {
    let (config, output) = (&plan.config, &plan.output);
    let step_times = trained.trainee.profile.times();
    let history = read_history(&output.join("metrics.jsonl"))?;
    let Some((best, _)) = best_epoch(&history, &plan.key) else {
        let evaluated = history.get("valid").is_some_and(|h| !h.is_empty());
        return Err(Error::Input(if evaluated {
            format!(
                "validation {} was never a number (training diverged to NaN/inf); nothing saved in {}",
                plan.key,
                output.display()
            )
        } else {
            format!(
                "training stopped before the first evaluation; nothing saved in {}",
                output.display()
            )
        }));
    };
    // The model in memory is the last step's; the saved one is the best evaluation's.
    let checkpointer = AtomicCheckpointer::new(&output.join("checkpoint"), "model");
    let record =
        Checkpointer::<burn::store::ModuleRecord>::restore(&checkpointer, best).map_err(|e| {
            Error::Checkpoint {
                path: output.join("checkpoint"),
                message: format!(
                    "the best epoch's ({best}) model checkpoint cannot be read: {e:?}"
                ),
            }
        })?;
    let trainee = trained.trainee.load_record(record).valid();
    let evaluate_on = |examples: std::sync::Arc<dyn Examples>| {
        evaluate(
            &trainee,
            examples,
            &plan.data.space,
            config.batch_size,
            plan.data.tokenizer.padding(),
            config.threshold,
            &plan.device,
        )
        .map(|(metrics, _)| metrics)
    };
    let mut eval = evaluate_on(plan.data.valid.clone())?;
    // Where the saved model was taken: epochs (fractional with --eval-steps) and step.
    for key in ["epoch", "step"] {
        if let Some(&value) = history.get("valid").and_then(|h| h.get(&best)?.get(key)) {
            eval.insert(key.into(), value);
        }
    }
    let test = plan.data.test.clone().map(evaluate_on).transpose()?;

    // LoRA adapters are merged into the weights: the saved model is a plain transformers one;
    // the adapter alone goes to `adapter/` in PEFT's format.
    if let (Some(lora), Some(rank)) = (&plan.lora, config.lora_rank) {
        let adapter = PeftAdapter {
            base_model: &config.model,
            rank,
            alpha: config.lora_alpha.unwrap_or(2.0 * rank as f64),
            targets: &lora.targets,
        };
        save_peft_adapter(
            &trainee.model,
            &plan.model_config,
            &adapter,
            &output.join("adapter"),
        )?;
    }
    let model = trainee.model.clone().materialize();
    save_pretrained(&model, &plan.model_config, &plan.model_dir, output)?;
    write_json(&output.join("eval_results.json"), &eval)?;
    if let Some(test) = &test {
        write_json(&output.join("test_results.json"), test)?;
    }
    let progress = plan.stream.state();
    Ok(RunSummary {
        output: output.clone(),
        best_evaluation: best,
        eval,
        test,
        seconds: started.elapsed().as_secs_f64(),
        samples_per_second: progress.examples() as f64 / progress.train_seconds().max(1e-9),
        stopped: trained.stopped,
        step_times,
    })
}

fn write_json(path: &Path, values: &MetricValues) -> Result<()> {
    let text = serde_json::to_string_pretty(values)
        .map_err(|e| Error::Input(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}
