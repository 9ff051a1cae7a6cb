//! The judge: clean renders score 1, wrong renders and losers score lower, noise scores low, scores stay in [0, 1].

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::data::render::Degradation;
use seppoc::data::{Image, Prompt, SyntheticWorld, World, WorldConfig};
use seppoc::eval::{grid_image, judge, save_grid, GridConfig, Report};

fn world() -> World {
    World::new(WorldConfig::default_16()).expect("default config is valid")
}

/// Index into the world's full prompt universe.
fn any_prompt() -> impl Strategy<Value = usize> {
    0..world().all_prompts().len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn clean_renders_score_one(idx in any_prompt(), seed in any::<u64>()) {
        let w = world();
        let p = &w.all_prompts()[idx];
        let img = w.render(p, &mut ChaCha8Rng::seed_from_u64(seed));
        let j = judge(&img, p);
        prop_assert!(j.score >= 0.99, "{p}: {j:?}");
    }

    #[test]
    fn renders_of_another_prompt_score_lower(a in any_prompt(), b in any_prompt(), seed in any::<u64>()) {
        let w = world();
        let all = w.all_prompts();
        let (pa, pb) = (&all[a], &all[b]);
        prop_assume!(!pa.same_scene(pb));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let img = w.render(pb, &mut rng);
        let right = judge(&img, pb).score;
        let wrong = judge(&img, pa).score;
        prop_assert!(wrong < right, "{pa} judged on a render of {pb}: {wrong} vs {right}");
    }

    #[test]
    fn degraded_renders_score_lower(idx in any_prompt(), seed in any::<u64>()) {
        let w = world();
        let p = &w.all_prompts()[idx];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let img = w.render(p, &mut rng);
        let bad = Degradation::sample(&mut rng).apply(&img, &mut rng);
        prop_assert!(judge(&bad, p).score < judge(&img, p).score);
    }

    #[test]
    fn score_is_always_in_unit_interval(idx in any_prompt(), seed in any::<u64>(), scale in 0.0f32..3.0) {
        let w = world();
        let p = &w.all_prompts()[idx];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut img = w.render(p, &mut rng);
        for v in &mut img.data {
            *v = *v * scale + rng.gen_range(-1.0..1.0) * scale;
        }
        let j = judge(&img, p);
        for x in [j.score, j.quality, j.faithfulness] {
            prop_assert!((0.0..=1.0).contains(&x));
        }
    }
}

#[test]
fn losers_score_lower_than_winners() {
    let w = world();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let set = w.preference_set(300, &mut rng);
    let (mut win, mut lose, mut n_lower) = (0.0, 0.0, 0);
    for item in &set.items {
        let p = Prompt::parse(&item.prompt).expect("world prompts parse");
        let sw = judge(&item.winner, &p).score;
        let sl = item.loser.as_ref().map_or(1.0, |l| judge(l, &p).score);
        win += sw;
        lose += sl;
        n_lower += (sl < sw) as usize;
    }
    let n = set.len() as f32;
    assert!(win / n > 0.99, "mean winner score {}", win / n);
    assert!(lose / n < 0.8, "mean loser score {}", lose / n);
    assert!(n_lower as f32 > 0.95 * n, "{n_lower} of {n} losers lower");
}

#[test]
fn pure_noise_scores_low() {
    let w = world();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut total = 0.0;
    for _ in 0..100 {
        let p = w.sample_train_prompt(&mut rng);
        let data = (0..3 * 16 * 16).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let img = Image { channels: 3, height: 16, width: 16, data };
        let j = judge(&img, &p);
        assert!(j.score < 0.5, "{p}: {j:?}");
        total += j.score;
    }
    assert!(total / 100.0 < 0.3);
}

#[test]
fn blurred_renders_keep_their_attributes() {
    let w = world();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (mut ok, n) = (0, 300);
    for _ in 0..n {
        let p = w.sample_train_prompt(&mut rng);
        let img = Degradation::Blur(1).apply(&w.render(&p, &mut rng), &mut rng);
        ok += (judge(&img, &p).faithfulness >= 1.0) as usize;
    }
    assert!(ok as f32 > 0.9 * n as f32, "{ok} of {n}");
}

#[test]
fn odd_images_do_not_panic() {
    let p = Prompt::parse("a red circle on the left and a blue square on the right").expect("valid");
    let empty = Image { channels: 3, height: 0, width: 0, data: vec![] };
    assert_eq!(judge(&empty, &p).score, 0.0);
    let short = Image { channels: 1, height: 16, width: 16, data: vec![0.5; 10] };
    let nan = Image { channels: 3, height: 16, width: 16, data: vec![f32::NAN; 768] };
    for img in [short, nan] {
        let s = judge(&img, &p).score;
        assert!((0.0..=1.0).contains(&s));
    }
    assert_eq!(judge(&empty, &Prompt { objects: vec![] }).faithfulness, 1.0);
}

#[test]
fn report_aggregates_judgements() {
    let w = world();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let right = Prompt::parse("a red circle on the left").expect("valid");
    let wrong = Prompt::parse("a red square on the left").expect("valid");
    let img = w.render(&right, &mut rng);
    let r = Report::from_judgements(&[judge(&img, &right), judge(&img, &wrong)]);
    assert_eq!((r.n_images, r.n_objects), (2, 2));
    assert_eq!((r.colour_acc, r.shape_acc, r.position_acc, r.all_correct), (1.0, 0.5, 1.0, 0.5));
    let table = r.to_string();
    assert!(table.contains("shape accuracy") && table.contains("0.5000"), "{table}");
    assert!(serde_json::to_string(&r).expect("serialisable").contains("\"mean_score\""));
    assert_eq!(Report::from_judgements(&[]).mean_score, 0.0);
}

#[test]
fn grids_have_the_right_size_and_save() {
    let w = world();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let imgs: Vec<Image> = (0..5).map(|_| w.web_example(&mut rng).0).collect();
    let cfg = GridConfig { cols: 3, spacing: 2, scale: 2, background: [0, 0, 0] };
    let g = grid_image(&imgs, &cfg);
    assert_eq!((g.width(), g.height()), (3 * 32 + 4 * 2, 2 * 32 + 3 * 2));
    let path = std::env::temp_dir().join(format!("seppoc-grid-{}.png", std::process::id()));
    save_grid(&imgs, 2, &path).expect("writable temp dir");
    let back = image::open(&path).expect("a png");
    assert_eq!((back.width(), back.height()), (2 * 16 + 3, 3 * 16 + 4));
    let _ = std::fs::remove_file(&path);
}
