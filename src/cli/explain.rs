//! `seppoc explain FILE`: the lowered IR (leaves, nodes, loss, logs), the per-step execution plan and the
//! convention the file's parameters follow.

use super::checked_or_exit;
use crate::ir::lower;
use crate::syntax::ast::File;
use std::process::ExitCode;

/// Arguments of `seppoc explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file.
    file: String,
}

/// The conventions a file may declare with a `# convention: NAME` line in its header comment (the comments
/// before `objective`): whose training script its parameters are scaled like, and how to convert the others'.
/// `err` is always a mean over elements, so every convention here is on mean errors. `docs/objectives.md`
/// ("Porting a configuration") has the same conversions as a table.
const CONVENTIONS: [(&str, &str); 6] = [
    (
        "diffusion-dpo",
        "beta is Diffusion-DPO's train.py `--beta_dpo` (also diffusers' SDXL DPO script's): the margin \
         (d(x_l) - d(x_w)) is multiplied by beta/2. From diffusers' SD 1.5 DPO script (no 1/2) set beta to twice \
         its `--beta_dpo`; from hinge.obj / ipo.obj, twice their beta.",
    ),
    (
        "diffusers",
        "beta is diffusers' SD 1.5 DPO script's `--beta_dpo` (`--loss_type sigmoid|hinge|ipo`): the margin \
         (d(x_l) - d(x_w)) is multiplied by beta, no 1/2. From Diffusion-DPO's train.py or diffusers' SDXL DPO \
         script set beta to half their `--beta_dpo`; from dpo.obj, half its beta.",
    ),
    (
        "diffusion-kto",
        "beta is Diffusion-KTO's `--beta_dpo` (train_kto_sd_v1.5.py): it multiplies one image's log-ratio \
         e_ref - e_theta minus the reference point z0, no 1/2; copy the value as it is.",
    ),
    (
        "dpo-eq14",
        "beta is Diffusion-DPO's Eq. 14 beta with T * omega(lambda_t) written out, on mean errors: the paper's \
         beta (summed errors) times C*H*W. From a Diffusion-DPO train.py or diffusers SDXL `--beta_dpo` B set \
         beta = B / (2T) (omega = 0); from diffusers' SD 1.5 script, B / T.",
    ),
    (
        "mapo",
        "beta and s are MaPO's train.py `--beta_mapo` and `--snr_value`, T its scheduler's num_train_timesteps; \
         copy the values as they are.",
    ),
    (
        "diffusion-nft",
        "beta is DiffusionNFT's guidance strength: the policy's weight in the implicit positive policy \
         v+ = (1 - beta) v_old + beta v_theta (v- = (1 + beta) v_old - beta v_theta), a mixing weight, not a \
         preference margin's scale; copy the public code's beta as it is.",
    ),
];

/// The `# convention: NAME` line of a file's header comment, if any (the first one).
fn declared_convention(file: &File) -> Option<String> {
    let header = file.stmts.first().map(|s| s.leading_comments.as_slice()).unwrap_or_default();
    header.iter().find_map(|c| c.trim().strip_prefix("convention:").map(|name| name.trim().to_string()))
}

/// The lines `explain` prints for a file's convention: what it means, or that it is unknown.
fn convention_section(file: &File) -> Option<String> {
    let name = declared_convention(file)?;
    Some(match CONVENTIONS.iter().find(|(n, _)| *n == name) {
        Some((_, meaning)) => format!("# convention: {name}\n{meaning}\n"),
        None => {
            let known: Vec<&str> = CONVENTIONS.iter().map(|(n, _)| *n).collect();
            format!("# convention: {name}\nunknown convention `{name}` (known: {})\n", known.join(", "))
        }
    })
}

/// Runs `seppoc explain`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (checked, _) = match checked_or_exit(&args.file, &[])? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    out!("{}", lower(&checked).explain());
    if let Some(section) = convention_section(&checked.file) {
        out!("\n{section}");
    }
    Ok(ExitCode::SUCCESS)
}
