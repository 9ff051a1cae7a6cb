//! `seppoc search`'s language half: proposals are well typed and round-trip through the printer (property
//! test), the oracle rejects degenerate candidates, and duplicates are found by canonical form and by gradient
//! fingerprint.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::check::{Checked, DataKind};
use seppoc::ir::lower;
use seppoc::search::propose::{self, OPERATORS};
use seppoc::search::screen::{screen, screen_for, Rejection};
use seppoc::source::SourceFile;
use seppoc::syntax;

fn shipped(name: &str) -> Checked {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("shipped objective");
    checked(&text)
}

fn checked(text: &str) -> Checked {
    seppoc::frontend::frontend(&SourceFile::new("t.obj", text)).unwrap_or_else(|d| panic!("{text}\n{d:?}"))
}

const WINNERS: [&str; 6] = ["seppo", "seppo_nogate", "spin", "sspo", "sft", "sft_minsnr"];
const PAIRS: [&str; 5] = ["dpo", "ipo", "hinge", "robust", "mapo"];

/// A child that `finish` accepts parses without error, checks without error, and prints back to itself.
fn assert_clean(text: &str) {
    let source = SourceFile::new("child.obj", text);
    let (ast, errors) = syntax::parse(&source);
    assert!(errors.is_empty(), "{text}\n{errors:?}");
    let c = seppoc::frontend::frontend(&source).unwrap_or_else(|d| panic!("{text}\n{d:?}"));
    assert!(c.warnings.iter().all(|d| d.severity != seppoc::diag::Severity::Error));
    assert_eq!(syntax::format(&ast), text, "fmt is not the identity on a printed child");
    let (mut again, _) = syntax::parse(&SourceFile::new("again.obj", &syntax::format(&ast)));
    let mut ast = ast;
    ast.erase_spans();
    again.erase_spans();
    assert_eq!(again, ast);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every operator on every parent: a child that checks is clean and round-trips; the tree it came from
    /// is the tree the printed text parses to.
    #[test]
    fn proposals_are_well_typed_and_round_trip(seed in any::<u64>(), pick in 0usize..11, other in 0usize..11, op in 0usize..OPERATORS.len()) {
        let names: Vec<&str> = WINNERS.iter().chain(PAIRS.iter()).copied().collect();
        let parent = shipped(names[pick]);
        let donor = shipped(names[other]);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if let Some(p) = propose::apply(OPERATORS[op].0, &parent, Some(&donor), &mut rng) {
            let mut expected = p.file.clone();
            if let Ok((text, c)) = propose::finish(p.file, "child", &[]) {
                assert_clean(&text);
                prop_assert_eq!(c.name.as_str(), "child");
                let (mut parsed, _) = syntax::parse(&SourceFile::new("c.obj", &text));
                for st in &mut expected.stmts {
                    if let syntax::ast::StmtKind::Objective(id) = &mut st.kind {
                        id.name = "child".into();
                    }
                }
                parsed.erase_spans();
                expected.erase_spans();
                prop_assert_eq!(parsed, expected);
            }
        }
    }

    /// Random trees of each data kind that check are clean too.
    #[test]
    fn random_trees_round_trip(seed in any::<u64>(), pairs in any::<bool>()) {
        let kind = if pairs { DataKind::Pairs } else { DataKind::Winners };
        let file = propose::random_tree(kind, &mut ChaCha8Rng::seed_from_u64(seed));
        if let Ok((text, c)) = propose::finish(file, "r", &[]) {
            assert_clean(&text);
            prop_assert_eq!(c.data, kind);
        }
    }
}

/// The operators are not degenerate: most proposals on the shipped objectives check.
#[test]
fn most_proposals_check() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut made, mut ok) = (0, 0);
    let mut per_op = std::collections::BTreeMap::new();
    for (i, name) in WINNERS.iter().chain(PAIRS.iter()).enumerate().cycle().take(400) {
        let parent = shipped(name);
        let donor = shipped(WINNERS[i % WINNERS.len()]);
        let Some(p) = propose::propose(&parent, Some(&donor), &mut rng) else { continue };
        made += 1;
        let op = p.mutation.split(':').next().unwrap_or_default().to_string();
        let passed = propose::finish(p.file, "child", &[]).is_ok();
        ok += usize::from(passed);
        let e = per_op.entry(op).or_insert((0, 0));
        e.0 += 1;
        e.1 += usize::from(passed);
    }
    assert!(made > 300, "{made} proposals of 400 draws");
    assert!(ok * 10 >= made * 6, "only {ok} of {made} proposals checked: {per_op:?}");
    for op in ["constant", "reference", "sampler", "timestep", "progress", "gate+"] {
        let (n, k) = per_op.get(op).copied().unwrap_or_default();
        assert!(n > 0 && k > 0, "operator {op}: {k} of {n} checked");
    }
}

fn screened(text: &str) -> Result<seppoc::search::screen::Fingerprint, Rejection> {
    screen(&lower(&checked(text)).bind_defaults())
}

const PAIRS_HEAD: &str =
    "objective t\ndata pairs\nnoise shared\nparam beta: real = 5000.0 in (0, inf)\nreference ref = initial\n";

#[test]
fn the_shipped_objectives_pass_the_screen() {
    for name in WINNERS.iter().chain(PAIRS.iter()) {
        let c = shipped(name);
        assert!(screen(&lower(&c).bind_defaults()).is_ok(), "{name}");
    }
}

#[test]
fn non_finite_candidates_are_rejected() {
    // log of an error difference: NaN wherever the policy fits better than the reference.
    let text = format!("{PAIRS_HEAD}loss mean(log(err(policy, winner) - err(ref, winner)))\n");
    assert!(matches!(screened(&text), Err(Rejection::NonFinite(_))), "{:?}", screened(&text));
    // exp of a huge margin overflows.
    let text = format!("{PAIRS_HEAD}loss mean(exp(beta * beta * err(policy, winner)))\n");
    assert!(matches!(screened(&text), Err(Rejection::NonFinite(_))));
}

#[test]
fn candidates_independent_of_the_policy_are_rejected() {
    let text = format!("{PAIRS_HEAD}loss mean(err(policy, winner) - err(policy, winner) + err(ref, loser))\n");
    assert_eq!(screened(&text).err(), Some(Rejection::Independent));
}

#[test]
fn candidates_that_never_reward_fitting_the_winner_are_rejected() {
    // Backwards DPO: the margin's sign flipped.
    let text = format!(
        "{PAIRS_HEAD}let m = 0.5 * beta * (err(policy, winner) - err(ref, winner) - (err(policy, loser) - err(ref, loser)))\nloss mean(-logsigmoid(m))\n"
    );
    assert_eq!(screened(&text).err(), Some(Rejection::WrongSign));
    // Pushing the winner's error up.
    assert_eq!(screened(&format!("{PAIRS_HEAD}loss mean(-err(policy, winner))\n")).err(), Some(Rejection::WrongSign));
    // Pulling only the loser in does not lower the winner's error either.
    assert_eq!(screened(&format!("{PAIRS_HEAD}loss mean(err(policy, loser))\n")).err(), Some(Rejection::WrongSign));
}

#[test]
fn duplicates_by_canonical_form() {
    let a = shipped("dpo");
    let renamed = syntax::format(&a.file)
        .replace("objective dpo", "objective other")
        .replace("# Diffusion-DPO", "# changed comment");
    let b = checked(&renamed);
    assert_eq!(propose::canonical_hash(&a.file), propose::canonical_hash(&b.file));
    let changed = checked(&syntax::format(&a.file).replace("5000.0", "2500.0"));
    assert_ne!(propose::canonical_hash(&a.file), propose::canonical_hash(&changed.file));
}

#[test]
fn pool_settings_no_training_reads_are_not_a_new_candidate() {
    let with_pool = |name: &str, pool: &str, horizon: Option<usize>| {
        let text = syntax::format(&shipped(name).file).replace("pool every = 30, keep = 7", pool);
        assert!(text.contains(pool), "{name} has the pool line");
        screen_for(&lower(&checked(&text)).bind_defaults(), horizon).expect("passes")
    };
    // `latest` reads the newest checkpoint: `keep` never matters, `every` does.
    let spin = with_pool("spin", "pool every = 30, keep = 7", None);
    assert!(spin.same(&with_pool("spin", "pool every = 30, keep = 14", None)));
    assert!(!spin.same(&with_pool("spin", "pool every = 60, keep = 7", None)));
    // `uniform` draws from every checkpoint held: `keep` matters once a training saves more than it holds.
    let nogate = |keep: u64, horizon| with_pool("seppo_nogate", &format!("pool every = 30, keep = {keep}"), horizon);
    assert!(!nogate(7, None).same(&nogate(28, None)));
    // 120 updates save 4 checkpoints: a pool of 7 and one of 28 both keep them all.
    assert!(nogate(7, Some(120)).same(&nogate(28, Some(120))));
    // 400 updates save 13: a pool of 7 drops 6 of them, a pool of 28 none.
    assert!(!nogate(7, Some(400)).same(&nogate(28, Some(400))));
    assert!(!nogate(2, Some(120)).same(&nogate(7, Some(120))));
}

#[test]
fn duplicates_by_gradient_fingerprint() {
    let dpo = screened(&syntax::format(&shipped("dpo").file)).expect("dpo passes");
    // The same loss written differently: bindings renamed and reordered, softplus(-x) for -logsigmoid(x), the
    // 0.5 folded into the parameter, the mean of a sum split.
    let rewritten =
        "objective other\ndata pairs\nnoise shared\nparam b: real = 2500.0 in (0, inf)\nreference r = initial\n\
        let dl = err(policy, loser) - err(r, loser)\nlet dw = err(policy, winner) - err(r, winner)\n\
        loss mean(softplus(b * dw - b * dl))\n";
    let again = screened(rewritten).expect("passes");
    assert!(dpo.same(&again), "equivalent losses got different fingerprints");
    // A different beta, a different reference strategy or an extra term is another candidate.
    let other_beta = screened(&syntax::format(&shipped("dpo").file).replace("5000.0", "4000.0")).expect("passes");
    assert!(!dpo.same(&other_beta));
    let latest = rewritten.replace("reference r = initial", "pool every = 30, keep = 7\nreference r = latest");
    assert!(!dpo.same(&screened(&latest).expect("passes")));
    let extra = rewritten.replace("loss mean(", "loss mean(0.001 * err(policy, winner) + ");
    assert!(!dpo.same(&screened(&extra).expect("passes")));
    // Shipped files: dpo_elbo at its defaults is dpo's loss; dpo_label trains on ties too, so it is not dpo.
    let shipped_fp = |n: &str| screened(&syntax::format(&shipped(n).file)).expect("passes");
    assert!(dpo.same(&shipped_fp("dpo_elbo")));
    assert!(!dpo.same(&shipped_fp("dpo_label")));
    // A leaf whose gradient is zero everywhere does not make a candidate new.
    let dead = rewritten.replace("loss mean(", "loss mean(0 * err(policy, winner) + ");
    assert!(dpo.same(&screened(&dead).expect("passes")));
}
