//! Where the shipped assets are found: the base models (`base/`, `base_video_flow/`, `base_flow/`), the preference
//! sets beside the base models and the generator pools' models.
//!
//! In this order: the folder named by `SEPPOC_ASSETS`, else the `assets/` folder of the source tree the binary
//! was built from (its path is fixed at build time, so an installed binary keeps finding the clone it was
//! built from). The working directory is never searched on its own: `SEPPOC_ASSETS=assets` asks for it. A
//! folder that is missing is an error naming it, not a silent fallback to another copy.

use anyhow::bail;
use std::path::{Path, PathBuf};

/// The environment variable that names the assets folder.
pub const ASSETS_ENV: &str = "SEPPOC_ASSETS";

/// Where the assets folder was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetsOrigin {
    /// Named by `SEPPOC_ASSETS`.
    Env,
    /// The source tree this binary was built from.
    Build,
}

/// The resolved assets folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assets {
    /// The folder.
    pub dir: PathBuf,
    /// How it was chosen.
    pub origin: AssetsOrigin,
}

/// The `assets/` folder of the source tree this binary was built from.
pub fn build_assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

impl Assets {
    /// Resolves the assets folder from `SEPPOC_ASSETS` (when set and not empty) or the build's source tree.
    pub fn locate() -> anyhow::Result<Assets> {
        Self::from_setting(std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    /// Resolves the assets folder given the value of `SEPPOC_ASSETS` (`None`: unset).
    pub fn from_setting(setting: Option<PathBuf>) -> anyhow::Result<Assets> {
        match setting {
            Some(dir) => {
                if !dir.is_dir() {
                    bail!(
                        "{ASSETS_ENV}=`{}` is not a folder; it must name a copy of seppoc's `assets/` folder (with \
                         `base/model.safetensors`, ...), or be unset to use `{}`",
                        dir.display(),
                        build_assets_dir().display()
                    );
                }
                Ok(Assets { dir, origin: AssetsOrigin::Env })
            }
            None => {
                let dir = build_assets_dir();
                if !dir.is_dir() {
                    bail!(
                        "the shipped assets are not at `{}`, the source tree this binary was built from (moved or \
                         deleted?); set {ASSETS_ENV}=DIR to a copy of the repository's `assets/` folder, or name \
                         the model with --model",
                        dir.display()
                    );
                }
                Ok(Assets { dir, origin: AssetsOrigin::Build })
            }
        }
    }

    /// A file of the assets, `rel` relative to the assets folder (e.g. `base/model.safetensors`); one that is
    /// missing is an error naming the folder and how it was chosen.
    pub fn file(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(rel);
        if !path.exists() {
            bail!("`{rel}` is missing from the assets folder `{}` ({})", self.dir.display(), self.origin_text());
        }
        Ok(path)
    }

    /// How the folder was chosen, for messages.
    pub fn origin_text(&self) -> String {
        match self.origin {
            AssetsOrigin::Env => format!("from {ASSETS_ENV}"),
            AssetsOrigin::Build => {
                format!("the source tree this binary was built from; {ASSETS_ENV}=DIR names another")
            }
        }
    }

    /// The line a command prints once when it loads a shipped file.
    pub fn note(&self) -> String {
        format!("shipped assets: `{}` ({})", self.dir.display(), self.origin_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_folder_wins_and_a_missing_one_is_an_error_naming_it() {
        let here = build_assets_dir();
        let named = Assets::from_setting(Some(here.clone())).expect("the build's folder exists");
        assert_eq!(named, Assets { dir: here, origin: AssetsOrigin::Env });
        let missing = PathBuf::from("/nonexistent/seppoc-assets");
        let err = format!("{:#}", Assets::from_setting(Some(missing)).unwrap_err());
        assert!(err.contains("SEPPOC_ASSETS=`/nonexistent/seppoc-assets` is not a folder"), "{err}");
        let built = Assets::from_setting(None).expect("the build's folder exists");
        assert_eq!(built.origin, AssetsOrigin::Build);
        let err = format!("{:#}", built.file("no_such/model.safetensors").unwrap_err());
        assert!(err.contains("`no_such/model.safetensors` is missing from the assets folder"), "{err}");
    }
}
