//! The world abstraction and the engine built on it: every registered world round-trips its name, config and
//! prompts, judges its own clean renders as faithful, and opens from the shipped checkpoints; evaluation
//! settings pick prompts spread over the whole list.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::device::cpu;
use seppoc::engine::{open, spread, EvalSettings};
use seppoc::model::{save_checkpoint, CheckpointMeta, Dit, DitConfig, ScheduleSpec};
use seppoc::world::{Split, Testbed, WorldKind, WorldOptions};
use std::path::Path;

fn worlds() -> Vec<Box<dyn Testbed>> {
    WorldKind::ALL.iter().map(|k| k.build(&WorldOptions::default()).expect("default world")).collect()
}

#[test]
fn names_and_configs_round_trip() {
    for kind in WorldKind::ALL {
        assert_eq!(WorldKind::from_name(kind.name()), Some(kind));
        let w = kind.build(&WorldOptions::default()).expect("default world");
        assert_eq!(w.kind(), kind);
        let again = kind.from_config(&w.config_json()).expect("stored config reads back");
        assert_eq!(again.config_json(), w.config_json());
        assert_eq!(again.prompts(Split::Heldout), w.prompts(Split::Heldout));
    }
    assert_eq!(WorldKind::from_name("audio"), None);
    let err = WorldKind::Image.from_config("{\"image_size\": 16}").err().expect("incomplete config");
    assert!(format!("{err:#}").contains("world_config"), "{err:#}");
}

#[test]
fn options_change_the_world_and_bad_options_are_errors() {
    let opts = WorldOptions { image_size: Some(24), frames: Some(3), web_degrade: Some(0.0) };
    let v = WorldKind::Video.build(&opts).expect("valid video options");
    assert_eq!((v.image_size(), v.frames()), (24, 3));
    let err = WorldKind::Image.build(&opts).err().expect("frames on an image world");
    assert!(err.to_string().contains("--frames needs --world video"), "{err}");
    let bad = WorldOptions { frames: Some(1), ..WorldOptions::default() };
    let err = WorldKind::Video.build(&bad).err().expect("one frame is not a clip");
    assert!(err.to_string().contains("frames must be in 2..=16"), "{err}");
}

#[test]
fn prompt_texts_are_canonical_and_user_prompts_parse() {
    for w in worlds() {
        for split in [Split::Heldout, Split::Train] {
            let prompts = w.prompts(split);
            assert!(!prompts.is_empty(), "{} {split:?}", w.kind().name());
            for p in &prompts {
                assert_eq!(&w.parse_prompt(p).expect("own prompt parses"), p);
            }
        }
        let err = w.parse_prompt("a plaid hexagon").expect_err("unknown words");
        assert!(err.to_string().contains("prompt `a plaid hexagon`") && err.to_string().contains("help"), "{err}");
    }
    let image = WorldKind::Image.build(&WorldOptions::default()).expect("image world");
    assert_eq!(image.parse_prompt("  A Red Circle On The Left.").expect("loose spelling"), "a red circle on the left");
}

#[test]
fn the_judge_finds_clean_winners_faithful_and_checks_lengths() {
    for w in worlds() {
        let set = w.preference_set(24, &mut ChaCha8Rng::seed_from_u64(5));
        let prompts: Vec<String> = set.items.iter().map(|i| i.prompt.clone()).collect();
        let winners: Vec<_> = set.items.iter().map(|i| i.winner.clone()).collect();
        let judged = w.judge(&prompts, &winners).expect("judged");
        assert_eq!(judged.verdicts.len(), prompts.len());
        let faithful = judged.verdicts.iter().filter(|v| v.row["faithfulness"] == 1.0).count();
        assert!(faithful * 10 >= prompts.len() * 9, "{}: {faithful} of {}", w.kind().name(), prompts.len());
        let mean = judged.verdicts.iter().map(|v| v.score).sum::<f32>() / prompts.len() as f32;
        assert!((judged.summary.mean_score - mean).abs() < 1e-6);
        assert_eq!(judged.summary.metrics.last().map(|m| m.key), Some("score"));
        assert_eq!(judged.summary.json["score"].as_f64().map(|s| s as f32), Some(judged.summary.mean_score));
        assert!(w.judge(&prompts[..2], &winners[..3]).is_err(), "one sample per prompt");
    }
}

#[test]
fn eval_settings_spread_prompts_over_the_whole_list() {
    let list: Vec<usize> = (0..10).collect();
    assert_eq!(spread(&list, Some(4)), vec![0, 2, 5, 7]);
    assert_eq!(spread(&list, Some(20)), list);
    assert_eq!(spread(&list, None), list);
    let w = WorldKind::Image.build(&WorldOptions::default()).expect("image world");
    let all = w.prompts(Split::Heldout);
    let s = EvalSettings { samples: 2, ..EvalSettings::standard_on(8) };
    let picked = s.prompts(w.as_ref());
    assert_eq!(picked.len(), 16);
    assert_eq!(picked[..8], picked[8..], "sample k of every prompt after sample k-1 of all");
    assert_eq!(picked[0], all[0]);
    assert_eq!(picked[7], all[7 * all.len() / 8], "the last pick is near the end of the list, not the start");
    assert_eq!(EvalSettings::standard().sampler.describe(), "DDIM 20 steps, cfg 5");
}

#[test]
fn shipped_checkpoints_open_with_their_world_and_schedule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (dir, kind) in [("assets/base", WorldKind::Image), ("assets/base_v1", WorldKind::Image)]
        .into_iter()
        .chain([("assets/base_video", WorldKind::Video), ("assets/base_video_flow", WorldKind::Video)])
    {
        let path = root.join(dir).join("model.safetensors");
        let o = open(&path, None).expect("shipped checkpoint opens");
        assert_eq!(o.world.kind(), kind, "{dir}");
        assert_eq!(o.schedule, o.meta.schedule.build());
        let other = if kind == WorldKind::Image { WorldKind::Video } else { WorldKind::Image };
        let err = open(&path, Some(other)).err().expect("wrong --world");
        assert!(err.to_string().contains(&format!("holds a {} model", kind.name())), "{err}");
    }
}

#[test]
fn a_checkpoint_of_an_unknown_or_mismatched_world_is_an_error_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("seppoc-worlds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let image = WorldKind::Image.build(&WorldOptions::default()).expect("image world");
    let model = Dit::new(&DitConfig::tiny(16, image.vocab().len(), 8), &cpu(), 1).expect("tiny model");
    let cases = [
        ("audio", image.config_json(), "unknown world `audio`"),
        ("image", "{}".to_string(), "world_config"),
        ("video", WorldKind::Video.build(&WorldOptions::default()).expect("video").config_json(), "world clips are"),
    ];
    for (i, (world, config, want)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("case{i}.safetensors"));
        save_checkpoint(&path, &model, &CheckpointMeta::new(world, config, ScheduleSpec::default_linear()))
            .expect("written");
        let err = open(&path, None).err().expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains(&path.display().to_string()) && text.contains(want), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_delta_interval_averages_samples_per_prompt_and_brackets_the_mean() {
    use seppoc::engine::{Comparison, Evaluation};
    use seppoc::world::{Judged, Summary, Verdict};
    let eval = |scores: &[f32]| Evaluation {
        prompts: vec![String::new(); scores.len()],
        samples: Vec::new(),
        judged: Judged {
            verdicts: scores
                .iter()
                .map(|&score| Verdict { score, row: serde_json::Value::Null, line: String::new() })
                .collect(),
            summary: Summary {
                metrics: Vec::new(),
                mean_score: 0.0,
                table: String::new(),
                json: serde_json::Value::Null,
            },
        },
    };
    // Two samples of three prompts: sample k of every prompt after sample k − 1 of all.
    let settings = EvalSettings { samples: 2, ..EvalSettings::standard_on(3) };
    let cmp = Comparison {
        base: eval(&[0.1, 0.2, 0.3, 0.1, 0.2, 0.3]),
        trained: eval(&[0.2, 0.2, 0.3, 0.2, 0.4, 0.3]),
        settings,
    };
    let (mean, lo, hi) = cmp.delta_interval(2000, 0);
    // Per prompt: +0.1, +0.1, 0 → mean 0.2 / 3.
    assert!((mean - 0.2 / 3.0).abs() < 1e-6, "{mean}");
    assert!(lo <= mean && mean <= hi && lo >= 0.0 - 1e-9 && hi <= 0.1 + 1e-6, "[{lo}, {hi}]");
    let wins = cmp.wins();
    assert_eq!((wins.better, wins.equal, wins.worse), (3, 3, 0));
    assert_eq!(cmp.win_rate(), 4.5 / 6.0, "a tie counts ½");
    assert_eq!(cmp.delta_interval(2000, 0), (mean, lo, hi), "seeded");
}
