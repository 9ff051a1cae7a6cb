//! `seppoc collect`: the simulated annotator hits its agreement and tie targets, a seed gives the same file, the
//! generator specs parse or fail clearly, and `seppoc run` trains on the written Parquet file.

mod cli_support;

use cli_support::{seppoc, text};
use seppoc::data::parquet::read;
use seppoc::engine::collect::{prepare, CollectSettings, GeneratorSpec};
use seppoc::sampler::SamplerKind;
use std::path::{Path, PathBuf};

fn root(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p).display().to_string()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("seppoc-collect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Collects a small set from the two shipped image models with a 4-step sampler.
fn collect(out: &Path, seed: u64, prompts: usize) -> std::process::Output {
    seppoc(&[
        "collect",
        "--out",
        &out.display().to_string(),
        "--prompts",
        &prompts.to_string(),
        "--seed",
        &seed.to_string(),
        "--model",
        &root("assets/base/model.safetensors"),
        "--generator",
        &format!("weak={}:cfg=3:steps=4", root("assets/base_v1/model.safetensors")),
        "--generator",
        &format!("base={}:steps=4", root("assets/base/model.safetensors")),
    ])
}

#[test]
fn the_annotator_hits_its_targets_and_a_seed_gives_the_same_file() {
    let d = dir("targets");
    let (a, b, c) = (d.join("a.parquet"), d.join("b.parquet"), d.join("c.parquet"));
    for (path, seed) in [(&a, 3), (&b, 3), (&c, 4)] {
        let o = collect(path, seed, 150);
        assert!(o.status.success(), "{}", text(&o.stderr));
        if seed == 3 && path == &a {
            let out = text(&o.stdout);
            assert!(out.contains("agreement with the noiseless judge") && out.contains("ratio"), "{out}");
        }
    }
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"), "same seed, same bytes");
    assert_ne!(std::fs::read(&a).expect("a"), std::fs::read(&c).expect("c"), "another seed, another set");

    let data = read(&a, 16).expect("reads back");
    assert_eq!(data.rows, 300, "two comparisons per prompt");
    let meta: serde_json::Value = serde_json::from_str(data.metadata.as_deref().expect("metadata")).expect("json");
    let cal = &meta["collect"]["calibration"];
    let (agree, ties) = (cal["agreement"].as_f64().expect("agreement"), cal["tie_share"].as_f64().expect("ties"));
    assert!((agree - 0.70).abs() <= 0.03, "agreement {agree}");
    assert!((ties - 0.11).abs() <= 0.03, "tie share {ties}");
    assert!((data.ties.len() as f64 / data.rows as f64 - ties).abs() < 1e-9, "the file holds the reported ties");
    let ratio = meta["collect"]["error_ratio"]["ratio"].as_f64().expect("ratio");
    assert!(ratio.is_finite() && ratio > 0.0, "{ratio}");
    let gens = meta["collect"]["per_generator"].as_array().expect("per generator");
    assert_eq!(gens.len(), 2);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn run_trains_on_a_collected_file_and_collect_protects_outputs() {
    let d = dir("run");
    let data = d.join("set.parquet");
    let o = collect(&data, 0, 24);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let again = collect(&data, 0, 24);
    assert!(!again.status.success() && text(&again.stderr).contains("--force"), "{}", text(&again.stderr));
    for objective in ["dpo", "sft"] {
        let out = d.join(objective);
        let o = seppoc(&[
            "run",
            &root(&format!("objectives/{objective}.obj")),
            "--data",
            &data.display().to_string(),
            "--steps",
            "2",
            "--batch",
            "4",
            "--eval-prompts",
            "0",
            "--out",
            &out.display().to_string(),
        ]);
        assert!(o.status.success(), "{objective}: {}", text(&o.stderr));
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
        assert_eq!(run["data"].as_str(), Some(data.display().to_string().as_str()));
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn generator_specs_parse_or_say_what_is_expected() {
    let g = GeneratorSpec::parse("strong=runs/x/model.safetensors:cfg=7.5:steps=30").expect("parses");
    assert_eq!((g.name.as_str(), g.sampler.cfg_scale, g.sampler.steps), ("strong", 7.5, 30));
    assert_eq!(g.model, PathBuf::from("runs/x/model.safetensors"));
    assert_eq!(g.sampler.kind, SamplerKind::Ddim, "deterministic DDIM unless a sampler is named");
    let g = GeneratorSpec::parse("b=x:sampler=ddpm:steps=250:cfg=1").expect("parses");
    assert_eq!((g.sampler.kind, g.sampler.steps, g.sampler.cfg_scale), (SamplerKind::Ddpm, 250, 1.0));
    let g = GeneratorSpec::parse("b=x:eta=0.5").expect("parses");
    assert_eq!(g.sampler.eta, 0.5);
    let bad_cases =
        ["nopath", "=x.safetensors", "a=", "a=x:cfg=abc", "a=x:steps=0", "a=x:eta=2", "a=x:sampler=plms", "a=x:seed=1"];
    for bad in bad_cases {
        let err = GeneratorSpec::parse(bad).expect_err(bad).to_string();
        assert!(err.contains(bad) && (err.contains("expected") || err.contains("not a")), "{bad}: {err}");
    }
}

#[test]
fn a_signal_stops_collect_before_anything_is_written() {
    let d = dir("signal");
    let out = d.join("set.parquet");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_seppoc"))
        .args(["collect", "--out", &out.display().to_string(), "--prompts", "4000", "--model"])
        .arg(root("assets/base/model.safetensors"))
        .arg("--generator")
        .arg(format!("base={}", root("assets/base/model.safetensors")))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("collect starts");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGTERM sent");
    let o = child.wait_with_output().expect("collect ends");
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("stopped by a signal"), "{}", text(&o.stderr));
    assert!(!out.exists() && !d.join("set.parquet.tmp").exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_default_pool_opens_and_a_sampler_that_does_not_fit_its_model_is_refused_up_front() {
    let settings = CollectSettings { prompts: 1, comparisons: 1, seed: 0, agreement: 0.7, tie_share: 0.11 };
    let base = PathBuf::from(root("assets/base/model.safetensors"));
    let job = prepare(&base, None, None, settings.clone(), PathBuf::from("unused.parquet")).expect("default pool");
    assert!(job.generators.len() >= 4, "a pool of mixed quality");
    let flow = root("assets/base_flow/model.safetensors");
    let bad = GeneratorSpec::parse(&format!("flow_ddpm={flow}:sampler=ddpm")).expect("parses");
    let err = match prepare(&base, None, Some(vec![bad]), settings, PathBuf::from("unused.parquet")) {
        Ok(_) => panic!("DDPM on a flow model was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("flow_ddpm") && err.contains("ddpm"), "{err}");
}
