//! End-to-end runs of the `seppoc` binary: exit codes and what reaches the terminal.

mod cli_support;

use cli_support::{seppoc, text};

fn shipped() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/objectives"))
        .expect("objectives/")
        .map(|e| format!("objectives/{}", e.expect("entry").file_name().to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_every_shipped_objective() {
    let files = shipped();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = seppoc(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches(": ok\n").count(), files.len());
    assert!(out.stderr.is_empty(), "no diagnostics expected: {}", text(&out.stderr));
}

#[test]
fn check_reports_errors_with_location_and_exits_1() {
    let out = seppoc(&["check", "tests/ui/check/mean_inside_logsigmoid.obj", "objectives/sft.obj"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("[E0303]"), "{err}");
    assert!(err.contains("tests/ui/check/mean_inside_logsigmoid.obj:8:18"), "{err}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("mean_inside_logsigmoid.obj: 1 error") && stdout.contains("objectives/sft.obj: ok"),
        "{stdout}"
    );
}

#[test]
fn set_overrides_are_checked() {
    assert_eq!(seppoc(&["check", "--set", "beta=5000", "objectives/seppo.obj"]).status.code(), Some(0));
    let out = seppoc(&["check", "--set", "beta=-1", "objectives/seppo.obj"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[E0308]"));
    let out = seppoc(&["check", "--set", "gamma=1", "objectives/seppo.obj"]);
    assert!(text(&out.stderr).contains("[E0209]"));
}

#[test]
fn invalid_utf8_and_missing_files() {
    let out = seppoc(&["check", "tests/ui/syntax/invalid_utf8.obj"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[E0100]") && text(&out.stderr).contains(":3:23"));
    let out = seppoc(&["check", "no/such/file.obj"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read `no/such/file.obj`"));
}

#[test]
fn fmt_prints_canonical_form_and_check_mode_detects_drift() {
    let files = shipped();
    let mut args = vec!["fmt", "--check"];
    args.extend(files.iter().map(String::as_str));
    assert_eq!(seppoc(&args).status.code(), Some(0));

    let dir = std::env::temp_dir().join(format!("seppoc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let messy = dir.join("messy.obj");
    std::fs::write(&messy, "objective   t\nloss mean( (err(policy,winner)) )   # keep me\n").expect("write");
    let path = messy.to_string_lossy().to_string();
    assert_eq!(seppoc(&["fmt", "--check", &path]).status.code(), Some(1));
    let out = seppoc(&["fmt", &path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "objective t\nloss mean(err(policy, winner))  # keep me\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seppoc loss` computes with the bound `--set` values: DPO on given leaves, at the default beta and at
/// `--set beta=20`, against the formula `mean(softplus(beta/2 * ((e_th,w - e_ref,w) - (e_th,l - e_ref,l))))`.
#[test]
fn loss_computes_with_the_set_parameter_values() {
    let dir = cli_support::scratch("cli", "loss-params");
    let (pw, rw, pl, rl) = ([0.1001, 0.2], [0.1, 0.2001], [0.3, 0.25], [0.3002, 0.2499]);
    let inputs = serde_json::json!({ "inputs": {
        "e_policy_winner": pw, "e_ref_winner": rw, "e_policy_loser": pl, "e_ref_loser": rl } });
    let path = dir.join("inputs.json");
    std::fs::write(&path, inputs.to_string()).expect("written");
    for (sets, beta) in [(&[][..], 5000.0), (&["--set", "beta=20"][..], 20.0)] {
        let mut args = vec!["loss", "objectives/dpo.obj", "--inputs", path.to_str().expect("utf-8 path")];
        args.extend(sets);
        let out = seppoc(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).expect("JSON");
        assert_eq!(got["params"], serde_json::json!({ "beta": beta }));
        // Every leaf reaches both backends rounded to f32.
        let f32_ = |x: f64| x as f32 as f64;
        let want = (0..2)
            .map(|i| {
                let margin = -0.5 * beta * ((f32_(pw[i]) - f32_(rw[i])) - (f32_(pl[i]) - f32_(rl[i])));
                (-margin).exp().ln_1p()
            })
            .sum::<f64>()
            / 2.0;
        let (oracle, dfdx) =
            (got["oracle_f64"]["loss"].as_f64().expect("loss"), got["dfdx_f32"]["loss"].as_f64().expect("loss"));
        assert!((oracle - want).abs() < 1e-9, "beta {beta}: oracle {oracle} vs {want}");
        assert!((dfdx - want).abs() < 1e-4, "beta {beta}: dfdx {dfdx} vs {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Policy and reference leaves are rounded alike: an exact tie given in f64 (`e_policy_winner ==
/// e_ref_winner`) stays a tie, so SePPO's gate `sign(.., tie = 1)` is +1 everywhere and nothing flips.
#[test]
fn loss_rounds_policy_and_reference_leaves_alike() {
    let dir = cli_support::scratch("cli", "loss-tie");
    let inputs = serde_json::json!({ "inputs": {
        "e_policy_winner": [0.3, 0.45], "e_ref_winner": [0.3, 0.45],
        "e_policy_sample0": [0.2, 0.2], "e_ref_sample0": [0.25, 0.25] } });
    let path = dir.join("inputs.json");
    std::fs::write(&path, inputs.to_string()).expect("written");
    let out = seppoc(&["loss", "objectives/seppo.obj", "--set", "beta=4", "--inputs", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_str(&text(&out.stdout)).expect("JSON");
    assert_eq!(got["oracle_f64"]["logs"]["flip_rate"].as_f64(), Some(0.0), "{got}");
    // s = +1: margin = -2 * (0 - (e_policy_sample0 - e_ref_sample0)) = -0.1 on f32-rounded values, and the
    // loss is -logsigmoid(margin) = ln(1 + e^-margin).
    let f32_ = |x: f64| x as f32 as f64;
    let margin = 2.0 * (f32_(0.2) - f32_(0.25));
    let want = (-margin).exp().ln_1p();
    let (oracle, dfdx) =
        (got["oracle_f64"]["loss"].as_f64().expect("loss"), got["dfdx_f32"]["loss"].as_f64().expect("loss"));
    assert!((oracle - want).abs() < 1e-12 && (dfdx - want).abs() < 1e-6, "oracle {oracle} dfdx {dfdx} vs {want}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A value that is not finite at run time is an error naming the quantity, not `"loss": null` with exit 0.
#[test]
fn loss_with_a_nonfinite_value_fails_naming_it() {
    let dir = cli_support::scratch("cli", "loss-nonfinite");
    let obj = dir.join("t.obj");
    std::fs::write(&obj, "objective t\nloss mean(log(err(policy, winner) - 0.25))\n").expect("written");
    let inputs = dir.join("inputs.json");
    std::fs::write(&inputs, r#"{"inputs": {"e_policy_winner": [0.5, 0.2]}}"#).expect("written");
    let out = seppoc(&["loss", obj.to_str().expect("utf-8"), "--inputs", inputs.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("the loss is NaN (first at sample 1"), "{err}");
    assert!(!text(&out.stdout).contains("null"), "{}", text(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_prints_the_convention_every_shipped_file_with_a_beta_declares() {
    let dpo = seppoc(&["explain", "objectives/dpo.obj"]);
    assert_eq!(dpo.status.code(), Some(0), "{}", text(&dpo.stderr));
    let stdout = text(&dpo.stdout);
    assert!(
        stdout.contains("\n# convention: diffusion-dpo\nbeta is Diffusion-DPO's train.py `--beta_dpo`")
            && stdout.contains("twice its `--beta_dpo`"),
        "{stdout}"
    );
    let hinge = text(&seppoc(&["explain", "objectives/hinge.obj"]).stdout);
    assert!(hinge.contains("# convention: diffusers\n") && hinge.contains("half their `--beta_dpo`"), "{hinge}");
    // Every shipped file with a beta names a convention explain knows; the SFT files have none to name.
    for file in shipped() {
        let source = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).expect("read");
        let out = text(&seppoc(&["explain", &file]).stdout);
        if source.contains("param beta:") {
            assert!(out.contains("\n# convention: ") && !out.contains("unknown convention"), "{file}: {out}");
        } else {
            assert!(!out.contains("# convention"), "{file}: {out}");
        }
    }
}

#[test]
fn explain_names_an_unknown_convention_and_the_known_ones() {
    let dir = cli_support::scratch("cli", "convention");
    let file = dir.join("c.obj");
    std::fs::write(&file, "# a loss\n# convention: my-lab\nobjective c\nloss mean(err(policy, winner))\n")
        .expect("write");
    let out = seppoc(&["explain", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("unknown convention `my-lab` (known: diffusion-dpo, diffusers, diffusion-kto, dpo-eq14, mapo, diffusion-nft)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seppoc --version` names the CPU matrix-product kernel it selected, and says when `SEPPOC_GEMM_KERNEL` forced
/// it (the benchmark scripts print this line).
#[test]
fn version_names_the_gemm_kernel() {
    let version = |kernel: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_seppoc"));
        cmd.arg("--version").env_remove("SEPPOC_GEMM_KERNEL");
        if let Some(k) = kernel {
            cmd.env("SEPPOC_GEMM_KERNEL", k);
        }
        let out = cmd.output().expect("run seppoc");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let shown = version(None);
    let line = shown.lines().find(|l| l.starts_with("cpu gemm kernel: ")).unwrap_or_else(|| panic!("{shown}"));
    let name = line["cpu gemm kernel: ".len()..].split(' ').next().unwrap_or_default();
    assert!(["avx512", "avx2", "gemm"].contains(&name), "{line}");
    assert!(!line.contains("forced"), "{line}");
    let shown = version(Some("gemm"));
    let want = "cpu gemm kernel: gemm (the gemm crate's own kernels, forced by SEPPOC_GEMM_KERNEL=gemm)";
    assert!(shown.contains(want), "{shown}");
}
