//! Loading the shipped GeoJSON layouts (`--geodata DIR`) into an empty store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use geojson::FeatureCollection;

use crate::domain::ids::RoadId;
use crate::domain::layout::{Layout, LayoutProblem, parse_layouts};

/// Why the geodata could not be loaded. Each names the file (and, where it
/// applies, the feature), in one line.
#[derive(Debug, thiserror::Error)]
pub enum GeodataError {
    #[error("cannot read the geodata directory {}: {cause}", dir.display())]
    Dir { dir: PathBuf, cause: std::io::Error },
    #[error("{}: cannot read: {cause}", file.display())]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: not a GeoJSON FeatureCollection: {message}", file.display())]
    NotGeoJson { file: PathBuf, message: String },
    #[error("{}: {}{}", file.display(), problems[0], more(problems.len()))]
    Invalid {
        file: PathBuf,
        problems: Vec<LayoutProblem>,
    },
    #[error("{}: road {road_id} is also in {}", file.display(), other.display())]
    RoadTwice {
        file: PathBuf,
        other: PathBuf,
        road_id: RoadId,
    },
    #[error("no *.geojson file in {}", dir.display())]
    Empty { dir: PathBuf },
}

fn more(n: usize) -> String {
    match n {
        1 => String::new(),
        2 => " (and 1 more problem)".into(),
        n => format!(" (and {} more problems)", n - 1),
    }
}

/// Reads one file into its road layouts.
pub fn load_file(file: &Path) -> Result<Vec<Layout>, GeodataError> {
    let text = std::fs::read_to_string(file).map_err(|cause| GeodataError::Read {
        file: file.to_owned(),
        cause,
    })?;
    let fc: FeatureCollection =
        serde_json::from_str(&text).map_err(|e| GeodataError::NotGeoJson {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
    parse_layouts(&fc).map_err(|problems| GeodataError::Invalid {
        file: file.to_owned(),
        problems,
    })
}

/// Reads every `*.geojson` file of `dir`, in name order; a road may appear
/// in one file only.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Layout)>, GeodataError> {
    let entries = std::fs::read_dir(dir).map_err(|cause| GeodataError::Dir {
        dir: dir.to_owned(),
        cause,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "geojson"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(GeodataError::Empty {
            dir: dir.to_owned(),
        });
    }
    let mut seen: BTreeMap<RoadId, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for file in files {
        for layout in load_file(&file)? {
            if let Some(other) = seen.insert(layout.road_id().clone(), file.clone()) {
                return Err(GeodataError::RoadTwice {
                    file,
                    other,
                    road_id: layout.road_id().clone(),
                });
            }
            out.push((file.clone(), layout));
        }
    }
    Ok(out)
}
