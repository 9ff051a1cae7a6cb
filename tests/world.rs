//! The shapes world: determinism, prompt text round-trips, vocabulary coverage, the held-out split and web noise.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::data::{Prompt, PromptError, SyntheticWorld, Vocab, World, WorldConfig, WorldConfigError, MAX_TOKENS};

fn world() -> World {
    World::new(WorldConfig::default_16()).expect("default config is valid")
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn same_seed_gives_identical_data() {
    let (w1, w2) = (world(), world());
    assert_eq!(w1.train, w2.train);
    assert_eq!(w1.heldout, w2.heldout);
    let (mut r1, mut r2) = (rng(7), rng(7));
    for _ in 0..20 {
        assert_eq!(w1.web_example(&mut r1), w2.web_example(&mut r2));
    }
    assert_eq!(w1.preference_set(10, &mut r1), w2.preference_set(10, &mut r2));
}

#[test]
fn different_seeds_give_different_data() {
    let w = world();
    let a: Vec<_> = (0..5).map(|_| w.web_example(&mut rng(1))).collect();
    let mut r = rng(2);
    let b: Vec<_> = (0..5).map(|_| w.web_example(&mut r)).collect();
    assert_ne!(a, b);
}

#[test]
fn renders_of_one_prompt_vary() {
    let w = world();
    let p = Prompt::parse("a red circle on the left").expect("valid prompt");
    let mut r = rng(3);
    let (a, b) = (w.render(&p, &mut r), w.render(&p, &mut r));
    assert_ne!(a, b);
}

#[test]
fn images_have_the_configured_shape_and_range() {
    let mut cfg = WorldConfig::default_16();
    cfg.image_size = 24;
    let w = World::new(cfg).expect("valid config");
    let mut r = rng(4);
    for _ in 0..50 {
        let (img, _) = w.web_example(&mut r);
        assert_eq!((img.channels, img.height, img.width), (3, 24, 24));
        assert_eq!(img.data.len(), 3 * 24 * 24);
        assert!(img.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}

#[test]
fn text_parse_round_trips_for_every_prompt() {
    let w = world();
    let all = w.all_prompts();
    assert_eq!(all.len(), 4 * 3 * 5 + 4 * 12 * 12);
    for p in all {
        assert_eq!(Prompt::parse(&p.text()).as_ref(), Ok(&p), "{}", p.text());
    }
}

#[test]
fn parse_accepts_missing_positions_and_case() {
    let p = Prompt::parse("  A Red Circle and a blue square at the top. ").expect("valid prompt");
    assert_eq!(p.text(), "a red circle and a blue square at the top");
}

#[test]
fn parse_rejects_other_words() {
    assert_eq!(Prompt::parse(" "), Err(PromptError::Empty));
    let bad = |s: &str| match Prompt::parse(s) {
        Err(PromptError::Unexpected { word_idx, .. }) => word_idx,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(bad("a purple circle"), 1);
    assert_eq!(bad("a red circle on the"), 5);
    assert_eq!(bad("a red circle at the left"), 5);
    assert_eq!(bad("a red circle or a cat"), 3);
}

#[test]
fn vocab_covers_every_word() {
    let w = world();
    let v = Vocab::new();
    for p in w.all_prompts() {
        let text = p.text();
        let ids = v.encode(&text);
        assert_eq!(ids.len(), MAX_TOKENS);
        assert!(!ids.contains(&Vocab::UNK), "{text}");
        assert_eq!(v.decode(&ids), text);
    }
    assert_eq!(v.encode(""), vec![Vocab::PAD; MAX_TOKENS]);
    assert_eq!(v.encode("a zebra")[1], Vocab::UNK);
    assert!(v.len() > 2 && v.word(Vocab::PAD) == Some("<pad>"));
}

#[test]
fn heldout_pairs_never_appear_in_training_prompts() {
    let w = world();
    assert_eq!(w.heldout_pairs.len(), 2);
    assert!(!w.train.is_empty() && !w.heldout.is_empty());
    for p in &w.train {
        assert!(!w.has_heldout_pair(p), "{p}");
        assert!(!w.heldout.contains(p));
    }
    let mut r = rng(5);
    for _ in 0..500 {
        let ex = w.web_example_full(&mut r);
        assert!(!w.has_heldout_pair(&ex.truth) && !w.has_heldout_pair(&ex.caption));
    }
    for item in &w.preference_set(100, &mut r).items {
        let p = Prompt::parse(&item.prompt).expect("world prompts parse");
        assert!(w.train.contains(&p));
    }
}

#[test]
fn split_depends_on_seed() {
    let mut cfg = WorldConfig::default_16();
    let a = World::new(cfg.clone()).expect("valid");
    cfg.split_seed = 99;
    let b = World::new(cfg).expect("valid");
    assert_ne!(a.heldout, b.heldout);
}

#[test]
fn web_captions_are_wrong_at_roughly_the_configured_rate() {
    let w = world();
    let mut r = rng(6);
    let n = 4000;
    let (mut objs, mut wrong_colour, mut wrong_shape, mut dropped_pos, mut two, mut dropped_obj) = (0, 0, 0, 0, 0, 0);
    for _ in 0..n {
        let ex = w.web_example_full(&mut r);
        if ex.truth.objects.len() == 2 {
            two += 1;
            dropped_obj += (ex.caption.objects.len() == 1) as usize;
        }
        for (t, c) in ex.truth.objects.iter().zip(&ex.caption.objects) {
            objs += 1;
            wrong_colour += (t.colour != c.colour) as usize;
            wrong_shape += (t.shape != c.shape) as usize;
            dropped_pos += c.position.is_none() as usize;
        }
    }
    let rate = |k: usize, of: usize| k as f64 / of as f64;
    // Corruptions that would name a held-out pair are undone, so colour and shape rates sit a little below 0.2.
    assert!((0.14..0.23).contains(&rate(wrong_colour, objs)), "{}", rate(wrong_colour, objs));
    assert!((0.14..0.23).contains(&rate(wrong_shape, objs)), "{}", rate(wrong_shape, objs));
    assert!((0.26..0.34).contains(&rate(dropped_pos, objs)), "{}", rate(dropped_pos, objs));
    assert!((0.25..0.35).contains(&rate(dropped_obj, two)), "{}", rate(dropped_obj, two));
}

#[test]
fn preference_sets_sample_batches() {
    let w = world();
    let mut r = rng(8);
    let set = w.preference_set(12, &mut r);
    assert!(set.has_pairs() && set.len() == 12 && set.n_pairs() == 12);
    assert_eq!(set.sample_pairs(5, &mut r).len(), 5);
    let winners = set.winners_only();
    assert!(!winners.has_pairs());
    assert!(winners.sample_pairs(5, &mut r).is_empty());
    assert_eq!(winners.sample_winners(7, &mut r).len(), 7);
    let batches = set.epoch_batches(5, &mut r);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 2]);
    let mut all: Vec<usize> = batches.concat();
    all.sort();
    assert_eq!(all, (0..12).collect::<Vec<_>>());
}

#[test]
fn bad_configs_are_rejected() {
    let with = |f: fn(&mut WorldConfig)| {
        let mut c = WorldConfig::default_16();
        f(&mut c);
        World::new(c).err()
    };
    assert_eq!(with(|c| c.image_size = 4), Some(WorldConfigError::ImageSize(4)));
    assert_eq!(with(|c| c.max_objects = 3), Some(WorldConfigError::MaxObjects(3)));
    assert_eq!(with(|c| c.web.p_degrade = 1.5), Some(WorldConfigError::OutOfRange("p_degrade")));
    assert_eq!(with(|c| c.heldout_pairs = 9), Some(WorldConfigError::HeldoutPairs(9)));
}

#[test]
fn config_round_trips_through_json() {
    let c = WorldConfig::default_16();
    let json = serde_json::to_string(&c).expect("serialisable");
    assert_eq!(serde_json::from_str::<WorldConfig>(&json).expect("parses"), c);
}

#[test]
fn default_split_sizes() {
    let w = world();
    assert_eq!(w.train.len() + w.heldout.len(), 636);
}
