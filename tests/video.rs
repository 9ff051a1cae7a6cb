//! The video world and the video judge: determinism, the held-out split, prompt text, clip layout, web noise,
//! and the judge's verdicts (clean clips score 1; wrong motion, colour or shape and degraded clips score lower).

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::data::video::{join_frames, split_frames, ClipDegradation, Motion, VideoPrompt, VideoWorld};
use seppoc::data::{Colour, Shape, SyntheticWorld, VideoWorldConfig, Vocab, WorldConfigError};
use seppoc::eval::{judge_video, VideoReport};

fn world() -> VideoWorld {
    VideoWorld::new(VideoWorldConfig::default_16()).expect("default config is valid")
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn same_seed_gives_identical_data() {
    let (w1, w2) = (world(), world());
    assert_eq!((&w1.train, &w1.heldout), (&w2.train, &w2.heldout));
    let (mut r1, mut r2) = (rng(7), rng(7));
    for _ in 0..10 {
        assert_eq!(w1.web_example(&mut r1), w2.web_example(&mut r2));
    }
    assert_eq!(w1.preference_set(5, &mut r1), w2.preference_set(5, &mut r2));
}

#[test]
fn split_holds_out_combinations_and_keeps_every_value_in_training() {
    let w = world();
    assert_eq!(w.train.len() + w.heldout.len(), 4 * 3 * 6);
    assert_eq!(w.heldout_combos.len(), 3);
    assert!(w.train.iter().all(|p| !w.has_heldout_combo(p)));
    for combo in &w.heldout_combos {
        assert!(w.heldout.iter().any(|p| combo.matches(p)), "{combo:?} has no held-out prompt");
    }
    assert!(Colour::ALL.iter().all(|c| w.train.iter().any(|p| p.colour == *c)));
    assert!(Shape::ALL.iter().all(|s| w.train.iter().any(|p| p.shape == *s)));
    assert!(Motion::ALL.iter().all(|m| w.train.iter().any(|p| p.motion == Some(*m))));
}

#[test]
fn prompt_text_round_trips_and_bad_text_is_an_error() {
    for p in world().all_prompts() {
        assert_eq!(VideoPrompt::parse(&p.text()), Ok(p));
        let bare = VideoPrompt { motion: None, ..p };
        assert_eq!(VideoPrompt::parse(&bare.text()), Ok(bare));
    }
    assert_eq!(VideoPrompt::parse("A Red circle moving right.").map(|p| p.motion), Ok(Some(Motion::Right)));
    for bad in ["", "a red circle moving", "a red circle moving sideways", "a red circle growing fast", "a red blob"] {
        let err = VideoPrompt::parse(bad).expect_err(bad);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn video_vocabulary_extends_the_image_vocabulary() {
    let (image, video) = (Vocab::new(), Vocab::video());
    for id in 0..image.len() {
        assert_eq!(image.word(id), video.word(id));
    }
    for p in world().all_prompts() {
        assert!(!video.encode(&p.text()).contains(&Vocab::UNK), "{p}");
    }
}

#[test]
fn clips_have_the_configured_layout_and_range() {
    let mut cfg = VideoWorldConfig::default_16();
    cfg.frames = 6;
    let w = VideoWorld::new(cfg).expect("valid config");
    let mut r = rng(4);
    for _ in 0..20 {
        let (clip, _) = w.web_example(&mut r);
        assert_eq!((clip.channels, clip.height, clip.width), (18, 16, 16));
        assert!(clip.data.iter().all(|v| (-1.0..=1.0).contains(v)));
        let frames = split_frames(&clip).expect("a clip splits into frames");
        assert_eq!(frames.len(), 6);
        assert_eq!(join_frames(&frames), clip);
    }
    let bad = |f: fn(&mut VideoWorldConfig)| {
        let mut c = VideoWorldConfig::default_16();
        f(&mut c);
        VideoWorld::new(c).err()
    };
    assert_eq!(bad(|c| c.frames = 1), Some(WorldConfigError::Frames(1)));
    assert_eq!(bad(|c| c.web.p_drop_motion = 2.0), Some(WorldConfigError::OutOfRange("p_drop_motion")));
    assert_eq!(bad(|c| c.heldout_colour_motion = 20), Some(WorldConfigError::HeldoutPairs(20)));
}

#[test]
fn web_captions_are_noisy_but_never_name_a_heldout_combination() {
    let w = world();
    let mut r = rng(5);
    let (mut wrong, mut dropped) = (0, 0);
    for _ in 0..400 {
        let ex = w.web_example_full(&mut r);
        assert!(!w.has_heldout_combo(&ex.caption) && !w.has_heldout_combo(&ex.truth));
        dropped += ex.caption.motion.is_none() as usize;
        wrong += (ex.caption.colour != ex.truth.colour || ex.caption.shape != ex.truth.shape) as usize;
    }
    assert!((60..180).contains(&dropped), "{dropped} captions without motion");
    assert!((80..220).contains(&wrong), "{wrong} captions with a wrong colour or shape");
}

fn any_prompt() -> impl Strategy<Value = usize> {
    0..72usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn clean_clips_score_one(idx in any_prompt(), seed in any::<u64>()) {
        let w = world();
        let p = w.all_prompts()[idx];
        let j = judge_video(&w.render(&p, &mut rng(seed)), &p);
        prop_assert!(j.score >= 0.99, "{p}: {j:?}");
    }

    #[test]
    fn clips_of_another_motion_colour_or_shape_score_lower(a in any_prompt(), b in any_prompt(), seed in any::<u64>()) {
        let w = world();
        let all = w.all_prompts();
        let (pa, pb) = (all[a], all[b]);
        prop_assume!(pa != pb);
        let clip = w.render(&pb, &mut rng(seed));
        let (right, wrong) = (judge_video(&clip, &pb).score, judge_video(&clip, &pa).score);
        prop_assert!(wrong < right, "{pa} judged on a clip of {pb}: {wrong} vs {right}");
    }

    #[test]
    fn degraded_clips_score_lower(idx in any_prompt(), seed in any::<u64>()) {
        let w = world();
        let p = w.all_prompts()[idx];
        let mut r = rng(seed);
        let clip = w.render(&p, &mut r);
        let d = ClipDegradation::sample(4, &mut r);
        let bad = d.apply(&clip, &mut r);
        prop_assert!(judge_video(&bad, &p).score < judge_video(&clip, &p).score, "{p} {d:?}");
    }

    #[test]
    fn score_is_always_in_unit_interval(idx in any_prompt(), seed in any::<u64>(), scale in 0.0f32..3.0) {
        let w = world();
        let p = w.all_prompts()[idx];
        let mut r = rng(seed);
        let mut clip = w.render(&p, &mut r);
        for v in &mut clip.data {
            *v = *v * scale + r.gen_range(-1.0..1.0) * scale;
        }
        let j = judge_video(&clip, &p);
        for x in [j.score, j.quality, j.faithfulness, j.smoothness, j.consistency] {
            prop_assert!((0.0..=1.0).contains(&x));
        }
    }
}

#[test]
fn losers_score_lower_than_winners() {
    let w = world();
    let set = w.preference_set(200, &mut rng(11));
    let mut lower = 0;
    for item in &set.items {
        let p = VideoPrompt::parse(&item.prompt).expect("world prompts parse");
        let loser = item.loser.as_ref().expect("synthetic sets have losers");
        lower += (judge_video(loser, &p).score < judge_video(&item.winner, &p).score) as usize;
    }
    assert!(lower >= 195, "only {lower} of 200 losers score below their winner");
}

#[test]
fn report_aggregates_per_attribute() {
    let w = world();
    let p = VideoPrompt::parse("a red circle moving right").expect("valid");
    let q = VideoPrompt::parse("a red circle moving left").expect("valid");
    let clip = w.render(&p, &mut rng(1));
    let r = VideoReport::from_judgements(&[judge_video(&clip, &p), judge_video(&clip, &q)]);
    assert_eq!((r.n_clips, r.colour_acc, r.shape_acc, r.motion_acc, r.all_correct), (2, 1.0, 1.0, 0.5, 0.5));
    assert!(r.to_string().contains("motion accuracy"));
}
