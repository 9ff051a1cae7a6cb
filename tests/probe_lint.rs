//! The training-direction lint (W0306): every shipped objective passes the probe on the f64 oracle without a
//! warning, and each one's sign-flipped twins — the loss negated, and for pair objectives winner and loser
//! swapped — are warned about. Also: the soft-gate lint (W0305) stays silent on the shipped files.

use seppoc::diag::Code;
use seppoc::frontend::frontend;
use seppoc::source::SourceFile;
use std::path::Path;

fn shipped() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("objectives/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|x| x == "obj"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read_to_string(&p).expect("UTF-8")))
        .collect();
    out.sort();
    assert!(out.len() >= 20, "expected the shipped objectives, found {}", out.len());
    out
}

/// The warning codes of a file that must check (errors fail the test).
fn warnings(name: &str, text: &str) -> Vec<(Code, String)> {
    let file = SourceFile::new(name, text);
    match frontend(&file) {
        Ok(checked) => checked.warnings.into_iter().map(|d| (d.code, d.primary.message)).collect(),
        Err(diags) => {
            panic!("{name} does not check:\n{}", seppoc::diag::render(&diags, &file, seppoc::diag::Style::Plain))
        }
    }
}

/// `loss X` becomes `loss -(X)`.
fn negated(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("loss ") {
            Some(e) => format!("loss -({e})"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `winner` becomes `loser` and back, outside comments.
fn swapped(text: &str) -> String {
    let swap_line = |code: &str| {
        let mut out = String::new();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            out.push_str(match word.as_str() {
                "winner" => "loser",
                "loser" => "winner",
                w => w,
            });
            word.clear();
        };
        for c in code.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    };
    text.lines()
        .map(|l| match l.split_once('#') {
            Some((code, comment)) => format!("{}#{comment}", swap_line(code)),
            None => swap_line(l),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_objectives_pass_the_probe() {
    for (name, text) in shipped() {
        let found = warnings(&name, &text);
        assert!(
            !found.iter().any(|(c, _)| matches!(c, Code::W0305 | Code::W0306)),
            "{name} is flagged by a lint: {found:?}"
        );
    }
}

#[test]
fn negated_twins_are_warned() {
    for (name, text) in shipped() {
        let twin = negated(&text);
        assert_ne!(twin, text, "{name} has no `loss` line");
        let found = warnings(&name, &twin);
        assert!(found.iter().any(|(c, _)| *c == Code::W0306), "the negated {name} is not warned: {found:?}");
    }
}

#[test]
fn swapped_pair_twins_are_warned() {
    let mut n = 0;
    for (name, text) in shipped().into_iter().filter(|(_, t)| t.contains("\ndata pairs")) {
        n += 1;
        let found = warnings(&name, &swapped(&text));
        assert!(
            found.iter().any(|(c, _)| *c == Code::W0306),
            "{name} with winner and loser swapped is not warned: {found:?}"
        );
    }
    assert!(n >= 6, "expected the pair objectives, found {n}");
}

#[test]
fn the_swapped_dpo_names_both_directions() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives/dpo.obj")).unwrap();
    let found = warnings("dpo.obj", &swapped(&text));
    let (_, label) = found.iter().find(|(c, _)| *c == Code::W0306).expect("warned");
    assert!(label.starts_with("lowering the policy's error on winners raised the loss on "), "{label}");
    let p = seppoc::lint::probe::probe(
        &seppoc::ir::lower(&frontend(&SourceFile::new("t", swapped(&text))).unwrap()).bind_defaults(),
    );
    assert_eq!(p.finite, seppoc::lint::probe::PROBES);
    assert!(p.pushes_winners() && p.pulls_losers(), "{p:?}");
}

#[test]
fn an_allow_comment_silences_the_probe() {
    let text = "objective away\n# allow(W0306): unlearning: push the policy away from these images\nloss mean(-err(policy, winner))\n";
    assert_eq!(warnings("t", text), vec![]);
}

/// The probe is far from its threshold (more than half of the batches) on both sides: at most 10% of the batches
/// go the wrong way for a shipped objective (IPO, which regresses its margin to `1 / (2 beta)`, is the closest:
/// 19 of 300), at least 90% for each twin.
#[test]
fn the_probe_separates_with_a_margin() {
    let probe = |text: &str| {
        let checked = frontend(&SourceFile::new("t", text)).expect("checks");
        seppoc::lint::probe::probe(&seppoc::ir::lower(&checked).bind_defaults())
    };
    let n = seppoc::lint::probe::PROBES;
    for (name, text) in shipped() {
        let p = probe(&text);
        assert_eq!((p.finite, p.depends), (n, n), "{name}: {p:?}");
        assert!(p.winners_raise.is_some_and(|k| k * 10 <= n), "{name}: {p:?}");
        assert!(p.losers_lower.is_none_or(|k| k * 10 <= n), "{name}: {p:?}");
        let mut twins = vec![negated(&text)];
        if text.contains("\ndata pairs") {
            twins.push(swapped(&text));
        }
        for twin in twins {
            let p = probe(&twin);
            assert!(p.winners_raise.is_some_and(|k| k * 10 >= 9 * n), "twin of {name}: {p:?}");
            assert!(p.losers_lower.is_none_or(|k| k * 10 >= 9 * n), "twin of {name}: {p:?}");
        }
    }
}
