//! What an online objective needs from the trainer: a scorer of its generated samples (`reward(x)` of a
//! `sample(...)`), and batches of whole groups (`sample(..., group = K)`).

/// Scores generated images for `reward(x)` of a `sample(...)`: a learned reward model or the world's exact
/// judge. The trainer calls it once per step and sample kind, on the clamped samples and their real captions
/// (before any caption dropout); it must be deterministic so that a resumed run repeats the same rewards.
pub trait SampleScorer: Send {
    /// One reward per image: `images` holds `prompts.len()` flattened CHW images of `image_len` values each,
    /// image `i` generated for `prompts[i]` (token ids `tokens[i]`).
    fn score(
        &self,
        images: &[f32],
        image_len: usize,
        prompts: &[String],
        tokens: &[Vec<usize>],
    ) -> Result<Vec<f64>, String>;
    /// Network evaluations one scored image costs (1 for a reward model, 0 for the exact judge), counted in a
    /// step's `nfe`.
    fn nfe_per_image(&self) -> u64;
    /// What scores: `the exact judge` or the reward model's file, for messages.
    fn describe(&self) -> String;
}

/// Why a batch of `batch` rows cannot hold whole groups of `obj`'s `sample(..., group = K)`, or `None` when it
/// can (always for K = 1).
pub fn partial_groups(batch: usize, obj: &crate::ir::Objective) -> Option<String> {
    let group = obj.group() as usize;
    (batch % group != 0).then(|| {
        format!(
            "the batch size {batch} is not a multiple of objective `{}`'s group size {group} (`sample(..., group = \
             {group})` draws {group} samples of each prompt, so a batch holds whole groups); pass a batch of {}",
            obj.name,
            (batch / group).max(1) * group
        )
    })
}
