//! Embeds the dashboard's built assets (`web/dist/`, made by `scripts/build-web`) into the
//! binary: `$OUT_DIR/dashboard_assets.rs` lists each file with `include_bytes!`. Without
//! them the binary still builds, with a warning, and `/dashboard` answers 503 saying how to
//! make them.

use std::path::PathBuf;

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dist = manifest.join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut entries = Vec::new();
    if let Ok(read) = std::fs::read_dir(&dist) {
        for entry in read.flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            println!("cargo:rerun-if-changed={}", path.display());
            let absolute = path.canonicalize().expect("a file that exists");
            entries.push(format!(
                "    ({name:?}, {:?}, include_bytes!({:?})),\n",
                content_type(&name),
                absolute.display().to_string()
            ));
        }
    }
    entries.sort();
    if !entries.iter().any(|e| e.starts_with("    (\"index.html\"")) {
        println!(
            "cargo:warning=the dashboard's assets are not built (web/dist/index.html is missing): \
             /dashboard will answer 503. Run scripts/build-web, then build again."
        );
        entries.clear();
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let code = format!(
        "/// The dashboard's files: (name, content type, bytes).\npub const ASSETS: &[(&str, &str, &[u8])] = &[\n{}];\n",
        entries.concat()
    );
    std::fs::write(out.join("dashboard_assets.rs"), code).expect("OUT_DIR is writable");
}
