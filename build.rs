//! Fetches the console page's map library (Leaflet, pinned by
//! `console/package-lock.json`) from the npm registry when it is not there
//! yet, so that `cargo build` embeds it: nothing is fetched at run time.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=console/package-lock.json");
    println!("cargo:rerun-if-changed=console/src");
    // The store's migrations are embedded: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=console/node_modules/leaflet/dist/leaflet.js");
    let dir =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("console");
    if dir.join("node_modules/leaflet/dist/leaflet.js").exists() {
        return;
    }
    match Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` in console/ failed ({s}): the console page's map library comes from the npm registry"
        ),
        Err(e) => panic!(
            "cannot run npm ({e}): building kerbside needs Node.js and npm for the console page's map library"
        ),
    }
}
