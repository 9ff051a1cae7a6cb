//! The commands on a tiny rectified-flow model: `pretrain --param flow` records the parametrisation, a shipped
//! objective file trains it unchanged, `eval` samples with Euler or Heun, and a sampler or exporter the model
//! cannot take is exit 2 with a message naming what it takes.

mod cli_support;

use cli_support::{seppoc_in, text};

#[test]
fn a_flow_model_pretrains_trains_with_an_unchanged_objective_and_evaluates() {
    let dir = cli_support::scratch("flow-cli", "end-to-end");
    let pretrain = ["pretrain", "--param", "flow", "--out", "base", "--size", "tiny", "--steps", "5", "--batch", "4"];
    let out = seppoc_in(&dir, &pretrain);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("rectified-flow velocity"), "{}", text(&out.stderr));
    let recipe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("base/recipe.json")).unwrap()).unwrap();
    assert_eq!(recipe["train"]["schedule"]["param"], "flow", "{recipe}");
    assert_eq!(recipe["train"]["schedule"]["time"], "logit_normal", "{recipe}");

    let objective = format!("{}/objectives/seppo.obj", env!("CARGO_MANIFEST_DIR"));
    let settings = "--model base/model.safetensors --steps 2 --batch 2 --data-size 8 --eval-prompts 2 --out seppo";
    let run: Vec<&str> = ["run", objective.as_str()].into_iter().chain(settings.split(' ')).collect();
    let out = seppoc_in(&dir, &run);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("rectified-flow velocity model") && err.contains("1/(1 − t)²"), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("seppo/report.json")).unwrap()).unwrap();
    assert_eq!(report["eval"]["sampler"]["kind"], "euler", "{report}");

    let eval = |sampler: &str| {
        let args = ["eval", "--model", "seppo/model.safetensors", "--n-prompts", "2", "--sampler", sampler];
        seppoc_in(&dir, &[&args[..], &["--out", &format!("eval-{sampler}")]].concat())
    };
    for ok in ["heun", "euler", "ddim"] {
        let out = eval(ok);
        assert_eq!(out.status.code(), Some(0), "{ok}: {}", text(&out.stderr));
    }
    let heun = std::fs::read_to_string(dir.join("eval-heun/report.json")).unwrap();
    assert!(heun.contains("\"heun\""), "{heun}");
    let out = eval("ddpm");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("seppo/model.safetensors") && err.contains("rectified flow") && err.contains("euler"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = seppoc_in(&dir, &["export-torch", &objective, "--model", "base/model.safetensors", "--out", "export"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("base/model.safetensors") && err.contains("ε-prediction"), "{err}");
}

/// `check --model` says what an objective's model-dependent terms mean on that model: the flow's own error and
/// its noising path for timestep values; an ε model's error is the form the formulas are written in.
#[test]
fn check_with_a_model_states_what_the_terms_mean_for_its_parametrisation() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = cli_support::scratch("flow-cli", "check");
    let file = format!("{root}/objectives/sft_minsnr.obj");
    let flow = format!("{root}/assets/base_flow/model.safetensors");
    let out = seppoc_in(&dir, &["check", &file, "--model", &flow]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(said.contains("rectified-flow velocity") && said.contains("alpha = 1 − t, sigma = t"), "{said}");
    let eps = format!("{root}/assets/base/model.safetensors");
    let said = text(&seppoc_in(&dir, &["check", &file, "--model", &eps]).stdout);
    assert!(said.contains("ε-prediction model") && said.contains("snr = ᾱ_t/(1 − ᾱ_t)"), "{said}");
    let out = seppoc_in(&dir, &["check", &file, "--model", "missing.safetensors"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--model `missing.safetensors`"), "{}", text(&out.stderr));
}
