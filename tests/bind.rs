//! Binding parameter values to an objective by name: every way a value list can be wrong is an error that names
//! the parameter, and the bound values are what the f64 oracle and the compiled dfdx graph compute with.

use seppoc::compile::conformance;
use seppoc::frontend::{frontend_with, Objective as Parsed};
use seppoc::ir::{self, evaluate, BindError, LeafValues, Objective};
use seppoc::source::SourceFile;

/// `beta * steps * mean(err(policy, winner))`: a real and an int parameter, both with domains.
const TEXT: &str = "objective t
param beta: real = 2.0 in (0, inf)
param steps: int = 2 in [1, 100]
loss beta * steps * mean(err(policy, winner))
";

/// A case: what is wrong, the values given, the error expected.
type Case = (&'static str, Vec<(&'static str, f64)>, BindError);

fn lowered(text: &str) -> Objective {
    let parsed = Parsed::parse("t.obj", text).unwrap_or_else(|(_, d)| panic!("checks: {d:?}"));
    ir::lower(&parsed.checked)
}

fn unknown(name: &str, declared: &[&str]) -> BindError {
    BindError::Unknown { name: name.into(), declared: declared.iter().map(|d| d.to_string()).collect() }
}

#[test]
fn bad_value_lists_are_errors_naming_the_parameter() {
    let obj = lowered(TEXT);
    let domain = |name: &str, value: f64, domain: &str| BindError::OutOfDomain {
        name: name.into(),
        value,
        domain: domain.into(),
    };
    let cases: Vec<Case> = vec![
        ("wrong name", vec![("beta", 3.0), ("step", 4.0)], unknown("step", &["beta", "steps"])),
        ("missing", vec![("beta", 3.0)], BindError::Missing { name: "steps".into() }),
        ("none given", vec![], BindError::Missing { name: "beta".into() }),
        ("extra", vec![("beta", 3.0), ("steps", 4.0), ("gamma", 1.0)], unknown("gamma", &["beta", "steps"])),
        ("twice", vec![("beta", 3.0), ("steps", 4.0), ("beta", 5.0)], BindError::Duplicate { name: "beta".into() }),
        (
            "nan",
            vec![("beta", f64::NAN), ("steps", 4.0)],
            BindError::NonFinite { name: "beta".into(), value: f64::NAN },
        ),
        (
            "infinite",
            vec![("beta", 3.0), ("steps", f64::INFINITY)],
            BindError::NonFinite { name: "steps".into(), value: f64::INFINITY },
        ),
        (
            "real for int",
            vec![("beta", 3.0), ("steps", 2.5)],
            BindError::NotInteger { name: "steps".into(), value: 2.5 },
        ),
        ("below domain", vec![("beta", 0.0), ("steps", 4.0)], domain("beta", 0.0, "(0, inf)")),
        ("above domain", vec![("beta", 3.0), ("steps", 101.0)], domain("steps", 101.0, "[1, 100]")),
    ];
    for (what, values, want) in cases {
        let got = obj.bind(&values).expect_err(what);
        // NaN != NaN: compare NonFinite by its rendering instead.
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{what}");
        let name = match &got {
            BindError::Unknown { name, .. }
            | BindError::Duplicate { name }
            | BindError::Missing { name }
            | BindError::NonFinite { name, .. }
            | BindError::NotInteger { name, .. }
            | BindError::OutOfDomain { name, .. }
            | BindError::SampleSetting { name, .. } => name.clone(),
        };
        assert!(got.to_string().contains(&format!("`{name}`")), "{what}: {got}");
    }
    let none = lowered("objective s\nloss mean(err(policy, winner))\n");
    assert!(none.bind::<&str>(&[]).is_ok());
    assert_eq!(
        none.bind(&[("beta", 1.0)]).expect_err("no params").to_string(),
        "no parameter `beta` (declared parameters: none)"
    );
}

#[test]
fn values_bind_by_name_in_any_order() {
    let obj = lowered(TEXT);
    for values in [vec![("beta", 3.0), ("steps", 4.0)], vec![("steps", 4.0), ("beta", 3.0)]] {
        let bound = obj.bind(&values).expect("valid");
        assert_eq!(bound.named_values().collect::<Vec<_>>(), vec![("beta", 3.0), ("steps", 4.0)]);
        assert_eq!((bound.get("beta"), bound.get("steps"), bound.get("gamma")), (Some(3.0), Some(4.0), None));
    }
    let defaults = obj.bind_defaults();
    assert_eq!(defaults.named_values().collect::<Vec<_>>(), vec![("beta", 2.0), ("steps", 2.0)]);
}

/// The oracle and the compiled graph compute with the bound values: loss = beta * steps * mean(e), and
/// d loss / d e_i = beta * steps / batch.
#[test]
fn bound_values_reach_the_oracle_and_the_compiled_loss() {
    let obj = lowered(TEXT);
    let leaves = LeafValues::leaves(vec![vec![0.1, 0.3]]);
    for (beta, steps) in [(2.0, 2.0), (3.0, 4.0), (0.5, 100.0)] {
        let bound = obj.bind(&[("beta", beta), ("steps", steps)]).expect("valid");
        let want = beta * steps * 0.2;
        assert!((evaluate(&bound, &leaves).loss - want).abs() < 1e-12, "beta {beta} steps {steps}");
        let (oracle, dfdx) = conformance::both(&bound, &leaves);
        assert!((oracle.loss - want).abs() < 1e-6 && (dfdx.loss - want).abs() < 1e-4 * want, "{}", dfdx.loss);
        for g in dfdx.grads[0].as_ref().expect("policy leaf") {
            assert!((g - beta * steps / 2.0).abs() < 1e-4 * beta * steps, "{g}");
        }
    }
}

/// What `--set` yields for every shipped objective binds, and the bound values are the `--set` ones.
#[test]
fn checked_overrides_bind_for_every_shipped_objective() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/objectives");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("objectives/").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let file = SourceFile::new(path.display().to_string(), text);
        let sets: Vec<(String, String)> =
            if text_has_beta(&file.text) { vec![("beta".into(), "123.5".into())] } else { Vec::new() };
        let (checked, values) = frontend_with(&file, &sets).expect("checks");
        let bound = ir::lower(&checked).bind(&values).expect("checked values bind");
        let named: Vec<(String, f64)> = bound.named_values().map(|(n, v)| (n.to_string(), v)).collect();
        assert_eq!(named, values, "{}", path.display());
        if !sets.is_empty() {
            assert_eq!(bound.get("beta"), Some(123.5), "{}", path.display());
        }
    }
}

fn text_has_beta(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("param beta:"))
}

/// `sample(...)` settings given by parameters take the bound values (what the trainer, `plan` and `emit` read),
/// and a value the setting does not accept is an error naming the parameter, even inside the declared domain.
#[test]
fn sample_settings_from_parameters_take_the_bound_values() {
    let obj = lowered(
        "objective t
param n: int = 10 in [0, 5000]
param guidance: real = 3.0 in [0, inf)
param eta: real = 0.5 in [0, 1]
reference ref = initial
let x = sample(ref, prompt, steps = n, cfg = guidance, eta = eta)
loss mean(err(policy, x) - err(ref, x))
",
    );
    let defaults = obj.bind_defaults();
    let s = &defaults.samples[0];
    assert_eq!((s.steps, s.cfg, s.eta), (10, 3.0, 0.5));
    let bound = obj.bind(&[("n", 40.0), ("guidance", 7.5), ("eta", 0.0)]).expect("valid");
    let s = &bound.samples[0];
    assert_eq!((s.steps, s.cfg, s.eta), (40, 7.5, 0.0));
    assert_eq!(bound.plan().nfe_sampling, defaults.plan().nfe_sampling * 4, "sampling cost follows steps");
    for (name, value) in [("n", 0.0), ("n", 2000.0), ("guidance", 101.0)] {
        let mut values = vec![("n", 40.0), ("guidance", 7.5), ("eta", 0.0)];
        values.iter_mut().filter(|(n, _)| *n == name).for_each(|v| v.1 = value);
        let err = obj.bind(&values).expect_err("outside the setting's range");
        assert!(matches!(&err, BindError::SampleSetting { name: n, .. } if n == name), "{err:?}");
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
}
