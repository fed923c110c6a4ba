//! Embeds the scenario suite (`scenarios/*.toml`) into the `flushbed`
//! binary, so that `flushbed check` with no path runs the whole suite from
//! anywhere, without the source tree beside it.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let scenarios = manifest_dir.join("scenarios");
    println!("cargo:rerun-if-changed={}", scenarios.display());

    // Sorted, so that the suite runs in the same order everywhere.
    let mut files: Vec<PathBuf> = match fs::read_dir(&scenarios) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();

    let mut code = String::from("/// The built-in suite: (file name, text), in name order.\n");
    code.push_str("pub const SCENARIOS: &[(&str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 scenario file name");
        code.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            format!("scenarios/{name}"),
            file.display().to_string()
        ));
    }
    code.push_str("];\n");

    let out = Path::new(&env::var_os("OUT_DIR").expect("set by cargo")).join("scenarios.rs");
    fs::write(&out, code).expect("writing the embedded scenario list");
}
