//! `seppoc loss FILE --inputs VALUES.json`: the objective on given leaf values, by the f64 oracle and by the
//! compiled dfdx graph, as JSON — how a user checks that a `.obj` file computes a paper's formula.

use super::{checked_or_exit, parse_set};
use crate::compile::conformance;
use crate::ir::{lower, Evaluation, LeafValues};
use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};
use std::process::ExitCode;

/// Arguments of `seppoc loss`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file.
    file: String,
    /// JSON file: `{"inputs": {"e_policy_winner": [..], "e_ref_winner": [..], "label": [..], ...}}`, one list
    /// per leaf and datum named by `seppoc explain` (data fields such as `label`, `weight`, `reward_winner`
    /// included), all of the same length (the batch), but a one-value list for `progress` and `num_timesteps`.
    #[arg(long)]
    inputs: String,
    /// Override a parameter (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
}

/// Runs `seppoc loss`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (checked, params) = match checked_or_exit(&args.file, &args.sets)? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    let obj = lower(&checked).bind(&params)?;
    let text = std::fs::read_to_string(&args.inputs).with_context(|| format!("cannot read `{}`", args.inputs))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", args.inputs))?;
    let given = json
        .get("inputs")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("`{}`: expected an object with an \"inputs\" object", args.inputs))?;
    let names: Vec<String> = obj.inputs.iter().map(|i| i.name()).collect();
    let all: Vec<String> = names.iter().cloned().chain(obj.datums.iter().map(|d| d.name())).collect();
    let mut inputs = Vec::new();
    let mut batch = None;
    for (k, name) in all.iter().enumerate() {
        let per_step = k >= names.len() && obj.datums[k - names.len()].per_step();
        let list = given.get(name).ok_or_else(|| {
            anyhow!("`{}`: missing leaf `{name}` (this objective's leaves: {})", args.inputs, all.join(", "))
        })?;
        let values: Vec<f64> = list
            .as_array()
            .ok_or_else(|| anyhow!("`{}`: `{name}` must be a list of numbers", args.inputs))?
            .iter()
            .map(|v| v.as_f64().filter(|x| x.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("`{}`: `{name}` must hold finite numbers only", args.inputs))?;
        if per_step {
            if values.len() != 1 {
                bail!("`{}`: `{name}` is one value per step; give a list of one number", args.inputs);
            }
            inputs.push(values);
            continue;
        }
        match batch {
            None if values.is_empty() => bail!("`{}`: `{name}` is empty; give at least one sample", args.inputs),
            None => batch = Some(values.len()),
            Some(b) if b != values.len() => bail!(
                "`{}`: `{name}` has {} values but `{}` has {b}; every leaf needs one value per sample",
                args.inputs,
                values.len(),
                all[0]
            ),
            _ => {}
        }
        inputs.push(values);
    }
    for key in given.keys() {
        if !all.contains(key) {
            bail!("`{}`: unknown leaf `{key}` (this objective's leaves: {})", args.inputs, all.join(", "));
        }
    }
    if let Err(e) = crate::ir::group_rows(&obj, batch.unwrap_or(1)) {
        bail!("`{}`: {e}", args.inputs);
    }
    let data = inputs.split_off(names.len());
    let (oracle, dfdx) = conformance::both(&obj, &LeafValues { inputs, data });
    if let Some(what) = first_nonfinite(&names, &oracle, &dfdx) {
        bail!("`{}`: {what} on these inputs; a non-finite loss would stop training", args.inputs);
    }
    let grad_map = |grads: &[Option<Vec<f64>>]| -> Map<String, Value> {
        names.iter().zip(grads).filter_map(|(n, g)| g.as_ref().map(|g| (n.clone(), json!(g)))).collect()
    };
    let logs: Map<String, Value> = oracle.logs.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let out = json!({
        "objective": obj.name,
        "batch": batch,
        "params": obj.named_values().map(|(n, v)| (n.to_string(), json!(v))).collect::<Map<String, Value>>(),
        "oracle_f64": { "loss": oracle.loss, "per_sample": oracle.per_sample, "logs": logs, "grad": grad_map(&oracle.grads) },
        "dfdx_f32": { "loss": dfdx.loss, "grad": grad_map(&dfdx.grads) },
    });
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The first quantity that is NaN or infinite, named: the loss, a per-sample loss, a logged value, a gradient.
fn first_nonfinite(names: &[String], oracle: &Evaluation, dfdx: &conformance::DfdxResult) -> Option<String> {
    let bad = |v: f64| (!v.is_finite()).then(|| if v.is_nan() { "NaN" } else { "infinite" });
    if let Some(b) = bad(oracle.loss) {
        let at = oracle.per_sample.as_ref().and_then(|p| p.iter().position(|v| !v.is_finite()));
        return Some(match at {
            Some(i) => {
                format!("the loss is {b} (first at sample {i}, whose loss is {})", oracle.per_sample.as_ref()?[i])
            }
            None => format!("the loss is {b}"),
        });
    }
    if let Some((name, v)) = oracle.logs.iter().find(|(_, v)| !v.is_finite()) {
        return Some(format!("logged quantity `{name}` is {}", bad(*v)?));
    }
    for (name, g) in names.iter().zip(&oracle.grads) {
        if let Some(i) = g.as_ref().and_then(|g| g.iter().position(|v| !v.is_finite())) {
            return Some(format!("the gradient with respect to `{name}` is {} at sample {i}", bad(g.as_ref()?[i])?));
        }
    }
    bad(dfdx.loss).map(|b| format!("the dfdx (f32) loss is {b}"))
}
